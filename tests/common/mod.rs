//! Test support: a real nats-server per test (random port, temp store, readiness by connecting, killed on
//! drop) and an in-process engine.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use async_nats::{Client, HeaderMap};
use eddy::{Running, Settings};
use eddy_engine::nats::{locate_binary, NatsServer};
use serde_json::Value;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

/// A nats-server with JetStream on a free loopback port and a temp store; killed when dropped.
pub struct TestServer {
    pub server: NatsServer,
    pub dir: TempDir,
}

impl TestServer {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let binary = locate_binary().expect("nats-server: run scripts/install-nats.sh");
        let store = dir.path().join("nats");
        // Another test may take the port between `free_port` and the server's bind: pick again.
        for _ in 0..8 {
            match NatsServer::start(&binary, free_port(), &store).await {
                Ok(server) => return Self { server, dir },
                Err(eddy_engine::nats::Error::PortInUse { .. }) => continue,
                Err(e) => panic!("nats-server starts: {e}"),
            }
        }
        panic!("nats-server starts: every port tried was taken")
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub async fn client(&self) -> Client {
        async_nats::connect(self.url()).await.expect("connect")
    }
}

/// A port nobody listens on right now, chosen at random below the kernel's ephemeral range (32768 and up on
/// Linux): a port the kernel hands out by `bind(0)` can be given again to any outgoing connection of a parallel
/// test before the server binds it, which CI saw as `PortInUse`.
pub fn free_port() -> u16 {
    loop {
        let port = 20_000 + (uuid::Uuid::new_v4().as_u128() % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Loads an example config (`bank`, `inventory`, `financing`) pointed at `url`, with its state in `data_dir`.
pub fn example(name: &str, url: &str, data_dir: &Path) -> Settings {
    config_at(&root().join("config/examples").join(name), url, data_dir)
}

/// Loads a config pointed at `url`, with its state in `data_dir`.
pub fn config_at(path: &Path, url: &str, data_dir: &Path) -> Settings {
    let mut settings = eddy::load(path).unwrap_or_else(|e| panic!("{} loads:\n{e}", path.display()));
    settings.engine.nats.url = Some(url.into());
    settings.engine.engine.data_dir = data_dir.to_path_buf();
    // A free port: tests (and other checkouts) run engines side by side.
    settings.engine.http.listen = "127.0.0.1:0".into();
    settings
}

/// Starts eddy in-process.
pub async fn engine(settings: &Settings) -> Running {
    Running::start(settings.clone()).await.expect("eddy starts")
}

/// Stops eddy gracefully.
pub async fn stop(running: Running) {
    running.stop(CancellationToken::new()).await;
}

/// A command request and its parsed reply.
pub struct Reply {
    pub body: Value,
    pub raw: bytes::Bytes,
    pub headers: Option<HeaderMap>,
}

impl Reply {
    pub fn ok(&self) -> bool {
        self.body["ok"] == true
    }

    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_string())
    }
}

/// Sends `eddy.cmd.<target>` with a raw body and headers.
pub async fn send_raw(client: &Client, target: &str, body: &str, headers: &[(&str, &str)]) -> Reply {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.insert(*k, *v);
    }
    let msg =
        client.request_with_headers(format!("eddy.cmd.{target}"), h, body.to_string().into()).await.expect("a reply");
    let body = serde_json::from_slice(&msg.payload).expect("the reply is JSON");
    Reply { body, raw: msg.payload, headers: msg.headers }
}

/// Sends `eddy.cmd.<target>` with a JSON body.
pub async fn send(client: &Client, target: &str, body: Value) -> Reply {
    send_raw(client, target, &body.to_string(), &[]).await
}

/// Sends and asserts success.
pub async fn ok(client: &Client, target: &str, body: Value) -> Reply {
    let reply = send(client, target, body.clone()).await;
    assert!(reply.ok(), "{target} {body} failed: {}", reply.body);
    reply
}

/// A request to `eddy.query.<view>.<op>`.
pub async fn query(client: &Client, view: &str, op: &str, body: Value) -> Value {
    let msg = client
        .request(format!("eddy.query.{view}.{op}"), body.to_string().into())
        .await
        .unwrap_or_else(|e| panic!("eddy.query.{view}.{op} {body}: {e}"));
    serde_json::from_slice(&msg.payload).expect("JSON reply")
}

/// The status of one view from `eddy.admin.views`.
pub async fn view_status(client: &Client, view: &str) -> Value {
    let Ok(msg) = client.request("eddy.admin.views", "".into()).await else { return Value::Null };
    let reply: Value = serde_json::from_slice(&msg.payload).expect("JSON reply");
    reply["views"].as_array().into_iter().flatten().find(|v| v["name"] == view).cloned().unwrap_or(Value::Null)
}

