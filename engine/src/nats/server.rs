//! The embedded nats-server: found on disk, started with JetStream on loopback, checked ready by connecting,
//! restarted if it dies, and stopped with the engine.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use super::{Error, Result};
use crate::backoff::Backoff;
use crate::config::{Config, SyncMode};

/// The embedded servers this process runs, for [`stop_all_now`].
static RUNNING: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Asks every embedded server this process started to stop (SIGTERM), without waiting: for a process that
/// is about to exit without running destructors (the second signal), so no nats-server is left behind.
pub fn stop_all_now() {
    for pid in RUNNING.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
        // SAFETY: signalling a child this process spawned; harmless if it has exited.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
}

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

/// How to set up an embedded nats-server.
#[derive(Debug, Clone)]
pub struct Embedded {
    /// The client port, on 127.0.0.1.
    pub port: u16,
    /// JetStream's store (created 0700); the generated server config is written into it (0600).
    pub store_dir: PathBuf,
    /// What clients must present; `None` lets any local client in.
    pub auth: Option<EmbeddedAuth>,
    /// When JetStream writes reach the disk.
    pub sync: SyncMode,
}

/// The credentials an embedded server requires.
#[derive(Debug, Clone)]
pub enum EmbeddedAuth {
    /// `user` with `password`.
    UserPassword { user: String, password: String },
    /// A token.
    Token(String),
}

impl Embedded {
    /// A scratch server (tests, benchmarks): no credentials, nats-server's own sync interval.
    pub fn scratch(port: u16, store_dir: &Path) -> Self {
        Self { port, store_dir: store_dir.to_path_buf(), auth: None, sync: SyncMode::Default }
    }

    /// The engine's embedded server: `nats.port`, `<data_dir>/nats`, `nats.sync`, and the credentials of
    /// `[nats]`, so that a server the engine can reach is one that nobody else can reach without them.
    pub fn from_config(config: &Config) -> Self {
        let auth = match (&config.nats.user, &config.nats.password, &config.nats.token) {
            (Some(user), Some(password), _) => {
                Some(EmbeddedAuth::UserPassword { user: user.clone(), password: password.clone() })
            }
            (_, _, Some(token)) => Some(EmbeddedAuth::Token(token.clone())),
            _ => None,
        };
        Self { port: config.nats.port, store_dir: config.engine.data_dir.join("nats"), auth, sync: config.nats.sync }
    }

    /// The server config, naming the server so that readiness can tell it from another one on the port.
    fn config_text(&self, server_name: &str) -> Result<String> {
        let mut out = format!(
            "server_name: {}\nlisten: \"127.0.0.1:{}\"\njetstream {{\n  store_dir: {}\n",
            quoted(server_name)?,
            self.port,
            quoted(&self.store_dir.display().to_string())?
        );
        if self.sync == SyncMode::Always {
            out.push_str("  sync_interval: always\n");
        }
        out.push_str("}\n");
        match &self.auth {
            Some(EmbeddedAuth::UserPassword { user, password }) => out.push_str(&format!(
                "authorization {{\n  user: {}\n  password: {}\n}}\n",
                quoted(user)?,
                quoted(password)?
            )),
            Some(EmbeddedAuth::Token(token)) => {
                out.push_str(&format!("authorization {{\n  token: {}\n}}\n", quoted(token)?))
            }
            None => {}
        }
        Ok(out)
    }

    fn connect_options(&self) -> async_nats::ConnectOptions {
        let options = async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(2));
        match &self.auth {
            Some(EmbeddedAuth::UserPassword { user, password }) => {
                options.user_and_password(user.clone(), password.clone())
            }
            Some(EmbeddedAuth::Token(token)) => options.token(token.clone()),
            None => options,
        }
    }
}

/// A double-quoted nats-server config string. JSON's escapes for `"` and `\\` are the config's too; control
/// characters have no escape both understand, and have no place in a name or a password anyway.
fn quoted(s: &str) -> Result<String> {
    if s.chars().any(char::is_control) {
        return Err(Error::Start("credentials and paths must not contain control characters".into()));
    }
    Ok(serde_json::to_string(s).expect("a string serializes"))
}

/// Creates `dir` and its missing parents 0700, and makes an existing one 0700: the store holds every event.
fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let failed = |e: std::io::Error| Error::Start(format!("cannot create {}: {e}", dir.display()));
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(failed)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(failed)
}

/// Writes `text` to `path` readable by its owner only (it may hold a password).
fn private_file(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let failed = |e: std::io::Error| Error::Start(format!("cannot write {}: {e}", path.display()));
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).map_err(failed)?;
    // `mode` applies only when the file is created; an older one is narrowed here.
    file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(failed)?;
    file.write_all(text.as_bytes()).map_err(failed)
}

/// Fails at once when something listens on the port: nats-server would exit, and a readiness check could
/// mistake the other server for ours.
fn check_port_free(port: u16) -> Result<()> {
    match std::net::TcpListener::bind(("127.0.0.1", port)) {
        Ok(_free) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(Error::PortInUse { port }),
        Err(e) => Err(Error::Start(format!("cannot bind 127.0.0.1:{port}: {e}"))),
    }
}

