//! The saga kind on the contract's examples (bank transfers, invoice financing), against a real nats-server.

mod common;

use async_nats::Client;
use common::*;
use serde_json::{json, Value};

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
    // An event routed to a finished instance changes nothing and is counted as ignored.
    let body = json!({"id": "bob", "amount": 1}).to_string();
    let late = send_raw(&c, "account.deposit", &body, &[("Eddy-Correlation-Id", "transfer:t-small")]).await;
    assert!(late.ok());
    assert!(eventually(10, || async { reactor_status(&c, "transfer").await["ignored"] == 1 }).await);
    assert_eq!(path(&saga_instance(&c, "transfer", "t-small").await), ["debit", "credit", "completed"]);
    ok(&c, "account.withdraw", json!({"id": "bob", "amount": 1})).await;

    // Large: waits for approval, then completes.
    transfer(&c, "t-large", "alice", "bob", 2_000).await;
    let waiting =
        eventually(10, || async { saga_instance(&c, "transfer", "t-large").await["state"] == "approval" }).await;
    assert!(waiting, "a large transfer waits for approval");
    let stuck = c.request("eddy.admin.sagas", json!({"saga": "transfer", "stuck_secs": 0}).to_string().into()).await;
    let stuck: Value = serde_json::from_slice(&stuck.unwrap().payload).unwrap();
    let ids: Vec<&str> = stuck["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["t-large"], "only the waiting instance is listed as stuck: {stuck:#}");
    ok(&c, "transfer.approve", json!({"id": "t-large"})).await;
    let inst = finished(&c, "transfer", "t-large").await;
    assert_eq!(path(&inst), ["debit", "approval", "credit", "completed"]);
    assert_eq!((balance(&c, "alice").await, balance(&c, "bob").await), (7_700, 2_300));

    // Declined: refunded.
    transfer(&c, "t-declined", "alice", "bob", 1_500).await;
    assert!(
        eventually(10, || async { saga_instance(&c, "transfer", "t-declined").await["state"] == "approval" }).await
    );
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

    // The transfer aggregate records each outcome: the final state's command runs once the state is stored.
    let ends_with = |id: &'static str, event_type: &'static str| {
        let c = c.clone();
        async move {
            let last = || async {
                events_on(&c, &format!("events.transfer.{id}")).await.last().unwrap().event_type == event_type
            };
            assert!(eventually(10, last).await, "{id} ends with {event_type}");
        }
    };
    ends_with("t-small", "TransferCompleted").await;
    ends_with("t-large", "TransferCompleted").await;
    ends_with("t-declined", "TransferFailed").await;
    ends_with("t-timeout", "TransferFailed").await;
    ends_with("t-broke", "TransferFailed").await;
    stop(eddy).await;
}

/// An investor's balance and reserved funds, folded from its events.
async fn investor(c: &Client, id: &str) -> (i64, i64) {
    let (mut balance, mut reserved) = (0, 0);
    for e in events_on(c, &format!("events.investor.{id}")).await {
        let amount = e.data["amount"].as_i64().unwrap_or(0);
        match e.event_type.as_str() {
            "FundsAdded" => balance += amount,
            "FundsReserved" => reserved += amount,
            "FundsReleased" => reserved -= amount,
            "FundsCommitted" => {
                reserved -= amount;
                balance -= amount
            }
            _ => {}
        }
    }
    (balance, reserved)
}

#[tokio::test]
async fn two_investors_bid_at_once_and_exactly_one_finances_the_invoice() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let eddy = engine(&example("financing", &nats.url(), nats.dir.path())).await;
    for i in ["i1", "i2"] {
        ok(&c, "investor.register", json!({"id": i, "name": i})).await;
        ok(&c, "investor.add_funds", json!({"id": i, "amount": 5_000})).await;
    }
    ok(&c, "invoice.issue", json!({"id": "inv1", "issuer": "acme", "amount": 1_000})).await;
    let (a, b) = tokio::join!(
        send(&c, "invoice.bid", json!({"id": "inv1", "investor": "i1"})),
        send(&c, "invoice.bid", json!({"id": "inv1", "investor": "i2"})),
    );
    assert!(a.ok() && b.ok(), "both bids are placed: {:?} {:?}", a.body, b.body);
    let one = finished(&c, "financing", "inv1-i1").await;
    let two = finished(&c, "financing", "inv1-i2").await;
    let mut ends = [one["state"].as_str().unwrap().to_string(), two["state"].as_str().unwrap().to_string()];
    ends.sort();
    assert_eq!(ends, ["financed", "rejected"], "{one:#}\n{two:#}");
    let (winner, loser) = if one["state"] == "financed" { (&one, &two) } else { (&two, &one) };
    assert_eq!(path(winner), ["reserve", "finance", "commit", "financed"]);
    assert_eq!(path(loser), ["reserve", "finance", "release", "rejected"]);
    let invoice = events_on(&c, "events.invoice.inv1").await;
    let financed: Vec<_> = invoice.iter().filter(|e| e.event_type == "InvoiceFinanced").collect();
    assert_eq!(financed.len(), 1);
    assert_eq!(financed[0].data["investor"], winner["data"]["investor"]);
    let w = winner["data"]["investor"].as_str().unwrap();
    let l = loser["data"]["investor"].as_str().unwrap();
    assert_eq!(investor(&c, w).await, (4_000, 0), "the winner paid and holds nothing reserved");
    assert_eq!(investor(&c, l).await, (5_000, 0), "the loser's reservation is released");
    stop(eddy).await;
}

