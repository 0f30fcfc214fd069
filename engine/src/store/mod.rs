//! The JetStream event store: one stream, one subject per aggregate, optimistic appends in atomic batches,
//! and loads through batch Direct Get (no consumer per load).

mod append;
mod load;
mod schedule;
pub mod snapshots;
mod stream;

use std::time::Duration;

use async_nats::{jetstream, Client};

pub use append::Appended;
pub use schedule::{timer_subject, TIMER_SUBJECTS};

use crate::config::EngineConfig;
use crate::upcast::{Schemas, SharedSchemas};

/// Store errors. `Unavailable` maps to the wire's `unavailable`; the rest to `internal`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server did not answer in time, or nobody serves the stream.
    #[error("the event store did not answer: {0}")]
    Unavailable(String),
    /// The server is older than eddy supports.
    #[error("nats-server {found} is too old: eddy needs 2.12 or newer (atomic batches, batch direct get)")]
    ServerTooOld { found: String },
    /// JetStream refused a request.
    #[error("JetStream: {0}")]
    JetStream(String),
    /// An event is larger than the server accepts: no retry can store it.
    #[error("the {event_type} event is {size} bytes; the server accepts at most {limit} per message")]
    TooLarge { event_type: String, size: usize, limit: usize },
    /// An event in the stream cannot be read.
    #[error(transparent)]
    Envelope(#[from] crate::envelope::Error),
}

/// The suffix of the bucket holding the reactors' leases (`<stream>_leases`).
pub const LEASES: &str = "leases";

/// `<stream>_<what>`, the name of a KV bucket beside the stream, with characters a bucket name cannot hold
/// replaced.
pub fn kv_bucket(stream: &str, what: &str) -> String {
    let clean: String =
        stream.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    format!("{clean}_{what}")
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Handle to the event store. Cheap to clone.
#[derive(Clone)]
pub struct EventStore {
    client: Client,
    js: jetstream::Context,
    stream: String,
    timeout: Duration,
    /// How events are read and stamped (upcasting); set from the config, replaced on reload.
    schemas: SharedSchemas,
}

impl EventStore {
    /// Checks the server version and creates or updates the stream.
    pub async fn open(client: Client, engine: &EngineConfig) -> Result<Self> {
        stream::check_server_version(&client.server_info().version)?;
        let js = jetstream::new(client.clone());
        stream::ensure(&js, engine).await?;
        Ok(Self {
            client,
            js,
            stream: engine.stream.clone(),
            timeout: Duration::from_secs(5),
            schemas: Default::default(),
        })
    }

    /// Uses an existing stream without changing it (for read-only tools such as `eddy history`).
    pub fn attach(client: Client, engine: &EngineConfig) -> Self {
        let js = jetstream::new(client.clone());
        Self { client, js, stream: engine.stream.clone(), timeout: Duration::from_secs(5), schemas: Default::default() }
    }

    /// Puts the event schemas of a config in force: every later read upcasts through them, every append
    /// stamps their versions.
    pub fn set_schemas(&self, schemas: Schemas) {
        self.schemas.set(schemas);
    }

    /// The schemas in force, shared: a reader that holds it sees later changes.
    pub fn schemas(&self) -> &SharedSchemas {
        &self.schemas
    }

    /// The NATS client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The JetStream context.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// The stream's name.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The last sequence in the stream (0 when empty).
    pub async fn last_seq(&self) -> Result<u64> {
        // `get_stream` already fetched the stream's info; asking again would be a second round trip.
        let stream = self.js.get_stream(&self.stream).await.map_err(|e| Error::Unavailable(e.to_string()))?;
        Ok(stream.cached_info().state.last_sequence)
    }
}
