//! The processes under test and the faults done to them: engines (children of the `eddy` binary) killed
//! and restarted, the reactors' lease holder frozen past the lease and the dedup window, and the
//! nats-server killed and restarted on the same port and store.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use eddy_engine::nats::{locate_binary, NatsServer};
use futures::StreamExt;
use tempfile::TempDir;

use super::nodes::Nodes;
use super::rng::Rng;
use super::workload::try_connect;
use crate::common::{copy_example, free_port};

/// The engines' dedup window: a freeze outlasts it, so a woken engine meets repeats it no longer remembers.
pub const WINDOW_SECS: u64 = 2;
/// Longer than the lease (6 s) plus a standby's retry and the window.
const FREEZE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
pub enum Fault {
    KillEngine,
    FreezeLeaseHolder,
    /// One server: killed and restarted.
    RestartNats,
    /// A 3-node cluster: the stream's leader node killed and restarted.
    LeaderLoss,
}

/// The NATS side: one server, or a 3-node cluster with the stream on 3 replicas.
enum Backend {
    Single { port: u16, server: Option<Box<NatsServer>> },
    Nodes(Nodes),
}

pub struct Cluster {
    dir: TempDir,
    backend: Backend,
    config: PathBuf,
    engines: Vec<Child>,
    /// Engines that exited on their own and were restarted.
    pub restarts: usize,
}

impl Cluster {
    /// A nats-server (or with `nodes`, a 3-node cluster and a stream of 3 replicas) and `n` engines on the
    /// bank example with a short dedup window, each ready.
    pub async fn start(n: usize, nodes: bool) -> Self {
        Self::start_with(n, nodes, |_| {}).await
    }

    /// [`Cluster::start`], with `edit` changing the config directory before the engines start.
    pub async fn start_with(n: usize, nodes: bool, edit: impl FnOnce(&Path)) -> Self {
        let mut dir = tempfile::tempdir().expect("temp dir");
        // Kept when a fault or the checker fails (the store and the engine logs); removed by a clean `stop`.
        dir.disable_cleanup(true);
        let config = dir.path().join("config");
        copy_example("bank", &config);
        let replicas = if nodes { 3 } else { 1 };
        let toml = format!("[engine]\ndedup_window_secs = {WINDOW_SECS}\nreplicas = {replicas}\n");
        std::fs::write(config.join("eddy.toml"), toml).unwrap();
        edit(&config);
        let backend = if nodes {
            Backend::Nodes(Nodes::start(&dir.path().join("nodes"), 3).await)
        } else {
            Backend::Single { port: free_port(), server: None }
        };
        let mut cluster = Cluster { dir, backend, config, engines: Vec::new(), restarts: 0 };
        if !nodes {
            cluster.start_nats().await;
        }
        for i in 0..n {
            let child = cluster.spawn(i);
            cluster.engines.push(child);
            cluster.wait_engines(i + 1).await;
        }
        cluster
    }

    /// The faults that apply to this backend.
    pub fn faults(&self) -> Vec<Fault> {
        let nats = if matches!(self.backend, Backend::Nodes(_)) { Fault::LeaderLoss } else { Fault::RestartNats };
        vec![Fault::KillEngine, Fault::FreezeLeaseHolder, nats]
    }

    /// The client URL, comma-separated nodes for a cluster.
    pub fn url(&self) -> String {
        match &self.backend {
            Backend::Single { port, .. } => format!("nats://127.0.0.1:{port}"),
            Backend::Nodes(nodes) => nodes.url(),
        }
    }

