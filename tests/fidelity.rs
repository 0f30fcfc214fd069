//! Record and replay against the live engine: each example domain runs a scripted scenario on a real
//! nats-server with its reactors and sagas, the stream is recorded, and the offline replay of that
//! recording must decide exactly what the engine did live: the commands found in the stream by their
//! causation, the events emitted, the publishes a subscriber received, and every saga transition.
//!
//! `REGENERATE_STREAMS=1 cargo test --test fidelity` also writes the recordings to `tests/streams/`, which
//! the snapshot tests in `tests/replay.rs` replay (then `cargo insta review`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_nats::Client;
use common::*;
use eddy::replay::{self, Recording, Transcript};
use eddy_engine::host::reactor::{Action, Kind};
use futures::StreamExt;
use serde_json::{json, Value};

/// Sends a command with a fixed command id, so recordings read the same from run to run.
async fn cmd(c: &Client, target: &str, id: &str, body: Value) -> Reply {
    send_raw(c, target, &body.to_string(), &[("Eddy-Command-Id", id)]).await
}

async fn must(c: &Client, target: &str, id: &str, body: Value) {
    let reply = cmd(c, target, id, body.clone()).await;
    assert!(reply.ok(), "{target} {body}: {}", reply.body);
}

/// Every counter of every reactor, with the stream's end: equal twice in a row means nothing is moving.
async fn snapshot(c: &Client) -> (u64, Value) {
    let seq = last_seq(c).await;
    let msg = c.request("eddy.admin.reactors", "".into()).await.expect("reactors answer");
    let reply: Value = serde_json::from_slice(&msg.payload).unwrap();
    (seq, reply["reactors"].clone())
}

/// Waits until every reactor has read the whole stream and nothing has moved for a while.
async fn settled(c: &Client) {
    let mut last = (0, Value::Null);
    let mut quiet = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while quiet < 3 {
        assert!(std::time::Instant::now() < deadline, "the scenario settles: {last:?}");
        tokio::time::sleep(Duration::from_millis(150)).await;
        let now = snapshot(c).await;
        let caught_up = now.1.as_array().unwrap().iter().all(|r| r["lag"] == 0 && r["status"] == "running");
        quiet = if caught_up && now == last { quiet + 1 } else { 0 };
        last = now;
    }
}

/// What happened live: the recording of the whole stream and the publishes and calls a subscriber saw.
struct Live {
    recording: Recording,
    /// (effect id, subject, data)
    publishes: BTreeSet<(String, String, String)>,
    /// (effect id, subject, data) of the requests of `call` actions (a retry is the same request).
    calls: BTreeSet<(String, String, String)>,
}

async fn live<F, Fut>(domain: &str, script: F) -> Live
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let mut sub = c.subscribe(">").await.unwrap();
    c.flush().await.unwrap();
    let eddy = engine(&example(domain, &nats.url(), nats.dir.path())).await;
    script(c.clone()).await;
    settled(&c).await;
    let mut out = Vec::new();
    let js = async_nats::jetstream::new(c.clone());
    eddy::record::record(&js, "EVENTS", &Default::default(), &mut out, |_| {}).await.expect("records");
    stop(eddy).await;
    sub.unsubscribe().await.unwrap();
    let (mut publishes, mut calls) = (BTreeSet::new(), BTreeSet::new());
    while let Some(msg) = sub.next().await {
        if let Some(id) = msg.headers.as_ref().and_then(|h| h.get("Eddy-Effect-Id")) {
            let data: Value = serde_json::from_slice(&msg.payload).unwrap();
            let seen = (id.to_string(), msg.subject.to_string(), data.to_string());
            // A call is a request: it waits for a reply.
            if msg.reply.is_some() {
                calls.insert(seen)
            } else {
                publishes.insert(seen)
            };
        }
    }
    let recording = Recording::parse(std::str::from_utf8(&out).unwrap()).expect("the recording reads back");
    if std::env::var_os("REGENERATE_STREAMS").is_some() {
        let path = root().join("tests/streams").join(format!("{domain}.jsonl"));
        std::fs::write(&path, recording.to_jsonl()).unwrap();
        eprintln!("wrote {}", path.display());
    }
    Live { recording, publishes, calls }
}

