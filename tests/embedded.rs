//! The embedded nats-server requires `[nats]` credentials and keeps its store private; a busy port fails at
//! once; a cluster URL list starts while any node is up; credentials reach the client verbs.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use async_nats::ConnectErrorKind;
use common::*;
use eddy_engine::nats::Error as NatsError;
use eddy_engine::runtime::Error as EngineError;
use serde_json::json;

/// The bank example with the embedded server on a free port.
fn embedded_bank(data: &Path) -> eddy::Settings {
    let mut settings = example("bank", "nats://unused", data);
    settings.engine.nats.url = None;
    settings.engine.nats.port = free_port();
    settings
}

/// `eddy send account.open` with `args`, no config file, and `env`, while the engine runs in this process.
async fn eddy_send(id: &str, args: &[&str], env: &[(&str, &str)], dir: &Path) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["send", "account.open", &json!({"id": id, "owner": "x"}).to_string()])
        .args(args)
        .arg("--config")
        .arg(dir.join("none.toml"))
        .envs(env.iter().copied())
        .output()
        .await
        .expect("eddy send runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn the_embedded_server_requires_the_configured_user_and_password() {
    let data = tempfile::tempdir().unwrap();
    let mut settings = embedded_bank(data.path());
    settings.engine.nats.user = Some("eddy".into());
    settings.engine.nats.password = Some("s3cret-pw".into());
    let eddy = engine(&settings).await;
    let url = eddy.engine.url().to_string();

    let refused = async_nats::connect(&url).await.expect_err("a client without credentials is let in");
    assert_eq!(refused.kind(), ConnectErrorKind::AuthorizationViolation);

    // The store holds every event, the generated server config the password.
    let store = data.path().join("nats");
    assert_eq!(std::fs::metadata(&store).unwrap().permissions().mode() & 0o777, 0o700);
    let conf = std::fs::metadata(store.join("nats-server.conf")).unwrap();
    assert_eq!(conf.permissions().mode() & 0o777, 0o600);

    // Client verbs: flags, EDDY_NATS__* env without a config file, and credentials in the URL.
    let dir = data.path();
    let out = eddy_send("a1", &["--server", &url, "--user", "eddy", "--password", "s3cret-pw"], &[], dir).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let env = [("EDDY_NATS__USER", "eddy"), ("EDDY_NATS__PASSWORD", "s3cret-pw")];
    let out = eddy_send("a2", &["--server", &url], &env, dir).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let with_creds = url.replace("nats://", "nats://eddy:s3cret-pw@");
    let out = eddy_send("a3", &["--server", &with_creds], &[], dir).await;
    assert!(out.status.success(), "{}", text(&out.stderr));

    // A wrong password in a URL is refused, and the error does not print it.
    let wrong = url.replace("nats://", "nats://eddy:wr0ng-pw@");
    let out = eddy_send("a4", &["--server", &wrong], &[], dir).await;
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("eddy:***@") && !stderr.contains("wr0ng-pw"), "{stderr}");
    stop(eddy).await;
}

#[tokio::test]
async fn the_embedded_server_requires_the_configured_token() {
    let data = tempfile::tempdir().unwrap();
    let mut settings = embedded_bank(data.path());
    settings.engine.nats.token = Some("t0ken-42".into());
    let eddy = engine(&settings).await;
    let url = eddy.engine.url().to_string();

    let refused = async_nats::connect(&url).await.expect_err("a client without the token is let in");
    assert_eq!(refused.kind(), ConnectErrorKind::AuthorizationViolation);
    let out = eddy_send("t1", &["--server", &url, "--token", "t0ken-42"], &[], data.path()).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    stop(eddy).await;
}

#[tokio::test]
async fn a_busy_embedded_port_fails_at_once_instead_of_joining_the_other_server() {
    let other = TestServer::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut settings = embedded_bank(data.path());
    settings.engine.nats.port = other.server.port();

    let Err(error) = eddy::Running::start(settings).await else { panic!("eddy started on a port already in use") };
    match &error {
        eddy::app::Error::Engine(EngineError::Nats(NatsError::PortInUse { port })) => {
            assert_eq!(*port, other.server.port())
        }
        e => panic!("expected PortInUse, got {e}"),
    }
    assert!(error.to_string().contains(&format!("port {} on 127.0.0.1 is already in use", other.server.port())));
    // Nothing of eddy's is on the other server.
    let client = other.client().await;
    assert!(client.request("eddy.admin.views", "".into()).await.is_err());
}

#[tokio::test]
async fn a_cluster_list_starts_while_any_node_is_up_and_fails_when_none_is() {
    let nats = TestServer::start().await;
    let dead = format!("nats://127.0.0.1:{}", free_port());
    let data = tempfile::tempdir().unwrap();
    let eddy = engine(&example("bank", &format!("{dead},{}", nats.url()), data.path())).await;
    ok(&nats.client().await, "account.open", json!({"id": "c1", "owner": "cl"})).await;
    // The same list from the environment, as a deployment would set it for a client verb.
    let out = eddy_send("c2", &[], &[("EDDY_NATS__URL", &format!("{dead}, {}", nats.url()))], data.path()).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    stop(eddy).await;

    let also_dead = format!("nats://127.0.0.1:{}", free_port());
    let settings = example("bank", &format!("{dead},{also_dead}"), data.path());
    match eddy::Running::start(settings).await {
        Err(eddy::app::Error::Engine(EngineError::Nats(NatsError::Connect { url, .. }))) => {
            assert_eq!(url, format!("{dead},{also_dead}"))
        }
        Err(e) => panic!("expected a connection error, got {e}"),
        Ok(_) => panic!("eddy started with every node down"),
    }
}
