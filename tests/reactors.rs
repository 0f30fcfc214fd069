//! The example reactors' behaviour, replay without effects, rebuilds and the error policy, against a real
//! nats-server.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::Client;
use common::*;
use futures::StreamExt;
use serde_json::{json, Value};

/// Collects what arrives on a subject, with its headers.
struct Inbox {
    sub: async_nats::Subscriber,
    got: Vec<async_nats::Message>,
}

impl Inbox {
    async fn new(client: &Client, subject: &str) -> Inbox {
        let sub = client.subscribe(subject.to_string()).await.unwrap();
        client.flush().await.unwrap();
        Inbox { sub, got: Vec::new() }
    }

    /// Everything received so far: drains until the subscription has been quiet for a moment.
    async fn drain(&mut self) -> &[async_nats::Message] {
        while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(300), self.sub.next()).await {
            self.got.push(msg);
        }
        &self.got
    }
}

fn header(msg: &async_nats::Message, name: &str) -> String {
    msg.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_string()).unwrap_or_default()
}

fn data(msg: &async_nats::Message) -> Value {
    serde_json::from_slice(&msg.payload).unwrap()
}

#[tokio::test]
async fn low_stock_publishes_once_on_the_falling_edge() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let eddy = engine(&example("inventory", &nats.url(), nats.dir.path())).await;
    let mut alerts = Inbox::new(&c, "alerts.low_stock").await;

    ok(&c, "product.register", json!({"id": "p1", "name": "bolt", "low_mark": 10})).await;
    ok(&c, "product.restock", json!({"id": "p1", "quantity": 20})).await;
    ok(&c, "product.reduce", json!({"id": "p1", "quantity": 5})).await; // 15: above the mark
    let first = ok(&c, "product.reduce", json!({"id": "p1", "quantity": 6})).await; // 9: falls below
    ok(&c, "product.reduce", json!({"id": "p1", "quantity": 1})).await; // 8: still below, no new alert
    ok(&c, "product.restock", json!({"id": "p1", "quantity": 10})).await; // 18: above again
    let second = ok(&c, "product.reduce", json!({"id": "p1", "quantity": 12})).await; // 6: falls again
    reactor_at(&c, "low-stock", second.body["seq"].as_u64().unwrap()).await;

    let got = alerts.drain().await;
    assert_eq!(got.len(), 2, "one alert per falling edge: {:?}", got.iter().map(data).collect::<Vec<_>>());
    assert_eq!(data(&got[0]), json!({"product": "p1", "on_hand": 9, "low_mark": 10}));
    assert_eq!(data(&got[1]), json!({"product": "p1", "on_hand": 6, "low_mark": 10}));
    for (msg, reply) in got.iter().zip([&first, &second]) {
        let id = format!("low-stock:{}:0", reply.body["seq"]);
        assert_eq!(header(msg, "Eddy-Effect-Id"), id);
        assert_eq!(header(msg, "Nats-Msg-Id"), id);
        assert_eq!(header(msg, "Eddy-Reactor"), "low-stock");
    }
    let status = reactor_status(&c, "low-stock").await;
    assert_eq!(status["publishes"], 2);
    assert_eq!(status["kind"], "rule");
    stop(eddy).await;
}

