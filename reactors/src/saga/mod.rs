//! The `saga` kind: a state machine with one instance per business process. Each instance is event-sourced
//! on `events.saga-<saga>.<instance>`: a transition is decided from a trigger and stored there with the
//! subject's expected last sequence (so it happens once, however many engines race), and the stored
//! transition is what runs the new state's `do` actions and arms its timer. The sled entry is that log
//! folded: a rebuild replays it and repeats nothing.

mod config;
mod decide;
pub mod state;

use std::collections::BTreeMap;

use eddy_engine::api::Failure;
use eddy_engine::cel::Expr;
use eddy_engine::envelope::StoredEvent;
use eddy_engine::host::reactor::{Action, Append, Entries, InstanceSummary, Kind, Logic, Outcome, Pending, Policy};
use eddy_engine::host::{subject_filters, Pattern, PatternMap};
use serde_json::{json, Map, Value as Json};

pub use config::load;
pub use decide::{Decided, Instances, Stored};
use state::{Instance, Rejected, REJECTED};

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
    pub initial: String,
    pub correlate: PatternMap<Expr>,
    pub states: BTreeMap<String, State>,
    /// Every pattern of an event it reads, besides its own log.
    pub patterns: Vec<Pattern>,
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

    fn handle(&self, event: &StoredEvent, state: &dyn Entries) -> Result<Outcome, String> {
        self.decide(event, &Stored(state), false).map(Decided::into_outcome)
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
        })
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
        })
    }
}
