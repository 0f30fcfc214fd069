//! Two engines on the bank example; the one holding the reactors' leases is frozen (SIGSTOP) for longer than
//! the lease and the dedup window while clients retry commands with fixed ids to the other one and transfers
//! run, then woken (SIGCONT). Whatever it had in hand when frozen, nothing may be stored twice.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use async_nats::{Client, HeaderMap};
use common::*;
use futures::StreamExt;
use serde_json::{json, Value};

/// The dedup window the engines run with: the freeze outlasts it by far.
const WINDOW_SECS: u64 = 2;
/// Longer than the lease (6 s) plus a standby's retry (0.5 s), the window, and time for the other engine to
/// finish the transfers.
const FREEZE: Duration = Duration::from_secs(14);
const ACCOUNTS: usize = 8;

fn spawn(config: &Path, url: &str, data: &Path) -> Child {
    std::fs::create_dir_all(data).unwrap();
    let log = std::fs::File::create(data.join("eddy.log")).unwrap();
    Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["run", "--config"])
        .arg(config)
        .env("EDDY_NATS__URL", url)
        .env("EDDY_HTTP__LISTEN", "127.0.0.1:0")
        .env("EDDY_ENGINE__DATA_DIR", data)
        .env("EDDY_ENGINE__DEDUP_WINDOW_SECS", WINDOW_SECS.to_string())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("eddy starts")
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: signalling a child this test spawned.
    unsafe { libc::kill(child.id() as i32, sig) };
    if sig == libc::SIGSTOP {
        stopped(child.id());
    }
}