#[tokio::test]
async fn auto_reorder_restocks_once_per_depletion() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let eddy = engine(&example("inventory", &nats.url(), nats.dir.path())).await;

    ok(&c, "product.register", json!({"id": "p1", "name": "nut"})).await;
    ok(&c, "product.restock", json!({"id": "p1", "quantity": 5})).await;
    let mut depletions = Vec::new();
    for _ in 0..2 {
        let on_hand = eventually_on_hand(&c, "p1", |n| n > 0).await;
        let reply = ok(&c, "product.reduce", json!({"id": "p1", "quantity": on_hand})).await;
        let depleted = reply.body["events"].as_array().unwrap().iter().find(|e| e["type"] == "StockDepleted").cloned();
        depletions.push(depleted.expect("the last unit went")["seq"].as_u64().unwrap());
    }
    assert_eq!(eventually_on_hand(&c, "p1", |n| n == 50).await, 50);
    reactor_at(&c, "auto-reorder", last_seq(&c).await).await;

    let events = events_on(&c, "events.product.p1").await;
    let restocks: Vec<_> = events.iter().filter(|e| e.event_type == "StockAdded" && e.data["quantity"] == 50).collect();
    let ids: Vec<String> = restocks.iter().map(|e| e.command_id.clone()).collect();
    let expected: Vec<String> = depletions.iter().map(|seq| format!("auto-reorder:{seq}:0")).collect();
    assert_eq!(ids, expected, "one restock per depletion, by the reactor's command id");
    assert_eq!(reactor_status(&c, "auto-reorder").await["commands"], 2);
    stop(eddy).await;
}

async fn eventually_on_hand(c: &Client, id: &str, want: impl Fn(i64) -> bool) -> i64 {
    let mut on_hand = 0;
    for _ in 0..200 {
        on_hand = query(c, "stock", "get", json!({"key": id})).await["doc"]["on_hand"].as_i64().unwrap_or(0);
        if want(on_hand) {
            return on_hand;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("on_hand of {id} never as expected (last {on_hand})");
}

#[tokio::test]
async fn large_withdrawals_emits_daily_limit_exceeded_once() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let eddy = engine(&example("bank", &nats.url(), nats.dir.path())).await;
    ok(&c, "account.open", json!({"id": "a1", "owner": "ann"})).await;
    ok(&c, "account.deposit", json!({"id": "a1", "amount": 30000})).await;
    ok(&c, "account.withdraw", json!({"id": "a1", "amount": 6000})).await;
    ok(&c, "account.withdraw", json!({"id": "a1", "amount": 5000})).await; // 11000 today: over
    let last = ok(&c, "account.withdraw", json!({"id": "a1", "amount": 3000})).await; // still over: no repeat
    reactor_at(&c, "large-withdrawals", last.body["seq"].as_u64().unwrap()).await;

    let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let emitted = events_on(&c, &format!("events.large-withdrawals.a1-{date}")).await;
    assert_eq!(emitted.len(), 1, "{emitted:?}");
    assert_eq!(emitted[0].event_type, "DailyLimitExceeded");
    assert_eq!(emitted[0].data, json!({"account": "a1", "date": date, "total": 11000}));
    assert_eq!(emitted[0].version, 1);
    assert!(emitted[0].command_id.starts_with("large-withdrawals:"));
    assert_eq!(reactor_status(&c, "large-withdrawals").await["emits"], 1);
    stop(eddy).await;
}

/// Inventory history written before low-stock was deployed: it builds its state but alerts only on new
/// events; neither a rebuild nor lost local files repeat an alert.
#[tokio::test]
async fn history_builds_state_without_effects_and_rebuilds_never_repeat() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let data_dir = nats.dir.path().join("eddy");
    let mut settings = example("inventory", &nats.url(), &data_dir);
    let reactors = std::mem::take(&mut settings.reactors);
    let eddy = engine(&settings).await;
    ok(&c, "product.register", json!({"id": "p1", "name": "bolt", "low_mark": 10})).await;
    ok(&c, "product.restock", json!({"id": "p1", "quantity": 20})).await;
    ok(&c, "product.reduce", json!({"id": "p1", "quantity": 15})).await; // fell to 5 before deployment
    ok(&c, "product.restock", json!({"id": "p1", "quantity": 10})).await; // 15
    stop(eddy).await;

    let mut alerts = Inbox::new(&c, "alerts.low_stock").await;
    settings.reactors = reactors;
    let eddy = engine(&settings).await;
    let seq = last_seq(&c).await;
    reactor_at(&c, "low-stock", seq).await;
    assert!(alerts.drain().await.is_empty(), "history does not alert");
    let live = ok(&c, "product.reduce", json!({"id": "p1", "quantity": 7})).await; // 8: state knew it was 15
    reactor_at(&c, "low-stock", live.body["seq"].as_u64().unwrap()).await;
    assert_eq!(alerts.drain().await.len(), 1);

    // An operator rebuild: the state comes back, the alert does not repeat.
    let reply =
        c.request("eddy.admin.reactors.rebuild", json!({"name": "low-stock"}).to_string().into()).await.unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&reply.payload).unwrap()["ok"], true);
    reactor_at(&c, "low-stock", live.body["seq"].as_u64().unwrap()).await;
    assert_eq!(alerts.drain().await.len(), 1, "a rebuild repeats nothing");
    stop(eddy).await;

    // The local files are lost: the watermark in the KV bucket still prevents repeats.
    std::fs::remove_dir_all(data_dir.join("reactors/low-stock")).unwrap();
    let eddy = engine(&settings).await;
    reactor_at(&c, "low-stock", live.body["seq"].as_u64().unwrap()).await;
    ok(&c, "product.restock", json!({"id": "p1", "quantity": 10})).await; // 18
    let again = ok(&c, "product.reduce", json!({"id": "p1", "quantity": 10})).await; // 8: a new edge
    reactor_at(&c, "low-stock", again.body["seq"].as_u64().unwrap()).await;
    let got = alerts.drain().await;
    assert_eq!(got.len(), 2, "only the new edge alerts after losing the files");
    assert_eq!(header(&got[1], "Eddy-Effect-Id"), format!("low-stock:{}:0", again.body["seq"]));
    stop(eddy).await;
}

