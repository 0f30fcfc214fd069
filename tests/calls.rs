//! The `call` action against real services: the bank's fraud check (a NATS responder that approves,
//! declines, or never answers) and a rule calling an HTTP service (a reply, a 503 retried, a 400 final). The
//! outcome is an event on the caller's own subject, carrying the effect id the service was given.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_nats::Client;
use common::*;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Answers `fraud.check`: approves under 50,000, declines from there, and never answers 30,000. Returns the
/// effect ids it was asked with, per transfer.
async fn fraud_service(c: &Client) -> Arc<Mutex<BTreeMap<String, Vec<String>>>> {
    let asked = Arc::new(Mutex::new(BTreeMap::<String, Vec<String>>::new()));
    let mut sub = c.subscribe("fraud.check").await.unwrap();
    c.flush().await.unwrap();
    let (c, seen) = (c.clone(), asked.clone());
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            let body: Value = serde_json::from_slice(&msg.payload).unwrap();
            let effect = msg.headers.as_ref().and_then(|h| h.get("Eddy-Effect-Id")).map(|v| v.to_string());
            let transfer = body["transfer"].as_str().unwrap_or_default().to_string();
            seen.lock().unwrap().entry(transfer).or_default().push(effect.unwrap_or_default());
            let reply = match body["amount"].as_i64() {
                Some(30_000) => continue,
                Some(a) if a < 50_000 => json!({"approved": true}),
                _ => json!({"approved": false, "reason": "unusual amount"}),
            };
            c.publish(msg.reply.unwrap(), reply.to_string().into()).await.unwrap();
        }
    });
    asked
}

#[tokio::test]
async fn large_transfers_ask_the_fraud_check_and_move_on_its_recorded_answer() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let asked = fraud_service(&c).await;
    let eddy = engine(&example("bank", &nats.url(), nats.dir.path())).await;
    reactors_running(&c, &["transfer"]).await;
    for id in ["a1", "a2"] {
        ok(&c, "account.open", json!({"id": id, "owner": id})).await;
    }
    ok(&c, "account.deposit", json!({"id": "a1", "amount": 200_000})).await;
    for (id, amount) in [("t-ok", 20_000), ("t-no", 60_000), ("t-slow", 30_000)] {
        ok(&c, "transfer.request", json!({"id": id, "from": "a1", "to": "a2", "amount": amount})).await;
    }

    let approved = finished(&c, "transfer", "t-ok").await;
    assert_eq!(path(&approved), ["debit", "fraud-check", "credit", "completed"]);
    let declined = finished(&c, "transfer", "t-no").await;
    assert_eq!(path(&declined), ["debit", "fraud-check", "refund", "failed"]);
    assert_eq!(declined["data"]["reason"], "fraud check declined: unusual amount");
    let timed_out = finished(&c, "transfer", "t-slow").await;
    assert_eq!(path(&timed_out), ["debit", "fraud-check", "refund", "failed"]);
    let reason = timed_out["data"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("fraud check failed: fraud.check did not answer within 1000 ms"), "{reason}");

    // Each outcome is recorded once on the instance's log, before the transition it caused.
    for (id, event_type) in [("t-ok", "CallReplied"), ("t-no", "CallReplied"), ("t-slow", "CallFailed")] {
        let log = events_on(&c, &format!("events.saga-transfer.{id}")).await;
        let outcomes: Vec<_> = log.iter().filter(|e| e.event_type.starts_with("Call")).collect();
        assert_eq!(outcomes.len(), 1, "{id}: {outcomes:?}");
        let outcome = outcomes[0];
        assert_eq!(outcome.event_type, event_type);
        let effect = outcome.data["effect"].as_str().unwrap();
        let moved =
            log.iter().find(|e| e.data["trigger"] == if event_type == "CallReplied" { "replied" } else { "failed" });
        assert_eq!(moved.unwrap().data["cause"], outcome.seq, "{id}: the transition is caused by the record");
        // The service was asked with the effect id; the slow one once per attempt (1 + max_retries).
        let ids = asked.lock().unwrap()[id].clone();
        assert!(ids.iter().all(|e| e == effect), "{id}: {ids:?} vs {effect}");
        assert_eq!(ids.len(), if id == "t-slow" { 6 } else { 1 }, "{id}: {ids:?}");
    }
    assert_eq!(log_field(&c, "t-slow", "reason").await, "timeout");
    let status = reactor_status(&c, "transfer").await;
    assert_eq!((status["calls"].as_u64(), status["failed_calls"].as_u64()), (Some(3), Some(1)), "{status}");
    stop(eddy).await;
}

/// A field of the `CallFailed` on a transfer's log.
async fn log_field(c: &Client, id: &str, field: &str) -> Value {
    let log = events_on(c, &format!("events.saga-transfer.{id}")).await;
    log.iter().find(|e| e.event_type == "CallFailed").map(|e| e.data[field].clone()).unwrap_or_default()
}

