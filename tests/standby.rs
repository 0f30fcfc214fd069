//! Two engines on the bank example over a seeded stream. The standby keeps its copy of the reactors warm: its
//! admin answers show what the holder did, and when the holder is killed it takes over from the holder's
//! watermark instead of rebuilding from the start of the stream, finishing the transfers in flight and new
//! ones without storing anything twice.
//!
//! The takeover time is printed, not asserted. `TAKEOVER_EVENTS` (default 20,000) sets how many events
//! are seeded and `TAKEOVER_BIN` which `eddy` binary runs (a release build, for measuring; not `EDDY_*`, which
//! the engines would read as config):
//! `TAKEOVER_EVENTS=200000 TAKEOVER_BIN=target/release/eddy cargo test --test standby -- --nocapture`

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use async_nats::{Client, HeaderMap};
use common::*;
use futures::StreamExt;
use serde_json::{json, Value};

const ACCOUNTS: usize = 50;
/// Transfers run before the standby starts, and then again right before the holder is killed.
const TRANSFERS: usize = 5;

fn spawn(config: &Path, url: &str, data: &Path) -> Child {
    std::fs::create_dir_all(data).unwrap();
    let log = std::fs::File::create(data.join("eddy.log")).unwrap();
    let binary = std::env::var("TAKEOVER_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_eddy").to_string());
    Command::new(binary)
        .args(["run", "--config"])
        .arg(config)
        .env("EDDY_NATS__URL", url)
        .env("EDDY_HTTP__LISTEN", "127.0.0.1:0")
        .env("EDDY_ENGINE__DATA_DIR", data)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("eddy starts")
}

/// A request to an admin subject, `None` while no engine answers.
async fn admin(c: &Client, subject: &str, body: Value) -> Option<Value> {
    let request = async_nats::Request::new().payload(body.to_string().into()).timeout(Some(Duration::from_secs(2)));
    let msg = c.send_request(subject.to_string(), request).await.ok()?;
    serde_json::from_slice(&msg.payload).ok()
}

/// The transfer saga's status on whichever engine answers.
async fn transfer_status(c: &Client) -> Value {
    let reply = admin(c, "eddy.admin.reactors", json!({})).await.unwrap_or(Value::Null);
    reply["reactors"].as_array().into_iter().flatten().find(|r| r["name"] == "transfer").cloned().unwrap_or_default()
}

fn transfer(t: &str, n: usize) -> Value {
    json!({"id": t, "from": format!("acct-{}", n % ACCOUNTS), "to": format!("acct-{}", (n + 1) % ACCOUNTS), "amount": 1 + n})
}

/// How many times transfer `t` was completed.
async fn completions(c: &Client, t: &str) -> usize {
    events_on(c, &format!("events.transfer.{t}")).await.iter().filter(|e| e.event_type == "TransferCompleted").count()
}

/// Every message of the stream after `from`, with its headers.
async fn stream_after(c: &Client, from: u64) -> Vec<(u64, String, HeaderMap)> {
    let last = last_seq(c).await;
    let js = async_nats::jetstream::new(c.clone());
    let stream = js.get_stream("EVENTS").await.unwrap();
    let deliver_policy = DeliverPolicy::ByStartSequence { start_sequence: from + 1 };
    let consumer = stream.create_consumer(OrderedConfig { deliver_policy, ..Default::default() }).await.unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut out = Vec::new();
    while let Some(m) = messages.next().await {
        let m = m.unwrap();
        let seq = m.info().unwrap().stream_sequence;
        out.push((seq, m.subject.to_string(), m.headers.clone().unwrap_or_default()));
        if seq >= last {
            break;
        }
    }
    out
}