#[tokio::test]
async fn replay_effects_acts_on_history() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let data_dir = nats.dir.path().join("eddy");
    let mut settings = example("inventory", &nats.url(), &data_dir);
    settings.reactors.clear();
    let eddy = engine(&settings).await;
    ok(&c, "product.register", json!({"id": "p1", "name": "bolt", "low_mark": 10})).await;
    ok(&c, "product.restock", json!({"id": "p1", "quantity": 20})).await;
    ok(&c, "product.reduce", json!({"id": "p1", "quantity": 15})).await;
    stop(eddy).await;

    let config = tempfile::tempdir().unwrap();
    copy_example("inventory", config.path());
    let low = std::fs::read_to_string(config.path().join("reactors/low-stock.toml")).unwrap();
    let backfill = low.replace("kind = \"rule\"", "kind = \"rule\"\nreplay_effects = true");
    std::fs::write(config.path().join("reactors/low-stock.toml"), backfill).unwrap();
    let mut alerts = Inbox::new(&c, "alerts.low_stock").await;
    let eddy = engine(&config_at(config.path(), &nats.url(), &data_dir)).await;
    reactor_at(&c, "low-stock", last_seq(&c).await).await;
    assert_eq!(alerts.drain().await.len(), 1, "a backfill acts on history");
    stop(eddy).await;
}

async fn poison_setup(on_error: &str) -> (TestServer, Client, eddy::Running, tempfile::TempDir) {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let config = tempfile::tempdir().unwrap();
    copy_example("inventory", config.path());
    std::fs::write(config.path().join("reactors/ratio.toml"), POISON_RULE.replace("ON_ERROR", on_error)).unwrap();
    let eddy = engine(&config_at(config.path(), &nats.url(), &nats.dir.path().join("eddy"))).await;
    (nats, c, eddy, config)
}

