//! Reaching NATS: connection options from config, and the embedded nats-server.

mod connect;
mod server;
mod url;

pub use connect::connect;
pub use server::{locate_binary, stop_all_now, Embedded, EmbeddedAuth, NatsServer, Supervisor};
pub use url::{redact, redact_all};

/// Errors of starting or reaching NATS.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No nats-server binary was found.
    #[error(
        "no nats-server binary found (looked in $EDDY_NATS_SERVER, {local}, and on PATH); \
         install the pinned one with `scripts/install-nats.sh`, or set nats.url to a running server"
    )]
    NotInstalled { local: String },
    /// The embedded server could not be started or did not become ready.
    #[error("embedded nats-server: {0}")]
    Start(String),
    /// Something already listens on the embedded server's port.
    #[error(
        "embedded nats-server: port {port} on 127.0.0.1 is already in use (another eddy or nats-server?); \
         stop it, set nats.port to a free port, or set nats.url to use that server on purpose"
    )]
    PortInUse { port: u16 },
    /// The embedded server exited while starting.
    #[error("embedded nats-server exited with {status} while starting: {stderr}")]
    Exited { status: String, stderr: String },
    /// The server could not be reached. `url` is redacted.
    #[error("cannot connect to NATS at {url}: {message}")]
    Connect { url: String, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
