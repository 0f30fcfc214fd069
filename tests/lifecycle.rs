//! The engine's lifecycle as a user meets it: the embedded nats-server, an unreachable NATS, and the
//! `eddy` binary's run / send / history / shutdown.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use eddy_engine::runtime::Engine;
use serde_json::json;

#[tokio::test]
async fn without_a_url_eddy_starts_and_stops_its_own_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = eddy::load(&root().join("config/examples/bank")).unwrap();
    settings.engine.nats.url = None;
    settings.engine.nats.port = free_port();
    settings.engine.engine.data_dir = dir.path().to_path_buf();
    settings.engine.http.listen = "127.0.0.1:0".into();
    let engine = eddy::Running::start(settings.clone()).await.expect("starts with an embedded server");
    let url = format!("nats://127.0.0.1:{}", settings.engine.nats.port);
    assert_eq!(engine.engine.url(), url);
    let client = async_nats::connect(&url).await.unwrap();
    ok(&client, "account.open", json!({"id": "a1", "owner": "ann"})).await;
    assert!(dir.path().join("nats").is_dir(), "the store lives in data_dir/nats");
    stop(engine).await;
    assert!(async_nats::connect(&url).await.is_err(), "the embedded server stopped with eddy");
}

#[tokio::test]
async fn an_unreachable_nats_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("nats://127.0.0.1:{}", free_port());
    let config = example("bank", &url, dir.path());
    let err = Engine::start(&config.engine).await.err().expect("no server there");
    assert!(err.to_string().starts_with(&format!("cannot connect to NATS at {url}")), "{err}");
}

fn eddy() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eddy"));
    cmd.env("RUST_LOG", "warn");
    // HTTP on a free port: tests (and other checkouts) run engines side by side.
    cmd.env("EDDY_HTTP__LISTEN", "127.0.0.1:0");
    cmd
}

#[tokio::test]
async fn the_binary_runs_serves_and_shuts_down_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let bank = root().join("config/examples/bank");
    let log = dir.path().join("eddy.log");
    let mut child = eddy()
        .args(["run", "--config"])
        .arg(&bank)
        .env("EDDY_NATS__PORT", port.to_string())
        .env("EDDY_ENGINE__DATA_DIR", dir.path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let _guard = KillOnDrop(child.id());

    // Ready when a command gets a reply.
    let mut ready = false;
    for _ in 0..300 {
        if let Ok(c) = async_nats::connect(&url).await {
            let req = c.request("eddy.cmd.account.open", json!({"id": "a1", "owner": "ann"}).to_string().into());
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), req).await {
                ready = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "eddy run never answered");

    let send = |args: &[&str]| {
        eddy().args(["send"]).args(args).args(["--server", &url, "--config"]).arg(&bank).output().unwrap()
    };
    let out = send(&["account.deposit", r#"{"id":"a1","amount":5}"#]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"version\": 2"));
    let out = send(&["account.withdraw", r#"{"id":"a1","amount":50}"#]);
    assert!(!out.status.success(), "a rejected command exits non-zero");
    assert!(String::from_utf8_lossy(&out.stdout).contains("insufficient funds"));
    send(&["account.deposit", r#"{"id":"a1","amount":7}"#]);

    let history = |extra: &[&str]| {
        let out = eddy()
            .args(["history", "account", "a1", "--server", &url, "--config"])
            .arg(&bank)
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let all = history(&[]);
    assert_eq!(all.matches("MoneyDeposited").count(), 2, "{all}");
    assert!(all.contains("\"balance\":12"), "{all}");
    let then = history(&["--at-version", "2"]);
    assert!(then.contains("\"balance\": 5"), "{then}");

    // SAFETY: signalling the child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = wait_timeout(&mut child, Duration::from_secs(20)).expect("eddy stops after SIGINT");
    assert!(status.success(), "{status}");
    assert!(async_nats::connect(&url).await.is_err(), "its nats-server stopped too");
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("eddy is serving commands"), "{log}");
    assert!(!log.contains('\x1b'), "no colour codes in a log that is not a terminal: {log}");
}

#[test]
fn send_without_an_engine_says_so() {
    let url = format!("nats://127.0.0.1:{}", free_port());
    let out = eddy().args(["send", "account.open", "{}", "--server", &url]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot connect to NATS"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: signalling the child we spawned; harmless if it has exited.
        unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
    }
}

fn wait_timeout(child: &mut std::process::Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Seen: with its NATS server gone, eddy ignored two SIGTERMs for 10 s.
#[tokio::test]
async fn a_second_sigterm_stops_eddy_even_with_its_server_gone() {
    let nats = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = eddy()
        .args(["run", "--config"])
        .arg(root().join("config/examples/bank"))
        .env("EDDY_NATS__URL", nats.url())
        .env("EDDY_ENGINE__DATA_DIR", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = KillOnDrop(child.id());
    let c = nats.client().await;
    let served = common::eventually(30, || async {
        let req = c.request("eddy.cmd.account.open", json!({"id": "a1", "owner": "ann"}).to_string().into());
        matches!(tokio::time::timeout(Duration::from_secs(2), req).await, Ok(Ok(_)))
    })
    .await;
    assert!(served, "eddy serves");
    drop(nats); // the server is killed
    for _ in 0..2 {
        // SAFETY: signalling the child we spawned.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Generous for a loaded machine; before, it took 10 s and more.
    assert!(wait_timeout(&mut child, Duration::from_secs(5)).is_some(), "eddy stopped after the second SIGTERM");
}
