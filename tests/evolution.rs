//! Living with change: events stored under one config read under the next (upcast on every read path),
//! and `eddy validate --recording` telling beforehand whether a config can read a recorded stream.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::json;

/// A cart as first deployed: `ItemAdded` events with `sku` and `qty`.
const V1: &str = r#"
[aggregates.cart]
initial = { items = {}, count = 0 }

[aggregates.cart.commands.add]
input = { sku = "string", qty = "int" }
emit = [{ event = "ItemAdded", data = "{'sku': cmd.sku, 'qty': cmd.qty}" }]

[aggregates.cart.events.ItemAdded]
apply = "{'items': state.items.with(event.sku, event.qty), 'count': state.count + event.qty}"
"#;

/// The same cart a release later: the type is renamed `LineAdded`, its data is version 2 (`product`,
/// `quantity`), and a rule reads the state that the old events built.
const V2: &str = r#"
[aggregates.cart]
initial = { items = {}, count = 0 }

[aggregates.cart.commands.add]
input = { product = "string", quantity = "int" }
rules = [{ check = "!(cmd.product in state.items)", error = "already in the cart" }]
emit = [{ event = "LineAdded", data = "{'product': cmd.product, 'quantity': cmd.quantity}" }]

[aggregates.cart.events.LineAdded]
version = 2
renamed_from = ["ItemAdded"]
upcast.1 = "{'product': event.sku, 'quantity': event.qty}"
apply = "{'items': state.items.with(event.product, event.quantity), 'count': state.count + event.quantity}"

[projections.lines]
initial = { products = [] }
[projections.lines.on]
"cart.LineAdded" = "{'products': doc.products + [event.product]}"
"#;

fn write_config(dir: &Path, url: &str, data: &Path, body: &str) {
    write_engine_toml(dir, url, data);
    std::fs::write(dir.join("cart.toml"), body).unwrap();
}

fn eddy(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_eddy")).args(args).output().expect("eddy runs")
}