#[tokio::test]
async fn two_hundred_concurrent_transfers_on_two_engines_conserve_money() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let settings = example("bank", &nats.url(), &nats.dir.path().join("a"));
    let a = engine(&settings).await;
    let mut other = settings.clone();
    other.engine.engine.data_dir = nats.dir.path().join("b");
    let b = engine(&other).await;
    let accounts: Vec<String> = (0..10).map(|i| format!("acc{i}")).collect();
    for acc in &accounts {
        open(&c, acc, 1_000).await;
    }
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut requests = Vec::new();
    for t in 0..200 {
        let from = next(10) as usize;
        let to = (from + 1 + next(9) as usize) % 10;
        let amount = 1 + next(100) as i64;
        requests.push((format!("t{t}"), accounts[from].clone(), accounts[to].clone(), amount));
    }
    let sends = requests.iter().map(|(id, from, to, amount)| {
        let c = c.clone();
        async move { transfer(&c, id, from, to, *amount).await }
    });
    futures::future::join_all(sends).await;

    let mut expected: std::collections::BTreeMap<&str, i64> = accounts.iter().map(|a| (a.as_str(), 1_000)).collect();
    let mut completed = 0;
    for (id, from, to, amount) in &requests {
        let inst = finished(&c, "transfer", id).await;
        let states = path(&inst);
        assert_eq!(states.len(), states.iter().collect::<std::collections::BTreeSet<_>>().len(), "{inst:#}");
        match inst["state"].as_str().unwrap() {
            "completed" => {
                completed += 1;
                *expected.get_mut(from.as_str()).unwrap() -= amount;
                *expected.get_mut(to.as_str()).unwrap() += amount;
            }
            "failed" => assert_eq!(inst["data"]["reason"], "insufficient funds", "{inst:#}"),
            other => panic!("{id} ended in {other}"),
        }
    }
    let mut total = 0;
    for acc in &accounts {
        let got = balance(&c, acc).await;
        assert_eq!(got, expected[acc.as_str()], "{acc}");
        total += got;
    }
    assert_eq!(total, 10_000, "money is conserved");
    assert!(completed >= 100, "most transfers complete ({completed})");
    // Each transition is stored once, though both engines decided every trigger.
    for (id, ..) in &requests {
        let log = events_on(&c, &format!("events.saga-transfer.{id}")).await;
        let entered: Vec<u64> = log.iter().filter(|e| e.event_type != "CommandRejected").map(|e| e.version).collect();
        assert_eq!(entered, (1..=entered.len() as u64).collect::<Vec<_>>(), "{id}: one event per transition");
    }
    stop(a).await;
    stop(b).await;
}

#[tokio::test]
async fn a_killed_engine_finishes_a_saga_whose_timer_fired_while_it_was_down() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let config = bank_with_timeout(nats.dir.path(), 2);
    let data = tempfile::tempdir().unwrap();
    let mut child = spawn_eddy(&config, &nats.url(), data.path());
    let mut guard = KillOnDrop(child.id());
    assert!(eventually(30, || async { reactor_status(&c, "transfer").await["status"] == "running" }).await);
    open(&c, "alice", 5_000).await;
    open(&c, "bob", 0).await;
    transfer(&c, "t1", "alice", "bob", 2_000).await;
    let waiting = eventually(10, || async { saga_instance(&c, "transfer", "t1").await["state"] == "approval" }).await;
    assert!(waiting, "the transfer waits for approval with its timer armed");
    let armed = saga_instance(&c, "transfer", "t1").await;
    assert!(armed["timer_at"].is_string(), "{armed:#}");

    // SIGKILL with the timer pending; it fires while eddy is down.
    child.kill().unwrap();
    child.wait().unwrap();
    let fired = eventually(10, || async {
        events_on(&c, "events.saga-transfer.t1").await.iter().any(|e| e.event_type == "TimerFired")
    })
    .await;
    assert!(fired, "the server fired the timer into the stream");

    let mut child = spawn_eddy(&config, &nats.url(), data.path());
    guard.0 = child.id();
    let inst = finished(&c, "transfer", "t1").await;
    assert_eq!(path(&inst), ["debit", "approval", "refund", "failed"]);
    assert_eq!(inst["data"]["reason"], "approval timed out");
    assert_eq!((balance(&c, "alice").await, balance(&c, "bob").await), (5_000, 0));
    // Every command the saga sent ran once: one event per command id, one refund.
    let alice = events_on(&c, "events.account.alice").await;
    let ids: Vec<&str> = alice.iter().map(|e| e.command_id.as_str()).collect();
    let unique: std::collections::BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "no command ran twice: {ids:?}");
    let refunds = alice.iter().filter(|e| e.correlation_id == "transfer:t1" && e.event_type == "MoneyDeposited");
    assert_eq!(refunds.count(), 1);
    // The final state's command runs after the state is stored, so wait for it, then check it ran once.
    let failed = || async {
        let events = events_on(&c, "events.transfer.t1").await;
        events.iter().filter(|e| e.event_type == "TransferFailed").count()
    };
    assert!(eventually(10, || async { failed().await > 0 }).await, "the transfer is marked failed");
    assert_eq!(failed().await, 1);

    // What operators see: the instance list and one instance's history.
    let eddy = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
            .args(args)
            .args(["--server", &nats.url()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let list = eddy(&["sagas", "transfer"]);
    assert!(list.contains("t1") && list.contains("failed"), "{list}");
    let one = eddy(&["sagas", "transfer", "t1"]);
    assert!(one.contains("approval -> refund on timeout"), "{one}");
    child.kill().unwrap();
    child.wait().unwrap();
}
