//! The 3-node cluster of `deploy/cluster/` run for real: an engine given all three URLs and R3 streams keeps
//! accepting commands, and its views keep up, when the node leading the event stream dies.

mod common;

use std::process::Stdio;

use async_nats::ConnectOptions;
use common::*;
use serde_json::json;
use tempfile::TempDir;

const PASSWORDS: [(&str, &str); 3] = [
    ("EDDY_ENGINE_PASSWORD", "engine-pw"),
    ("EDDY_SERVICE_PASSWORD", "service-pw"),
    ("EDDY_OPERATOR_PASSWORD", "operator-pw"),
];

/// One node of the shipped cluster config, on free ports with a temp store; killed when dropped.
struct Node {
    name: String,
    _child: tokio::process::Child,
    port: u16,
}

/// Rewrites `deploy/cluster/nN.conf` for free ports: the client port, the route port, and the routes to
/// the other nodes.
fn node_config(n: usize, client: u16, routes: &[u16], dir: &TempDir) -> std::path::PathBuf {
    let cluster_dir = root().join("deploy/cluster");
    let text = std::fs::read_to_string(cluster_dir.join(format!("n{n}.conf"))).expect("the config reads");
    let mut in_cluster = false;
    let mut lines = Vec::new();
    for line in text.lines() {
        let key = line.trim().split_once(':').map(|(k, _)| k.trim());
        in_cluster |= line.trim().starts_with("cluster {");
        lines.push(match key {
            Some("listen") if in_cluster => format!("  listen: 127.0.0.1:{}", routes[n - 1]),
            Some("listen") => format!("listen: 127.0.0.1:{client}"),
            Some("store_dir") => format!("  store_dir: {:?}", dir.path().join(format!("n{n}"))),
            Some("routes") => {
                let all: Vec<String> = routes.iter().map(|p| format!("nats-route://127.0.0.1:{p}")).collect();
                format!("  routes: [{}]", all.join(", "))
            }
            _ => line.to_string(),
        });
    }
    // Laid out as in deploy/: the node configs include `../users.conf`.
    std::fs::copy(root().join("deploy/users.conf"), dir.path().join("users.conf")).expect("users.conf copies");
    std::fs::create_dir_all(dir.path().join("cluster")).unwrap();
    let path = dir.path().join(format!("cluster/n{n}.conf"));
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

async fn start_cluster(dir: &TempDir) -> Vec<Node> {
    let clients: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let binary = eddy_engine::nats::locate_binary().expect("nats-server: run scripts/install-nats.sh");
    let mut nodes = Vec::new();
    for n in 1..=3 {
        let config = node_config(n, clients[n - 1], &routes, dir);
        let child = tokio::process::Command::new(&binary)
            .arg("-c")
            .arg(&config)
            .envs(PASSWORDS)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("nats-server runs");
        nodes.push(Node { name: format!("n{n}"), _child: child, port: clients[n - 1] });
    }
    // Ready when JetStream answers through every node: the cluster has formed and elected a meta leader.
    for node in &nodes {
        let url = format!("nats://127.0.0.1:{}", node.port);
        let ready = eventually(30, || {
            let url = url.clone();
            async move {
                let Ok(c) = engine_options().connect(url).await else { return false };
                async_nats::jetstream::new(c).query_account().await.is_ok()
            }
        })
        .await;
        assert!(ready, "{} joins the cluster", node.name);
    }
    nodes
}

fn engine_options() -> ConnectOptions {
    ConnectOptions::with_user_and_password("engine".into(), "engine-pw".into())
}

#[tokio::test]
async fn commands_and_views_go_on_when_the_stream_leader_dies() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(&dir).await;
    let urls: Vec<String> = nodes.iter().map(|n| format!("nats://127.0.0.1:{}", n.port)).collect();
    let mut settings = example("bank", &urls.join(","), dir.path());
    settings.engine.nats.user = Some("engine".into());
    settings.engine.nats.password = Some("engine-pw".into());
    settings.engine.engine.replicas = 3;
    let eddy = engine(&settings).await;

    let service = ConnectOptions::with_user_and_password("service".into(), "service-pw".into())
        .connect(urls.clone())
        .await
        .unwrap();
    ok(&service, "account.open", json!({"id": "a1", "owner": "ann"})).await;
    ok(&service, "account.deposit", json!({"id": "a1", "amount": 10})).await;

    let js = async_nats::jetstream::new(engine_options().connect(urls.clone()).await.unwrap());
    let info = js.get_stream("EVENTS").await.unwrap().info().await.unwrap().clone();
    assert_eq!(info.config.num_replicas, 3, "the stream is R3");
    let leader = info.cluster.and_then(|c| c.leader).expect("the stream has a leader");
    let at = nodes.iter().position(|n| n.name == leader).expect("the leader is one of the nodes");
    drop(nodes.remove(at)); // killed

    // The service's own connection may have been to the dead node: it reconnects to another. A command
    // that fails while the stream elects a new leader is sent again with the same command id, as a client
    // would, so it is applied once whatever happened to the first attempt.
    let mut seq = 0;
    for amount in 1..=5 {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Eddy-Command-Id", format!("deposit-{amount}").as_str());
        let body = json!({"id": "a1", "amount": amount}).to_string();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        seq = loop {
            let reply = service.request_with_headers("eddy.cmd.account.deposit", headers.clone(), body.clone().into());
            let stored = match reply.await {
                Ok(m) => serde_json::from_slice::<serde_json::Value>(&m.payload).ok().filter(|r| r["ok"] == true),
                Err(_) => None,
            };
            if let Some(seq) = stored.and_then(|r| r["seq"].as_u64()) {
                break seq;
            }
            assert!(std::time::Instant::now() < deadline, "a deposit of {amount} is accepted after {leader} died");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
    }
    let balance = query(&service, "balances", "get", json!({"key": "a1", "min_seq": seq, "timeout_ms": 20000})).await;
    assert_eq!(balance["doc"]["balance"], 25, "the view kept up: {balance}");
    stop(eddy).await;
}