/// A tiny HTTP/1.1 server: each request gets the next canned (status, body) for its path, and is kept.
async fn http_service(script: BTreeMap<&'static str, Vec<(u16, &'static str)>>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let script = Arc::new(Mutex::new(script));
    let kept = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let (seen, script) = (kept.clone(), script.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut len = 0;
                // Headers and a small body arrive in one or a few reads; the body's length is in the headers.
                let request = loop {
                    let n = sock.read(&mut buf[len..]).await.unwrap();
                    len += n;
                    let text = String::from_utf8_lossy(&buf[..len]).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let want = head
                            .lines()
                            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(str::to_string))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if body.len() >= want || n == 0 {
                            break text;
                        }
                    }
                };
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
                let path = path.split('?').next().unwrap().to_string();
                let (status, body) = {
                    let mut s = script.lock().unwrap();
                    let list = s.get_mut(path.as_str()).expect("a scripted path");
                    if list.len() > 1 {
                        list.remove(0)
                    } else {
                        list[0]
                    }
                };
                seen.lock().unwrap().push(request);
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                sock.write_all(reply.as_bytes()).await.expect("the reply is written");
            });
        }
    });
    (url, seen)
}

#[tokio::test]
async fn a_rule_calls_an_http_service_with_an_idempotency_key_and_records_each_outcome() {
    let (url, seen) = http_service(BTreeMap::from([
        ("/ok", vec![(200, r#"{"score": 7}"#)]),
        ("/flaky", vec![(503, "busy"), (200, r#""fine""#)]),
        ("/bad", vec![(400, r#"{"error": "no such customer"}"#)]),
    ]))
    .await;
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let dir = tempfile::tempdir().unwrap();
    copy_example("bank", dir.path());
    std::env::set_var("CALLS_TEST_SCORE_TOKEN", "s3cret");
    let rule = format!(
        r#"
[reactors.scorer]
kind = "rule"
on = ["account.AccountOpened"]
max_retries = 3
then = [{{ http = {{ method = "POST", url = "{url}/" , headers = {{ Authorization = "Bearer ${{CALLS_TEST_SCORE_TOKEN}}" }} }}, data = "{{'owner': event.owner}}" }}]
"#
    );
    // One rule per path: the URL is fixed in the config.
    let mut toml = String::new();
    for (name, path) in [("scorer-ok", "ok"), ("scorer-flaky", "flaky"), ("scorer-bad", "bad")] {
        toml += &rule.replace("scorer", name).replace(&format!("{url}/"), &format!("{url}/{path}"));
    }
    std::fs::write(dir.path().join("reactors/scorers.toml"), toml).unwrap();
    let eddy = engine(&config_at(dir.path(), &nats.url(), nats.dir.path())).await;
    const NAMES: [&str; 3] = ["scorer-ok", "scorer-flaky", "scorer-bad"];
    reactors_running(&c, &NAMES).await;
    ok(&c, "account.open", json!({"id": "a1", "owner": "ann"})).await;

    let recorded = |name: &'static str| {
        let c = c.clone();
        async move { events_on(&c, &format!("events.{name}.a1")).await }
    };
    let all_recorded = || async {
        let mut n = 0;
        for name in NAMES {
            n += usize::from(!recorded(name).await.is_empty());
        }
        n == NAMES.len()
    };
    assert!(eventually(20, all_recorded).await, "every rule recorded its call's outcome");
    let ok_log = recorded("scorer-ok").await;
    assert_eq!((ok_log[0].event_type.as_str(), &ok_log[0].data["reply"]), ("CallReplied", &json!({"score": 7})));
    let flaky = recorded("scorer-flaky").await;
    assert_eq!((flaky[0].event_type.as_str(), &flaky[0].data["reply"]), ("CallReplied", &json!("fine")));
    let bad = recorded("scorer-bad").await;
    assert_eq!(bad[0].event_type, "CallFailed");
    assert_eq!((bad[0].data["status"].as_u64(), bad[0].data["reason"].as_str()), (Some(400), Some("status")));
    assert!(bad[0].data["message"].as_str().unwrap().contains("no such customer"), "{:?}", bad[0].data);

    let requests = seen.lock().unwrap().clone();
    let to = |path: &str| requests.iter().filter(|r| r.starts_with(&format!("POST /{path} "))).collect::<Vec<_>>();
    // The 503 was retried, with the same key; the 400 was not.
    assert_eq!((to("ok").len(), to("flaky").len(), to("bad").len()), (1, 2, 1), "{requests:#?}");
    for r in to("flaky") {
        let lower = r.to_ascii_lowercase();
        assert!(lower.contains(&format!("idempotency-key: {}", flaky[0].data["effect"].as_str().unwrap())), "{r}");
        assert!(lower.contains("authorization: bearer s3cret"), "{r}");
        assert!(r.ends_with(r#"{"owner":"ann"}"#), "{r}");
    }
    stop(eddy).await;
}