/// The end of an engine's log, for a failure's message.
fn log_tail(data: &Path) -> String {
    let log = std::fs::read_to_string(data.join("eddy.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

#[tokio::test]
async fn a_warm_standby_answers_like_the_holder_and_takes_over_without_repeating_anything() {
    let events: usize = std::env::var("TAKEOVER_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let config = nats.dir.path().join("config");
    copy_example("bank", &config);
    // The stream as an engine makes it, seeded before any engine runs: the history a standby catches up on.
    eddy_engine::store::EventStore::open(c.clone(), &eddy_engine::config::EngineConfig::default()).await.unwrap();
    let seeded_at = Instant::now();
    let balances = seed_bank(&c, ACCOUNTS, events).await;
    let seeded = last_seq(&c).await;
    eprintln!("seeded {seeded} events in {:?}", seeded_at.elapsed());

    let (a_dir, b_dir) = (nats.dir.path().join("a"), nats.dir.path().join("b"));
    let a = spawn(&config, &nats.url(), &a_dir);
    let _a_guard = KillOnDrop(a.id());
    let holder_ready = eventually(300, || async {
        let s = transfer_status(&c).await;
        s["status"] == "running" && s["position"].as_u64().unwrap_or(0) >= seeded
    });
    assert!(holder_ready.await, "the first engine runs the saga: {}\n{}", transfer_status(&c).await, log_tail(&a_dir));

    for n in 0..TRANSFERS {
        ok(&c, "transfer.request", transfer(&format!("t{n}"), n)).await;
    }
    for n in 0..TRANSFERS {
        let t = format!("t{n}");
        assert!(eventually(30, || async { completions(&c, &t).await == 1 }).await, "{t} completes");
    }

    let started = Instant::now();
    let b = spawn(&config, &nats.url(), &b_dir);
    let _b_guard = KillOnDrop(b.id());
    // Both engines answer the admin subjects; each reply says which kind of engine gave it. The standby's
    // shows the transfers the holder completed.
    let mut answers: BTreeMap<String, Value> = BTreeMap::new();
    let expected = json!({"completed": TRANSFERS});
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut fresh = false;
    while !fresh && Instant::now() < deadline {
        if let Some(reply) = admin(&c, "eddy.admin.sagas", json!({"saga": "transfer"})).await {
            answers.insert(reply["status"].as_str().unwrap_or("").to_string(), reply["states"].clone());
        }
        fresh = answers.get("standby") == Some(&expected) && answers.get("running") == Some(&expected);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(fresh, "holder and standby both show every transfer completed: {answers:?}");
    eprintln!("the standby caught up with {seeded} events in {:?}", started.elapsed());
    let last = format!("t{}", TRANSFERS - 1);
    let standby_get = eventually(30, || async {
        let reply = admin(&c, "eddy.admin.sagas.get", json!({"saga": "transfer", "id": last})).await;
        reply.is_some_and(|r| r["status"] == "standby" && r["instance"]["state"] == "completed")
    });
    assert!(standby_get.await, "the standby shows one instance as the holder left it");

    // Transfers in flight when the holder dies, and one requested right after.
    for n in TRANSFERS..2 * TRANSFERS {
        ok(&c, "transfer.request", transfer(&format!("t{n}"), n)).await;
    }
    let mut a = a;
    a.kill().unwrap();
    let killed = Instant::now();
    let killed_at = std::time::SystemTime::now();
    a.wait().unwrap();
    // When the lease expires: 6 s after the dead holder's last renewal, as the server stamped it.
    let js = async_nats::jetstream::new(c.clone());
    let leases = js.get_key_value("EVENTS_leases").await.unwrap();
    let renewed = leases.entry("transfer").await.unwrap().expect("the dead holder's lease").created;
    let renewed = std::time::UNIX_EPOCH + Duration::from_nanos(renewed.unix_timestamp_nanos() as u64);
    let expires = (renewed + Duration::from_secs(6)).duration_since(killed_at).unwrap_or_default();
    let reply = send_until_answered(&c, "transfer.request", transfer("t-new", 2 * TRANSFERS), "req-t-new").await;
    assert_eq!(reply["ok"], true, "{reply}");
    let mut took_over = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut done = false;
    while !done && Instant::now() < deadline {
        if took_over.is_none() && transfer_status(&c).await["status"] == "running" {
            took_over = Some(killed.elapsed());
        }
        done = completions(&c, "t-new").await == 1;
        if !done {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(done, "the standby takes over and completes a new transfer");
    let completed = killed.elapsed();
    eprintln!(
        "takeover on a stream of {seeded} events: the lease expired {expires:?} after the kill; the standby was running {took_over:?} and had completed a new transfer {completed:?} after the kill"
    );

    for n in 0..2 * TRANSFERS {
        let t = format!("t{n}");
        assert!(eventually(30, || async { completions(&c, &t).await == 1 }).await, "{t} completes once");
    }
    assert!(eventually(30, || async { transfer_status(&c).await["status"] == "running" }).await);
    // Time for anything repeated by mistake to show.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for n in 0..2 * TRANSFERS {
        assert_eq!(completions(&c, &format!("t{n}")).await, 1, "t{n} completes once");
    }
    assert_eq!(completions(&c, "t-new").await, 1);

    let messages = stream_after(&c, seeded).await;
    assert_stored_once(messages.iter().map(|(seq, subject, h)| (*seq, subject.as_str(), h)));

    // Money only moved between accounts.
    let mut total = 0;
    for i in 0..ACCOUNTS {
        for e in events_on(&c, &format!("events.account.acct-{i}")).await {
            match e.event_type.as_str() {
                "MoneyDeposited" => total += e.data["amount"].as_i64().unwrap(),
                "MoneyWithdrawn" => total -= e.data["amount"].as_i64().unwrap(),
                _ => {}
            }
        }
    }
    assert_eq!(total, balances.iter().sum::<i64>(), "money is conserved");
    let mut b = b;
    b.kill().unwrap();
    b.wait().unwrap();
}
