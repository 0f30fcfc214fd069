//! Running one committed action. Every action carries its effect id, so running it again after a crash is
//! harmless: commands dedup by command id, emits by `Nats-Msg-Id`, and receivers of publishes by
//! `Eddy-Effect-Id`.

use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::{Client, HeaderMap, RequestErrorKind};
use chrono::Utc;
use serde_json::Value as Json;

use super::{Action, Pending};
use crate::aggregate::input::valid_id;
use crate::api::{ErrorCode, Failure};
use crate::command::{CommandContext, CommandService, Fence, HeldLease, LEASE_HEADER};
use crate::envelope::{headers, OutgoingEvent};
use crate::store::{self, Appended, EventStore};

/// Header naming the reactor behind a publish.
pub const REACTOR_HEADER: &str = "Eddy-Reactor";
/// Header carrying `<reactor>:<seq>:<n>` on a publish.
pub const EFFECT_ID_HEADER: &str = "Eddy-Effect-Id";

/// How an action ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Done {
    /// A command was decided; `Some` when the aggregate rejected it (a business outcome, not an error).
    Command(Option<Failure>),
    Published,
    Emitted,
    /// A timer was armed.
    Scheduled,
    /// A timer was cancelled (or had already fired).
    Cancelled,
    /// A call's outcome is recorded; `failed`: as `CallFailed`.
    Called {
        failed: bool,
    },
}

/// Why an action did not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Failed {
    /// May work later (`unavailable`, `internal`, a timeout): retried up to `max_retries`.
    #[error("{0}")]
    Transient(String),
    /// The connection to NATS is down: retried for as long as it takes.
    #[error("NATS connection lost: {0}")]
    Disconnected(String),
    /// Retrying cannot help (a malformed command, an unknown aggregate, a bad key): straight to `on_error`.
    #[error("{0}")]
    Permanent(String),
}

/// What actions need to run.
#[derive(Clone)]
pub struct Effects {
    commands: Arc<CommandService>,
    client: Client,
    api_prefix: String,
}

