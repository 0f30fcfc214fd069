//! The reactor host. A reactor kind (rule, saga) implements [`Logic`]: a pure decision of what one event
//! changes in the reactor's state and which actions it causes. The host does everything else: reading the
//! stream from the bookmark, committing state + bookmark + outbox atomically in sled before any action runs,
//! running the actions with deterministic ids, keeping the high-water mark of handled events in a KV bucket
//! so a rebuild never acts twice, retries and the error policy, live config changes and the admin API.

mod admin;
pub mod call;
mod effects;
mod entries;
mod lease;
mod partition;
mod runner;
mod sagas;
mod set;
mod shared;
mod spread;
mod standby;
mod state;
mod status;
pub mod steer;
mod step;
pub mod wait;
mod watermark;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

pub use admin::{admin_endpoints, serve_admin, AdminEndpoints};
pub use effects::{Done, Effects, Failed, EFFECT_ID_HEADER, REACTOR_HEADER};
pub use partition::States;
pub use partition::{Partition, MAX_PARTITIONS};
pub use sagas::{census, Census};
pub use set::{Error, Reactors, Result};
pub use shared::Status;
pub use state::{Counters, Parked, Pending, ReactorState};
pub use status::{PartitionStatus, ReactorStatus};
pub use step::Step;
pub use watermark::{bucket_name, Mark};

use crate::api::Failure;
use crate::envelope::{OutgoingEvent, StoredEvent};

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
    /// How many partitions its keys are split into (1: the whole reactor is one; see `partition.rs`).
    pub partitions: u16,
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
    /// A durable timer: a JetStream message schedule (ADR-51 `@at`) held on `subject` that appends the
    /// event to `events.<aggregate>.<key>` at `at`.
    Schedule {
        subject: String,
        at: DateTime<Utc>,
        aggregate: String,
        key: String,
        event_type: String,
        version: u64,
        data: Json,
    },
    /// Cancels the timer held on `subject`, if it has not fired.
    Cancel { subject: String },
    /// A request to a service outside eddy, whose outcome is recorded on the reactor's own subject.
    Call(call::Call),
}

impl Action {
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Command { .. } => "command",
            Action::Publish { .. } => "publish",
            Action::Emit { .. } => "emit",
            Action::Schedule { .. } => "schedule",
            Action::Cancel { .. } => "cancel",
            Action::Call(_) => "call",
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
    /// An event the reactor writes to its own subject before anything else, with optimistic concurrency:
    /// a saga's transition. The host appends it at once and hands the stored event back to
    /// [`Logic::handle`], so the next event is decided on the new state. Not done for history (events whose
    /// decisions were already made). On a conflict the host reads the subject's newer events through
    /// [`Logic::handle_ahead`] and decides the event again.
    pub append: Option<Append>,
    /// The event reached the reactor but named nothing it does (counted).
    pub ignored: bool,
}

/// An event for a reactor's own subject, `events.<aggregate>.<key>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Append {
    pub aggregate: String,
    pub key: String,
    /// The subject's last sequence this decision saw (0: none); `None` appends whatever is there.
    pub expected_seq: Option<u64>,
    pub version: u64,
    pub event_type: String,
    pub data: Json,
    /// `Nats-Msg-Id`, so a repeat after a crash is stored once.
    pub msg_id: String,
    pub correlation_id: String,
    /// The trace of the event that caused it (empty: none).
    pub traceparent: String,
}

impl Append {
    /// The event to store, stamped `time`; its msg id is also its command and causation id.
    pub fn event(&self, time: DateTime<Utc>) -> OutgoingEvent {
        OutgoingEvent {
            event_type: self.event_type.clone(),
            version: self.version,
            time,
            command_id: self.msg_id.clone(),
            command_digest: String::new(),
            correlation_id: self.correlation_id.clone(),
            causation_id: self.msg_id.clone(),
            msg_id: self.msg_id.clone(),
            traceparent: self.traceparent.clone(),
            data: self.data.clone(),
        }
    }
}

/// Read access to a reactor's state while an event is decided.
pub trait Entries {
    fn get(&self, key: &str) -> Result<Option<Map<String, Json>>, String>;
}

