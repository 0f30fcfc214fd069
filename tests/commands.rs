//! The command side against a real nats-server: the contract's error codes, idempotency, expected
//! versions, atomic multi-event commits and concurrency.

mod common;

use common::*;
use eddy_engine::store::EventStore;
use serde_json::json;

#[tokio::test]
async fn deposits_withdrawals_and_rules() {
    let nats = TestServer::start().await;
    let engine = engine(&example("bank", &nats.url(), nats.dir.path())).await;
    let c = nats.client().await;

    let opened = ok(&c, "account.open", json!({"id": "a1", "owner": "ann"})).await;
    assert_eq!(opened.body["version"], 1);
    assert_eq!(opened.body["events"][0]["type"], "AccountOpened");
    let deposited = ok(&c, "account.deposit", json!({"id": "a1", "amount": 500})).await;
    assert_eq!(deposited.body["version"], 2);
    assert_eq!(deposited.body["seq"], deposited.body["events"][0]["seq"]);
    assert_eq!(deposited.body["events"][0]["data"], json!({"amount": 500}));

    let rejected = send(&c, "account.withdraw", json!({"id": "a1", "amount": 501})).await;
    assert_eq!(rejected.code(), "rejected");
    assert_eq!(rejected.message(), "insufficient funds");
    assert_eq!(rejected.header("Nats-Service-Error-Code").as_deref(), Some("422"));
    assert_eq!(rejected.header("Nats-Service-Error").as_deref(), Some("insufficient funds"));
    stop(engine).await;
}

#[tokio::test]
async fn every_error_code_of_the_contract() {
    let nats = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broken.toml"),
        r#"
[aggregates.broken]
initial = { n = 0 }
[aggregates.broken.commands.poke]
rules = [{ check = "state.n / state.n > 0", error = "never" }]
emit = [{ event = "Poked", data = "{}" }]
[aggregates.broken.events.Poked]
apply = "{}"
"#,
    )
    .unwrap();
    let bank = example("bank", &nats.url(), nats.dir.path());
    let broken = config_at(dir.path(), &nats.url(), nats.dir.path());
    let mut config = bank;
    config.engine.aggregates.extend(broken.engine.aggregates);
    let engine = engine(&config).await;
    let c = nats.client().await;
    ok(&c, "account.open", json!({"id": "a1", "owner": "ann"})).await;

    // (target, body, headers, code, status, a part of the message)
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, &'a str, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        ("account.deposit", "not json".into(), vec![], "invalid", "400", "not JSON"),
        ("account.deposit", "[1,2]".into(), vec![], "invalid", "400", "JSON object"),
        ("account.deposit", json!({"amount": 5}).to_string(), vec![], "invalid", "400", "`id`"),
        ("account.deposit", json!({"id": "a/1", "amount": 5}).to_string(), vec![], "invalid", "400", "valid id"),
        ("account.deposit", json!({"id": "a1"}).to_string(), vec![], "invalid", "400", "`amount` is required"),
        ("account.deposit", json!({"id": "a1", "amount": "5"}).to_string(), vec![], "invalid", "400", "`amount`"),
        (
            "account.deposit",
            json!({"id": "a1", "amount": 5, "memo": "x"}).to_string(),
            vec![],
            "invalid",
            "400",
            "`memo`",
        ),
        (
            "account.deposit",
            json!({"id": "a1", "amount": 5}).to_string(),
            vec![("Eddy-Expected-Version", "soon")],
            "invalid",
            "400",
            "Eddy-Expected-Version",
        ),
        ("ledger.deposit", json!({"id": "a1"}).to_string(), vec![], "not_found", "404", "no aggregate `ledger`"),
        ("account.steal", json!({"id": "a1"}).to_string(), vec![], "not_found", "404", "no command `steal`"),
        (
            "account.deposit",
            json!({"id": "a1", "amount": 5}).to_string(),
            vec![("Eddy-Expected-Version", "7")],
            "conflict",
            "409",
            "version",
        ),
        ("account.deposit", json!({"id": "a1", "amount": -5}).to_string(), vec![], "rejected", "422", "positive"),
        // A rule's message names what it is about (`{{ cmd.id }}` in its text).
        (
            "account.withdraw",
            json!({"id": "nobody", "amount": 5}).to_string(),
            vec![],
            "rejected",
            "422",
            "account nobody is not open",
        ),
        ("broken.poke", json!({"id": "b1"}).to_string(), vec![], "internal", "500", "state.n / state.n > 0"),
    ];
    for (target, body, headers, code, status, needle) in cases {
        let reply = send_raw(&c, target, &body, &headers).await;
        assert_eq!(reply.code(), code, "{target} {body}: {}", reply.body);
        assert_eq!(reply.header("Nats-Service-Error-Code").as_deref(), Some(status), "{target} {body}");
        assert!(reply.message().contains(needle), "{target} {body}: `{}` lacks `{needle}`", reply.message());
    }

    // unavailable: the store stops answering (its stream is gone).
    let js = async_nats::jetstream::new(c.clone());
    js.delete_stream("EVENTS").await.unwrap();
    let reply = send(&c, "account.deposit", json!({"id": "a1", "amount": 5})).await;
    assert_eq!(reply.code(), "unavailable", "{}", reply.body);
    assert_eq!(reply.header("Nats-Service-Error-Code").as_deref(), Some("503"));
    stop(engine).await;
}