/// The last lines nats-server wrote to stderr, kept while it runs (draining the pipe, which would otherwise
/// fill and block the server) for the error if it exits.
type StderrTail = Arc<Mutex<VecDeque<String>>>;
const STDERR_LINES: usize = 5;

/// A running nats-server child process. Killed when dropped.
pub struct NatsServer {
    child: Child,
    spec: Embedded,
    binary: PathBuf,
    stderr: StderrTail,
    drain: Option<tokio::task::JoinHandle<()>>,
}

impl NatsServer {
    /// Starts a scratch nats-server (no credentials) with JetStream on `127.0.0.1:port`, its store in
    /// `store_dir`, and waits until a client can connect.
    pub async fn start(binary: &Path, port: u16, store_dir: &Path) -> Result<Self> {
        Self::start_with(binary, &Embedded::scratch(port, store_dir)).await
    }

    /// Starts nats-server as `spec` says and waits until a client can connect to it (and not to another
    /// server on the same port). Fails at once when the port is taken, and with the server's own words
    /// when it exits during start-up.
    pub async fn start_with(binary: &Path, spec: &Embedded) -> Result<Self> {
        private_dir(&spec.store_dir)?;
        check_port_free(spec.port)?;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let name = format!("eddy-{}-{nanos}", std::process::id());
        let config_file = spec.store_dir.join("nats-server.conf");
        private_file(&config_file, &spec.config_text(&name)?)?;
        let mut child = Command::new(binary)
            .arg("-c")
            .arg(&config_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::Start(format!("cannot run {}: {e}", binary.display())))?;
        if let Some(pid) = child.id() {
            RUNNING.lock().unwrap_or_else(|p| p.into_inner()).push(pid);
        }
        let stderr: StderrTail = Arc::default();
        let drain = child.stderr.take().map(|pipe| tokio::spawn(drain(pipe, stderr.clone())));
        let mut server = NatsServer { child, spec: spec.clone(), binary: binary.to_path_buf(), stderr, drain };
        server.wait_ready(&name).await?;
        Ok(server)
    }

    /// The client URL (without credentials).
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.spec.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.spec.port
    }

    /// The store directory.
    pub fn store_dir(&self) -> &Path {
        &self.spec.store_dir
    }

    /// Readiness is a successful client connection to this very server (by its name) with JetStream
    /// answering, never a sleep.
    async fn wait_ready(&mut self, name: &str) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        let mut delay = Backoff::new(Duration::from_millis(5), Duration::from_millis(200));
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let stderr = self.stderr_tail().await;
                return Err(Error::Exited { status: status.to_string(), stderr });
            }
            if let Ok(client) = self.spec.connect_options().connect(self.url()).await {
                if client.server_info().server_name != name {
                    // Ours lost the port to another server between the check and its bind; it will exit.
                    let _killed = self.child.kill().await;
                    return Err(Error::PortInUse { port: self.spec.port });
                }
                let js = async_nats::jetstream::new(client);
                if js.query_account().await.is_ok() {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Error::Start(format!("not ready on port {} after 15s", self.spec.port)));
            }
            delay.sleep().await;
        }
    }

    /// What the server last said, once it has exited (its pipe closes then, and the drain ends).
    async fn stderr_tail(&mut self) -> String {
        if let Some(drain) = self.drain.take() {
            let _drained = tokio::time::timeout(Duration::from_secs(1), drain).await;
        }
        let lines = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().cloned().collect::<Vec<_>>().join(" | ")
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

/// Keeps the last lines of the server's stderr, and logs them at debug level.
async fn drain(pipe: tokio::process::ChildStderr, tail: StderrTail) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(pipe).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::debug!(target: "nats_server", "{line}");
        let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
        if tail.len() == STDERR_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
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
            let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
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
                    if !backoff.wait(&shutdown).await {
                        return;
                    }
                    match NatsServer::start_with(&server.binary, &server.spec).await {
                        Ok(restarted) => {
                            server = restarted;
                            backoff.reset();
                            break;
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "restarting the embedded nats-server failed");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_config_quotes_credentials_and_syncs_always_by_default() {
        let mut spec = Embedded::scratch(4222, Path::new("/data/nats"));
        spec.sync = SyncMode::Always;
        spec.auth = Some(EmbeddedAuth::UserPassword { user: "ann".into(), password: r#"p"w\x"#.into() });
        let text = spec.config_text("eddy-1").unwrap();
        assert!(text.contains("sync_interval: always"), "{text}");
        assert!(text.contains(r#"password: "p\"w\\x""#), "{text}");
        assert!(text.contains(r#"listen: "127.0.0.1:4222""#), "{text}");

        spec.sync = SyncMode::Default;
        spec.auth = Some(EmbeddedAuth::Token("a\nb".into()));
        assert!(spec.config_text("eddy-1").is_err(), "a control character would end the string early");
        spec.auth = None;
        let text = spec.config_text("eddy-1").unwrap();
        assert!(!text.contains("sync_interval") && !text.contains("authorization"), "{text}");
    }
}
