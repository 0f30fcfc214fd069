//! The least-privilege users of `deploy/`: an engine, a service and an operator against the shipped config,
//! and client verbs presenting an nkey.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event, ServerError};
use common::*;
use serde_json::json;
use tempfile::TempDir;

const ENGINE_PW: &str = "engine-pw-1";
const SERVICE_PW: &str = "service-pw-2";
const OPERATOR_PW: &str = "operator-pw-3";

/// A nats-server on a free port with a temp store, started from a config file; killed when dropped.
struct ConfServer {
    _child: tokio::process::Child,
    port: u16,
    _dir: TempDir,
}

impl ConfServer {
    /// `nats-server -c config`, with the port and store in the config replaced by a free port and a temp
    /// dir, ready once `ready` options connect. Files the config includes are copied beside it.
    async fn start(config: &Path, env: &[(&str, &str)], ready: impl Fn() -> ConnectOptions) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let text = std::fs::read_to_string(config).expect("the config reads");
        let mut lines = Vec::new();
        for line in text.lines() {
            match line.trim().split_once(':').map(|(k, _)| k) {
                Some("listen") => lines.push(format!("listen: 127.0.0.1:{port}")),
                Some("store_dir") => lines.push(format!("  store_dir: {:?}", dir.path().join("store"))),
                _ => lines.push(line.to_string()),
            }
            if let Some(included) = line.trim().strip_prefix("include ") {
                let from = config.parent().unwrap().join(included.trim());
                std::fs::copy(&from, dir.path().join(included.trim())).expect("the included file copies");
            }
        }
        let copy = dir.path().join("nats.conf");
        std::fs::write(&copy, lines.join("\n")).unwrap();
        let binary = eddy_engine::nats::locate_binary().expect("nats-server: run scripts/install-nats.sh");
        let mut child = tokio::process::Command::new(binary)
            .arg("-c")
            .arg(&copy)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("nats-server runs");
        let url = format!("nats://127.0.0.1:{port}");
        let connected = eventually(15, || {
            let options = ready();
            let url = url.clone();
            async move { options.connect(url).await.is_ok() }
        })
        .await;
        assert!(connected, "nats-server -c {} accepts a connection: {:?}", config.display(), child.try_wait());
        Self { _child: child, port, _dir: dir }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

/// A client as `user`, collecting the errors the server sends it (a permissions violation is one).
async fn client_as(url: &str, user: &str, password: &str) -> (Client, Arc<Mutex<Vec<String>>>) {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let seen = errors.clone();
    let client = ConnectOptions::with_user_and_password(user.into(), password.into())
        .request_timeout(Some(Duration::from_secs(1)))
        .event_callback(move |event| {
            let seen = seen.clone();
            async move {
                if let Event::ServerError(ServerError::Other(e)) = event {
                    seen.lock().unwrap().push(e);
                }
            }
        })
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("{user} connects: {e}"));
    (client, errors)
}

/// Waits until the server has told the client that publishing to `subject` is not allowed.
async fn violation(errors: &Arc<Mutex<Vec<String>>>, subject: &str) -> bool {
    eventually(10, || async {
        errors.lock().unwrap().iter().any(|e| e.to_lowercase().contains("permissions violation") && e.contains(subject))
    })
    .await
}

#[tokio::test]
async fn each_role_of_the_deploy_config_can_do_its_work_and_no_more() {
    let env = [
        ("EDDY_ENGINE_PASSWORD", ENGINE_PW),
        ("EDDY_SERVICE_PASSWORD", SERVICE_PW),
        ("EDDY_OPERATOR_PASSWORD", OPERATOR_PW),
    ];
    let config = root().join("deploy/nats-secure.conf");
    let nats =
        ConfServer::start(&config, &env, || ConnectOptions::with_user_and_password("engine".into(), ENGINE_PW.into()))
            .await;
    // The engine's credentials ride in its URL: they must be used, and not be shown.
    let engine_url = format!("nats://engine:{ENGINE_PW}@127.0.0.1:{}", nats.port);
    let data = tempfile::tempdir().unwrap();
    let eddy = engine(&example("bank", &engine_url, data.path())).await;
    assert!(!eddy.engine.url().contains(ENGINE_PW), "{}", eddy.engine.url());
    let as_engine = eddy.engine.client().clone();

    // A service sends a command and gets its reply.
    let (service, service_errors) = client_as(&nats.url(), "service", SERVICE_PW).await;
    ok(&service, "account.open", json!({"id": "a1", "owner": "ann"})).await;
    let before = last_seq(&as_engine).await;

    // It cannot write an event of its own making into the stream.
    let forged = json!({"type": "MoneyDeposited", "data": {"amount": 1_000_000}});
    service.publish("events.account.a1", forged.to_string().into()).await.unwrap();
    service.flush().await.unwrap();
    assert!(violation(&service_errors, "events.account.a1").await, "{:?}", service_errors.lock().unwrap());
    let events = events_on(&as_engine, "events.account.a1").await;
    assert_eq!(events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(), ["AccountOpened"]);

    // Nor use the JetStream API: deleting the stream is refused, and the stream is whole.
    let js = async_nats::jetstream::new(service.clone());
    assert!(js.delete_stream("EVENTS").await.is_err(), "a service deleted the stream");
    assert!(violation(&service_errors, "$JS.API.STREAM.DELETE.EVENTS").await);
    assert!(js.query_account().await.is_err(), "a service reached the JetStream API");

    // An operator reads the admin endpoints and the stream, and cannot delete it either.
    let (operator, operator_errors) = client_as(&nats.url(), "operator", OPERATOR_PW).await;
    let views = operator.request("eddy.admin.views", "".into()).await.expect("eddy.admin.views answers");
    let views: serde_json::Value = serde_json::from_slice(&views.payload).unwrap();
    assert!(views["views"].as_array().unwrap().iter().any(|v| v["name"] == "balances"), "{views}");
    assert_eq!(events_on(&operator, "events.account.a1").await.len(), 1, "an operator reads an aggregate's history");
    let js = async_nats::jetstream::new(operator.clone());
    assert!(js.delete_stream("EVENTS").await.is_err(), "an operator deleted the stream");
    assert!(violation(&operator_errors, "$JS.API.STREAM.DELETE.EVENTS").await);

    // `eddy record` as the operator: ordered consumers on the stream are within its rights.
    let record = tokio::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["record", "--server", &nats.url(), "--user", "operator", "--password", OPERATOR_PW, "--config"])
        .arg(data.path().join("none.toml"))
        .output()
        .await
        .expect("eddy record runs");
    assert!(record.status.success(), "{}", String::from_utf8_lossy(&record.stderr));
    assert_eq!(String::from_utf8_lossy(&record.stdout).lines().count(), before as usize);

    assert_eq!(last_seq(&as_engine).await, before, "nothing was written or removed");
    stop(eddy).await;
}