#[tokio::test]
async fn a_repeated_command_id_gets_the_first_reply_and_appends_once() {
    let nats = TestServer::start().await;
    let config = example("bank", &nats.url(), nats.dir.path());
    let engine = engine(&config).await;
    let c = nats.client().await;
    ok(&c, "account.open", json!({"id": "a1", "owner": "ann"})).await;
    let body = json!({"id": "a1", "amount": 100}).to_string();
    let first = send_raw(&c, "account.deposit", &body, &[("Eddy-Command-Id", "dep-1")]).await;
    let again = send_raw(&c, "account.deposit", &body, &[("Eddy-Command-Id", "dep-1")]).await;
    assert!(first.ok());
    assert_eq!(first.raw, again.raw, "a repeat gets the very same reply");

    // A rejected command repeats as rejected, even though it would now pass.
    let big = json!({"id": "a1", "amount": 150}).to_string();
    let r1 = send_raw(&c, "account.withdraw", &big, &[("Eddy-Command-Id", "wd-1")]).await;
    assert_eq!(r1.code(), "rejected");
    ok(&c, "account.deposit", json!({"id": "a1", "amount": 100})).await;
    let r2 = send_raw(&c, "account.withdraw", &big, &[("Eddy-Command-Id", "wd-1")]).await;
    assert_eq!(r1.raw, r2.raw);

    // After a restart the reply is rebuilt from the stream.
    stop(engine).await;
    let engine = common::engine(&config).await;
    let after = send_raw(&c, "account.deposit", &body, &[("Eddy-Command-Id", "dep-1")]).await;
    assert_eq!(first.raw, after.raw, "a repeat after a restart gets the first reply");

    let store = EventStore::attach(c.clone(), &config.engine.engine);
    let events = store.load("account", "a1", 1).await.unwrap();
    assert_eq!(events.len(), 3, "open + two distinct deposits: {events:?}");
    stop(engine).await;
}

