//! The `saga` kind: a state machine with one instance per business process. Each instance is event-sourced
//! on `events.saga-<saga>.<instance>`: a transition is decided from a trigger and stored there with the
//! subject's expected last sequence (so it happens once, however many engines race), and the stored
//! transition is what runs the new state's `do` actions and arms its timer. The sled entry is that log
//! folded: a rebuild replays it and repeats nothing.

mod config;
mod decide;
pub mod state;

use std::collections::BTreeMap;

use eddy_engine::api::{ErrorCode, Failure};
use eddy_engine::cel::Expr;
use eddy_engine::envelope::StoredEvent;
use eddy_engine::host::reactor::steer::{Steer, SteerAction, STEERED};
use eddy_engine::host::reactor::{Action, Append, Entries, InstanceSummary, Kind, Logic, Outcome, Pending, Policy};
use eddy_engine::host::{subject_filters, Pattern, PatternMap};
use serde_json::{json, Map, Value as Json};

pub use config::load;
pub use decide::{Decided, Instances, Stored};
use state::{Instance, Rejected, ENTERED, REJECTED, STARTED};

use crate::common::ActionDef;

/// The aggregate part of a saga's instance subjects. Prefixed, because a saga may share its name with the
/// aggregate it drives (the bank's `transfer`).
pub fn log_aggregate(saga: &str) -> String {
    format!("saga-{saga}")
}

/// A compiled saga.
#[derive(Debug)]
pub struct Saga {
    pub name: String,
    /// `saga-<name>`: instances live on `events.<log>.<instance>`.
    pub log: String,
    pub fingerprint: String,
    pub policy: Policy,
    pub start: Pattern,
    pub start_id: Option<Expr>,
    pub data: Expr,
    /// The current version: new instances start on it.
    pub version: u32,
    /// Every version instances may run on, the current one included.
    pub definitions: BTreeMap<u32, Definition>,
    /// Every pattern of an event it reads, besides its own log.
    pub patterns: Vec<Pattern>,
}

/// One version of the state machine.
#[derive(Debug)]
pub struct Definition {
    /// Of its `initial`, `states` and `correlate` as written: a change under running instances is refused.
    pub fingerprint: String,
    pub initial: String,
    pub correlate: PatternMap<Expr>,
    pub states: BTreeMap<String, State>,
}

impl Saga {
    /// The definition an instance runs on: the version it started on, which a config may have dropped.
    pub fn definition(&self, version: u32) -> Result<&Definition, String> {
        self.definitions.get(&version).ok_or_else(|| {
            let kept: Vec<String> = self.definitions.keys().map(u32::to_string).collect();
            format!(
                "saga `{}` has no version {version} any more (kept: {}); restore it under `versions.{version}`",
                self.name,
                kept.join(", ")
            )
        })
    }
}

/// One state.
#[derive(Debug)]
pub struct State {
    pub actions: Vec<ActionDef>,
    pub timeout_secs: Option<u64>,
    pub done: bool,
    pub on: PatternMap<Vec<Transition>>,
    pub rejected: Option<Vec<Transition>>,
    pub timeout: Option<Vec<Transition>>,
    pub replied: Option<Vec<Transition>>,
    pub failed: Option<Vec<Transition>>,
    pub cancel: Option<Vec<Transition>>,
}

/// One way out of a state.
#[derive(Debug)]
pub struct Transition {
    pub goto: String,
    pub when: Option<Expr>,
    pub set: Option<Expr>,
}

impl Logic for Saga {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> Kind {
        Kind::Saga
    }

    fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    fn policy(&self) -> &Policy {
        &self.policy
    }

    fn filters(&self) -> Vec<String> {
        let mut filters = subject_filters(&self.patterns);
        if filters.iter().all(|f| f != "events.>") {
            filters.push(format!("events.{}.*", self.log));
        }
        filters
    }

    fn reads(&self, event: &StoredEvent) -> bool {
        event.aggregate == self.log || self.patterns.iter().any(|p| p.matches(&event.aggregate, &event.event_type))
    }

    /// The instance the event is decided for, as [`Saga::decide`] finds it without the state: its log's
    /// key; a start's id; the instance its correlation id names; its `correlate`. A start whose instance
    /// exists already is decided, like any start, in the partition of its start id.
    fn partition_key(&self, event: &StoredEvent) -> Option<String> {
        if event.aggregate == self.log {
            return Some(event.id.clone());
        }
        let scope = eddy_engine::cel::EventScope::new(event);
        if self.start.matches(&event.aggregate, &event.event_type) {
            let id = match &self.start_id {
                Some(expr) => scope.eval_string(expr).ok()?,
                None => event.id.clone(),
            };
            if !id.is_empty() {
                return Some(id);
            }
        }
        if let Some(id) = self.correlated(&event.correlation_id) {
            return Some(id.to_string());
        }
        let expr =
            self.definitions.values().rev().find_map(|d| d.correlate.find(&event.aggregate, &event.event_type))?;
        scope.eval_string(expr).ok()
    }

