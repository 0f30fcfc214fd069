//! Declarative aggregates: typed input, CEL rules, CEL emits, and CEL `apply` folding events into state.

mod config;
pub mod input;
mod message;
mod meta;

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json};

pub use message::Message;
pub use meta::{date_of, CommandMeta, EventMeta};

use crate::cel::{self, EventScope, Expr, Vars};
use crate::envelope::StoredEvent;
use input::Field;

/// A compiled aggregate.
#[derive(Debug, Clone)]
pub struct Aggregate {
    pub name: String,
    pub initial: Map<String, Json>,
    pub commands: BTreeMap<String, Command>,
    pub events: BTreeMap<String, EventDef>,
    /// A snapshot of an instance's state after every this many events (0: never).
    pub snapshot_every: u64,
    /// Of everything that folds events into state (see `config::fingerprint`): stamps snapshots.
    pub fingerprint: String,
}

/// A compiled command.
#[derive(Debug, Clone)]
pub struct Command {
    pub name: String,
    pub input: Vec<Field>,
    pub rules: Vec<Rule>,
    pub emit: Vec<Emit>,
}

/// A rule: `check` must hold, else the command is rejected with `error`.
#[derive(Debug, Clone)]
pub struct Rule {
    pub check: Expr,
    pub error: Message,
}

/// An event a command emits.
#[derive(Debug, Clone)]
pub struct Emit {
    pub event: String,
    pub data: Expr,
    pub when: Option<Expr>,
}

/// How an event type changes the state, and how its older versions read.
#[derive(Debug, Clone)]
pub struct EventDef {
    pub apply: Expr,
    /// The version of new events' data.
    pub version: u32,
    /// `upcasts[n - 1]` reads version `n` as `n + 1`.
    pub upcasts: Vec<Expr>,
    /// Older names of this type.
    pub renamed_from: Vec<String>,
}

/// An event decided by a command, not yet appended.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_type: String,
    pub data: Json,
}

/// Why a command produced no events.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecideError {
    /// A rule failed: a business outcome.
    #[error("{0}")]
    Rejected(String),
    /// An expression failed at run time.
    #[error("{0}")]
    Eval(#[from] cel::Error),
}

impl Aggregate {
    /// Checks the rules and evaluates the emits against the state before the command.
    pub fn decide(
        &self,
        command: &Command,
        state: &Map<String, Json>,
        cmd: &Map<String, Json>,
        meta: &CommandMeta,
    ) -> Result<Vec<NewEvent>, DecideError> {
        let mut vars = Vars::new();
        vars.set_value("state", cel::map_to_cel(state))
            .set_value("cmd", cel::map_to_cel(cmd))
            .set_value("meta", meta.to_cel());
        for rule in &command.rules {
            if !rule.check.eval_bool(&vars)? {
                return Err(DecideError::Rejected(rule.error.render(&vars)));
            }
        }
        let mut events = Vec::with_capacity(command.emit.len());
        for emit in &command.emit {
            if let Some(when) = &emit.when {
                if !when.eval_bool(&vars)? {
                    continue;
                }
            }
            let data = Json::Object(emit.data.eval_map(&vars)?);
            events.push(NewEvent { event_type: emit.event.clone(), data });
        }
        Ok(events)
    }

    /// Folds one event into `state`. An event type this config does not know leaves the state as it is:
    /// the stream may hold types from other versions of the config.
    pub fn apply(&self, state: &mut Map<String, Json>, data: &Json, meta: &EventMeta) -> Result<(), cel::Error> {
        let Some(def) = self.events.get(&meta.event_type) else {
            return Ok(());
        };
        let mut vars = Vars::new();
        vars.set_value("state", cel::map_to_cel(state)).set("event", data).set_value("meta", meta.to_cel());
        for (k, v) in def.apply.eval_map(&vars)? {
            state.insert(k, v);
        }
        Ok(())
    }
}

impl Aggregate {
    /// Folds a stored event into `state`, as [`Aggregate::apply`] does, through the direct evaluator where
    /// the expression allows it: loading and replaying long histories is dominated by this fold.
    pub fn apply_stored(&self, state: &mut Map<String, Json>, event: &StoredEvent) -> Result<(), cel::Error> {
        let Some(def) = self.events.get(&event.event_type) else {
            return Ok(());
        };
        let current = Json::Object(std::mem::take(state));
        let changes = EventScope::new(event).bind("state", &current, None).eval_map(&def.apply);
        let Json::Object(map) = current else { unreachable!("built from a map") };
        *state = map;
        for (k, v) in changes? {
            state.insert(k, v);
        }
        Ok(())
    }

    /// Whether the `apply` of `event_type` reads `meta`, whose `seq` is only known once stored.
    pub fn apply_uses_meta(&self, event_type: &str) -> bool {
        self.events.get(event_type).is_some_and(|d| d.apply.uses("meta"))
    }
}