/// Appends bank events straight to the stream (see `eddy::seed::seed_bank`).
pub async fn seed_bank(client: &Client, accounts: usize, deposits: usize) -> Vec<i64> {
    eddy::seed::seed_bank(client, accounts, deposits).await.expect("seeding")
}

/// Polls `check` every 50ms until it holds or `secs` pass.
pub async fn eventually<F, Fut>(secs: u64, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

/// Kills a child process when a failing assertion unwinds past it.
pub struct KillOnDrop(pub u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: signalling a child this test spawned; harmless if it has exited.
        unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
    }
}

/// The status of one reactor from `eddy.admin.reactors` (null if there is none or no engine answers).
pub async fn reactor_status(client: &Client, name: &str) -> Value {
    let Ok(msg) = client.request("eddy.admin.reactors", "".into()).await else { return Value::Null };
    let reply: Value = serde_json::from_slice(&msg.payload).expect("JSON reply");
    reply["reactors"].as_array().into_iter().flatten().find(|v| v["name"] == name).cloned().unwrap_or(Value::Null)
}

/// Waits until `reactor` has folded every event up to `seq` and run what they caused.
pub async fn reactor_at(client: &Client, reactor: &str, seq: u64) {
    let reached = eventually(30, || async {
        let s = reactor_status(client, reactor).await;
        s["position"].as_u64().unwrap_or(0) >= seq && s["status"] == "running"
    })
    .await;
    assert!(reached, "{reactor} reaches seq {seq}: {}", reactor_status(client, reactor).await);
}

/// Every event on one subject.
pub async fn events_on(client: &Client, subject: &str) -> Vec<eddy_engine::envelope::StoredEvent> {
    let engine = eddy_engine::config::EngineConfig::default();
    let store = eddy_engine::store::EventStore::attach(client.clone(), &engine);
    store.load_subject(subject, 1).await.expect("load")
}

/// The stream's last sequence.
pub async fn last_seq(client: &Client) -> u64 {
    let js = async_nats::jetstream::new(client.clone());
    js.get_stream("EVENTS").await.expect("stream").info().await.expect("info").state.last_sequence
}

/// Appends one event straight to the stream, as a faulty or foreign writer would.
pub async fn append_raw(client: &Client, aggregate: &str, id: &str, event_type: &str, data: Value) -> u64 {
    let engine = eddy_engine::config::EngineConfig::default();
    let store = eddy_engine::store::EventStore::open(client.clone(), &engine).await.expect("store");
    let last = store.last_event(aggregate, id).await.expect("last");
    let (expected, version) = last.map_or((0, 0), |e| (e.seq, e.version));
    let event = eddy_engine::envelope::OutgoingEvent {
        event_type: event_type.to_string(),
        version: version + 1,
        time: chrono::Utc::now(),
        command_id: String::new(),
        command_digest: String::new(),
        correlation_id: String::new(),
        causation_id: String::new(),
        msg_id: uuid::Uuid::new_v4().to_string(),
        traceparent: String::new(),
        data,
    };
    match store.append(aggregate, id, expected, &[event]).await.expect("append") {
        eddy_engine::store::Appended::Stored { last_seq } => last_seq,
        other => panic!("append: {other:?}"),
    }
}

/// Runs the `eddy` binary on `config` against `url`, with its state in `data`.
pub fn spawn_eddy(config: &Path, url: &str, data: &Path) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["run", "--config"])
        .arg(config)
        .env("EDDY_NATS__URL", url)
        .env("EDDY_HTTP__LISTEN", "127.0.0.1:0")
        .env("EDDY_ENGINE__DATA_DIR", data)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("eddy starts")
}

/// Writes `eddy.toml` into a config folder: the NATS url, the data dir and HTTP on a free port.
pub fn write_engine_toml(config: &Path, url: &str, data: &Path) {
    let toml = format!(
        "[nats]\nurl = \"{url}\"\n[engine]\ndata_dir = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
        data.display()
    );
    std::fs::write(config.join("eddy.toml"), toml).expect("eddy.toml is written");
}

