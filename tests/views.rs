//! Projection workers and queries against a real nats-server.

mod common;

use common::*;
use serde_json::{json, Value};

async fn get(c: &async_nats::Client, view: &str, key: &str) -> Value {
    let reply = query(c, view, "get", json!({"key": key})).await;
    assert_eq!(reply["ok"], true, "{reply}");
    reply["doc"].clone()
}

/// Waits until a view has folded everything up to `seq`.
async fn synced(c: &async_nats::Client, view: &str, seq: u64) {
    let reply = query(c, view, "get", json!({"key": "-", "min_seq": seq, "timeout_ms": 10000})).await;
    assert_eq!(reply["ok"], true, "{view} reached seq {seq}: {reply}");
}

#[tokio::test]
async fn bank_views_follow_commands_and_delete_on_null() {
    let nats = TestServer::start().await;
    let eddy = engine(&example("bank", &nats.url(), nats.dir.path())).await;
    let c = nats.client().await;
    ok(&c, "account.open", json!({"id": "a1", "owner": "ann"})).await;
    ok(&c, "account.open", json!({"id": "a2", "owner": "bob"})).await;
    ok(&c, "account.deposit", json!({"id": "a1", "amount": 500})).await;
    ok(&c, "account.withdraw", json!({"id": "a1", "amount": 120})).await;
    let last = ok(&c, "account.deposit", json!({"id": "a2", "amount": 7})).await;
    synced(&c, "balances", last.body["seq"].as_u64().unwrap()).await;
    synced(&c, "daily-totals", last.body["seq"].as_u64().unwrap()).await;

    let a1 = get(&c, "balances", "a1").await;
    let today = a1["last_moved"].as_str().unwrap().to_string();
    assert_eq!(today.len(), 10, "a date: {a1}");
    assert_eq!(a1, json!({"owner": "ann", "balance": 380, "open": true, "last_moved": today}));
    assert_eq!(get(&c, "balances", "a2").await["balance"], 7);
    let totals = get(&c, "daily-totals", &today).await;
    assert_eq!(totals, json!({"deposited": 507, "withdrawn": 120, "count": 3}));

    ok(&c, "account.withdraw", json!({"id": "a2", "amount": 7})).await;
    let closed = ok(&c, "account.close", json!({"id": "a2"})).await;
    synced(&c, "balances", closed.body["seq"].as_u64().unwrap()).await;
    assert_eq!(get(&c, "balances", "a2").await, Value::Null, "AccountClosed yields null: deleted");
    stop(eddy).await;
}

