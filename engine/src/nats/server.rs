//! The embedded nats-server: found on disk, started with JetStream on loopback, checked ready by connecting,
//! restarted if it dies, and stopped with the engine.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use super::{Error, Result};

/// Where the project's install script puts the pinned binary, relative to the project root.
const LOCAL_INSTALL: &str = ".tools/venv/bin/nats-server";

/// Finds nats-server: `$EDDY_NATS_SERVER`, the project's local install, then `PATH`.
pub fn locate_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("EDDY_NATS_SERVER") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        return Err(Error::Start(format!("EDDY_NATS_SERVER={} is not a file", path.display())));
    }
    let project_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for base in [PathBuf::from("."), project_root] {
        let candidate = base.join(LOCAL_INSTALL);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("nats-server");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(Error::NotInstalled { local: LOCAL_INSTALL.to_string() })
}

/// A running nats-server child process. Killed when dropped.
pub struct NatsServer {
    child: Child,
    port: u16,
    binary: PathBuf,
    store_dir: PathBuf,
}

impl NatsServer {
    /// Starts nats-server with JetStream on `127.0.0.1:port`, its store in `store_dir`, and waits until a
    /// client can connect.
    pub async fn start(binary: &Path, port: u16, store_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(store_dir)
            .map_err(|e| Error::Start(format!("cannot create {}: {e}", store_dir.display())))?;
        let child = Command::new(binary)
            .args(["--jetstream", "--addr", "127.0.0.1", "--port", &port.to_string(), "--store_dir"])
            .arg(store_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::Start(format!("cannot run {}: {e}", binary.display())))?;
        let mut server = NatsServer { child, port, binary: binary.to_path_buf(), store_dir: store_dir.to_path_buf() };
        server.wait_ready().await?;
        Ok(server)
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The store directory.
    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }

    /// Readiness is a successful client connection with JetStream answering, never a sleep.
    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        let mut delay = Duration::from_millis(5);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let stderr = self.stderr_tail().await;
                return Err(Error::Start(format!("exited with {status} before it was ready: {stderr}")));
            }
            if let Ok(client) = async_nats::connect(self.url()).await {
                let js = async_nats::jetstream::new(client);
                if js.query_account().await.is_ok() {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Error::Start(format!("not ready on port {} after 15s", self.port)));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(200));
        }
    }

    async fn stderr_tail(&mut self) -> String {
        use tokio::io::AsyncReadExt;
        let mut out = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _read = tokio::time::timeout(Duration::from_secs(1), stderr.read_to_string(&mut out)).await;
        }
        out.lines().rev().take(3).collect::<Vec<_>>().join(" | ")
    }

    /// Asks the server to stop (SIGTERM, so JetStream flushes), and kills it if it has not stopped in 10s.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: `kill` with a pid we spawned and still own; no memory is touched.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.is_err() {
            tracing::warn!("nats-server did not stop within 10s; killing it");
            let _killed = self.child.kill().await;
        }
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub async fn kill(mut self) {
        let _killed = self.child.kill().await;
    }

    /// Waits until the process exits.
    async fn exited(&mut self) -> String {
        match self.child.wait().await {
            Ok(status) => status.to_string(),
            Err(e) => e.to_string(),
        }
    }
}

/// Keeps the embedded server running: restarts it with backoff if it dies, stops it on shutdown.
pub struct Supervisor {
    handle: tokio::task::JoinHandle<()>,
}

impl Supervisor {
    /// Takes ownership of `server` and watches it until `shutdown` is cancelled.
    pub fn spawn(server: NatsServer, shutdown: CancellationToken) -> Self {
        let handle = tokio::spawn(async move {
            let mut server = server;
            let mut backoff = Duration::from_millis(100);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        server.stop().await;
                        return;
                    }
                    status = server.exited() => {
                        tracing::error!(%status, "embedded nats-server exited; restarting it");
                    }
                }
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    match NatsServer::start(&server.binary, server.port, &server.store_dir).await {
                        Ok(restarted) => {
                            server = restarted;
                            backoff = Duration::from_millis(100);
                            break;
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "restarting the embedded nats-server failed");
                            backoff = (backoff * 2).min(Duration::from_secs(10));
                        }
                    }
                }
            }
        });
        Self { handle }
    }

    /// Waits until the server has been stopped.
    pub async fn join(self) {
        let _joined = self.handle.await;
    }
}
