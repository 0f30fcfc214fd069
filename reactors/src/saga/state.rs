//! What a saga instance is made of. The instance's subject, `events.saga-<saga>.<instance>`, is its log:
//! `SagaStarted` and `StateEntered` record each transition with what it does on entry, `TimerFired` and
//! `CommandRejected` are triggers. The sled entry is this log folded, so it can always be rebuilt.

use chrono::{DateTime, Utc};
use eddy_engine::host::reactor::Action;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

/// Event types of an instance's log.
pub const STARTED: &str = "SagaStarted";
pub const ENTERED: &str = "StateEntered";
pub const TIMER_FIRED: &str = "TimerFired";
pub const REJECTED: &str = "CommandRejected";
/// Every record type of a saga's log.
pub const RECORDS: &[&str] = &[STARTED, ENTERED, TIMER_FIRED, REJECTED];

/// The trigger names that are not event patterns.
pub const ON_REJECTED: &str = "rejected";
pub const ON_TIMEOUT: &str = "timeout";
/// A `call` of the state's `do` replied (`CallReplied`; `reply` is its body) or failed (`CallFailed`;
/// `failure` is `{call, status, reason, message}`).
pub const ON_REPLIED: &str = "replied";
pub const ON_FAILED: &str = "failed";
/// An operator's cancel (`eddy sagas <saga> <id> cancel`); without it declared, the instance ends in
/// [`CANCELLED`].
pub const ON_CANCEL: &str = "cancel";
/// Where a cancel without an `on.cancel` ends an instance: the config's state of that name, or a final state
/// with no actions.
pub const CANCELLED: &str = "cancelled";

/// A transition as recorded: everything needed to fold it without evaluating anything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entered {
    pub state: String,
    /// The state left; absent when the instance starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// What moved it: `<aggregate>.<EventType>`, `rejected`, `timeout`, `replied`, `failed`, or an operator's
    /// `cancel by <who>` / `move by <who>`.
    pub trigger: String,
    /// The stream sequence of the triggering event.
    pub cause: u64,
    /// The instance's data from here on (`id` included).
    pub data: Map<String, Json>,
    /// What the state does on entry, evaluated when the transition was decided.
    #[serde(default, rename = "do")]
    pub actions: Vec<Action>,
    /// When the state's timer fires, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timer_at: Option<DateTime<Utc>>,
    #[serde(default, rename = "final")]
    pub done: bool,
    /// The saga version the instance runs on; absent: 1, as before sagas had versions.
    #[serde(default = "first_version", skip_serializing_if = "is_first_version")]
    pub saga_version: u32,
}

fn first_version() -> u32 {
    1
}

fn is_first_version(v: &u32) -> bool {
    *v == 1
}

/// A timer's firing, appended by the server at `at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimerFired {
    /// The `StateEntered` sequence that armed it; a firing for another entry is stale.
    pub entry: u64,
    pub state: String,
}

/// A `do` command was rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejected {
    /// The `StateEntered` sequence whose command it was.
    pub entry: u64,
    /// `<aggregate>.<command>`.
    pub command: String,
    pub code: String,
    pub message: String,
    /// The command id.
    pub effect: String,
}

/// One transition in an instance's history. Fields in alphabetical order, like [`Instance`]'s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub at: DateTime<Utc>,
    pub cause: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The sequence of its `SagaStarted`/`StateEntered` event.
    pub seq: u64,
    pub to: String,
    pub trigger: String,
}

/// A saga instance: the sled entry under its id. Fields are in alphabetical order of their names, because
/// the replay's transcript, whose keys are sorted, serializes instances as they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub data: Map<String, Json>,
    pub entered_at: DateTime<Utc>,
    /// The sequence of the current state's `StateEntered` (or `SagaStarted`).
    pub entry: u64,
    /// In a final state: done, kept for inspection.
    #[serde(rename = "final")]
    pub done: bool,
    pub history: Vec<Step>,
    pub id: String,
    /// The last sequence of the instance's subject seen: what the next transition expects.
    pub last_seq: u64,
    /// The saga version it started on and runs on to its end.
    #[serde(default = "first_version", skip_serializing_if = "is_first_version")]
    pub saga_version: u32,
    pub started_at: DateTime<Utc>,
    pub state: String,
    /// When the current state's timer fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timer_at: Option<DateTime<Utc>>,
    /// Transitions so far; the `Eddy-Version` of the log's events.
    pub version: u64,
}

impl Instance {
    pub fn from_entry(entry: Map<String, Json>) -> Result<Self, String> {
        serde_json::from_value(Json::Object(entry)).map_err(|e| format!("unreadable saga instance: {e}"))
    }

    pub fn to_entry(&self) -> Map<String, Json> {
        match serde_json::to_value(self) {
            Ok(Json::Object(map)) => map,
            _ => unreachable!("an instance serializes to an object"),
        }
    }

    /// Whether the transition stored at `seq` is already part of this instance.
    pub fn has_folded(&self, seq: u64) -> bool {
        seq <= self.entry
    }

    /// Whether the event at `cause` already moved this instance.
    pub fn moved_by(&self, cause: u64) -> bool {
        self.history.iter().rev().any(|s| s.cause == cause)
    }

    /// `saga` in expressions: the data, with `id`.
    pub fn saga_var(&self) -> Json {
        Json::Object(self.data.clone())
    }
}