/// Waits until every thread of `pid` is stopped. `kill` returns once SIGSTOP is queued; the threads stop as
/// each is told, and on a loaded machine one may still run for a while, and read a request, after `kill`
/// has returned.
fn stopped(pid: u32) {
    let all_stopped = || {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the process's threads");
        tasks.flatten().all(|task| {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            // The state follows the parenthesised command name.
            stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('T'))
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !all_stopped() {
        assert!(std::time::Instant::now() < deadline, "eddy stops within 30 s of SIGSTOP");
        std::thread::yield_now();
    }
}

/// Every message of the stream with its headers.
async fn stream(c: &Client) -> Vec<(u64, String, HeaderMap, Value)> {
    let last = last_seq(c).await;
    let js = async_nats::jetstream::new(c.clone());
    let stream = js.get_stream("EVENTS").await.unwrap();
    let consumer = stream
        .create_consumer(OrderedConfig { deliver_policy: DeliverPolicy::All, ..Default::default() })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut out = Vec::new();
    while let Some(m) = messages.next().await {
        let m = m.unwrap();
        let seq = m.info().unwrap().stream_sequence;
        let data = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
        out.push((seq, m.subject.to_string(), m.headers.clone().unwrap_or_default(), data));
        if seq >= last {
            break;
        }
    }
    out
}

/// Whether every transfer requested so far is completed or failed.
async fn transfers_final(c: &Client, count: usize) -> bool {
    for t in 0..count {
        let events = events_on(c, &format!("events.transfer.t{t}")).await;
        if !events.iter().any(|e| e.event_type == "TransferCompleted" || e.event_type == "TransferFailed") {
            return false;
        }
    }
    true
}

#[tokio::test]
async fn a_frozen_lease_holder_stores_nothing_twice_when_it_wakes() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let config = nats.dir.path().join("config");
    copy_example("bank", &config);
    let (a_dir, b_dir) = (nats.dir.path().join("a"), nats.dir.path().join("b"));
    let mut a = spawn(&config, &nats.url(), &a_dir);
    let _a_guard = KillOnDrop(a.id());
    assert!(eventually(30, || async { reactor_status(&c, "transfer").await["status"] == "running" }).await);
    let b = spawn(&config, &nats.url(), &b_dir);
    let _b_guard = KillOnDrop(b.id());
    // Both engines answer: the standby's status shows up among the replies.
    assert!(eventually(30, || async { reactor_status(&c, "transfer").await["status"] == "standby" }).await);

    for i in 0..ACCOUNTS {
        ok(&c, "account.open", json!({"id": format!("acc{i}"), "owner": "o"})).await;
        ok(&c, "account.deposit", json!({"id": format!("acc{i}"), "amount": 1_000})).await;
    }

    // Transfers keep coming, before, during and after the freeze, each sent until answered.
    let sending = {
        let c = c.clone();
        tokio::spawn(async move {
            let mut tasks = Vec::new();
            let until = Instant::now() + FREEZE + Duration::from_secs(2);
            let mut t = 0;
            while Instant::now() < until {
                let (from, to) = (t % ACCOUNTS, (t * 3 + 1) % ACCOUNTS);
                let to = if to == from { (to + 1) % ACCOUNTS } else { to };
                let body = json!({"id": format!("t{t}"), "from": format!("acc{from}"), "to": format!("acc{to}"), "amount": 1 + t % 50});
                let c = c.clone();
                let id = format!("req-t{t}");
                tasks.push(tokio::spawn(async move { send_until_answered(&c, "transfer.request", body, &id).await }));
                t += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            for task in tasks {
                task.await.unwrap();
            }
            t
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    signal(&a, libc::SIGSTOP);
    let frozen = Instant::now();
    // Client commands with fixed ids: about half land on the frozen engine first and wait there; the retry
    // is answered by the other one.
    let mut deposits = Vec::new();
    for i in 0..20 {
        let body = json!({"id": format!("acc{}", i % ACCOUNTS), "amount": 10 + i});
        let c = c.clone();
        deposits.push(tokio::spawn(async move {
            send_until_answered(&c, "account.deposit", body, &format!("client-dep-{i}")).await
        }));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut deposited = 0;
    for (i, d) in deposits.into_iter().enumerate() {
        let reply = d.await.unwrap();
        assert_eq!(reply["ok"], true, "{reply}");
        deposited += 10 + i as i64;
    }
    tokio::time::sleep(FREEZE.saturating_sub(frozen.elapsed())).await;
    signal(&a, libc::SIGCONT);

    let transfers = sending.await.unwrap();
    let settled = eventually(60, || transfers_final(&c, transfers)).await;
    assert!(settled, "every transfer completes or fails");
    // Time for the woken engine to do whatever it still had in hand.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The other engine dies: the woken one takes the leases back, with what its outbox still held from
    // before the freeze, and runs a new transfer.
    let mut b = b;
    b.kill().unwrap();
    b.wait().unwrap();
    assert!(eventually(30, || async { reactor_status(&c, "transfer").await["status"] == "running" }).await);
    let body = json!({"id": "t-after", "from": "acc0", "to": "acc1", "amount": 1});
    assert_eq!(send_until_answered(&c, "transfer.request", body, "req-t-after").await["ok"], true);
    let after = eventually(30, || async {
        let events = events_on(&c, "events.transfer.t-after").await;
        events.iter().any(|e| e.event_type == "TransferCompleted" || e.event_type == "TransferFailed")
    });
    assert!(after.await, "the engine that was frozen runs transfers once it holds the lease again");
    tokio::time::sleep(Duration::from_secs(1)).await;

    let messages = stream(&c).await;
    assert_stored_once(messages.iter().map(|(seq, subject, h, _)| (*seq, subject.as_str(), h)));

    let mut total = 0;
    for i in 0..ACCOUNTS {
        for e in events_on(&c, &format!("events.account.acc{i}")).await {
            match e.event_type.as_str() {
                "MoneyDeposited" => total += e.data["amount"].as_i64().unwrap(),
                "MoneyWithdrawn" => total -= e.data["amount"].as_i64().unwrap(),
                _ => {}
            }
        }
    }
    assert_eq!(total, ACCOUNTS as i64 * 1_000 + deposited, "money is conserved");
    // What the woken engine met, for the record (its log).
    let log = std::fs::read_to_string(a_dir.join("eddy.log")).unwrap_or_default();
    let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    eprintln!(
        "{transfers} transfers, {} messages; the woken engine answered {} stored commands from history, confirmed its lease {} times, stood down {} times, dropped {} actions another engine had run",
        messages.len(),
        count("a stored command was sent again"),
        count("past its renewal deadline"),
        count("no longer sure") + count("lost the reactor's lease"),
        count("dropping an action left from a lost lease"),
    );
    a.kill().unwrap();
    a.wait().unwrap();
}

/// A command repeated after the dedup window, and after its aggregate left the cache, is answered with
/// its first reply and stored once.
#[tokio::test]
async fn a_command_repeated_after_the_window_and_an_eviction_is_not_applied_again() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let mut settings = example("bank", &nats.url(), nats.dir.path());
    settings.engine.engine.dedup_window_secs = 1;
    settings.engine.engine.cache_size = 1;
    let eddy = engine(&settings).await;
    ok(&c, "account.open", json!({"id": "a1", "owner": "ann"})).await;
    let body = json!({"id": "a1", "amount": 5}).to_string();
    let first = send_raw(&c, "account.deposit", &body, &[("Eddy-Command-Id", "dep-1")]).await;
    assert!(first.ok(), "{}", first.body);
    ok(&c, "account.deposit", json!({"id": "a1", "amount": 7})).await;
    // Another aggregate takes a1's place in the cache, and the window passes.
    ok(&c, "account.open", json!({"id": "a2", "owner": "bob"})).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let again = send_raw(&c, "account.deposit", &body, &[("Eddy-Command-Id", "dep-1")]).await;
    assert_eq!(again.body, first.body, "the first reply, rebuilt from the stored event");
    let deposits = events_on(&c, "events.account.a1").await;
    let ids: Vec<&str> = deposits.iter().map(|e| e.command_id.as_str()).filter(|id| *id == "dep-1").collect();
    assert_eq!(ids.len(), 1, "stored once");
    stop(eddy).await;
}

/// The value of the reactor's lease key: the engine that holds it.
async fn lease_holder(c: &Client, reactor: &str) -> String {
    let js = async_nats::jetstream::new(c.clone());
    let kv = js.get_key_value("EVENTS_leases").await.expect("the lease bucket");
    let entry = kv.get(reactor).await.expect("readable").expect("the lease is held");
    String::from_utf8(entry.to_vec()).expect("a name")
}

// A command carries the lease it is sent under (`Eddy-Lease`), and is stored only if the lease still names
// its sender when it is appended: an engine that woke from a pause after another took its lease and decided
// the same step (maybe rejecting it, which stores nothing to deduplicate against) must not apply it late.
#[tokio::test]
async fn a_command_sent_under_a_lease_its_sender_lost_is_not_stored() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let eddy = engine(&example("bank", &nats.url(), nats.dir.path())).await;
    assert!(eventually(30, || async { reactor_status(&c, "transfer").await["status"] == "running" }).await);
    let holder = lease_holder(&c, "transfer").await;
    let open = |id: &str| json!({"id": id, "owner": "o"}).to_string();

    for (lease, why) in [("transfer=impostor", "another holder"), ("nosuch=impostor", "a lease nobody holds")] {
        let reply = send_raw(&c, "account.open", &open("f1"), &[("Eddy-Lease", lease)]).await;
        assert_eq!(reply.code(), "unavailable", "{why}: {}", reply.body);
        assert!(reply.message().contains("fenced"), "{why}: {}", reply.message());
    }
    assert!(events_on(&c, "events.account.f1").await.is_empty(), "a fenced command stores nothing");

    let malformed = send_raw(&c, "account.open", &open("f1"), &[("Eddy-Lease", "transfer")]).await;
    assert_eq!(malformed.code(), "invalid", "{}", malformed.body);

    let held = format!("transfer={holder}");
    let reply = send_raw(&c, "account.open", &open("f1"), &[("Eddy-Lease", held.as_str())]).await;
    assert!(reply.ok(), "the holder's command is stored: {}", reply.body);
    assert_eq!(events_on(&c, "events.account.f1").await.len(), 1);
    stop(eddy).await;
}

/// A lease whose deadline has passed, as an engine woken from a pause finds its own.
struct Lapsed;

impl eddy_engine::command::HeldLease for Lapsed {
    fn key(&self) -> &str {
        "transfer"
    }
    fn holder(&self) -> &str {
        "me"
    }
    fn valid(&self) -> bool {
        false
    }
}

#[tokio::test]
async fn a_command_under_a_lapsed_lease_in_this_process_is_not_stored() {
    use eddy_engine::command::{CommandContext, CommandService, Fence};
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let settings = example("bank", &nats.url(), nats.dir.path());
    let store = eddy_engine::store::EventStore::open(c.clone(), &settings.engine.engine).await.expect("store");
    let commands = CommandService::new(&settings.engine, store);
    let body = json!({"id": "f2", "owner": "o"}).to_string();
    let ctx = CommandContext { fence: Some(Fence::Local(std::sync::Arc::new(Lapsed))), ..Default::default() };
    let reply = commands.execute("account", "open", body.as_bytes(), ctx).await;
    let failure = reply.error.clone().expect("refused");
    assert_eq!(failure.code.as_str(), "unavailable");
    assert!(events_on(&c, "events.account.f2").await.is_empty(), "nothing stored");
}

// A request that reached a frozen engine is read only when it wakes; its client has given up on it by then
// (and may have had it rejected elsewhere), so it is refused, not decided.
#[tokio::test]
async fn a_request_read_after_a_freeze_is_refused_not_decided() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let config = nats.dir.path().join("config");
    copy_example("bank", &config);
    let data = nats.dir.path().join("a");
    let mut eddy = spawn(&config, &nats.url(), &data);
    let _guard = KillOnDrop(eddy.id());
    assert!(eventually(30, || async { reactor_status(&c, "transfer").await["status"] == "running" }).await);
    ok(&c, "account.open", json!({"id": "s0", "owner": "o"})).await;

    signal(&eddy, libc::SIGSTOP);
    let mut h = HeaderMap::new();
    h.insert("Eddy-Command-Id", "while-frozen");
    let body = json!({"id": "s1", "owner": "o"}).to_string();
    let request = async_nats::Request::new().headers(h).payload(body.into()).timeout(Some(Duration::from_millis(300)));
    assert!(c.send_request("eddy.cmd.account.open", request).await.is_err(), "a frozen engine does not answer");
    // The server has routed the request to the frozen engine once it answers a later one on this connection:
    // on a loaded machine this client's own writes can lag behind the freeze, and a request that reaches the
    // engine after it woke is rightly decided.
    async_nats::jetstream::new(c.clone()).query_account().await.expect("the server answers");
    // Past the stall bound (2 s), as measured by the engine's own clock.
    tokio::time::sleep(Duration::from_secs(3)).await;
    signal(&eddy, libc::SIGCONT);

    // Once it answers again (the first answers after waking are refusals too), the old request was not stored.
    assert!(eventually(30, || async { send(&c, "account.open", json!({"id": "s2", "owner": "o"})).await.ok() }).await);
    let log = || std::fs::read_to_string(data.join("eddy.log")).unwrap_or_default();
    assert!(
        events_on(&c, "events.account.s1").await.is_empty(),
        "the request read after the freeze was refused:\n{}",
        log()
    );
    let again = send_raw(
        &c,
        "account.open",
        &json!({"id": "s1", "owner": "o"}).to_string(),
        &[("Eddy-Command-Id", "while-frozen")],
    )
    .await;
    assert!(again.ok(), "sent again, it is decided: {}", again.body);
    assert_eq!(events_on(&c, "events.account.s1").await.len(), 1);
    eddy.kill().unwrap();
    eddy.wait().unwrap();
}
