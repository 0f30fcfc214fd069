//! The saga kind on the contract's examples (bank transfers, invoice financing), against a real nats-server.

mod common;

use std::time::Duration;

use async_nats::Client;
use common::*;
use serde_json::{json, Value};

/// One instance with its history, from `eddy.admin.sagas.get` (null if there is none yet).
async fn instance(c: &Client, saga: &str, id: &str) -> Value {
    let body = json!({"saga": saga, "id": id}).to_string();
    let Ok(msg) = c.request("eddy.admin.sagas.get", body.into()).await else { return Value::Null };
    let reply: Value = serde_json::from_slice(&msg.payload).unwrap();
    reply["instance"].clone()
}

/// Waits for an instance to reach a final state and returns it.
async fn finished(c: &Client, saga: &str, id: &str) -> Value {
    let done = eventually(30, || async { instance(c, saga, id).await["final"] == true }).await;
    let inst = instance(c, saga, id).await;
    assert!(done, "{saga} {id} reaches a final state: {inst:#}");
    inst
}

/// The states an instance went through.
fn path(inst: &Value) -> Vec<String> {
    inst["history"].as_array().unwrap().iter().map(|s| s["to"].as_str().unwrap().to_string()).collect()
}

/// An account's balance, folded from its events.
async fn balance(c: &Client, id: &str) -> i64 {
    let mut total = 0;
    for e in events_on(c, &format!("events.account.{id}")).await {
        match e.event_type.as_str() {
            "MoneyDeposited" => total += e.data["amount"].as_i64().unwrap(),
            "MoneyWithdrawn" => total -= e.data["amount"].as_i64().unwrap(),
            _ => {}
        }
    }
    total
}

async fn open(c: &Client, id: &str, amount: i64) {
    ok(c, "account.open", json!({"id": id, "owner": id})).await;
    if amount > 0 {
        ok(c, "account.deposit", json!({"id": id, "amount": amount})).await;
    }
}

async fn transfer(c: &Client, id: &str, from: &str, to: &str, amount: i64) {
    ok(c, "transfer.request", json!({"id": id, "from": from, "to": to, "amount": amount})).await;
}

/// The bank example with the approval timeout shortened to `secs`.
fn bank_with_timeout(dir: &std::path::Path, secs: u64) -> std::path::PathBuf {
    let config = dir.join("config");
    copy_example("bank", &config);
    let saga = config.join("sagas/transfer.toml");
    let text = std::fs::read_to_string(&saga).unwrap();
    assert!(text.contains("timeout_secs = 60"));
    std::fs::write(&saga, text.replace("timeout_secs = 60", &format!("timeout_secs = {secs}"))).unwrap();
    config
}

#[tokio::test]
async fn transfers_take_every_path_and_balances_are_exact() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let config = bank_with_timeout(nats.dir.path(), 2);
    let eddy = engine(&config_at(&config, &nats.url(), nats.dir.path())).await;
    open(&c, "alice", 10_000).await;
    open(&c, "bob", 0).await;

    // Small: debit, credit, complete.
    transfer(&c, "t-small", "alice", "bob", 300).await;
    let inst = finished(&c, "transfer", "t-small").await;
    assert_eq!(path(&inst), ["debit", "credit", "completed"]);
    assert_eq!((balance(&c, "alice").await, balance(&c, "bob").await), (9_700, 300));

    // Large: waits for approval, then completes.
    transfer(&c, "t-large", "alice", "bob", 2_000).await;
    let waiting = eventually(10, || async { instance(&c, "transfer", "t-large").await["state"] == "approval" }).await;
    assert!(waiting, "a large transfer waits for approval");
    ok(&c, "transfer.approve", json!({"id": "t-large"})).await;
    let inst = finished(&c, "transfer", "t-large").await;
    assert_eq!(path(&inst), ["debit", "approval", "credit", "completed"]);
    assert_eq!((balance(&c, "alice").await, balance(&c, "bob").await), (7_700, 2_300));

    // Declined: refunded.
    transfer(&c, "t-declined", "alice", "bob", 1_500).await;
    assert!(eventually(10, || async { instance(&c, "transfer", "t-declined").await["state"] == "approval" }).await);
    ok(&c, "transfer.decline", json!({"id": "t-declined"})).await;
    let inst = finished(&c, "transfer", "t-declined").await;
    assert_eq!(path(&inst), ["debit", "approval", "refund", "failed"]);
    assert_eq!(inst["data"]["reason"], "declined");
    assert_eq!((balance(&c, "alice").await, balance(&c, "bob").await), (7_700, 2_300));

    // Nobody answers: the timer fires and the debit is refunded.
    transfer(&c, "t-timeout", "alice", "bob", 1_200).await;
    let inst = finished(&c, "transfer", "t-timeout").await;
    assert_eq!(path(&inst), ["debit", "approval", "refund", "failed"]);
    assert_eq!(inst["data"]["reason"], "approval timed out");
    assert_eq!(inst["history"][2]["trigger"], "timeout");
    assert_eq!((balance(&c, "alice").await, balance(&c, "bob").await), (7_700, 2_300));

    // Insufficient funds: the debit is rejected and the transfer fails with the rule's message.
    transfer(&c, "t-broke", "bob", "alice", 1_000_000).await;
    let inst = finished(&c, "transfer", "t-broke").await;
    assert_eq!(path(&inst), ["debit", "failed"]);
    assert_eq!(inst["data"]["reason"], "insufficient funds");
    assert_eq!(inst["history"][1]["trigger"], "rejected");
    assert_eq!((balance(&c, "alice").await, balance(&c, "bob").await), (7_700, 2_300));

    // The transfer aggregate records each outcome.
    let last = |id: &'static str| {
        let c = c.clone();
        async move { events_on(&c, &format!("events.transfer.{id}")).await.last().unwrap().event_type.clone() }
    };
    assert_eq!(last("t-small").await, "TransferCompleted");
    assert_eq!(last("t-large").await, "TransferCompleted");
    assert_eq!(last("t-declined").await, "TransferFailed");
    assert_eq!(last("t-timeout").await, "TransferFailed");
    assert_eq!(last("t-broke").await, "TransferFailed");
    stop(eddy).await;
    tokio::time::sleep(Duration::from_millis(1)).await;
}
