//! The reactor host. A reactor kind (rule, saga) implements [`Logic`]: a pure decision of what one event
//! changes in the reactor's state and which actions it causes. The host does everything else: reading the
//! stream from the bookmark, committing state + bookmark + outbox atomically in sled before any action runs,
//! running the actions with deterministic ids, keeping the high-water mark of handled events in a KV bucket
//! so a rebuild never acts twice, retries and the error policy, live config changes and the admin API.

mod admin;
mod drain;
mod effects;
mod runner;
mod set;
mod state;
mod watermark;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

pub use admin::{admin_endpoints, serve_admin, AdminEndpoints};
pub use effects::{Done, Effects, Failed, EFFECT_ID_HEADER, REACTOR_HEADER};
pub use runner::Status;
pub use set::{Error, ReactorStatus, Reactors, Result};
pub use state::{Counters, Parked, Pending, ReactorState};
pub use watermark::{bucket_name, Mark};

use crate::envelope::StoredEvent;

/// Where a newly deployed reactor starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Start {
    /// Build state from all of history.
    #[default]
    Beginning,
    /// Only events after deployment.
    New,
}

/// What happens to an event or action that still fails after `max_retries`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// The reactor stops at it (status `failed`) until `eddy reactors retry`.
    Stop,
    /// It is logged and passed over.
    Skip,
    /// It is set aside, listed, and re-driven by `eddy reactors retry`.
    #[default]
    Park,
}

/// How the host runs one reactor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub start: Start,
    /// Act on events that were in the stream at deployment (a backfill).
    pub replay_effects: bool,
    pub on_error: OnError,
    pub max_retries: u32,
}

/// An effect a reactor asks for. The host gives each one the id `<reactor>:<seq>:<n>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// A command through the command path; its command id is the effect id.
    Command { aggregate: String, command: String, data: Json },
    /// A core NATS publish with `Eddy-Reactor` and `Eddy-Effect-Id`.
    Publish { subject: String, data: Json },
    /// An event appended to `events.<aggregate>.<key>` (a reactor's own subject).
    Emit { aggregate: String, key: String, event_type: String, data: Json },
}

impl Action {
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Command { .. } => "command",
            Action::Publish { .. } => "publish",
            Action::Emit { .. } => "emit",
        }
    }
}

/// What one event does to a reactor.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outcome {
    /// State entries to write (`None` removes one).
    pub changes: Vec<(String, Option<Map<String, Json>>)>,
    /// Actions, in order.
    pub actions: Vec<Action>,
    /// Overrides the correlation id the actions carry (default: the causing event's).
    pub correlation_id: Option<String>,
}

/// Read access to a reactor's state while an event is decided.
pub trait Entries {
    fn get(&self, key: &str) -> Result<Option<Map<String, Json>>, String>;
}

/// A reactor kind's decisions. Implementations are pure: the same event on the same state gives the same
/// outcome, which is what makes rebuilding from history and offline replay possible.
pub trait Logic: std::fmt::Debug + Send + Sync + 'static {
    fn name(&self) -> &str;
    /// `rule`, `saga`.
    fn kind(&self) -> &'static str;
    /// Changes whenever the definition does; stored state built by another definition is rebuilt.
    fn fingerprint(&self) -> &str;
    fn policy(&self) -> &Policy;
    /// The stream filters covering every event it reads.
    fn filters(&self) -> Vec<String>;
    /// Whether it reads `event` at all; others only move the bookmark.
    fn reads(&self, event: &StoredEvent) -> bool;
    /// Decides one event. An error is a runtime failure (a CEL error and the like) that the host retries and
    /// then handles by the policy.
    fn handle(&self, event: &StoredEvent, state: &dyn Entries) -> Result<Outcome, String>;
}

/// The id of the `n`th action caused by the event at `seq`.
pub fn effect_id(reactor: &str, seq: u64, n: u32) -> String {
    format!("{reactor}:{seq}:{n}")
}
