//! The `call` action: a request to a service outside eddy, by NATS request-reply or HTTP, whose outcome
//! becomes an event on the reactor's own subject (`CallReplied` or `CallFailed`) before anything acts on it.
//!
//! A call is at least once: it is retried (transient failures, under `max_retries`) and may be repeated by
//! a crash or a new lease holder between the call and its record, so it carries its effect id
//! (`Eddy-Effect-Id`, and `Idempotency-Key` over HTTP) for the service to deduplicate. Its outcome is
//! recorded once: the record's message id is derived from the effect id, and the subject is searched for it
//! after the causing event before appending; a recorded outcome is never called again.

mod http;
mod nats;
mod run;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::{Append, Pending};

pub use http::{check_header, check_url, expand_env, is_method};

/// Event type of a call's reply.
pub const REPLIED: &str = "CallReplied";
/// Event type of a call's failure (after its retries).
pub const FAILED: &str = "CallFailed";
/// The largest reply a call records; a larger one is recorded as a failure (`too_large`).
pub const MAX_REPLY: usize = 256 * 1024;
/// Default and largest `timeout_ms` of one attempt.
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
pub const MAX_TIMEOUT_MS: u64 = 120_000;

/// Where a call goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// A NATS request to `subject`.
    Nats { subject: String },
    /// An HTTP request. Header values may name environment variables (`${NAME}`), read when the call runs,
    /// so secrets stay out of the config, the outbox and transcripts.
    Http {
        method: String,
        url: String,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        headers: BTreeMap<String, String>,
    },
}

impl Target {
    /// How the call is named in its record: the subject, or `METHOD url`.
    pub fn name(&self) -> String {
        match self {
            Target::Nats { subject } => subject.clone(),
            Target::Http { method, url, .. } => format!("{method} {url}"),
        }
    }
}

/// A call as a reactor decided it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    pub target: Target,
    /// The body (a JSON object); over HTTP GET and DELETE, its fields are the query.
    pub data: Json,
    /// One attempt's limit.
    pub timeout_ms: u64,
    /// The outcome is recorded on `events.<aggregate>.<key>`: the rule's or the saga instance's own subject.
    pub aggregate: String,
    pub key: String,
}

/// A `CallReplied` event's data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replied {
    /// The seq of the event that caused the call (a saga: the transition whose `do` it is).
    pub entry: u64,
    pub call: String,
    /// The effect id: what the service was given to deduplicate by.
    pub effect: String,
    /// The reply body: JSON, a string when it is not JSON, null when empty.
    pub reply: Json,
}

/// A `CallFailed` event's data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub entry: u64,
    pub call: String,
    pub effect: String,
    /// The HTTP status or NATS service error code; 0 when the service never answered.
    pub status: u16,
    /// `status` (the service answered with an error), `timeout`, `unreachable` (no responders, a refused
    /// connection), `too_large` (a reply over 256 KiB) or `invalid` (the request could not be made).
    pub reason: String,
    pub message: String,
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Replied(Json),
    Failed { status: u16, reason: &'static str, message: String },
}

/// Why an attempt did not give an outcome.
/// Worth another try (a timeout, no responders, a 5xx, 408 or 429): retried under `max_retries`, then
/// recorded as the failure it is. While the connection to NATS is down, a NATS call is waited out instead.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub status: u16,
    pub reason: &'static str,
    pub message: String,
}

/// The event that records `outcome` of `call`, the action `pending`.
pub fn record(pending: &Pending, call: &Call, outcome: &Outcome) -> Append {
    let (event_type, data) = match outcome {
        Outcome::Replied(reply) => (
            REPLIED,
            serde_json::json!(Replied {
                entry: pending.seq,
                call: call.target.name(),
                effect: pending.id.clone(),
                reply: reply.clone(),
            }),
        ),
        Outcome::Failed { status, reason, message } => (
            FAILED,
            serde_json::json!(Failure {
                entry: pending.seq,
                call: call.target.name(),
                effect: pending.id.clone(),
                status: *status,
                reason: reason.to_string(),
                message: message.clone(),
            }),
        ),
    };
    Append {
        aggregate: call.aggregate.clone(),
        key: call.key.clone(),
        expected_seq: None,
        version: 0,
        event_type: event_type.to_string(),
        data,
        // One id for either outcome: whichever is stored first is the outcome.
        msg_id: format!("{}:outcome", pending.id),
        correlation_id: pending.correlation_id.clone(),
        traceparent: pending.child_trace(),
    }
}

/// A reply body as recorded: JSON if it parses, else the text, null when empty; bounded by [`MAX_REPLY`].
fn reply_of(bytes: &[u8]) -> Outcome {
    if bytes.len() > MAX_REPLY {
        return Outcome::Failed {
            status: 0,
            reason: "too_large",
            message: format!("the reply has {} bytes, more than the {MAX_REPLY} a call records", bytes.len()),
        };
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Outcome::Replied(Json::Null);
    }
    let text = || Json::String(String::from_utf8_lossy(bytes).into_owned());
    Outcome::Replied(serde_json::from_slice(bytes).unwrap_or_else(|_| text()))
}
