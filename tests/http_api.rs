//! The HTTP API against a real engine: the README's curl walkthrough run line by line, commands with their
//! headers and statuses, views, aggregates, the live event tail, every refusal, tokens and scopes, and the
//! OpenAPI document checked by a standard validator.

mod common;

use std::time::Duration;

use common::*;
use eddy_engine::config::HttpToken;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn addr(eddy: &eddy::Running) -> String {
    eddy.http_addr().expect("HTTP is on in tests").to_string()
}

/// The `sh` lines under `<!-- walkthrough -->` in the README.
fn walkthrough() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme.find("<!-- walkthrough -->").expect("the README has the walkthrough");
    let block = &readme[start..];
    let body = &block[block.find("```sh\n").unwrap() + 6..];
    body[..body.find("```").unwrap()].lines().map(str::to_string).collect()
}

#[tokio::test]
async fn the_readme_walkthrough_runs_as_written() {
    let nats = TestServer::start().await;
    let eddy = engine(&example("bank", &nats.url(), nats.dir.path())).await;
    let addr = addr(&eddy);
    let mut out = Vec::new();
    for line in walkthrough() {
        assert!(line.starts_with("curl -s "), "{line}");
        let line = line.replace("localhost:3339", &addr);
        let run = tokio::process::Command::new("sh").args(["-c", &line]).output().await.unwrap();
        assert!(run.status.success(), "{line}: {run:?}");
        let reply: Value = serde_json::from_slice(&run.stdout).unwrap_or_else(|e| panic!("{line}: {e}: {run:?}"));
        assert_eq!(reply["ok"], true, "{line}: {reply}");
        out.push(reply);
    }
    assert_eq!(out.len(), 6);
    assert_eq!((out[2]["state"]["balance"].as_i64(), out[2]["version"].as_u64()), (Some(500), Some(2)));
    assert_eq!(out[3]["seq"], 3, "the README's min_seq is the withdrawal's seq");
    assert_eq!(out[4]["state"]["balance"], 350);
    assert_eq!(out[5]["doc"]["balance"], 350);
    stop(eddy).await;
}

/// A request by hand: (status, JSON body).
async fn call(method: reqwest::Method, url: &str, body: Option<&str>, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("{url}: not JSON: {text}")))
}

const JSON: (&str, &str) = ("content-type", "application/json");

/// Request headers of a case.
type Headers = Vec<(&'static str, &'static str)>;