/// A command id names one command: sent again with another body, or for another command, it is a `conflict`
/// and stores nothing, whether the first reply is in memory, rebuilt after a restart, or read back from the
/// aggregate's history after the window; the same body in another key order is a repeat.
#[tokio::test]
async fn a_command_id_reused_for_another_body_is_a_conflict() {
    let nats = TestServer::start().await;
    let mut config = example("bank", &nats.url(), nats.dir.path());
    config.engine.engine.dedup_window_secs = 2;
    let engine = engine(&config).await;
    let c = nats.client().await;
    ok(&c, "account.open", json!({"id": "a1", "owner": "ann"})).await;
    let id = [("Eddy-Command-Id", "dep-1")];
    let first = send_raw(&c, "account.deposit", r#"{"id": "a1", "amount": 100}"#, &id).await;
    assert!(first.ok(), "{}", first.body);
    let reordered = send_raw(&c, "account.deposit", r#"{ "amount": 100, "id": "a1" }"#, &id).await;
    assert_eq!(reordered.raw, first.raw, "key order and spaces do not make another command");
    let conflicts = |label: &'static str, reply: common::Reply| {
        assert_eq!(reply.code(), "conflict", "{label}: {}", reply.body);
        assert!(reply.message().contains("was already used"), "{label}: {}", reply.message());
    };
    conflicts("other amount", send_raw(&c, "account.deposit", r#"{"id": "a1", "amount": 101}"#, &id).await);
    conflicts("other command", send_raw(&c, "account.withdraw", r#"{"id": "a1", "amount": 100}"#, &id).await);

    // A rejection binds its id too.
    let wd = [("Eddy-Command-Id", "wd-1")];
    assert_eq!(send_raw(&c, "account.withdraw", r#"{"id": "a1", "amount": 500}"#, &wd).await.code(), "rejected");
    conflicts("after a rejection", send_raw(&c, "account.withdraw", r#"{"id": "a1", "amount": 5}"#, &wd).await);

    // Rebuilt from the stream after a restart, then read back from the history once the window has passed.
    stop(engine).await;
    let engine = common::engine(&config).await;
    conflicts("after a restart", send_raw(&c, "account.deposit", r#"{"id": "a1", "amount": 7}"#, &id).await);
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    conflicts("after the window", send_raw(&c, "account.deposit", r#"{"id": "a1", "amount": 7}"#, &id).await);
    let again = send_raw(&c, "account.deposit", r#"{"id": "a1", "amount": 100}"#, &id).await;
    assert_eq!(again.body, first.body, "the same command still gets its first reply");

    let store = EventStore::attach(c.clone(), &config.engine.engine);
    let events = store.load("account", "a1", 1).await.unwrap();
    assert_eq!(events.len(), 2, "open + one deposit: {events:?}");
    stop(engine).await;
}

#[tokio::test]
async fn expected_version_is_honoured() {
    let nats = TestServer::start().await;
    let engine = engine(&example("bank", &nats.url(), nats.dir.path())).await;
    let c = nats.client().await;
    ok(&c, "account.open", json!({"id": "a1", "owner": "ann"})).await;
    let body = json!({"id": "a1", "amount": 5}).to_string();
    let good = send_raw(&c, "account.deposit", &body, &[("Eddy-Expected-Version", "1")]).await;
    assert!(good.ok(), "{}", good.body);
    assert_eq!(good.body["version"], 2);
    let stale = send_raw(&c, "account.deposit", &body, &[("Eddy-Expected-Version", "1")]).await;
    assert_eq!(stale.code(), "conflict");
    let fresh = send_raw(
        &c,
        "transfer.request",
        &json!({"id": "t1", "from": "a", "to": "b", "amount": 1}).to_string(),
        &[("Eddy-Expected-Version", "0")],
    )
    .await;
    assert!(fresh.ok(), "version 0 is a new aggregate: {}", fresh.body);
    stop(engine).await;
}

#[tokio::test]
async fn reduce_appends_two_events_atomically() {
    let nats = TestServer::start().await;
    let mut config = example("inventory", &nats.url(), nats.dir.path());
    config.reactors.clear(); // auto-reorder would restock after the depletion this test looks at
    let engine = engine(&config).await;
    let c = nats.client().await;
    ok(&c, "product.register", json!({"id": "p1", "name": "bolt"})).await;
    ok(&c, "product.restock", json!({"id": "p1", "quantity": 3})).await;
    let partial = ok(&c, "product.reduce", json!({"id": "p1", "quantity": 1})).await;
    assert_eq!(partial.body["events"].as_array().unwrap().len(), 1, "no depletion yet");
    let last = ok(&c, "product.reduce", json!({"id": "p1", "quantity": 2, "order": "o9"})).await;
    let events = last.body["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["type"], "StockReduced");
    assert_eq!(events[1]["type"], "StockDepleted");
    let first_seq = events[0]["seq"].as_u64().unwrap();
    assert_eq!(events[1]["seq"].as_u64().unwrap(), first_seq + 1, "one contiguous batch");
    assert_eq!(last.body["version"], 5);

    let stored = EventStore::attach(c.clone(), &config.engine.engine).load("product", "p1", 1).await.unwrap();
    let types: Vec<_> = stored.iter().map(|e| (e.event_type.as_str(), e.version)).collect();
    assert_eq!(
        types,
        [("ProductRegistered", 1), ("StockAdded", 2), ("StockReduced", 3), ("StockReduced", 4), ("StockDepleted", 5)]
    );
    assert!(stored[3..].iter().all(|e| e.command_id == stored[3].command_id), "both carry the command id");
    let empty = send(&c, "product.reduce", json!({"id": "p1", "quantity": 1})).await;
    assert_eq!(empty.message(), "insufficient stock");
    stop(engine).await;
}

#[tokio::test]
async fn fifty_concurrent_withdrawals_never_lose_an_update() {
    let nats = TestServer::start().await;
    let config = example("bank", &nats.url(), nats.dir.path());
    // Two engines on one stream: the queue group splits the requests, so appends really race.
    let a = engine(&config).await;
    let other_dir = tempfile::tempdir().unwrap();
    let mut config_b = config.clone();
    config_b.engine.engine.data_dir = other_dir.path().to_path_buf();
    let b = engine(&config_b).await;
    let c = nats.client().await;
    ok(&c, "account.open", json!({"id": "a1", "owner": "ann"})).await;
    ok(&c, "account.deposit", json!({"id": "a1", "amount": 200})).await;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { send(&c, "account.withdraw", json!({"id": "a1", "amount": 10})).await })
        })
        .collect();
    let mut succeeded = 0;
    for t in tasks {
        let reply = t.await.unwrap();
        if reply.ok() {
            succeeded += 1;
        } else {
            assert_eq!(reply.message(), "insufficient funds", "{}", reply.body);
        }
    }
    assert_eq!(succeeded, 20);
    let events = EventStore::attach(c.clone(), &config.engine.engine).load("account", "a1", 1).await.unwrap();
    let balance: i64 = events
        .iter()
        .map(|e| match e.event_type.as_str() {
            "MoneyDeposited" => e.data["amount"].as_i64().unwrap(),
            "MoneyWithdrawn" => -e.data["amount"].as_i64().unwrap(),
            _ => 0,
        })
        .sum();
    assert_eq!(balance, 0);
    let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
    assert_eq!(versions, (1..=22).collect::<Vec<_>>(), "versions are gapless");
    let close = send(&c, "account.close", json!({"id": "a1"})).await;
    assert!(close.ok(), "the balance each engine sees is 0: {}", close.body);
    stop(a).await;
    stop(b).await;
}

#[tokio::test]
async fn a_restarted_engine_rebuilds_state_from_the_stream() {
    let nats = TestServer::start().await;
    let config = example("bank", &nats.url(), nats.dir.path());
    let first = engine(&config).await;
    let c = nats.client().await;
    ok(&c, "account.open", json!({"id": "a1", "owner": "ann"})).await;
    ok(&c, "account.deposit", json!({"id": "a1", "amount": 70})).await;
    stop(first).await;

    let second = engine(&config).await;
    let over = send(&c, "account.withdraw", json!({"id": "a1", "amount": 71})).await;
    assert_eq!(over.message(), "insufficient funds");
    let exact = ok(&c, "account.withdraw", json!({"id": "a1", "amount": 70})).await;
    assert_eq!(exact.body["version"], 3);
    let again = send(&c, "account.open", json!({"id": "a1", "owner": "bob"})).await;
    assert_eq!(again.message(), "account already exists");
    stop(second).await;
}

#[tokio::test]
async fn correlation_and_causation_are_propagated() {
    let nats = TestServer::start().await;
    let config = example("bank", &nats.url(), nats.dir.path());
    let engine = engine(&config).await;
    let c = nats.client().await;
    let body = json!({"id": "a1", "owner": "ann"}).to_string();
    let headers = [("Eddy-Command-Id", "cmd-1"), ("Eddy-Correlation-Id", "flow-9"), ("Eddy-Causation-Id", "evt-3")];
    assert!(send_raw(&c, "account.open", &body, &headers).await.ok());
    ok(&c, "account.deposit", json!({"id": "a1", "amount": 1})).await;
    let events = EventStore::attach(c.clone(), &config.engine.engine).load("account", "a1", 1).await.unwrap();
    assert_eq!(events[0].command_id, "cmd-1");
    assert_eq!(events[0].correlation_id, "flow-9");
    assert_eq!(events[0].causation_id, "evt-3");
    assert_eq!(events[1].correlation_id, events[1].command_id, "a new flow correlates to its own command");
    stop(engine).await;
}