#[tokio::test]
async fn inventory_views_and_skip_on_empty_key() {
    let nats = TestServer::start().await;
    let mut settings = example("inventory", &nats.url(), nats.dir.path());
    settings.reactors.clear(); // auto-reorder would restock the depleted product
    let eddy = engine(&settings).await;
    let c = nats.client().await;
    ok(&c, "product.register", json!({"id": "p1", "name": "bolt"})).await;
    ok(&c, "product.restock", json!({"id": "p1", "quantity": 5})).await;
    ok(&c, "product.reduce", json!({"id": "p1", "quantity": 2, "order": "o1"})).await;
    ok(&c, "product.reduce", json!({"id": "p1", "quantity": 1})).await;
    let last = ok(&c, "product.reduce", json!({"id": "p1", "quantity": 2, "order": "o2"})).await;
    let seq = last.body["seq"].as_u64().unwrap();
    synced(&c, "stock", seq).await;
    synced(&c, "orders", seq).await;
    assert_eq!(get(&c, "stock", "p1").await, json!({"name": "bolt", "on_hand": 0, "depleted_by": "o2"}));
    assert_eq!(get(&c, "orders", "o1").await, json!({"lines": 1, "units": 2}));
    assert_eq!(get(&c, "orders", "o2").await, json!({"lines": 1, "units": 2}));
    let all = query(&c, "orders", "list", json!({})).await;
    let keys: Vec<_> = all["items"].as_array().unwrap().iter().map(|i| i["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["o1", "o2"], "the reduction without an order has an empty key and is skipped");
    stop(eddy).await;
}

#[tokio::test]
async fn min_seq_gives_read_your_writes_under_load() {
    let nats = TestServer::start().await;
    let eddy = engine(&example("bank", &nats.url(), nats.dir.path())).await;
    let c = nats.client().await;
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let c = c.clone();
            tokio::spawn(async move {
                let id = format!("rw{t}");
                ok(&c, "account.open", json!({"id": id, "owner": "x"})).await;
                let mut total = 0;
                for i in 1..=15 {
                    total += i;
                    let r = ok(&c, "account.deposit", json!({"id": id, "amount": i})).await;
                    let seq = r.body["seq"].as_u64().unwrap();
                    let got = query(&c, "balances", "get", json!({"key": id, "min_seq": seq})).await;
                    assert_eq!(got["ok"], true, "{got}");
                    assert_eq!(got["doc"]["balance"], total, "my own write is visible: {got}");
                    assert!(got["seq"].as_u64().unwrap() >= seq);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    stop(eddy).await;
}

#[tokio::test]
async fn paging_through_a_thousand_documents() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let eddy = engine(&example("bank", &nats.url(), nats.dir.path())).await;
    seed_bank(&c, 1000, 0).await;
    let end = eddy.engine.store().last_seq().await.unwrap();
    synced(&c, "balances", end).await;
    let mut after: Option<String> = None;
    let mut keys = Vec::new();
    loop {
        let page = query(&c, "balances", "list", json!({"after": after, "limit": 37})).await;
        assert_eq!(page["ok"], true, "{page}");
        keys.extend(page["items"].as_array().unwrap().iter().map(|i| i["key"].as_str().unwrap().to_string()));
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
    }
    let mut expected: Vec<String> = (0..1000).map(|i| format!("acct-{i}")).collect();
    expected.sort();
    assert_eq!(keys, expected, "every document once, in key order");

    let filtered = query(&c, "balances", "list", json!({"prefix": "acct-99", "where": "doc.owner != 'o99'"})).await;
    let keys: Vec<_> = filtered["items"].as_array().unwrap().iter().map(|i| i["key"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), 10, "acct-990..999 but not acct-99: {filtered}");
    stop(eddy).await;
}

#[tokio::test]
async fn query_errors() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let eddy = engine(&example("bank", &nats.url(), nats.dir.path())).await;
    let bad = query(&c, "balances", "list", json!({"where": "doc.balance >"})).await;
    assert_eq!(bad["error"]["code"], "invalid");
    assert!(bad["error"]["message"].as_str().unwrap().contains("syntax error at 1:"), "{bad}");
    let unknown_var = query(&c, "balances", "list", json!({"where": "balance > 1"})).await;
    assert_eq!(unknown_var["error"]["code"], "invalid");
    let missing = query(&c, "nope", "get", json!({"key": "a"})).await;
    assert_eq!(missing["error"]["code"], "not_found");
    let no_key = query(&c, "balances", "get", json!({})).await;
    assert_eq!(no_key["error"]["code"], "invalid");
    let junk = query(&c, "balances", "get", json!({"key": "a", "colour": 1})).await;
    assert_eq!(junk["error"]["code"], "invalid");
    let late = query(&c, "balances", "get", json!({"key": "a", "min_seq": 999_999, "timeout_ms": 100})).await;
    assert_eq!(late["error"]["code"], "unavailable", "{late}");
    stop(eddy).await;
}

#[tokio::test]
async fn blue_green_rebuild_while_queries_flow() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let eddy = engine(&example("bank", &nats.url(), nats.dir.path())).await;
    let balances = seed_bank(&c, 50, 20_000).await;
    let end = eddy.engine.store().last_seq().await.unwrap();
    synced(&c, "balances", end).await;
    assert_eq!(view_status(&c, "balances").await["status"], "live");

    let stop_queries = tokio_util::sync::CancellationToken::new();
    let reader = {
        let (c, stop_queries, balances) = (c.clone(), stop_queries.clone(), balances.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop_queries.is_cancelled() {
                let i = n % 50;
                let doc = get(&c, "balances", &format!("acct-{i}")).await;
                assert_eq!(doc["balance"], balances[i], "served from a complete copy during the rebuild");
                n += 1;
            }
            n
        })
    };
    let reply = c.request("eddy.admin.views.rebuild", json!({"name": "balances"}).to_string().into()).await.unwrap();
    let reply: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(reply["ok"], true, "{reply}");
    let root = nats.dir.path().join("views/balances");
    assert!(
        eventually(60, || async { std::fs::read_to_string(root.join("CURRENT")).unwrap_or_default() == "2" }).await
    );
    assert!(eventually(10, || async { !root.join("1").exists() }).await, "the old copy is removed");
    stop_queries.cancel();
    assert!(reader.await.unwrap() > 0);
    assert_eq!(view_status(&c, "balances").await["status"], "live");
    assert_eq!(get(&c, "balances", "acct-7").await["balance"], balances[7]);
    stop(eddy).await;
}

#[tokio::test]
async fn two_engines_stay_consistent_for_a_client_through_min_seq() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let settings = example("bank", &nats.url(), &nats.dir.path().join("a"));
    let mut other = settings.clone();
    other.engine.engine.data_dir = nats.dir.path().join("b");
    let a = engine(&settings).await;
    let b = engine(&other).await;
    ok(&c, "account.open", json!({"id": "x1", "owner": "x"})).await;
    for i in 1..=40 {
        let r = ok(&c, "account.deposit", json!({"id": "x1", "amount": 1})).await;
        let seq = r.body["seq"].as_u64().unwrap();
        // Whichever engine answers (queue group), min_seq makes it show this write.
        let got = query(&c, "balances", "get", json!({"key": "x1", "min_seq": seq})).await;
        assert_eq!(got["doc"]["balance"], i, "{got}");
    }
    assert!(nats.dir.path().join("a/views/balances").is_dir() && nats.dir.path().join("b/views/balances").is_dir());
    stop(a).await;
    stop(b).await;
}