#[tokio::test]
async fn commands_views_aggregates_and_refusals() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let eddy = engine(&example("bank", &nats.url(), nats.dir.path())).await;
    let base = format!("http://{}", addr(&eddy));
    let cmd = |c: &str| format!("{base}/v1/commands/account/{c}");
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;

    let (status, open) = call(post.clone(), &cmd("open"), Some(r#"{"id":"a1","owner":"ann"}"#), &[JSON]).await;
    assert_eq!((status, &open["version"]), (200, &json!(1)), "{open}");
    let deposit = r#"{"id":"a1","amount":70}"#;
    let key = ("Idempotency-Key", "dep-1");
    let first = call(post.clone(), &cmd("deposit"), Some(deposit), &[JSON, key]).await;
    let again = call(post.clone(), &cmd("deposit"), Some(deposit), &[JSON, key]).await;
    assert_eq!(first, again, "a repeated Idempotency-Key gets the first reply");

    // Each contract code with its status.
    let cases: Vec<(&str, &str, Headers, u16, &str)> = vec![
        ("deposit", r#"{"id":"a1","amount":-5}"#, vec![JSON], 422, "rejected"),
        ("deposit", r#"{"id":"a1","amount":"5"}"#, vec![JSON], 400, "invalid"),
        ("deposit", r#"{"id":"a1","amount":5"#, vec![JSON], 400, "invalid"),
        ("deposit", r#"{"id":"a1","amount":5}"#, vec![JSON, ("If-Match", "\"1\"")], 409, "conflict"),
        ("deposit", r#"{"id":"a1","amount":5}"#, vec![JSON, ("If-Match", "soon")], 400, "invalid"),
        ("explode", r#"{"id":"a1"}"#, vec![JSON], 404, "not_found"),
        ("deposit", r#"{"id":"a1","amount":5}"#, vec![("content-type", "text/plain")], 415, "unsupported_media_type"),
        ("deposit", r#"{"id":"a1","amount":5}"#, vec![], 415, "unsupported_media_type"),
    ];
    for (command, body, headers, status, code) in cases {
        let (got, reply) = call(post.clone(), &cmd(command), Some(body), &headers).await;
        assert_eq!(
            (got, reply["error"]["code"].as_str()),
            (status, Some(code)),
            "{command} {body} {headers:?}: {reply}"
        );
    }
    let (status, reply) = call(post.clone(), &format!("{}?wait=0", cmd("deposit")), Some(deposit), &[JSON]).await;
    assert_eq!((status, reply["error"]["code"].as_str()), (400, Some("invalid")), "{reply}");
    let huge = format!(r#"{{"id":"a1","amount":5,"pad":"{}"}}"#, "x".repeat(1_100_000));
    let (status, reply) = call(post.clone(), &cmd("deposit"), Some(&huge), &[JSON]).await;
    assert_eq!((status, reply["error"]["code"].as_str()), (413, Some("too_large")), "{reply}");
    let (status, reply) = call(get.clone(), &cmd("deposit"), None, &[]).await;
    assert_eq!((status, reply["error"]["code"].as_str()), (405, Some("method_not_allowed")), "{reply}");
    for path in ["/v1/nothing", "/v1", "/v1/commands/account"] {
        let (status, reply) = call(get.clone(), &format!("{base}{path}"), None, &[]).await;
        assert_eq!((status, reply["error"]["code"].as_str()), (404, Some("not_found")), "{path}: {reply}");
    }

    // Views (read your writes) and aggregates.
    let seq = first.1["seq"].as_u64().unwrap();
    let (status, doc) = call(get.clone(), &format!("{base}/v1/views/balances/a1?min_seq={seq}"), None, &[]).await;
    assert_eq!((status, &doc["doc"]["balance"]), (200, &json!(70)), "{doc}");
    let (_, page) =
        call(get.clone(), &format!("{base}/v1/views/balances?where=doc.balance%20%3E%2010&min_seq={seq}"), None, &[])
            .await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1), "{page}");
    for (path, status, code) in [
        ("/v1/views/nosuch/a1", 404, "not_found"),
        ("/v1/views/balances?where=doc.", 400, "invalid"),
        ("/v1/views/balances?limit=many", 400, "invalid"),
        ("/v1/views/a.b/c", 404, "not_found"),
        ("/v1/aggregates/account/nobody", 404, "not_found"),
        ("/v1/aggregates/nosuch/a1", 404, "not_found"),
    ] {
        let (got, reply) = call(get.clone(), &format!("{base}{path}"), None, &[]).await;
        assert_eq!((got, reply["error"]["code"].as_str()), (status, Some(code)), "{path}: {reply}");
    }
    let (_, state) = call(get.clone(), &format!("{base}/v1/aggregates/account/a1?at_version=1"), None, &[]).await;
    assert_eq!((state["version"].as_u64(), &state["state"]["balance"]), (Some(1), &json!(0)), "{state}");
    let (_, history) = call(get.clone(), &format!("{base}/v1/aggregates/account/a1/events?limit=1"), None, &[]).await;
    assert_eq!(
        (history["events"][0]["type"].as_str(), history["next"].as_u64()),
        (Some("AccountOpened"), Some(1)),
        "{history}"
    );
    // A W3C traceparent joins the command to the caller's trace: its event carries the same trace id.
    let trace = ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    let (status, _) = call(post.clone(), &cmd("deposit"), Some(r#"{"id":"a1","amount":1}"#), &[JSON, trace]).await;
    assert_eq!(status, 200);
    let stored = events_on(&c, "events.account.a1").await;
    let last = stored.last().expect("the deposit is stored");
    assert!(last.traceparent.contains("4bf92f3577b34da6a3ce929d0e0e4736"), "{}", last.traceparent);
    // Start and wait over HTTP: the transfer saga's final state comes back with the command's reply.
    reactors_running(&c, &["transfer"]).await;
    call(post.clone(), &cmd("open"), Some(r#"{"id":"a2","owner":"bob"}"#), &[JSON]).await;
    let transfer = format!("{base}/v1/commands/transfer/request?wait=20");
    let body = r#"{"id":"t1","from":"a1","to":"a2","amount":10}"#;
    let (status, waited) = call(post.clone(), &transfer, Some(body), &[JSON]).await;
    assert_eq!((status, waited["sagas"][0]["state"].as_str()), (200, Some("completed")), "{waited}");
    stop(eddy).await;
}

#[tokio::test]
async fn the_event_tail_streams_new_events_as_server_sent_events() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let eddy = engine(&example("bank", &nats.url(), nats.dir.path())).await;
    ok(&c, "account.open", json!({"id": "a1", "owner": "ann"})).await;
    let mut sock = tokio::net::TcpStream::connect(addr(&eddy)).await.unwrap();
    let request = "GET /v1/events?subjects=events.account.%3E HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n";
    sock.write_all(request.as_bytes()).await.unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    // Commands go on until the tail has shown one: it starts at the stream's end, whenever it is subscribed.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut shown = false;
    while !shown && std::time::Instant::now() < deadline {
        ok(&c, "account.deposit", json!({"id": "a1", "amount": 5})).await;
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), sock.read(&mut buf)).await {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        shown = seen.contains("event: MoneyDeposited");
    }
    assert!(shown, "{seen}");
    assert!(seen.starts_with("HTTP/1.1 200") && seen.contains("text/event-stream"), "{seen}");
    assert!(!seen.contains("AccountOpened"), "a live tail starts after what was there: {seen}");
    stop(eddy).await;
}

#[tokio::test]
async fn tokens_and_scopes_guard_the_api() {
    let nats = TestServer::start().await;
    let mut settings = example("bank", &nats.url(), nats.dir.path());
    let token = |t: &str, scopes: &[&str]| HttpToken {
        token: t.into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
    };
    settings.engine.http.tokens.insert("svc".into(), token("svc-token-0123456789abcdef", &["commands", "queries"]));
    settings.engine.http.tokens.insert("reader".into(), token("reader-token-0123456789abc", &["queries"]));
    let eddy = engine(&settings).await;
    let base = format!("http://{}", addr(&eddy));
    let open = format!("{base}/v1/commands/account/open");
    let body = Some(r#"{"id":"a1","owner":"ann"}"#);
    let svc = ("authorization", "Bearer svc-token-0123456789abcdef");
    let reader = ("authorization", "Bearer reader-token-0123456789abc");
    let post = reqwest::Method::POST;
    let cases = [
        (vec![JSON], 401, Some("unauthorized")),
        (vec![JSON, ("authorization", "Bearer nope-nope-nope-nope-nope")], 401, Some("unauthorized")),
        (vec![JSON, reader], 403, Some("forbidden")),
        (vec![JSON, svc], 200, None),
    ];
    for (headers, status, code) in cases {
        let (got, reply) = call(post.clone(), &open, body, &headers).await;
        assert_eq!((got, reply["error"]["code"].as_str()), (status, code), "{headers:?}: {reply}");
    }
    let (status, _) = call(reqwest::Method::GET, &format!("{base}/v1/aggregates/account/a1"), None, &[reader]).await;
    assert_eq!(status, 200);
    stop(eddy).await;
}

#[tokio::test]
async fn the_openapi_document_is_generated_from_the_config_and_valid() {
    let nats = TestServer::start().await;
    let eddy = engine(&example("bank", &nats.url(), nats.dir.path())).await;
    let (status, doc) = call(reqwest::Method::GET, &format!("http://{}/openapi.json", addr(&eddy)), None, &[]).await;
    assert_eq!(status, 200);
    let deposit = &doc["paths"]["/v1/commands/account/deposit"]["post"];
    let schema = &deposit["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(schema["properties"]["amount"]["type"], "integer");
    assert_eq!(schema["required"], json!(["id", "amount"]));
    assert_eq!(schema["additionalProperties"], false);
    assert!(deposit["responses"]["422"].is_object() && deposit["responses"]["409"].is_object());
    assert!(doc["paths"]["/v1/views/balances/{key}"]["get"].is_object());
    assert!(doc["paths"]["/v1/commands/transfer/request"]["post"].is_object());

    let file = tempfile::NamedTempFile::with_suffix(".json").unwrap();
    std::fs::write(file.path(), serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let validator = std::env::var_os("EDDY_OPENAPI_VALIDATOR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root().join(".tools/venv/bin/openapi-spec-validator"));
    assert!(validator.exists(), "{} is missing: run scripts/install-nats.sh", validator.display());
    let out = tokio::process::Command::new(&validator).arg(file.path()).output().await.unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    stop(eddy).await;
}