/// Replays `live` and compares what the replay decides with what the engine did.
fn assert_faithful(domain: &str, live: &Live) -> Transcript {
    let settings = eddy::load(&root().join("config/examples").join(domain)).unwrap();
    let transcript = replay::replay(&settings, &live.recording);
    // Gaps are normal: timer schedules live outside `events.>`, and a cancelled one is purged.
    let warnings: Vec<_> = transcript.warnings.iter().filter(|w| !w.contains("seq jumps")).collect();
    assert!(warnings.is_empty(), "a live recording replays without other warnings: {warnings:?}");
    let reactors: Vec<String> = settings.reactors.iter().map(|r| r.name().to_string()).collect();
    let owned = |agg: &str| {
        settings.reactors.iter().any(|r| {
            if r.kind() == Kind::Saga {
                agg == format!("saga-{}", r.name())
            } else {
                agg == r.name()
            }
        })
    };
    let by_reactor = |id: &str| reactors.iter().any(|r| id.starts_with(&format!("{r}:")));

    // Live: commands are the events whose command id is an effect id, plus the rejections sagas recorded;
    // emits are the events on reactors' own subjects that an effect wrote.
    let mut live_commands = BTreeMap::new();
    let mut live_emits = BTreeMap::new();
    let mut live_transitions = 0;
    let mut live_outcomes = 0;
    for event in live.recording.events() {
        let event = event.unwrap();
        match event.event_type.as_str() {
            "SagaStarted" | "StateEntered" => live_transitions += 1,
            // A call's outcome, recorded by the engine: the call itself is compared with what the service saw.
            "CallReplied" | "CallFailed" => live_outcomes += 1,
            // An operator's input, not a decision: the replay decides the transition it causes.
            "OperatorSteered" => {}
            "CommandRejected" => {
                let target = event.data["command"].as_str().unwrap().split('.').next().unwrap().to_string();
                live_commands.insert(event.data["effect"].as_str().unwrap().to_string(), target);
            }
            _ if !by_reactor(&event.command_id) => {}
            _ if owned(&event.aggregate) => {
                if event.event_type != "TimerFired" {
                    live_emits.insert(event.command_id.clone(), event.data.to_string());
                }
            }
            _ => {
                live_commands.insert(event.command_id.clone(), event.aggregate.clone());
            }
        }
    }

    let mut commands = BTreeMap::new();
    let mut emits = BTreeMap::new();
    let mut publishes = BTreeSet::new();
    let mut calls = BTreeSet::new();
    for (_, acted) in transcript.actions() {
        let id = acted.id.clone();
        match &acted.action {
            Action::Command { aggregate, .. } => {
                commands.insert(id, aggregate.clone());
            }
            Action::Emit { data, .. } => {
                emits.insert(id, data.to_string());
            }
            Action::Publish { subject, data } => {
                publishes.insert((id, subject.clone(), data.to_string()));
            }
            Action::Call(call) => {
                calls.insert((id, call.target.name(), call.data.to_string()));
            }
            _ => {}
        }
    }
    assert_eq!(commands, live_commands, "{domain}: the replay's commands are the ones the engine sent");
    assert_eq!(emits, live_emits, "{domain}: the replay's emits are the ones in the stream");
    assert_eq!(publishes, live.publishes, "{domain}: the replay's publishes are the ones received");
    assert_eq!(calls, live.calls, "{domain}: the replay's calls are the ones the services received");
    assert_eq!(calls.len(), live_outcomes, "{domain}: each call's outcome is recorded once");
    let transitions: Vec<_> =
        transcript.decisions.iter().flat_map(|d| d.reactors.values().flat_map(|r| &r.transitions)).collect();
    assert!(transitions.iter().all(|t| t.recorded), "{domain}: every transition is the recorded one");
    assert_eq!(transitions.len(), live_transitions, "{domain}: every recorded transition is decided again");
    assert_eq!(transcript.recording.timers_fired, 0);
    transcript
}

