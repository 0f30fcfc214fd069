//! What operators see: Prometheus metrics after a transfer saga, the W3C trace carried from a command through
//! every event and action of the saga, spans exported to a real OTLP/HTTP receiver, and JSON logs that carry
//! no secrets at any level.

mod common;

use std::sync::{Arc, Mutex};

use async_nats::Client;
use common::*;
use serde_json::{json, Value};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

async fn transfer_with_trace(c: &Client, id: &str) {
    ok(c, "account.open", json!({"id": "acct-src", "owner": "ann"})).await;
    ok(c, "account.deposit", json!({"id": "acct-src", "amount": 500})).await;
    ok(c, "account.open", json!({"id": "acct-dst", "owner": "bob"})).await;
    let body = json!({"id": id, "from": "acct-src", "to": "acct-dst", "amount": 100}).to_string();
    let reply = send_raw(c, "transfer.request", &body, &[("traceparent", PARENT)]).await;
    assert!(reply.ok(), "{}", reply.body);
    assert_eq!(finished(c, "transfer", id).await["state"], "completed");
}

/// Every `events.>` message as (subject, event type, traceparent header).
async fn stored_traces(c: &Client) -> Vec<(String, String, String)> {
    let js = async_nats::jetstream::new(c.clone());
    let stream = js.get_stream("EVENTS").await.expect("stream");
    let last = last_seq(c).await;
    let mut out = Vec::new();
    for seq in 1..=last {
        let Ok(msg) = stream.get_raw_message(seq).await else { continue };
        let header = |name: &str| msg.headers.get(name).map(|v| v.as_str().to_string()).unwrap_or_default();
        out.push((msg.subject.to_string(), header("Eddy-Event-Type"), header("traceparent")));
    }
    out
}

#[tokio::test]
async fn one_trace_spans_a_transfer_saga_and_a_command_without_one_starts_its_own() {
    let nats = TestServer::start().await;
    let eddy = engine(&example("bank", &nats.url(), nats.dir.path())).await;
    let c = nats.client().await;
    transfer_with_trace(&c, "t-traced").await;
    let saga_seq = last_seq(&c).await;
    reactor_at(&c, "transfer", saga_seq).await;

    let stored = stored_traces(&c).await;
    let of_transfer: Vec<_> = stored
        .iter()
        .filter(|(subject, ..)| subject.ends_with(".t-traced") || subject.contains("acct-dst"))
        .chain(stored.iter().filter(|(s, t, _)| s.ends_with("acct-src") && t == "MoneyWithdrawn"))
        .collect();
    let types: Vec<&str> = of_transfer.iter().map(|(_, t, _)| t.as_str()).collect();
    for expected in ["TransferRequested", "MoneyWithdrawn", "MoneyDeposited", "TransferCompleted"] {
        assert!(types.contains(&expected), "{expected} among {types:?}");
    }
    for (subject, event_type, traceparent) in &of_transfer {
        if event_type == "AccountOpened" {
            continue;
        }
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(parts.len(), 4, "{subject} {event_type} carries a traceparent: {traceparent:?}");
        assert_eq!(parts[1], TRACE_ID, "{subject} {event_type} is in the request's trace");
        assert_ne!(parts[2], "00f067aa0ba902b7", "{subject} {event_type} has a span of its own");
    }
    // The saga's own log (its transitions) is in the trace too.
    let log: Vec<_> =
        stored.iter().filter(|(s, ..)| s.contains("t-traced") && !s.starts_with("events.transfer.")).collect();
    assert!(!log.is_empty() && log.iter().all(|(_, _, t)| t.contains(TRACE_ID)), "saga log: {log:?}");

    // No traceparent, or a malformed one: the command starts a trace of its own.
    for headers in [vec![], vec![("traceparent", "00-nonsense")]] {
        let reply = send_raw(&c, "account.deposit", r#"{"id":"acct-src","amount":1}"#, &headers).await;
        assert!(reply.ok(), "{}", reply.body);
        let seq = reply.body["seq"].as_u64().unwrap();
        let js = async_nats::jetstream::new(c.clone());
        let msg = js.get_stream("EVENTS").await.unwrap().get_raw_message(seq).await.unwrap();
        let traceparent = msg.headers.get("traceparent").expect("a traceparent").as_str().to_string();
        let parsed = eddy_engine::telemetry::TraceParent::parse(&traceparent).expect("a valid one");
        assert_ne!(parsed.trace_id(), TRACE_ID);
    }
    stop(eddy).await;
}

/// `name{labels} value` lines of a Prometheus text page, for the series whose name and labels start with
/// `prefix`.
fn series(page: &str, prefix: &str) -> Vec<f64> {
    page.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse().ok()))
        .collect()
}