#[tokio::test]
async fn client_verbs_present_an_nkey() {
    let user = nkeys::KeyPair::new_user();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nkey.conf");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:4222\njetstream {{\n  store_dir: x\n}}\nauthorization {{ users: [\n  {{ user: engine, password: {ENGINE_PW} }}\n  \
             {{ nkey: {}, permissions: {{ publish: [\"eddy.cmd.>\"], subscribe: [\"_INBOX.>\"] }} }}\n] }}\n",
            user.public_key()
        ),
    )
    .unwrap();
    let seed = dir.path().join("user.nk");
    std::fs::write(&seed, user.seed().unwrap()).unwrap();
    let nats =
        ConfServer::start(&config, &[], || ConnectOptions::with_user_and_password("engine".into(), ENGINE_PW.into()))
            .await;
    let mut settings = example("bank", &nats.url(), &dir.path().join("data"));
    settings.engine.nats.user = Some("engine".into());
    settings.engine.nats.password = Some(ENGINE_PW.into());
    let eddy = engine(&settings).await;

    // Run while the engine serves in this process: a blocking wait would stall it.
    let send = |extra: &[&str]| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
            .args(["send", "account.open", r#"{"id":"n1","owner":"nk"}"#, "--server", &nats.url()])
            .args(extra)
            .arg("--config")
            .arg(dir.path().join("none.toml"))
            .output()
    };
    let out = send(&["--nkey", seed.to_str().unwrap()]).await.expect("eddy send runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"ok\": true"));
    let refused = send(&[]).await.expect("eddy send runs");
    assert!(!refused.status.success(), "a client without the nkey was let in");
    stop(eddy).await;
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files in `dir`.
fn certificates(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    for (name, san, usage) in [
        ("server", "127.0.0.1", ExtendedKeyUsagePurpose::ServerAuth),
        ("client", "client", ExtendedKeyUsagePurpose::ClientAuth),
    ] {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![san.to_string()]).unwrap();
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
}

#[tokio::test]
async fn engine_and_client_verbs_use_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    certificates(d);
    let config = d.join("tls.conf");
    let file = |name: &str| format!("{:?}", d.join(name));
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:4222\njetstream {{\n  store_dir: x\n}}\ntls {{\n  cert_file: {}\n  key_file: {}\n  \
             ca_file: {}\n  verify: true\n}}\n",
            file("server.pem"),
            file("server.key"),
            file("ca.pem")
        ),
    )
    .unwrap();
    let tls = eddy_engine::config::TlsConfig {
        ca_file: Some(d.join("ca.pem")),
        cert_file: Some(d.join("client.pem")),
        key_file: Some(d.join("client.key")),
    };
    let nats = ConfServer::start(&config, &[], || {
        ConnectOptions::new()
            .require_tls(true)
            .add_root_certificates(d.join("ca.pem"))
            .add_client_certificate(d.join("client.pem"), d.join("client.key"))
    })
    .await;
    let mut settings = example("bank", &nats.url(), &d.join("data"));
    settings.engine.nats.tls = Some(tls);
    let eddy = engine(&settings).await;

    let send = |extra: Vec<String>| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
            .args(["send", "account.open", r#"{"id":"m1","owner":"tls"}"#, "--server", &nats.url()])
            .args(extra)
            .arg("--config")
            .arg(d.join("none.toml"))
            .output()
    };
    let ca = format!("--tls-ca={}", d.join("ca.pem").display());
    let cert = format!("--tls-cert={}", d.join("client.pem").display());
    let key = format!("--tls-key={}", d.join("client.key").display());
    let out = send(vec![ca.clone(), cert, key]).await.expect("eddy send runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let refused = send(vec![ca]).await.expect("eddy send runs");
    assert!(!refused.status.success(), "a client without a certificate was let in");
    stop(eddy).await;
}