/// Copies an example's config folder.
pub fn copy_example(name: &str, to: &std::path::Path) {
    let from = root().join("config/examples").join(name);
    for entry in walk(&from) {
        let target = to.join(entry.strip_prefix(&from).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&entry, target).unwrap();
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Asserts that no `Nats-Msg-Id`, and no `Eddy-Command-Id` on one subject, is stored twice among the
/// `events.>` messages given as (seq, subject, headers): every command stores its events once, and each
/// saga transition or reactor effect is its own id.
pub fn assert_stored_once<'a>(messages: impl IntoIterator<Item = (u64, &'a str, &'a HeaderMap)>) {
    use std::collections::BTreeMap;
    let mut msg_ids: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut command_ids: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    let header = |h: &HeaderMap, name: &str| h.get(name).map(|v| v.as_str().to_string()).unwrap_or_default();
    for (seq, subject, h) in messages.into_iter().filter(|(_, subject, _)| subject.starts_with("events.")) {
        let msg_id = header(h, "Nats-Msg-Id");
        if !msg_id.is_empty() {
            msg_ids.entry(msg_id).or_default().push(seq);
        }
        let command_id = header(h, "Eddy-Command-Id");
        if !command_id.is_empty() {
            command_ids.entry((subject.to_string(), command_id)).or_default().push(seq);
        }
    }
    let twice: Vec<_> = msg_ids.iter().filter(|(_, seqs)| seqs.len() > 1).collect();
    assert!(twice.is_empty(), "Nats-Msg-Id stored more than once: {twice:?}");
    let twice: Vec<_> = command_ids.iter().filter(|(_, seqs)| seqs.len() > 1).collect();
    assert!(twice.is_empty(), "Eddy-Command-Id stored more than once: {twice:?}");
}

/// One instance with its history, from `eddy.admin.sagas.get` (null if there is none yet).
pub async fn saga_instance(c: &Client, saga: &str, id: &str) -> Value {
    let body = serde_json::json!({"saga": saga, "id": id}).to_string();
    let Ok(msg) = c.request("eddy.admin.sagas.get", body.into()).await else { return Value::Null };
    let reply: Value = serde_json::from_slice(&msg.payload).unwrap();
    reply["instance"].clone()
}

/// Waits for an instance to reach a final state and returns it. (With several engines, each reply comes
/// from whichever engine answers, so the one that showed it final is kept.)
pub async fn finished(c: &Client, saga: &str, id: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let inst = saga_instance(c, saga, id).await;
        if inst["final"] == true {
            return inst;
        }
        assert!(std::time::Instant::now() < deadline, "{saga} {id} reaches a final state: {inst:#}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The states an instance went through.
pub fn path(inst: &Value) -> Vec<String> {
    inst["history"].as_array().unwrap().iter().map(|s| s["to"].as_str().unwrap().to_string()).collect()
}

/// Waits until each of `reactors` runs (holds its lease, deployed): events before its deployment are history
/// it does not act on.
pub async fn reactors_running(client: &Client, reactors: &[&str]) {
    for name in reactors {
        let running = eventually(30, || async { reactor_status(client, name).await["status"] == "running" }).await;
        assert!(running, "{name} runs: {}", reactor_status(client, name).await);
    }
}

/// A rule whose update divides by zero until `product.Enabled` sets the divisor: a poison event, handled
/// by `on_error` (replace `ON_ERROR`).
pub const POISON_RULE: &str = r#"
# Appended around eddy by the test; declared, so that the rule's pattern names a known event type.
[aggregates.product.events.Enabled]
apply = "{}"

[reactors.ratio]
kind = "rule"
key = "'all'"
initial = { divisor = 0, share = 0 }
max_retries = 1
on_error = "ON_ERROR"

[reactors.ratio.update]
"product.Enabled" = "{'divisor': 1}"
"product.StockAdded" = "{'share': event.quantity / state.divisor}"

[[reactors.ratio.then]]
when = "state.share != prev.share"
publish = "ratio.changed"
data = "{'share': state.share}"
"#;

/// Sends a command with a fixed `Eddy-Command-Id` until an engine decides it, as a client whose request timed
/// out would: the first try may land on an engine that is frozen or was just killed, and `unavailable` (an
/// engine just woken refuses what it read across the freeze) asks for the same.
pub async fn send_until_answered(
    c: &Client,
    target: &str,
    body: serde_json::Value,
    command_id: &str,
) -> serde_json::Value {
    loop {
        let mut h = HeaderMap::new();
        h.insert("Eddy-Command-Id", command_id);
        let request = async_nats::Request::new()
            .headers(h)
            .payload(body.to_string().into())
            .timeout(Some(std::time::Duration::from_millis(800)));
        if let Ok(msg) = c.send_request(format!("eddy.cmd.{target}"), request).await {
            let reply: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
            if reply["error"]["code"] != "unavailable" {
                return reply;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