    fn handle(&self, event: &StoredEvent, state: &dyn Entries) -> Result<Outcome, String> {
        let outcome = self.decide(event, &Stored(state), false).map(Decided::into_outcome)?;
        if outcome.append.is_some() {
            // From the trigger's store time to the transition decided: how long the saga took to move.
            let took = (chrono::Utc::now() - event.time).to_std().unwrap_or_default();
            eddy_engine::telemetry::metrics::saga_transition(&self.name, took);
        }
        Ok(outcome)
    }

    fn handle_ahead(&self, event: &StoredEvent, state: &dyn Entries) -> Result<Outcome, String> {
        self.decide(event, &Stored(state), true).map(Decided::into_outcome)
    }

    fn concurrent_actions(&self) -> bool {
        true
    }

    fn on_rejected(&self, pending: &Pending, failure: &Failure) -> Option<Append> {
        let id = self.correlated(&pending.correlation_id)?;
        let Action::Command { aggregate, command, .. } = &pending.action else { return None };
        let rejected = Rejected {
            entry: pending.seq,
            command: format!("{aggregate}.{command}"),
            code: failure.code.as_str().to_string(),
            message: failure.message().to_string(),
            effect: pending.id.clone(),
        };
        Some(Append {
            aggregate: self.log.clone(),
            key: id.to_string(),
            expected_seq: None,
            version: 0,
            event_type: REJECTED.to_string(),
            data: json!(rejected),
            msg_id: format!("{}:rejected", pending.id),
            correlation_id: pending.correlation_id.clone(),
            traceparent: pending.child_trace(),
        })
    }

    fn steer(&self, key: &str, entry: &Map<String, Json>, steer: &Steer) -> Result<Append, Failure> {
        let inst = Instance::from_entry(entry.clone()).map_err(|e| Failure::new(ErrorCode::Internal, e))?;
        if inst.done {
            let message = format!("instance `{key}` is in the final state `{}`", inst.state);
            return Err(Failure::new(ErrorCode::Conflict, message));
        }
        let def = self.definition(inst.saga_version).map_err(|e| Failure::new(ErrorCode::Conflict, e))?;
        if let Some(to) = steer.state.as_ref().filter(|s| !def.states.contains_key(*s)) {
            let known: Vec<&str> = def.states.keys().map(String::as_str).collect();
            let message = format!("saga `{}` has no state `{to}` (states: {})", self.name, known.join(", "));
            return Err(Failure::new(ErrorCode::Invalid, message));
        }
        let steer = Steer { entry: inst.entry, ..steer.clone() };
        let what = if steer.action == SteerAction::Cancel { "cancel" } else { "move" };
        Ok(Append {
            aggregate: self.log.clone(),
            key: key.to_string(),
            expected_seq: None,
            version: 0,
            event_type: STEERED.to_string(),
            data: json!(steer),
            // Replaced by the admin endpoint with one per request.
            msg_id: format!("{}:{key}:{what}", self.name),
            correlation_id: self.correlation(key),
            // An operator's request starts a trace of its own.
            traceparent: eddy_engine::telemetry::TraceParent::root().to_string(),
        })
    }

    fn started_by(&self, event: &StoredEvent) -> Option<(String, String)> {
        if !self.start.matches(&event.aggregate, &event.event_type) {
            return None;
        }
        let id = match &self.start_id {
            Some(expr) => eddy_engine::cel::EventScope::new(event).eval_string(expr).ok()?,
            None => event.id.clone(),
        };
        (!id.is_empty()).then(|| (self.log.clone(), id))
    }

    fn transition_view(&self, event: &StoredEvent) -> Option<Json> {
        if event.aggregate != self.log || !matches!(event.event_type.as_str(), STARTED | ENTERED) {
            return None;
        }
        let d = &event.data;
        Some(json!({"state": d["state"], "final": d["final"] == true, "data": d["data"]}))
    }

    fn instance(&self, _key: &str, entry: &Map<String, Json>) -> Option<InstanceSummary> {
        let inst = Instance::from_entry(entry.clone()).ok()?;
        Some(InstanceSummary {
            last: inst.history.last().map(|s| json!(s)),
            id: inst.id,
            state: inst.state,
            done: inst.done,
            started_at: inst.started_at,
            entered_at: inst.entered_at,
            timer_at: inst.timer_at,
            transitions: inst.version,
            version: inst.saga_version,
        })
    }
}
