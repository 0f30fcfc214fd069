//! The HTTP listener: health and readiness, port 0, off with `listen = ""`, and the binary's
//! `EDDY_HTTP__LISTEN`.

mod common;

use common::*;
use serde_json::Value;

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    (response.status().as_u16(), response.text().await.expect("a body"))
}

#[tokio::test]
async fn readyz_holds_while_the_engine_serves_and_fails_when_nats_is_gone() {
    let nats = TestServer::start().await;
    let eddy = engine(&example("bank", &nats.url(), nats.dir.path())).await;
    let base = format!("http://{}", eddy.http_addr().expect("HTTP is on in tests"));

    assert_eq!(get(&format!("{base}/healthz")).await, (200, "ok\n".into()));
    let (status, body) = get(&format!("{base}/readyz")).await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body, serde_json::json!({"ready": true, "connected": true, "stream": true, "command_service": true}));

    drop(nats);
    let not_ready = eventually(10, || async {
        let (status, body) = get(&format!("{base}/readyz")).await;
        status == 503 && serde_json::from_str::<Value>(&body).unwrap()["connected"] == false
    })
    .await;
    assert!(not_ready, "readyz turns 503 once the server is gone");
    assert_eq!(get(&format!("{base}/healthz")).await.0, 200, "alive all the same");
    // With its server gone, only an immediate stop ends (a graceful one waits for the server to flush).
    let immediate = tokio_util::sync::CancellationToken::new();
    immediate.cancel();
    eddy.stop(immediate).await;
}

#[tokio::test]
async fn an_empty_listen_turns_http_off_and_a_taken_port_is_an_error() {
    let nats = TestServer::start().await;
    let mut settings = example("bank", &nats.url(), nats.dir.path());
    assert_eq!(
        eddy::load(&root().join("config/examples/bank")).unwrap().engine.http.listen,
        eddy_engine::config::DEFAULT_LISTEN
    );
    settings.engine.http.listen = String::new();
    let off = engine(&settings).await;
    assert_eq!(off.http_addr(), None);
    stop(off).await;

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    settings.engine.http.listen = taken.local_addr().unwrap().to_string();
    match eddy::Running::start(settings).await {
        Err(eddy::app::Error::Http(eddy::http::Error::Bind { listen, .. })) => {
            assert_eq!(listen, taken.local_addr().unwrap().to_string())
        }
        Err(e) => panic!("expected a bind error, got {e}"),
        Ok(_) => panic!("eddy started on a taken HTTP port"),
    }
}

#[tokio::test]
async fn the_binary_listens_where_eddy_http_listen_says() {
    let nats = TestServer::start().await;
    let config = tempfile::tempdir().unwrap();
    copy_example("bank", config.path());
    let port = free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["run", "--config"])
        .arg(config.path())
        .env("EDDY_NATS__URL", nats.url())
        .env("EDDY_ENGINE__DATA_DIR", nats.dir.path().join("eddy"))
        .env("EDDY_HTTP__LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("eddy starts");
    let _kill = KillOnDrop(child.id());
    let url = format!("http://127.0.0.1:{port}/readyz");
    let ready = eventually(30, || async { reqwest::get(&url).await.is_ok_and(|r| r.status() == 200) }).await;
    assert!(ready, "{url} answers 200");
    child.kill().expect("eddy is stopped");
    child.wait().expect("eddy exits");
}