#[tokio::test]
async fn events_stored_as_v1_read_as_v2_in_the_state_a_view_history_and_a_replay() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let (v1, v2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let data = tempfile::tempdir().unwrap();
    write_config(v1.path(), &nats.url(), &data.path().join("v1"), V1);
    write_config(v2.path(), &nats.url(), &data.path().join("v2"), V2);

    let first = engine(&config_at(v1.path(), &nats.url(), &data.path().join("v1"))).await;
    ok(&c, "cart.add", json!({"id": "c1", "sku": "milk", "qty": 1})).await;
    ok(&c, "cart.add", json!({"id": "c1", "sku": "eggs", "qty": 12})).await;
    stop(first).await;
    let recording = data.path().join("rec.jsonl");
    let out = eddy(&["record", "--server", &nats.url(), "--out", recording.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Before deploying: v2 reads the recorded stream; a v2 that forgot the old name does not.
    let check =
        eddy(&["validate", "--config", v2.path().to_str().unwrap(), "--recording", recording.to_str().unwrap()]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    let forgetful = tempfile::tempdir().unwrap();
    write_config(forgetful.path(), &nats.url(), data.path(), &V2.replace("renamed_from = [\"ItemAdded\"]\n", ""));
    let check =
        eddy(&["validate", "--config", forgetful.path().to_str().unwrap(), "--recording", recording.to_str().unwrap()]);
    assert!(!check.status.success());
    let printed = String::from_utf8_lossy(&check.stdout);
    assert!(printed.contains("line 1 (and 1 more): `cart.ItemAdded` is no event type of this config"), "{printed}");

    // The command path: the rule sees the items the v1 events added, and new events are v2.
    let second = engine(&config_at(v2.path(), &nats.url(), &data.path().join("v2"))).await;
    let dup = send(&c, "cart.add", json!({"id": "c1", "product": "milk", "quantity": 3})).await;
    assert_eq!((dup.code(), dup.message()), ("rejected", "already in the cart"));
    let added = ok(&c, "cart.add", json!({"id": "c1", "product": "bread", "quantity": 2})).await;
    assert_eq!(added.body["version"], 3);
    let stored = events_on(&c, "events.cart.c1").await;
    assert_eq!(
        stored.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(),
        ["ItemAdded", "ItemAdded", "LineAdded"]
    );
    assert_eq!(stored[0].data, json!({"sku": "milk", "qty": 1}), "stored events are never rewritten");

    // A view built from the start reads the old events under the new name and shape.
    let seq = added.body["seq"].as_u64().unwrap();
    let doc = query(&c, "lines", "get", json!({"key": "c1", "min_seq": seq, "timeout_ms": 10_000})).await;
    assert_eq!(doc["doc"]["products"], json!(["milk", "eggs", "bread"]), "{doc}");
    stop(second).await;

    // History shows each event upcast, and the state after it.
    let history = eddy(&["history", "cart", "c1", "--config", v2.path().to_str().unwrap(), "--at-version", "3"]);
    let printed = String::from_utf8_lossy(&history.stdout);
    assert!(history.status.success(), "{printed}");
    assert!(printed.contains(r#""count": 15"#) && printed.contains(r#""milk": 1"#), "{printed}");

    // A replay of the v1 recording under v2.
    let settings = eddy::load(v2.path()).unwrap();
    let transcript = eddy::replay::replay(&settings, &eddy::replay::Recording::read(&recording).unwrap());
    assert_eq!(json!(transcript.end.aggregates["cart"]["c1"]), json!({"items": {"milk": 1, "eggs": 12}, "count": 13}));
    assert_eq!(json!(transcript.end.views["lines"]["c1"]), json!({"products": ["milk", "eggs"]}));
}

#[test]
fn versions_upcasts_and_old_names_are_checked_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let broken = r#"
[aggregates.cart]
initial = { items = {} }

[aggregates.cart.events.LineAdded]
version = 3
renamed_from = ["LineRemoved", "Old"]
upcast.1 = "{'product': event.sku"
upcast.7 = "{}"
apply = "{'items': state.items.with(event.product, 1)}"

[aggregates.cart.events.LineRemoved]
version = 0
renamed_from = ["Old"]
apply = "{'items': state.items.without(event.product)}"

[aggregates.cart.events.Noted]
upcast.1 = "{'note': evnt.text}"
apply = "{}"
"#;
    std::fs::write(dir.path().join("cart.toml"), broken).unwrap();
    let errors = eddy::load(dir.path()).unwrap_err();
    insta::assert_snapshot!(errors.to_string());
}

/// A todo list; `RENAME` is replaced by a command and an event type added while it runs.
const TODO: &str = r#"
[aggregates.todo]
initial = { title = "" }

[aggregates.todo.commands.create]
input = { title = "string" }
emit = [{ event = "Created", data = "{'title': cmd.title}" }]

[aggregates.todo.events.Created]
apply = "{'title': event.title}"
RENAME
"#;

const RENAME: &str = r#"
[aggregates.todo.commands.rename]
input = { title = "string" }
rules = [{ check = "cmd.title != state.title", error = "same title" }]
emit = [{ event = "Renamed", data = "{'title': cmd.title}" }]

[aggregates.todo.events.Renamed]
apply = "{'title': event.title}"
"#;

#[tokio::test]
async fn a_command_and_an_event_type_added_to_a_running_engine_work_without_a_restart() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_engine_toml(dir.path(), &nats.url(), &data);
    std::fs::write(dir.path().join("todo.toml"), TODO.replace("RENAME", "")).unwrap();
    let settings = config_at(dir.path(), &nats.url(), &data);
    let shutdown = eddy_engine::runtime::Shutdown::new();
    let running = tokio::spawn(eddy::run(dir.path().to_path_buf(), settings, shutdown.clone()));
    let create = json!({"id": "t1", "title": "milk"}).to_string();
    let up = || async { c.request("eddy.cmd.todo.create", create.clone().into()).await.is_ok() };
    assert!(eventually(30, up).await, "eddy serves commands");
    let before = send(&c, "todo.rename", json!({"id": "t1", "title": "eggs"})).await;
    assert_eq!(before.code(), "not_found");

    std::fs::write(dir.path().join("todo.toml"), TODO.replace("RENAME", RENAME)).unwrap();
    let renamed = || async { send(&c, "todo.rename", json!({"id": "t1", "title": "eggs"})).await.ok() };
    assert!(eventually(10, renamed).await, "the reload serves the new command");
    // The new event type folds: the rule sees the renamed title.
    let same = send(&c, "todo.rename", json!({"id": "t1", "title": "eggs"})).await;
    assert_eq!((same.code(), same.message()), ("rejected", "same title"));

    // Another engine started with the new config is not refused: this one tells peers what it serves now.
    let other = eddy::Running::start(config_at(dir.path(), &nats.url(), &dir.path().join("other"))).await;
    assert!(other.is_ok(), "{:?}", other.err());
    stop(other.unwrap()).await;
    shutdown.graceful.cancel();
    running.await.unwrap().unwrap();
}