/// The kinds a reactor can be (`kind = ".."` in its config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// State per key, actions on change.
    Rule,
    /// A process manager: instances with states, transitions and timers.
    Saga,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Rule, Kind::Saga];

    /// The name configs use.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Rule => "rule",
            Kind::Saga => "saga",
        }
    }

    /// The kind a config names, if any.
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A reactor kind's decisions. Implementations are pure: the same event on the same state gives the same
/// outcome, which is what makes rebuilding from history and offline replay possible.
pub trait Logic: std::fmt::Debug + Send + Sync + 'static {
    fn name(&self) -> &str;
    fn kind(&self) -> Kind;
    /// Changes whenever the definition does; stored state built by another definition is rebuilt.
    fn fingerprint(&self) -> &str;
    fn policy(&self) -> &Policy;
    /// The stream filters covering every event it reads.
    fn filters(&self) -> Vec<String>;
    /// Whether it reads `event` at all; others only move the bookmark.
    fn reads(&self, event: &StoredEvent) -> bool;
    /// The key an event it reads is decided under (a saga's instance, a rule's entry), which picks the
    /// partition that decides it; `None` when it has none or it cannot be computed (partition 0 decides
    /// those, and meets the same error). Only asked when the reactor has more than one partition.
    fn partition_key(&self, _event: &StoredEvent) -> Option<String> {
        None
    }
    /// Decides one event. An error is a runtime failure (a CEL error and the like) that the host retries and
    /// then handles by the policy.
    fn handle(&self, event: &StoredEvent, state: &dyn Entries) -> Result<Outcome, String>;

    /// An event of the reactor's own subject read ahead of the stream, after an [`Outcome::append`]
    /// conflicted; the stream delivers it again later. Must not append.
    fn handle_ahead(&self, event: &StoredEvent, state: &dyn Entries) -> Result<Outcome, String> {
        self.handle(event, state)
    }

    /// The event that records a rejection of one of its commands, which makes the rejection an event
    /// of the stream (a saga's `rejected` trigger). `None`: the rejection is only counted.
    fn on_rejected(&self, _pending: &Pending, _failure: &Failure) -> Option<Append> {
        None
    }

    /// Whether actions with different correlation ids may run at once (each id's stay in order). Saga
    /// instances are independent; a rule's actions run in stream order.
    fn concurrent_actions(&self) -> bool {
        false
    }

    /// For kinds whose entries are instances of a process (sagas): the event that records an operator's
    /// steer of the instance `key` on its log, or why it cannot be steered.
    fn steer(&self, _key: &str, _entry: &Map<String, Json>, _steer: &steer::Steer) -> Result<Append, Failure> {
        Err(Failure::new(crate::api::ErrorCode::Invalid, format!("`{}` is not a saga", self.name())))
    }

    /// For process kinds: the instance `event` starts, as the subject (aggregate, key) of its log.
    fn started_by(&self, _event: &StoredEvent) -> Option<(String, String)> {
        None
    }

    /// For process kinds: an event of an instance's log that records a transition, as a start-and-wait reply
    /// shows it (`{"state", "final", "data"}`); `None` for the log's other events.
    fn transition_view(&self, _event: &StoredEvent) -> Option<Json> {
        None
    }

    /// For kinds whose entries are instances of a process (sagas): how operators see one.
    fn instance(&self, _key: &str, _entry: &Map<String, Json>) -> Option<InstanceSummary> {
        None
    }
}

/// One process instance as operators list it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceSummary {
    pub id: String,
    pub state: String,
    /// In a final state.
    #[serde(rename = "final")]
    pub done: bool,
    pub started_at: DateTime<Utc>,
    /// When it entered its current state.
    pub entered_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timer_at: Option<DateTime<Utc>>,
    pub transitions: u64,
    /// The saga version it runs on.
    pub version: u32,
    /// The last transition.
    pub last: Option<Json>,
}

/// The id of the `n`th action caused by the event at `seq`.
pub fn effect_id(reactor: &str, seq: u64, n: u32) -> String {
    format!("{reactor}:{seq}:{n}")
}