    fn engine_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("engine{i}"))
    }

    async fn start_nats(&mut self) {
        let binary = locate_binary().expect("nats-server: run scripts/install-nats.sh");
        let store = self.dir.path().join("nats");
        let Backend::Single { port, server } = &mut self.backend else { return };
        let mut last = String::new();
        // The port of a killed server may take a moment to be free again.
        for _ in 0..100 {
            match NatsServer::start(&binary, *port, &store).await {
                Ok(started) => {
                    *server = Some(Box::new(started));
                    return;
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("nats-server restarts on port {port}: {last}");
    }

    fn spawn(&self, i: usize) -> Child {
        let data = self.engine_dir(i);
        std::fs::create_dir_all(&data).unwrap();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(data.join("eddy.log")).unwrap();
        Command::new(env!("CARGO_BIN_EXE_eddy"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env("EDDY_NATS__URL", self.url())
            .env("EDDY_HTTP__LISTEN", "127.0.0.1:0")
            .env("EDDY_ENGINE__DATA_DIR", &data)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("eddy starts")
    }

    /// Waits until `n` engines answer `$SRV.PING.eddy`. An engine that exited (it stops when NATS does not
    /// answer while it starts, as on a cluster electing leaders) is restarted, as a supervisor would.
    async fn wait_engines(&mut self, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        while std::time::Instant::now() < deadline {
            for i in 0..self.engines.len() {
                if let Ok(Some(status)) = self.engines[i].try_wait() {
                    eprintln!("chaos: engine {i} exited ({status}); restarting it, as a supervisor would");
                    self.restarts += 1;
                    self.engines[i] = self.spawn(i);
                }
            }
            if live_engines(&self.url()).await >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("{n} engines answer $SRV.PING (store and logs kept in {})", self.dir.path().display());
    }

    fn signal(&self, i: usize, sig: i32) {
        // SAFETY: signalling a child this test spawned.
        unsafe { libc::kill(self.engines[i].id() as i32, sig) };
    }

    /// Applies one fault and returns what it did.
    pub async fn apply(&mut self, fault: Fault, rng: &mut Rng) -> String {
        let n = self.engines.len();
        match fault {
            Fault::KillEngine => {
                let i = rng.range(0, n as u64 - 1) as usize;
                self.engines[i].kill().unwrap();
                self.engines[i].wait().unwrap();
                tokio::time::sleep(Duration::from_millis(rng.range(200, 1_500))).await;
                self.engines[i] = self.spawn(i);
                self.wait_engines(n).await;
                format!("SIGKILL engine {i}, restarted")
            }
            Fault::FreezeLeaseHolder => {
                let holder = self.lease_holder("transfer").await;
                let i = holder.unwrap_or_else(|| rng.range(0, n as u64 - 1) as usize);
                self.signal(i, libc::SIGSTOP);
                tokio::time::sleep(FREEZE).await;
                self.signal(i, libc::SIGCONT);
                self.wait_engines(n).await;
                let who = if holder.is_some() { "the transfer lease holder" } else { "(no holder found)" };
                format!("SIGSTOP engine {i} {who} for {} s, SIGCONT", FREEZE.as_secs())
            }
            Fault::LeaderLoss => {
                let Backend::Nodes(nodes) = &mut self.backend else { unreachable!("only with a cluster") };
                let leader = nodes.leader("EVENTS").await.unwrap_or(0);
                let down = Duration::from_millis(rng.range(500, 3_000));
                nodes.bounce(leader, down).await;
                self.wait_engines(n).await;
                format!("SIGKILL the stream leader node n{leader}, down {} ms, restarted", down.as_millis())
            }
            Fault::RestartNats => {
                let Backend::Single { server, .. } = &mut self.backend else { unreachable!("only with one server") };
                server.take().expect("nats runs").kill().await;
                let down = Duration::from_millis(rng.range(200, 2_000));
                tokio::time::sleep(down).await;
                self.start_nats().await;
                self.wait_engines(n).await;
                format!("SIGKILL nats-server, down {} ms, restarted on the same port and store", down.as_millis())
            }
        }
    }

    /// Engine `i`'s id in the lease bucket (its `.engine-id`), once it has one.
    pub fn engine_id(&self, i: usize) -> String {
        let id = std::fs::read_to_string(self.engine_dir(i).join("reactors/.engine-id"));
        id.unwrap_or_default().trim().to_string()
    }

    /// Kills engine `i` for good (SIGKILL, not restarted).
    pub fn kill(&mut self, i: usize) {
        self.engines[i].kill().unwrap();
        self.engines[i].wait().unwrap();
    }

    /// Which engine holds `reactor`'s lease (the KV value is the holder's `.engine-id`).
    async fn lease_holder(&self, reactor: &str) -> Option<usize> {
        let c = try_connect(&self.url()).await?;
        let js = async_nats::jetstream::new(c);
        let kv = js.get_key_value("EVENTS_leases").await.ok()?;
        let holder = kv.get(reactor).await.ok()??;
        let holder = String::from_utf8_lossy(&holder).to_string();
        (0..self.engines.len()).find(|i| {
            std::fs::read_to_string(self.engine_dir(*i).join("reactors/.engine-id")).is_ok_and(|id| id.trim() == holder)
        })
    }

    /// Stops everything; removes the directory unless `keep` (a post-mortem).
    pub async fn stop(mut self, keep: bool) {
        for e in &mut self.engines {
            let _killed = e.kill();
            let _waited = e.wait();
        }
        match &mut self.backend {
            Backend::Single { server, .. } => {
                if let Some(nats) = server.take() {
                    nats.stop().await;
                }
            }
            Backend::Nodes(nodes) => nodes.kill_all(),
        }
        self.dir.disable_cleanup(keep);
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for e in &mut self.engines {
            let _killed = e.kill();
        }
    }
}

/// How many engines answer `$SRV.PING.eddy` within a short while.
pub async fn live_engines(url: &str) -> usize {
    let Some(c) = try_connect(url).await else { return 0 };
    let inbox = c.new_inbox();
    let Ok(mut replies) = c.subscribe(inbox.clone()).await else { return 0 };
    if c.publish_with_reply("$SRV.PING.eddy", inbox, "".into()).await.is_err() {
        return 0;
    }
    let mut n = 0;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), replies.next()).await {
        n += 1;
    }
    n
}
