//! The `rule` kind: an entry of state per key, updated by CEL per event pattern, and actions that compare
//! the entry before (`prev`) and after (`state`) the event.

mod config;

use eddy_engine::cel::{EventScope, Expr};
use eddy_engine::envelope::StoredEvent;
use eddy_engine::host::reactor::{Entries, Kind, Logic, Outcome, Policy};
use eddy_engine::host::{subject_filters, PatternMap};
use serde_json::{Map, Value as Json};

pub use config::load;

use crate::common::ActionDef;

/// A compiled rule reactor.
#[derive(Debug)]
pub struct Rule {
    pub name: String,
    pub fingerprint: String,
    pub policy: Policy,
    pub on: PatternMap<()>,
    pub key: Option<Expr>,
    pub initial: Map<String, Json>,
    pub update: PatternMap<Expr>,
    pub then: Vec<ActionDef>,
    /// Fields each variable is read by (`None`: as a whole); only those are bound.
    pub event_fields: Option<Vec<String>>,
    pub meta_fields: Option<Vec<String>>,
    pub update_state_fields: Option<Vec<String>>,
    pub then_state_fields: Option<Vec<String>>,
    pub then_prev_fields: Option<Vec<String>>,
}

impl Logic for Rule {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> Kind {
        Kind::Rule
    }

    fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    fn policy(&self) -> &Policy {
        &self.policy
    }

    fn filters(&self) -> Vec<String> {
        subject_filters(self.on.patterns())
    }

    fn reads(&self, event: &StoredEvent) -> bool {
        self.on.find(&event.aggregate, &event.event_type).is_some()
    }

    /// The entry the event updates: `key`, or the event's id.
    fn partition_key(&self, event: &StoredEvent) -> Option<String> {
        match &self.key {
            Some(expr) => EventScope::new(event).eval_string(expr).ok(),
            None => Some(event.id.clone()),
        }
    }

    fn handle(&self, event: &StoredEvent, state: &dyn Entries) -> Result<Outcome, String> {
        let scope = || EventScope::new(event).fields(self.event_fields.as_deref(), self.meta_fields.as_deref());
        let key = match &self.key {
            Some(expr) => scope().eval_string(expr).map_err(|e| e.to_string())?,
            None => event.id.clone(),
        };
        if key.is_empty() {
            return Ok(Outcome::default());
        }
        let prev = Json::Object(state.get(&key)?.unwrap_or_else(|| self.initial.clone()));
        let mut entry = prev.clone();
        if let Some(update) = self.update.find(&event.aggregate, &event.event_type) {
            let scope = scope().bind("state", &prev, self.update_state_fields.as_deref());
            let changes = scope.eval_map(update).map_err(|e| e.to_string())?;
            if let Json::Object(map) = &mut entry {
                map.extend(changes);
            }
        }
        let mut outcome = Outcome::default();
        if !self.then.is_empty() {
            let scope = scope().bind("state", &entry, self.then_state_fields.as_deref()).bind(
                "prev",
                &prev,
                self.then_prev_fields.as_deref(),
            );
            for action in &self.then {
                outcome.actions.extend(action.build(&scope, &key)?);
            }
        }
        if entry != prev {
            let Json::Object(map) = entry else { unreachable!("entries are objects") };
            outcome.changes.push((key, Some(map)));
        }
        Ok(outcome)
    }
}