#[tokio::test]
async fn a_poison_event_is_parked_listed_and_retried() {
    let (_nats, c, eddy, _config) = poison_setup("park").await;
    let mut changed = Inbox::new(&c, "ratio.changed").await;
    // Division by zero: the state's divisor is still 0.
    let poison = append_raw(&c, "product", "p1", "StockAdded", json!({"quantity": 8})).await;
    let after = append_raw(&c, "product", "p2", "Noted", json!({})).await;
    reactor_at(&c, "ratio", after).await;
    let status = reactor_status(&c, "ratio").await;
    assert_eq!(status["parked"], 1, "{status}");
    assert_eq!(status["status"], "running", "it keeps going past the poison");

    // Still failing: a retry parks it again, once.
    let retry = |c: Client| async move {
        c.request("eddy.admin.reactors.retry", json!({"name": "ratio"}).to_string().into()).await.unwrap()
    };
    retry(c.clone()).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(eventually(10, || async { reactor_status(&c, "ratio").await["parked"] == 1 }).await);

    // Once the state allows it, the retry succeeds and its action runs.
    let enabled = append_raw(&c, "product", "p3", "Enabled", json!({})).await;
    reactor_at(&c, "ratio", enabled).await;
    retry(c.clone()).await;
    assert!(eventually(10, || async { reactor_status(&c, "ratio").await["parked"] == 0 }).await);
    let got = changed.drain().await;
    assert_eq!(got.len(), 1);
    assert_eq!(data(&got[0]), json!({"share": 8}));
    assert_eq!(header(&got[0], "Eddy-Effect-Id"), format!("ratio:{poison}:0"));
    stop(eddy).await;
}

#[tokio::test]
async fn on_error_stop_holds_the_reactor_at_the_event_and_skip_passes_it() {
    let (_nats, c, eddy, _config) = poison_setup("stop").await;
    let poison = append_raw(&c, "product", "p1", "StockAdded", json!({"quantity": 8})).await;
    append_raw(&c, "product", "p2", "StockAdded", json!({"quantity": 1})).await;
    assert!(eventually(15, || async { reactor_status(&c, "ratio").await["status"] == "failed" }).await);
    let status = reactor_status(&c, "ratio").await;
    assert_eq!(status["position"].as_u64().unwrap(), poison - 1, "{status}");
    assert!(status["error"].as_str().unwrap().to_lowercase().contains("division by zero"), "{status}");
    // The other reactors are not disturbed.
    ok(&c, "product.register", json!({"id": "p9", "name": "x"})).await;
    reactor_at(&c, "low-stock", last_seq(&c).await).await;
    stop(eddy).await;

    let (_nats, c, eddy, _config) = poison_setup("skip").await;
    append_raw(&c, "product", "p1", "StockAdded", json!({"quantity": 8})).await;
    let after = append_raw(&c, "product", "p2", "Noted", json!({})).await;
    reactor_at(&c, "ratio", after).await;
    let status = reactor_status(&c, "ratio").await;
    assert_eq!((status["skipped"].as_u64(), status["parked"].as_u64()), (Some(1), Some(0)), "{status}");
    stop(eddy).await;
}

#[tokio::test]
async fn reactors_lists_every_reactor() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let eddy = engine(&example("inventory", &nats.url(), nats.dir.path())).await;
    let msg = c.request("eddy.admin.reactors", "".into()).await.unwrap();
    let reply: Value = serde_json::from_slice(&msg.payload).unwrap();
    let names: BTreeMap<String, Value> = reply["reactors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap().to_string(), r.clone()))
        .collect();
    assert_eq!(names.keys().collect::<Vec<_>>(), ["auto-reorder", "low-stock"]);
    for key in ["kind", "status", "position", "lag", "parked", "commands", "rejected", "publishes", "emits"] {
        assert!(names["low-stock"].get(key).is_some(), "{key} is shown");
    }
    let unknown = c.request("eddy.admin.reactors.retry", json!({"name": "nope"}).to_string().into()).await.unwrap();
    let unknown: Value = serde_json::from_slice(&unknown.payload).unwrap();
    assert_eq!(unknown["error"]["code"], "not_found");
    stop(eddy).await;
}