#[tokio::test]
async fn bank_transfers_and_alerts_replay_as_they_ran() {
    let live = live("bank", |c| async move {
        let c = &c;
        must(c, "account.open", "open-a1", json!({"id": "a1", "owner": "ann"})).await;
        must(c, "account.open", "open-a2", json!({"id": "a2", "owner": "bob"})).await;
        must(c, "account.open", "open-a3", json!({"id": "a3", "owner": "cy"})).await;
        must(c, "account.deposit", "dep-a1", json!({"id": "a1", "amount": 30_000})).await;
        must(c, "account.deposit", "dep-a3", json!({"id": "a3", "amount": 500})).await;
        // Over 10000 in a day: one DailyLimitExceeded.
        must(c, "account.withdraw", "wd-a1", json!({"id": "a1", "amount": 11_000})).await;
        must(c, "transfer.request", "t1", json!({"id": "t1", "from": "a1", "to": "a2", "amount": 100})).await;
        must(c, "transfer.request", "t2", json!({"id": "t2", "from": "a1", "to": "a2", "amount": 5_000})).await;
        must(c, "transfer.request", "t3", json!({"id": "t3", "from": "a1", "to": "a3", "amount": 2_000})).await;
        // a3 holds 500: the debit is rejected and the transfer fails.
        must(c, "transfer.request", "t4", json!({"id": "t4", "from": "a3", "to": "a2", "amount": 900})).await;
        // Left waiting for approval: its timer is still armed when the recording ends.
        must(c, "transfer.request", "t5", json!({"id": "t5", "from": "a1", "to": "a3", "amount": 1_500})).await;
        for t in ["t2", "t3", "t5"] {
            let waiting =
                eventually(30, || async { saga_instance(c, "transfer", t).await["state"] == "approval" }).await;
            assert!(waiting, "{t} waits for approval");
        }
        must(c, "transfer.approve", "approve-t2", json!({"id": "t2"})).await;
        must(c, "transfer.decline", "decline-t3", json!({"id": "t3"})).await;
        // Over 10000: the fraud check is asked (a responder that approves), and its reply moves the saga.
        let mut fraud = c.subscribe("fraud.check").await.unwrap();
        c.flush().await.unwrap();
        must(c, "account.deposit", "dep2-a1", json!({"id": "a1", "amount": 20_000})).await;
        must(c, "transfer.request", "t6", json!({"id": "t6", "from": "a1", "to": "a2", "amount": 12_000})).await;
        let asked = fraud.next().await.unwrap();
        c.publish(asked.reply.unwrap(), json!({"approved": true}).to_string().into()).await.unwrap();
        // An operator cancels a transfer waiting for approval: the steer is on its log, and replay takes it.
        must(c, "transfer.request", "t7", json!({"id": "t7", "from": "a1", "to": "a3", "amount": 1_200})).await;
        let waiting = eventually(30, || async { saga_instance(c, "transfer", "t7").await["state"] == "approval" });
        assert!(waiting.await, "t7 waits for approval");
        let steer = json!({"saga": "transfer", "id": "t7", "by": "ops", "request_id": "cancel-t7"});
        c.request("eddy.admin.sagas.cancel", steer.to_string().into()).await.unwrap();
    })
    .await;
    let transcript = assert_faithful("bank", &live);
    let sagas = transcript.end.sagas["transfer"].load().unwrap();
    let states: BTreeMap<_, _> = sagas.iter().map(|(id, i)| (id.as_str(), i.state.as_str())).collect();
    let expected = [
        ("t1", "completed"),
        ("t2", "completed"),
        ("t3", "failed"),
        ("t4", "failed"),
        ("t5", "approval"),
        ("t6", "completed"),
        ("t7", "failed"),
    ];
    assert_eq!(states, BTreeMap::from(expected));
    assert_eq!(transcript.end.timers.len(), 1, "t5's approval timer is armed");
    assert_eq!(transcript.end.views["balances"]["a2"]["balance"], 17_100);
    assert_eq!(live.calls.len(), 1, "t6 asked the fraud check once: {:?}", live.calls);
}

#[tokio::test]
async fn inventory_reorders_and_alerts_replay_as_they_ran() {
    let live = live("inventory", |c| async move {
        let c = &c;
        must(c, "product.register", "reg-p1", json!({"id": "p1", "name": "widget", "low_mark": 5})).await;
        must(c, "product.register", "reg-p2", json!({"id": "p2", "name": "gadget"})).await;
        must(c, "product.restock", "in-p1", json!({"id": "p1", "quantity": 8})).await;
        must(c, "product.restock", "in-p2", json!({"id": "p2", "quantity": 30})).await;
        must(c, "product.reduce", "o1", json!({"id": "p1", "quantity": 4, "order": "o1"})).await;
        // The last units go: StockDepleted, and auto-reorder restocks 50.
        must(c, "product.reduce", "o2", json!({"id": "p1", "quantity": 4, "order": "o2"})).await;
        must(c, "product.reduce", "o3", json!({"id": "p2", "quantity": 25, "order": "o3"})).await;
        let reply = cmd(c, "product.reduce", "o4", json!({"id": "p2", "quantity": 99})).await;
        assert_eq!(reply.code(), "rejected");
    })
    .await;
    let transcript = assert_faithful("inventory", &live);
    assert_eq!(live.publishes.len(), 2, "p1 and p2 each fall below their low mark once: {:?}", live.publishes);
    assert_eq!(transcript.end.aggregates["product"]["p1"]["on_hand"], 50);
}

