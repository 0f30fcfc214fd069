//! The processes under test and the faults done to them: engines (children of the `eddy` binary) killed
//! and restarted, the reactors' lease holder frozen past the lease and the dedup window, and the
//! nats-server killed and restarted on the same port and store.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use eddy_engine::nats::{locate_binary, NatsServer};
use futures::StreamExt;
use tempfile::TempDir;

use super::rng::Rng;
use crate::common::{copy_example, eventually, free_port};

/// The engines' dedup window: a freeze outlasts it, so a woken engine meets repeats it no longer remembers.
pub const WINDOW_SECS: u64 = 2;
/// Longer than the lease (6 s) plus a standby's retry and the window.
const FREEZE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
pub enum Fault {
    KillEngine,
    FreezeLeaseHolder,
    RestartNats,
}

impl Fault {
    pub fn all() -> &'static [Fault] {
        &[Fault::KillEngine, Fault::FreezeLeaseHolder, Fault::RestartNats]
    }
}

pub struct Cluster {
    dir: TempDir,
    port: u16,
    nats: Option<NatsServer>,
    config: PathBuf,
    engines: Vec<Child>,
}

impl Cluster {
    /// A nats-server and `n` engines on the bank example with a short dedup window, each ready.
    pub async fn start(n: usize) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("config");
        copy_example("bank", &config);
        std::fs::write(config.join("eddy.toml"), format!("[engine]\ndedup_window_secs = {WINDOW_SECS}\n")).unwrap();
        let mut cluster = Cluster { port: free_port(), dir, nats: None, config, engines: Vec::new() };
        cluster.start_nats().await;
        for i in 0..n {
            let child = cluster.spawn(i);
            cluster.engines.push(child);
            cluster.wait_engines(i + 1).await;
        }
        cluster
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn engine_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("engine{i}"))
    }

    async fn start_nats(&mut self) {
        let binary = locate_binary().expect("nats-server: run scripts/install-nats.sh");
        let store = self.dir.path().join("nats");
        let mut last = String::new();
        // The port of a killed server may take a moment to be free again.
        for _ in 0..100 {
            match NatsServer::start(&binary, self.port, &store).await {
                Ok(server) => {
                    self.nats = Some(server);
                    return;
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("nats-server restarts on port {}: {last}", self.port);
    }

    fn spawn(&self, i: usize) -> Child {
        let data = self.engine_dir(i);
        std::fs::create_dir_all(&data).unwrap();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(data.join("eddy.log")).unwrap();
        Command::new(env!("CARGO_BIN_EXE_eddy"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env("EDDY_NATS__URL", self.url())
            .env("EDDY_ENGINE__DATA_DIR", &data)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("eddy starts")
    }

    /// Waits until `n` engines answer `$SRV.PING.eddy`.
    async fn wait_engines(&self, n: usize) {
        let url = self.url();
        let live = eventually(60, || async { live_engines(&url).await >= n }).await;
        assert!(live, "{n} engines answer $SRV.PING (logs in {})", self.dir.path().display());
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
            Fault::RestartNats => {
                self.nats.take().expect("nats runs").kill().await;
                let down = Duration::from_millis(rng.range(200, 2_000));
                tokio::time::sleep(down).await;
                self.start_nats().await;
                self.wait_engines(n).await;
                format!("SIGKILL nats-server, down {} ms, restarted on the same port and store", down.as_millis())
            }
        }
    }

    /// Which engine holds `reactor`'s lease (the KV value is the holder's `.engine-id`).
    async fn lease_holder(&self, reactor: &str) -> Option<usize> {
        let c = async_nats::connect(self.url()).await.ok()?;
        let js = async_nats::jetstream::new(c);
        let kv = js.get_key_value("EVENTS_leases").await.ok()?;
        let holder = kv.get(reactor).await.ok()??;
        let holder = String::from_utf8_lossy(&holder).to_string();
        (0..self.engines.len()).find(|i| {
            std::fs::read_to_string(self.engine_dir(*i).join("reactors/.engine-id")).is_ok_and(|id| id.trim() == holder)
        })
    }

    /// Keeps the directory (store and engine logs) for a post-mortem and returns its path.
    pub fn keep(&mut self) -> String {
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        dir.keep().display().to_string()
    }

    pub async fn stop(mut self) {
        for e in &mut self.engines {
            let _killed = e.kill();
            let _waited = e.wait();
        }
        if let Some(nats) = self.nats.take() {
            nats.stop().await;
        }
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
    let Ok(c) = async_nats::connect(url).await else { return 0 };
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
