//! Aggregate snapshots: a cold load starts from the snapshot, a snapshot of other rules is ignored, and
//! deleting the bucket changes no answer.

mod common;

use async_nats::jetstream;
use common::*;
use serde_json::json;

/// A counter that snapshots every 10 events; `APPLY` is swapped to change the rules.
const COUNTER: &str = r#"
[aggregates.counter]
initial = { n = 0, seen = [] }
snapshot_every = 10

[aggregates.counter.commands.add]
input = { by = "int" }
emit = [{ event = "Added", data = "{'by': cmd.by}" }]

[aggregates.counter.commands.check]
input = { n = "int" }
rules = [{ check = "state.n == cmd.n", error = "n differs" }]

[aggregates.counter.events.Added]
apply = "APPLY"
"#;

const SUM: &str = "{'n': state.n + event.by, 'seen': state.seen + [event.by]}";
const DOUBLE: &str = "{'n': state.n + 2 * event.by, 'seen': state.seen + [event.by]}";

fn settings(dir: &std::path::Path, url: &str, apply: &str) -> eddy::Settings {
    std::fs::write(dir.join("counter.toml"), COUNTER.replace("APPLY", apply)).unwrap();
    config_at(dir, url, &dir.join("data"))
}

async fn snapshot_seq(js: &jetstream::Context) -> Option<u64> {
    let kv = js.get_key_value("EVENTS_snapshots").await.ok()?;
    let value = kv.get("counter.c1").await.ok()??;
    let header = value.split(|b| *b == b'\n').next()?;
    serde_json::from_slice::<serde_json::Value>(header).ok()?["seq"].as_u64()
}

/// Adds `by` to the stored snapshot's `n`, keeping its fingerprint.
async fn mark_snapshot(js: &jetstream::Context, by: i64) {
    let kv = js.get_key_value("EVENTS_snapshots").await.unwrap();
    let value = kv.get("counter.c1").await.unwrap().unwrap();
    let split = value.iter().position(|b| *b == b'\n').unwrap();
    let mut header: serde_json::Value = serde_json::from_slice(&value[..split]).unwrap();
    header["state"]["n"] = json!(header["state"]["n"].as_i64().unwrap() + by);
    let mut marked = serde_json::to_vec(&header).unwrap();
    marked.extend_from_slice(&value[split..]);
    kv.put("counter.c1", marked.into()).await.unwrap();
}

#[tokio::test]
async fn cold_loads_use_snapshots_of_the_same_rules_and_work_without_them() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let js = jetstream::new(c.clone());
    let dir = tempfile::tempdir().unwrap();

    let first = engine(&settings(dir.path(), &nats.url(), SUM)).await;
    let early = send_raw(&c, "counter.add", r#"{"id":"c1","by":1}"#, &[("Eddy-Command-Id", "early")]).await;
    assert!(early.ok(), "{:?}", early.body);
    for _ in 1..25 {
        ok(&c, "counter.add", json!({"id": "c1", "by": 1})).await;
    }
    assert!(
        eventually(10, || async { snapshot_seq(&js).await.is_some_and(|s| s >= 20) }).await,
        "a snapshot after 20 events"
    );
    stop(first).await;

    // Cold (a new engine): the load starts from the snapshot (marked here by adding 1000 to its `n`) plus
    // the events after it, and a command id stored before the snapshot is still known (answered with the
    // first reply, not stored again).
    let seq = snapshot_seq(&js).await.unwrap();
    mark_snapshot(&js, 1000).await;
    let second = engine(&settings(dir.path(), &nats.url(), SUM)).await;
    ok(&c, "counter.check", json!({"id": "c1", "n": 1025})).await;
    assert!((20..25).contains(&seq), "{seq}");
    let again = send_raw(&c, "counter.add", r#"{"id":"c1","by":1}"#, &[("Eddy-Command-Id", "early")]).await;
    assert_eq!(again.body, early.body, "the first reply, from before the snapshot");
    assert_eq!(events_on(&c, "events.counter.c1").await.len(), 25);
    stop(second).await;

    // Other rules: the (marked) snapshot is stale and ignored; every event is folded under the new apply.
    let third = engine(&settings(dir.path(), &nats.url(), DOUBLE)).await;
    ok(&c, "counter.check", json!({"id": "c1", "n": 50})).await;
    stop(third).await;

    // Without the bucket: the same answer, and a new bucket fills again.
    js.delete_key_value("EVENTS_snapshots").await.unwrap();
    let fourth = engine(&settings(dir.path(), &nats.url(), SUM)).await;
    ok(&c, "counter.check", json!({"id": "c1", "n": 25})).await;
    for _ in 0..10 {
        ok(&c, "counter.add", json!({"id": "c1", "by": 1})).await;
    }
    ok(&c, "counter.check", json!({"id": "c1", "n": 35})).await;
    assert!(eventually(10, || async { snapshot_seq(&js).await.is_some() }).await, "the bucket is made again");
    stop(fourth).await;
}

/// The snapshot writer is a task the engine owns: a graceful stop writes what is queued before it returns.
#[tokio::test]
async fn a_graceful_stop_writes_the_queued_snapshots() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let js = jetstream::new(c.clone());
    let dir = tempfile::tempdir().unwrap();
    let eddy = engine(&settings(dir.path(), &nats.url(), SUM)).await;
    for _ in 0..10 {
        ok(&c, "counter.add", json!({"id": "c1", "by": 1})).await;
    }
    // No waiting for the write: the stop drains it.
    stop(eddy).await;
    assert_eq!(snapshot_seq(&js).await, Some(last_seq(&c).await), "the snapshot after the 10th event is stored");
}
