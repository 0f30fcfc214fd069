//! A 3-node JetStream cluster on loopback (random client and route ports, a store per node), for the
//! leader-loss fault: the node that leads the stream is killed and restarted on the same ports and store.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use eddy_engine::nats::locate_binary;

use crate::common::{eventually, free_port};

pub struct Node {
    pub name: String,
    pub port: u16,
    config: PathBuf,
    child: Option<Child>,
}

pub struct Nodes {
    pub nodes: Vec<Node>,
}

impl Nodes {
    /// Starts `n` routed nodes under `dir` and waits until JetStream answers on every one (a meta leader).
    pub async fn start(dir: &Path, n: usize) -> Self {
        let routes: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let route_list: Vec<String> = routes.iter().map(|p| format!("nats-route://127.0.0.1:{p}")).collect();
        let mut nodes = Vec::new();
        for (i, route) in routes.iter().enumerate() {
            let name = format!("n{i}");
            let port = free_port();
            let store = dir.join(&name);
            std::fs::create_dir_all(&store).unwrap();
            let text = format!(
                "server_name: {name}\nlisten: 127.0.0.1:{port}\njetstream {{ store_dir: \"{}\", sync_interval: always }}\n\
                 cluster {{ name: chaos, listen: 127.0.0.1:{route}, routes: [{}] }}\n",
                store.display(),
                route_list.join(", ")
            );
            let config = store.join("node.conf");
            std::fs::write(&config, text).unwrap();
            nodes.push(Node { name, port, config, child: None });
        }
        let mut nodes = Nodes { nodes };
        for i in 0..n {
            nodes.spawn(i);
        }
        for i in 0..n {
            nodes.wait_ready(i).await;
        }
        nodes
    }

    /// Every node's client URL, comma-separated (as `EDDY_NATS__URL` takes them).
    pub fn url(&self) -> String {
        self.nodes.iter().map(|n| format!("nats://127.0.0.1:{}", n.port)).collect::<Vec<_>>().join(",")
    }

    fn spawn(&mut self, i: usize) {
        let binary = locate_binary().expect("nats-server: run scripts/install-nats.sh");
        let node = &mut self.nodes[i];
        let log = std::fs::File::create(node.config.with_file_name("node.log")).unwrap();
        let child = Command::new(binary)
            .arg("-c")
            .arg(&node.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server runs");
        node.child = Some(child);
    }

    async fn wait_ready(&self, i: usize) {
        let url = format!("nats://127.0.0.1:{}", self.nodes[i].port);
        let ready = eventually(60, || async {
            let Ok(c) = async_nats::connect(&url).await else { return false };
            async_nats::jetstream::new(c).query_account().await.is_ok()
        })
        .await;
        assert!(ready, "node {i} of the cluster answers JetStream requests");
    }

    /// Which node leads `stream` (by the stream info's cluster leader).
    pub async fn leader(&self, stream: &str) -> Option<usize> {
        let c = super::workload::connect(&self.url()).await;
        let js = async_nats::jetstream::new(c);
        let info = js.get_stream(stream).await.ok()?.info().await.ok()?.clone();
        let leader = info.cluster?.leader?;
        self.nodes.iter().position(|n| n.name == leader)
    }

    /// Kills node `i` (SIGKILL), waits `down`, restarts it on the same ports and store.
    pub async fn bounce(&mut self, i: usize, down: Duration) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _killed = child.kill();
            let _waited = child.wait();
        }
        tokio::time::sleep(down).await;
        self.spawn(i);
        self.wait_ready(i).await;
    }

    pub fn kill_all(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _killed = child.kill();
                let _waited = child.wait();
            }
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        self.kill_all();
    }
}
