//! Hostile and unlucky inputs against a real engine: every request is answered, no endpoint dies of one,
//! failing view updates lose nothing, and a bad event holds only its own aggregate, visibly.

mod common;

use common::*;
use serde_json::{json, Value};

async fn request(c: &async_nats::Client, subject: &str, body: &str) -> (Value, Option<async_nats::HeaderMap>) {
    let msg =
        c.request(subject.to_string(), body.to_string().into()).await.unwrap_or_else(|e| panic!("{subject}: {e}"));
    (serde_json::from_slice(&msg.payload).expect("JSON reply"), msg.headers)
}

fn service_error(headers: &Option<async_nats::HeaderMap>) -> String {
    headers.as_ref().and_then(|h| h.get("Nats-Service-Error")).map(|v| v.as_str().to_string()).unwrap_or_default()
}

#[tokio::test]
async fn newlines_and_huge_names_get_one_line_replies_and_endpoints_live_on() {
    let nats = TestServer::start().await;
    let eddy = engine(&example("bank", &nats.url(), nats.dir.path())).await;
    let c = nats.client().await;

    for subject in ["eddy.admin.views.rebuild", "eddy.admin.reactors.retry", "eddy.admin.reactors.rebuild"] {
        for _ in 0..3 {
            let (reply, headers) = request(&c, subject, r#"{"name":"a\nb\r\nc"}"#).await;
            assert_eq!(reply["error"]["code"], "not_found", "{subject}: {reply}");
            let header = service_error(&headers);
            assert!(header.contains("a b  c") && !header.contains('\n'), "{subject}: {header:?}");
        }
    }
    let (reply, _) = request(&c, "eddy.admin.sagas.get", r#"{"saga":"x\ny","id":"1"}"#).await;
    assert_eq!(reply["ok"], false, "{reply}");
    // Every admin endpoint still answers.
    for subject in ["eddy.admin.views", "eddy.admin.reactors"] {
        assert_eq!(request(&c, subject, "").await.0["ok"], true, "{subject} lives on");
    }

    // An id with a newline, and a 600 KB unknown field name: answered, short, on one line.
    let reply = send(&c, "account.open", json!({"id": "a\n", "owner": "x"})).await;
    assert_eq!(reply.code(), "invalid", "{}", reply.body);
    assert!(!reply.header("Nats-Service-Error").unwrap().contains('\n'));
    let huge = "f".repeat(600 * 1024);
    let reply = send(&c, "account.open", json!({"id": "a1", "owner": "x", huge: 1})).await;
    assert_eq!(reply.code(), "invalid", "{}", &reply.body.to_string()[..200]);
    assert!(reply.raw.len() < 2048, "the reply echoes at most a clipped message: {} bytes", reply.raw.len());
    // A string over the limit is refused as invalid (not a retryable unavailable).
    let big = json!({"id": "a1", "owner": "x".repeat(900 * 1024)});
    let reply = send(&c, "account.open", big).await;
    assert_eq!(reply.code(), "invalid", "{}", &reply.body.to_string()[..200.min(reply.body.to_string().len())]);
    ok(&c, "account.open", json!({"id": "a1", "owner": "ann"})).await;
    stop(eddy).await;
}

#[tokio::test]
async fn deep_or_costly_queries_are_refused_and_commands_go_on() {
    let nats = TestServer::start().await;
    let eddy = engine(&example("bank", &nats.url(), nats.dir.path())).await;
    let c = nats.client().await;
    let opened = ok(&c, "account.open", json!({"id": "a1", "owner": "ann"})).await;
    let seq = opened.body["seq"].as_u64().unwrap();

    let deep = format!("doc.balance{} > 0", " + 1".repeat(1406));
    for filter in [deep, format!("doc{}", ".a".repeat(3000)), format!("{}1{}", "(".repeat(200), ")".repeat(200))] {
        let reply = query(&c, "balances", "list", json!({"where": filter, "min_seq": seq})).await;
        assert_eq!(reply["error"]["code"], "invalid", "{}", &reply.to_string()[..300.min(reply.to_string().len())]);
    }
    let reply =
        query(&c, "balances", "list", json!({"where": "doc.balance + 1 + 1 > 0 && doc.owner.matches('(')"})).await;
    assert_eq!(reply["error"]["code"], "invalid", "{reply}");
    assert!(!reply["error"]["message"].as_str().unwrap().contains('\n'), "{reply}");
    let reply = query(&c, "balances", "get", json!({"key": "a1", "min_seq": 1, "timeout_ms": 3_600_000})).await;
    assert_eq!(reply["error"]["code"], "invalid", "an hour-long wait is refused: {reply}");
    let reply = query(
        &c,
        "balances",
        "list",
        json!({"where": "doc.owner.matches('^a') && [1,2,3].all(x, x > 0)", "min_seq": seq}),
    )
    .await;
    assert_eq!(reply["items"].as_array().map(Vec::len), Some(1), "{reply}");
    ok(&c, "account.deposit", json!({"id": "a1", "amount": 5})).await;
    stop(eddy).await;
}

#[tokio::test]
async fn an_overflow_names_the_expression_stores_nothing_and_later_commands_work() {
    let nats = TestServer::start().await;
    let eddy = engine(&example("bank", &nats.url(), nats.dir.path())).await;
    let c = nats.client().await;
    ok(&c, "account.open", json!({"id": "a1", "owner": "ann"})).await;
    ok(&c, "account.deposit", json!({"id": "a1", "amount": i64::MAX})).await;
    let reply = send(&c, "account.deposit", json!({"id": "a1", "amount": 1})).await;
    assert_eq!(reply.code(), "internal", "the contract's code for a CEL runtime error: {}", reply.body);
    assert!(reply.message().contains("state.balance + event.amount"), "{}", reply.message());
    ok(&c, "account.withdraw", json!({"id": "a1", "amount": 10})).await;
    ok(&c, "account.deposit", json!({"id": "a1", "amount": 1})).await;
    stop(eddy).await;
}

/// The seen failure: one overflowing update made a rebuilt `daily-totals` forget every earlier deposit.
#[tokio::test]
async fn a_failing_view_update_is_parked_and_loses_nothing_even_after_a_rebuild() {
    let nats = TestServer::start().await;
    let eddy = engine(&example("bank", &nats.url(), nats.dir.path())).await;
    let c = nats.client().await;
    for (id, amount) in [("a1", 5), ("a2", 300), ("a3", i64::MAX)] {
        ok(&c, "account.open", json!({"id": id, "owner": id})).await;
        ok(&c, "account.deposit", json!({"id": id, "amount": amount})).await;
    }
    let last = ok(&c, "account.deposit", json!({"id": "a1", "amount": 2})).await;
    let seq = last.body["seq"].as_u64().unwrap();
    let totals = |c: async_nats::Client| async move {
        let reply = query(&c, "daily-totals", "list", json!({"min_seq": seq, "timeout_ms": 10000})).await;
        reply["items"][0]["doc"].clone()
    };
    assert_eq!(totals(c.clone()).await, json!({"deposited": 307, "withdrawn": 0, "count": 3}));
    let status = view_status(&c, "daily-totals").await;
    assert_eq!(status["parked"], 1, "{status}");
    assert_eq!(status["status"], "live", "{status}");
    assert!(status["parked_events"][0]["error"].as_str().unwrap().contains("doc.deposited + event.amount"), "{status}");

    let (reply, _) = request(&c, "eddy.admin.views.rebuild", r#"{"name":"daily-totals"}"#).await;
    assert_eq!(reply["ok"], true, "{reply}");
    let rebuilt = eventually(20, || async {
        let s = view_status(&c, "daily-totals").await;
        s["status"] == "live" && s["parked"] == 1 && s["position"].as_u64() >= Some(seq)
    })
    .await;
    assert!(rebuilt, "{}", view_status(&c, "daily-totals").await);
    assert_eq!(totals(c.clone()).await, json!({"deposited": 307, "withdrawn": 0, "count": 3}));
    stop(eddy).await;
}

#[tokio::test]
async fn a_view_that_stops_holds_at_the_failing_event_with_the_documents_before_it() {
    let nats = TestServer::start().await;
    let config = tempfile::tempdir().unwrap();
    copy_example("bank", config.path());
    let view = std::fs::read_to_string(config.path().join("projections/daily-totals.toml")).unwrap();
    let view = view.replace("initial = {", "on_error = \"stop\"\ninitial = {");
    std::fs::write(config.path().join("projections/daily-totals.toml"), view).unwrap();
    let eddy = engine(&config_at(config.path(), &nats.url(), nats.dir.path())).await;
    let c = nats.client().await;
    ok(&c, "account.open", json!({"id": "a1", "owner": "ann"})).await;
    ok(&c, "account.deposit", json!({"id": "a1", "amount": 40})).await;
    ok(&c, "account.open", json!({"id": "a2", "owner": "bob"})).await;
    let failing = ok(&c, "account.deposit", json!({"id": "a2", "amount": i64::MAX})).await;
    let failing_seq = failing.body["seq"].as_u64().unwrap();
    ok(&c, "account.deposit", json!({"id": "a1", "amount": 2})).await;
    let stopped = eventually(10, || async { view_status(&c, "daily-totals").await["status"] == "failed" }).await;
    let status = view_status(&c, "daily-totals").await;
    assert!(stopped, "{status}");
    assert_eq!(status["stopped_at"]["seq"], failing_seq, "{status}");
    assert_eq!(status["position"], failing_seq - 1, "{status}");
    let reply = query(&c, "daily-totals", "list", json!({})).await;
    assert_eq!(reply["items"][0]["doc"], json!({"deposited": 40, "withdrawn": 0, "count": 1}), "{reply}");
    stop(eddy).await;
}

#[tokio::test]
async fn a_foreign_event_holds_only_its_aggregate_naming_the_seq() {
    let nats = TestServer::start().await;
    let eddy = engine(&example("bank", &nats.url(), nats.dir.path())).await;
    let c = nats.client().await;
    ok(&c, "account.open", json!({"id": "a1", "owner": "ann"})).await;
    ok(&c, "account.open", json!({"id": "a2", "owner": "bob"})).await;
    let js = async_nats::jetstream::new(c.clone());
    let ack = js.publish("events.account.a1", r#"{"amount": 5}"#.into()).await.unwrap().await.unwrap();
    // Another engine (a restart, here) loads a1 from the stream and meets the foreign message.
    stop(eddy).await;
    let eddy = engine(&example("bank", &nats.url(), nats.dir.path())).await;
    let reply = send(&c, "account.deposit", json!({"id": "a1", "amount": 5})).await;
    assert_eq!(reply.code(), "internal", "{}", reply.body);
    assert!(reply.message().contains(&format!("seq {}", ack.sequence)), "{}", reply.message());
    ok(&c, "account.deposit", json!({"id": "a2", "amount": 5})).await;
    stop(eddy).await;
}

#[tokio::test]
async fn comprehension_macros_work_in_aggregates_end_to_end() {
    let nats = TestServer::start().await;
    let config = tempfile::tempdir().unwrap();
    std::fs::write(
        config.path().join("cart.toml"),
        r#"
[aggregates.cart]
initial = { items = [] }
[aggregates.cart.commands.add]
input = { item = "string" }
rules = [{ check = "!state.items.exists(i, i == cmd.item)", error = "already in the cart" }]
emit = [{ event = "Added", data = "{'item': cmd.item}" }]
[aggregates.cart.commands.remove]
input = { item = "string" }
rules = [{ check = "state.items.exists_one(i, i == cmd.item)", error = "not in the cart" }]
emit = [{ event = "Removed", data = "{'item': cmd.item}" }]
[aggregates.cart.events.Added]
apply = "{'items': state.items + [event.item]}"
[aggregates.cart.events.Removed]
apply = "{'items': state.items.filter(i, i != event.item)}"
"#,
    )
    .unwrap();
    let eddy = engine(&config_at(config.path(), &nats.url(), nats.dir.path())).await;
    let c = nats.client().await;
    ok(&c, "cart.add", json!({"id": "c1", "item": "milk"})).await;
    ok(&c, "cart.add", json!({"id": "c1", "item": "eggs"})).await;
    assert_eq!(send(&c, "cart.add", json!({"id": "c1", "item": "milk"})).await.code(), "rejected");
    ok(&c, "cart.remove", json!({"id": "c1", "item": "milk"})).await;
    assert_eq!(send(&c, "cart.remove", json!({"id": "c1", "item": "milk"})).await.code(), "rejected");
    stop(eddy).await;
    // A fresh engine folds the history with the same macros.
    let eddy = engine(&config_at(config.path(), &nats.url(), nats.dir.path())).await;
    ok(&c, "cart.add", json!({"id": "c1", "item": "milk"})).await;
    assert_eq!(send(&c, "cart.remove", json!({"id": "c1", "item": "bread"})).await.code(), "rejected");
    stop(eddy).await;
}

#[tokio::test]
async fn an_event_over_the_servers_payload_limit_is_invalid() {
    let nats = TestServer::start().await;
    let config = tempfile::tempdir().unwrap();
    let twenty = vec!["cmd.s"; 20].join(", ");
    std::fs::write(
        config.path().join("blob.toml"),
        format!(
            r#"
[aggregates.blob]
initial = {{}}
[aggregates.blob.commands.put]
input = {{ s = "string" }}
emit = [{{ event = "Put", data = "{{'parts': [{twenty}]}}" }}]
[aggregates.blob.events.Put]
apply = "{{}}"
"#
        ),
    )
    .unwrap();
    let eddy = engine(&config_at(config.path(), &nats.url(), nats.dir.path())).await;
    let c = nats.client().await;
    let reply = send(&c, "blob.put", json!({"id": "b1", "s": "x".repeat(60 * 1024)})).await;
    assert_eq!(reply.code(), "invalid", "{}", reply.body);
    assert!(reply.message().contains("the Put event is"), "{}", reply.message());
    ok(&c, "blob.put", json!({"id": "b1", "s": "small"})).await;
    stop(eddy).await;
}