impl Effects {
    pub fn new(commands: Arc<CommandService>, client: Client, api_prefix: impl Into<String>) -> Self {
        Self { commands, client, api_prefix: api_prefix.into() }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn store(&self) -> &EventStore {
        self.commands.store()
    }

    /// Runs `pending` once, under the reactor's lease `fence`, counted in `eddy_reactor_actions_total`.
    pub async fn run(&self, reactor: &str, pending: &Pending, fence: &Fence) -> Result<Done, Failed> {
        let result = self.run_once(reactor, pending, fence).await;
        let outcome = match &result {
            Ok(Done::Command(Some(_))) => "rejected",
            Ok(_) => "ok",
            Err(Failed::Transient(_)) => "transient",
            Err(Failed::Disconnected(_)) => "disconnected",
            Err(Failed::Permanent(_)) => "permanent",
        };
        crate::telemetry::metrics::reactor_action(reactor, pending.action.kind(), outcome);
        result
    }

    async fn run_once(&self, reactor: &str, pending: &Pending, fence: &Fence) -> Result<Done, Failed> {
        let result = match &pending.action {
            Action::Command { aggregate, command, data } => {
                self.command(pending, aggregate, command, data, fence).await
            }
            Action::Publish { subject, data } => self.publish(reactor, pending, subject, data).await,
            Action::Emit { aggregate, key, event_type, data } => {
                self.emit(pending, aggregate, key, event_type, data).await
            }
            Action::Schedule { subject, at, aggregate, key, event_type, version, data } => {
                let event = OutgoingEvent {
                    event_type: event_type.clone(),
                    version: *version,
                    // The firing's time is the time it was set for, whenever the server appends it.
                    time: *at,
                    command_id: pending.id.clone(),
                    command_digest: String::new(),
                    correlation_id: pending.correlation_id.clone(),
                    causation_id: pending.id.clone(),
                    msg_id: pending.id.clone(),
                    traceparent: pending.child_trace(),
                    data: data.clone(),
                };
                let store = self.commands.store();
                match store.schedule(subject, *at, aggregate, key, &event).await {
                    Ok(()) => Ok(Done::Scheduled),
                    Err(e) => Err(Failed::Transient(format!("timer on {subject}: {e}"))),
                }
            }
            Action::Cancel { subject } => match self.commands.store().cancel_schedule(subject).await {
                Ok(()) => Ok(Done::Cancelled),
                Err(e) => Err(Failed::Transient(format!("cancelling the timer on {subject}: {e}"))),
            },
            // Calls record their outcome and run through `Runner::run_call` (call/run.rs).
            Action::Call(call) => {
                Err(Failed::Permanent(format!("the call {} ran outside its runner", call.target.name())))
            }
        };
        match result {
            Err(Failed::Transient(m)) if self.client.connection_state() != State::Connected => {
                Err(Failed::Disconnected(m))
            }
            other => other,
        }
    }

    async fn command(
        &self,
        p: &Pending,
        aggregate: &str,
        command: &str,
        data: &Json,
        fence: &Fence,
    ) -> Result<Done, Failed> {
        let body = serde_json::to_vec(data).expect("JSON serializes");
        let failure = if self.commands.has(aggregate) {
            let ctx = CommandContext {
                command_id: Some(p.id.clone()),
                expected_version: None,
                correlation_id: Some(p.correlation_id.clone()).filter(|c| !c.is_empty()),
                causation_id: Some(p.id.clone()),
                fence: Some(fence.clone()),
                traceparent: p.trace(),
            };
            self.commands.execute(aggregate, command, &body, ctx).await.error.clone()
        } else {
            self.remote_command(p, aggregate, command, body, fence).await?
        };
        match failure {
            None => Ok(Done::Command(None)),
            Some(f) if f.code == ErrorCode::Rejected => Ok(Done::Command(Some(f))),
            // The store did not answer (a stream without a leader during an election, a server restarting):
            // not the action's fault, so it is waited out like a lost connection rather than spending the
            // retries and parking a saga's step. Found by the fault suite (tests/chaos.rs) on a leader loss.
            Some(f) if f.code == ErrorCode::Unavailable => {
                Err(Failed::Disconnected(format!("{aggregate}.{command}: {}: {}", f.code.as_str(), f.message())))
            }
            Some(f) if f.code == ErrorCode::Internal => {
                Err(Failed::Transient(format!("{aggregate}.{command}: {}: {}", f.code.as_str(), f.message())))
            }
            Some(f) => Err(Failed::Permanent(format!("{aggregate}.{command}: {}: {}", f.code.as_str(), f.message()))),
        }
    }

    /// A command for an aggregate another engine decides, over NATS.
    async fn remote_command(
        &self,
        p: &Pending,
        aggregate: &str,
        command: &str,
        body: Vec<u8>,
        fence: &Fence,
    ) -> Result<Option<Failure>, Failed> {
        let mut h = HeaderMap::new();
        h.insert(headers::COMMAND_ID, p.id.as_str());
        h.insert(LEASE_HEADER, fence.header_value().as_str());
        h.insert(headers::CAUSATION_ID, p.id.as_str());
        if !p.correlation_id.is_empty() {
            h.insert(headers::CORRELATION_ID, p.correlation_id.as_str());
        }
        if let Some(trace) = p.trace() {
            h.insert(headers::TRACEPARENT, trace.child().to_string().as_str());
        }
        let subject = format!("{}.cmd.{aggregate}.{command}", self.api_prefix);
        let request = async_nats::Request::new().headers(h).payload(body.into()).timeout(Some(Duration::from_secs(10)));
        let reply = self.client.send_request(subject.clone(), request).await.map_err(|e| match e.kind() {
            RequestErrorKind::NoResponders => Failed::Transient(format!("no engine serves {subject}")),
            RequestErrorKind::TimedOut => Failed::Transient(format!("{subject} timed out")),
            _ => Failed::Transient(format!("{subject}: {e}")),
        })?;
        let json: Json = serde_json::from_slice(&reply.payload)
            .map_err(|e| Failed::Transient(format!("{subject}: the reply is not JSON: {e}")))?;
        if json["ok"] == true {
            return Ok(None);
        }
        let code = json["error"]["code"].as_str().and_then(ErrorCode::parse).unwrap_or(ErrorCode::Internal);
        Ok(Some(Failure::new(code, json["error"]["message"].as_str().unwrap_or_default())))
    }

    async fn publish(&self, reactor: &str, p: &Pending, subject: &str, data: &Json) -> Result<Done, Failed> {
        let mut h = HeaderMap::new();
        h.insert(REACTOR_HEADER, reactor);
        h.insert(EFFECT_ID_HEADER, p.id.as_str());
        h.insert(headers::MSG_ID, p.id.as_str());
        h.insert(headers::CAUSATION_ID, p.id.as_str());
        if !p.correlation_id.is_empty() {
            h.insert(headers::CORRELATION_ID, p.correlation_id.as_str());
        }
        h.insert(headers::TRACEPARENT, p.child_trace().as_str());
        let payload = serde_json::to_vec(data).expect("JSON serializes");
        self.client
            .publish_with_headers(subject.to_string(), h, payload.into())
            .await
            .map_err(|e| Failed::Disconnected(format!("publish to {subject}: {e}")))?;
        Ok(Done::Published)
    }

    /// Whether `append` (a saga's rejection record, appended without an expected sequence) is stored already.
    /// `after` is the seq of the event that caused the rejected action: the record can only lie after it.
    pub async fn recorded(&self, append: &super::Append, after: u64) -> Result<bool, Failed> {
        let store = self.commands.store();
        let failed = |e: store::Error| {
            Failed::Transient(format!("{} on events.{}.{}: {e}", append.event_type, append.aggregate, append.key))
        };
        // Usually nothing lies after the cause: one direct get settles it.
        match store.last_event(&append.aggregate, &append.key).await.map_err(failed)? {
            Some(last) if last.seq > after => {}
            _ => return Ok(false),
        }
        let stored = store.load(&append.aggregate, &append.key, after + 1).await.map_err(failed)?;
        Ok(stored.iter().any(|e| e.command_id == append.msg_id))
    }

    /// Appends `append` for a reactor (a saga's rejection record) unless it is stored already, retried like any
    /// action. Without an expected sequence only the msg id guards the append, and only within the dedup window:
    /// an action run again later (an outbox kept across a crash or a freeze) would record it twice. Found by
    /// the fault suite (tests/chaos.rs).
    /// `lease` is checked again right before the append: looking for the record took a round trip.
    pub async fn record(&self, append: &super::Append, after: u64, lease: &dyn HeldLease) -> Result<(), Failed> {
        if append.expected_seq.is_none() && self.recorded(append, after).await? {
            return Ok(());
        }
        if !lease.valid() {
            return Err(Failed::Disconnected("the lease is past its deadline".into()));
        }
        let event = append.event(Utc::now());
        let store = self.commands.store();
        match store.append_expecting(&append.aggregate, &append.key, append.expected_seq, &[event]).await {
            Ok(_) => Ok(()),
            Err(e) if self.client.connection_state() != State::Connected => Err(Failed::Disconnected(e.to_string())),
            Err(e) => Err(Failed::Transient(format!(
                "{} on events.{}.{}: {e}",
                append.event_type, append.aggregate, append.key
            ))),
        }
    }

    async fn emit(
        &self,
        p: &Pending,
        aggregate: &str,
        key: &str,
        event_type: &str,
        data: &Json,
    ) -> Result<Done, Failed> {
        if !valid_id(key) {
            return Err(Failed::Permanent(format!("emit {event_type}: key `{key}` is not a valid id")));
        }
        let store = self.commands.store();
        let unavailable = |e: store::Error| match e {
            store::Error::TooLarge { .. } => Failed::Permanent(format!("emit {event_type}: {e}")),
            e => Failed::Transient(format!("emit {event_type}: {e}")),
        };
        // The reactor is the only writer of its subjects, so a conflict means an earlier attempt or another
        // engine got there first; reloading settles it, and the msg id makes the repeat a no-op.
        for _ in 0..16 {
            let last = store.last_event(aggregate, key).await.map_err(unavailable)?;
            // Stored already, maybe before the dedup window (an engine woken from a long pause, a stale
            // outbox): the msg id alone would not catch it then. It can only lie after the event that caused
            // it, and usually nothing does, so the subject is read only when something is there.
            if let Some(last) = last.as_ref().filter(|e| e.seq > p.seq) {
                if last.command_id == p.id {
                    return Ok(Done::Emitted);
                }
                let newer = store.load(aggregate, key, p.seq + 1).await.map_err(unavailable)?;
                if newer.iter().any(|e| e.command_id == p.id) {
                    return Ok(Done::Emitted);
                }
            }
            let (expected, version) = last.map_or((0, 0), |e| (e.seq, e.version));
            let event = OutgoingEvent {
                event_type: event_type.to_string(),
                version: version + 1,
                time: Utc::now(),
                command_id: p.id.clone(),
                command_digest: String::new(),
                correlation_id: if p.correlation_id.is_empty() { p.id.clone() } else { p.correlation_id.clone() },
                causation_id: p.id.clone(),
                msg_id: p.id.clone(),
                traceparent: p.child_trace(),
                data: data.clone(),
            };
            match store.append(aggregate, key, expected, &[event]).await.map_err(unavailable)? {
                Appended::Stored { .. } | Appended::Duplicate => return Ok(Done::Emitted),
                Appended::Conflict => continue,
            }
        }
        Err(Failed::Transient(format!("emit {event_type}: events.{aggregate}.{key} keeps moving")))
    }
}
