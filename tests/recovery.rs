//! The nats-server restarts under a running engine (same port, same store): commands, views, rules and
//! sagas carry on by themselves once it is back.

mod common;

use std::time::{Duration, Instant};

use async_nats::Client;
use common::*;
use eddy_engine::nats::{locate_binary, NatsServer};
use futures::StreamExt;
use serde_json::json;

async fn balance_in_view(c: &Client, account: &str) -> i64 {
    let body = json!({"key": account, "timeout_ms": 200});
    let Ok(Ok(msg)) =
        tokio::time::timeout(Duration::from_secs(1), c.request("eddy.query.balances.get", body.to_string().into()))
            .await
    else {
        return -1;
    };
    let reply: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap_or_default();
    reply["doc"]["balance"].as_i64().unwrap_or(-1)
}

async fn transfer_completed(c: &Client, id: &str) -> bool {
    let store = eddy_engine::store::EventStore::attach(c.clone(), &eddy_engine::config::EngineConfig::default());
    let Ok(events) = store.load("transfer", id, 1).await else { return false };
    events.iter().any(|e| e.event_type == "TransferCompleted")
}

#[tokio::test]
async fn views_rules_and_sagas_resume_after_the_server_restarts() {
    let nats = TestServer::start().await;
    let settings = example("bank", &nats.url(), &nats.dir.path().join("eddy"));
    let eddy = engine(&settings).await;
    let c = nats.client().await;
    ok(&c, "account.open", json!({"id": "alice", "owner": "ann"})).await;
    ok(&c, "account.deposit", json!({"id": "alice", "amount": 1_000})).await;
    ok(&c, "account.open", json!({"id": "bob", "owner": "bob"})).await;
    ok(&c, "transfer.request", json!({"id": "t0", "from": "alice", "to": "bob", "amount": 100})).await;
    assert!(eventually(30, || transfer_completed(&c, "t0")).await, "the saga runs before the restart");
    assert!(eventually(30, || async { balance_in_view(&c, "bob").await == 100 }).await, "the view runs");

    // Restart: kill it and start a new one on the same port and store.
    let TestServer { server, dir } = nats;
    let (port, store) = (server.port(), server.store_dir().to_path_buf());
    server.kill().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let binary = locate_binary().unwrap();
    let server = NatsServer::start(&binary, port, &store).await.expect("the server starts again");
    let restarted = Instant::now();
    let c = async_nats::connect(server.url()).await.unwrap();

    // The stream is writable again when a command goes through. Tries share one command id, so one that
    // timed out here but was stored is not applied again by the next.
    let body = json!({"id": "alice", "amount": 50}).to_string();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Eddy-Command-Id", "recovery-deposit");
    let writable = eventually(30, || async {
        let request = c.request_with_headers("eddy.cmd.account.deposit", headers.clone(), body.clone().into());
        match tokio::time::timeout(Duration::from_secs(1), request).await {
            Ok(Ok(msg)) => serde_json::from_slice::<serde_json::Value>(&msg.payload).unwrap()["ok"] == true,
            _ => false,
        }
    })
    .await;
    assert!(writable, "commands work after the restart");
    let commands_at = restarted.elapsed();
    let writable_at = Instant::now();
    ok(&c, "transfer.request", json!({"id": "t1", "from": "alice", "to": "bob", "amount": 200})).await;

    // The deposit, with or without the saga's debit after it.
    let view = eventually(10, || async { [950, 750].contains(&balance_in_view(&c, "alice").await) }).await;
    let view_at = writable_at.elapsed();
    assert!(view, "the view folds events appended after the restart");
    let saga = eventually(10, || transfer_completed(&c, "t1")).await;
    let saga_at = writable_at.elapsed();
    assert!(saga, "the saga runs a transfer requested after the restart");
    assert!(eventually(10, || async { balance_in_view(&c, "bob").await == 300 }).await);
    eprintln!(
        "commands back {commands_at:?} after the server; from then, view {view_at:?}, saga {saga_at:?} (each measured at its check)"
    );
    stop(eddy).await;
    drop((server, dir));
}

/// The readers' consumers stop delivering while the connection stays up and nothing reports an error (as
/// when a cluster loses the stream's leader; here they are paused on the server): readers notice the
/// waiting events and read on with new consumers.
#[tokio::test]
async fn readers_replace_a_consumer_that_stopped_delivering() {
    let nats = TestServer::start().await;
    let settings = example("bank", &nats.url(), &nats.dir.path().join("eddy"));
    let eddy = engine(&settings).await;
    let c = nats.client().await;
    ok(&c, "account.open", json!({"id": "alice", "owner": "ann"})).await;
    ok(&c, "account.deposit", json!({"id": "alice", "amount": 1_000})).await;
    ok(&c, "account.open", json!({"id": "bob", "owner": "bob"})).await;
    assert!(eventually(30, || async { balance_in_view(&c, "alice").await == 1_000 }).await);

    let js = async_nats::jetstream::new(c.clone());
    let stream = js.get_stream("EVENTS").await.unwrap();
    let names: Vec<String> = stream.consumer_names().map(|n| n.unwrap()).collect().await;
    assert!(!names.is_empty(), "the readers have consumers");
    let until = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    for name in &names {
        let body = json!({ "pause_until": until }).to_string();
        let reply = c.request(format!("$JS.API.CONSUMER.PAUSE.EVENTS.{name}"), body.into()).await.unwrap();
        let reply: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
        assert_eq!(reply["paused"], true, "{reply}");
    }
    let paused = Instant::now();
    ok(&c, "transfer.request", json!({"id": "t1", "from": "alice", "to": "bob", "amount": 200})).await;
    let saga = eventually(10, || transfer_completed(&c, "t1")).await;
    let saga_at = paused.elapsed();
    assert!(saga, "the saga reads on");
    assert!(eventually(10, || async { balance_in_view(&c, "bob").await == 200 }).await, "the view reads on");
    eprintln!(
        "{} consumers paused; the saga completed {saga_at:?} later, the view by {:?}",
        names.len(),
        paused.elapsed()
    );
    stop(eddy).await;
}