#[tokio::test]
async fn metrics_show_commands_reactors_views_sagas_and_leases_without_ids() {
    let nats = TestServer::start().await;
    let eddy = engine(&example("bank", &nats.url(), nats.dir.path())).await;
    let c = nats.client().await;
    transfer_with_trace(&c, "t-metered").await;
    let rejected = send(&c, "account.withdraw", json!({"id": "acct-dst", "amount": 1_000_000})).await;
    assert_eq!(rejected.code(), "rejected");
    assert_eq!(send(&c, "nosuch.thing", json!({"id": "x"})).await.code(), "not_found");
    let seq = last_seq(&c).await;
    reactor_at(&c, "transfer", seq).await;

    let url = format!("http://{}/metrics", eddy.http_addr().unwrap());
    let page = reqwest::get(&url).await.unwrap().text().await.unwrap();
    let has = |prefix: &str| !series(&page, prefix).is_empty();
    assert!(series(&page, r#"eddy_commands_total{aggregate="account",command="open",outcome="ok"}"#)[0] >= 2.0);
    assert!(has(r#"eddy_commands_total{aggregate="account",command="withdraw",outcome="rejected"}"#), "{page}");
    assert!(has(r#"eddy_commands_total{aggregate="_unknown",command="_unknown",outcome="not_found"}"#), "{page}");
    assert!(has(r#"eddy_command_duration_seconds_bucket{aggregate="account",command="deposit",le="0.005"}"#));
    assert!(has(r#"eddy_reactor_actions_total{reactor="transfer",kind="command",outcome="ok"}"#), "{page}");
    assert_eq!(series(&page, r#"eddy_reactor_lag_events{reactor="transfer"}"#), [0.0]);
    assert_eq!(series(&page, r#"eddy_reactor_parked{reactor="transfer"}"#), [0.0]);
    assert_eq!(series(&page, r#"eddy_lease_held{reactor="transfer"}"#), [1.0]);
    assert!(has(r#"eddy_view_lag_events{view="balances"}"#), "{page}");
    let documents = eventually(10, || async {
        let page = reqwest::get(&url).await.unwrap().text().await.unwrap();
        series(&page, r#"eddy_view_documents{view="balances"}"#) == [2.0]
    });
    assert!(documents.await, "balances holds the two accounts");
    assert_eq!(series(&page, r#"eddy_saga_instances{saga="transfer",state="completed"}"#), [1.0]);
    assert_eq!(series(&page, r#"eddy_saga_timers_pending{saga="transfer"}"#), [0.0]);
    assert!(has(r#"eddy_saga_transition_duration_seconds_count{saga="transfer"}"#), "{page}");
    assert_eq!(series(&page, "eddy_nats_reconnects_total"), [0.0]);
    assert_eq!(series(&page, "eddy_nats_connected"), [1.0]);
    for id in ["acct-src", "acct-dst", "t-metered", "nosuch"] {
        assert!(!page.contains(id), "no id in labels: {id}");
    }
    stop(eddy).await;
}

/// An OTLP/HTTP receiver: keeps every body posted to `/v1/traces`.
async fn otlp_receiver() -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let keep = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().push(body.to_vec());
                ([("content-type", "application/x-protobuf")], Vec::<u8>::new())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), received)
}

#[tokio::test]
async fn spans_reach_an_otlp_receiver_and_json_logs_hold_no_secret_at_any_level() {
    let (endpoint, received) = otlp_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    copy_example("bank", &dir.path().join("config"));
    let port = free_port();
    let password = "s3cret-Pa55word-xyzzy";
    let log = dir.path().join("eddy.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["run", "--config"])
        .arg(dir.path().join("config"))
        .env("EDDY_NATS__PORT", port.to_string())
        .env("EDDY_NATS__USER", "eddy")
        .env("EDDY_NATS__PASSWORD", password)
        .env("EDDY_ENGINE__DATA_DIR", dir.path().join("data"))
        .env("EDDY_HTTP__LISTEN", "127.0.0.1:0")
        .env("EDDY_TELEMETRY__OTLP_ENDPOINT", &endpoint)
        .env("EDDY_LOG__FORMAT", "json")
        .env("RUST_LOG", "trace")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("eddy starts");
    let _kill = KillOnDrop(child.id());
    let url = format!("nats://127.0.0.1:{port}");
    let connect = || async_nats::ConnectOptions::with_user_and_password("eddy".into(), password.into()).connect(&url);
    let connected = eventually(30, || async { connect().await.is_ok() }).await;
    assert!(connected, "{}", std::fs::read_to_string(&log).unwrap_or_default());
    let c = connect().await.unwrap();
    let serving = eventually(30, || async { c.request("eddy.admin.views", "".into()).await.is_ok() });
    assert!(serving.await, "eddy serves");
    let opened = send_raw(&c, "account.open", r#"{"id":"otlp-1","owner":"o"}"#, &[("traceparent", PARENT)]).await;
    assert!(opened.ok(), "{}", opened.body);

    let trace_id: Vec<u8> = (0..16).map(|i| u8::from_str_radix(&TRACE_ID[2 * i..2 * i + 2], 16).unwrap()).collect();
    let exported = eventually(30, || async {
        received.lock().unwrap().iter().any(|body| body.windows(16).any(|w| w == trace_id.as_slice()))
    });
    assert!(exported.await, "a span of the request's trace is exported");
    let bodies = received.lock().unwrap().concat();
    assert!(bodies.windows(4).any(|w| w == b"eddy"), "the service name is exported");

    // SIGTERM: graceful, and the exporter flushes on the way out.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.is_empty());
    for line in text.lines() {
        let parsed: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("a JSON line ({e}): {line}"));
        assert!(parsed["level"].is_string() && parsed["fields"].is_object(), "{line}");
    }
    assert!(!text.contains('\u{1b}'), "no colour codes in a file");
    assert!(!text.contains(password), "the password appears nowhere in a trace-level log");
}