#[tokio::test]
async fn financing_race_and_rejection_replay_as_they_ran() {
    let live = live("financing", |c| async move {
        let c = &c;
        for (i, funds) in [("i1", 5_000), ("i2", 5_000), ("i3", 100)] {
            must(c, "investor.register", &format!("reg-{i}"), json!({"id": i, "name": i})).await;
            must(c, "investor.add_funds", &format!("funds-{i}"), json!({"id": i, "amount": funds})).await;
        }
        must(c, "invoice.issue", "issue-inv1", json!({"id": "inv1", "issuer": "acme", "amount": 1_000})).await;
        let (a, b) = tokio::join!(
            cmd(c, "invoice.bid", "bid-i1", json!({"id": "inv1", "investor": "i1"})),
            cmd(c, "invoice.bid", "bid-i2", json!({"id": "inv1", "investor": "i2"})),
        );
        assert!(a.ok() && b.ok());
        must(c, "invoice.issue", "issue-inv2", json!({"id": "inv2", "issuer": "acme", "amount": 1_000})).await;
        // i3 cannot cover it: the reservation is rejected.
        must(c, "invoice.bid", "bid-i3", json!({"id": "inv2", "investor": "i3"})).await;
        for id in ["inv1-i1", "inv1-i2", "inv2-i3"] {
            let done = eventually(30, || async { saga_instance(c, "financing", id).await["final"] == true }).await;
            assert!(done, "{id} finishes");
        }
    })
    .await;
    let transcript = assert_faithful("financing", &live);
    let ends: BTreeSet<_> =
        transcript.end.sagas["financing"].load().unwrap().values().map(|i| i.state.clone()).collect();
    assert_eq!(ends, BTreeSet::from(["financed".to_string(), "rejected".to_string()]));
}

/// Runs `eddy record` against `url` and reads back what it wrote.
fn record_cli(url: &str, args: &[&str]) -> (Recording, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["record", "--server", url, "--config", "/nonexistent/eddy.toml"])
        .args(args)
        .output()
        .expect("eddy record runs");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    (Recording::parse(std::str::from_utf8(&out.stdout).unwrap()).expect("reads back"), stderr)
}

fn seqs(r: &Recording) -> Vec<u64> {
    r.lines().map(|e| e.seq).collect()
}

#[tokio::test]
async fn record_covers_exactly_the_range_asked_for() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    for i in 1..=10 {
        let id = if i % 2 == 0 { "a1" } else { "a2" };
        append_raw(&c, "account", id, "MoneyDeposited", json!({"amount": i})).await;
    }
    let url = nats.url();
    let (all, stderr) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || record_cli(&url, &[])
    })
    .await
    .unwrap();
    assert_eq!(seqs(&all), (1..=10).collect::<Vec<_>>());
    assert!(stderr.contains("recorded 10 events (at seq 10 of 10)"), "{stderr}");
    let first = &all.lines().next().unwrap();
    assert_eq!(first.subject, "events.account.a2");
    assert_eq!(first.header("Eddy-Event-Type"), Some("MoneyDeposited"));
    assert_eq!(first.data, json!({"amount": 1}));
    assert!(first.header("Nats-Msg-Id").is_some(), "every header is kept");

    let range = |from: Option<u64>, to: Option<u64>, subjects: &[&str]| {
        let mut r = eddy::record::Range { from_seq: from, to_seq: to, ..Default::default() };
        if !subjects.is_empty() {
            r.subjects = subjects.iter().map(|s| s.to_string()).collect();
        }
        r
    };
    let js = async_nats::jetstream::new(c.clone());
    let rec = |r: eddy::record::Range| {
        let js = js.clone();
        async move {
            let mut out = Vec::new();
            eddy::record::record(&js, "EVENTS", &r, &mut out, |_| {}).await.unwrap();
            Recording::parse(std::str::from_utf8(&out).unwrap()).unwrap()
        }
    };
    assert_eq!(seqs(&rec(range(Some(3), Some(7), &[])).await), [3, 4, 5, 6, 7]);
    assert_eq!(seqs(&rec(range(None, None, &["events.account.a1"])).await), [2, 4, 6, 8, 10]);
    let filtered = rec(range(Some(5), Some(8), &["events.account.a1"])).await;
    assert_eq!(seqs(&filtered), [6, 8]);
    assert!(filtered.warnings[0].contains("seq jumps from 6 to 8"), "{:?}", filtered.warnings);
    assert!(rec(range(Some(11), None, &[])).await.is_empty(), "past the end: nothing, and it returns");

    let lines: Vec<_> = all.lines().collect();
    let (since, until) = (lines[3].time, lines[6].time);
    let by_time = eddy::record::Range { since: Some(since), until: Some(until), ..Default::default() };
    assert_eq!(seqs(&rec(by_time).await), [4, 5, 6, 7]);
    let nanos = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let (s, u) = (nanos(since), nanos(until));
    let (cli, _) = tokio::task::spawn_blocking(move || {
        record_cli(&url, &["--since", &s, "--until", &u, "--subjects", "events.account.a2"])
    })
    .await
    .unwrap();
    assert_eq!(seqs(&cli), [5, 7]);
}
