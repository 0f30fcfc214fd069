//! Reaching NATS: connection options from config, and the embedded nats-server.

mod connect;
mod server;

pub use connect::connect;
pub use server::{locate_binary, NatsServer, Supervisor};

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
    /// The server could not be reached.
    #[error("cannot connect to NATS at {url}: {message}")]
    Connect { url: String, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
