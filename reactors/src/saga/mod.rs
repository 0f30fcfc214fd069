//! The `saga` kind: a state machine with one instance per business process. Each instance is event-sourced
//! on `events.saga-<saga>.<instance>`: a transition is decided from a trigger and stored there with the
//! subject's expected last sequence (so it happens once, however many engines race), and the stored
//! transition is what runs the new state's `do` actions and arms its timer. The sled entry is that log
//! folded: a rebuild replays it and repeats nothing.

mod config;
pub mod state;

use std::collections::BTreeMap;

use chrono::Duration;
use eddy_engine::aggregate::input::valid_id;
use eddy_engine::cel::{EventScope, Expr};
use eddy_engine::command::Failure;
use eddy_engine::envelope::StoredEvent;
use eddy_engine::host::reactor::{Action, Append, Entries, InstanceSummary, Logic, Outcome, Pending, Policy};
use eddy_engine::host::{subject_filters, Pattern, PatternMap};
use eddy_engine::store::timer_subject;
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value as Json};

pub use config::load;
use state::{Entered, Instance, Rejected, Step, TimerFired, ENTERED, REJECTED, STARTED, TIMER_FIRED};
use state::{ON_REJECTED, ON_TIMEOUT};

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

fn parse<T: DeserializeOwned>(event: &StoredEvent) -> Result<T, String> {
    T::deserialize(&event.data).map_err(|e| format!("seq {}: unreadable {}: {e}", event.seq, event.event_type))
}

impl Saga {
    fn instance(&self, state: &dyn Entries, id: &str) -> Result<Option<Instance>, String> {
        state.get(id)?.map(Instance::from_entry).transpose()
    }

    /// The correlation id of everything an instance does.
    fn correlation(&self, id: &str) -> String {
        format!("{}:{id}", self.name)
    }

    /// An event of an instance's own log.
    fn on_log(&self, event: &StoredEvent, state: &dyn Entries, ahead: bool) -> Result<Outcome, String> {
        let inst = self.instance(state, &event.id)?;
        match event.event_type.as_str() {
            STARTED | ENTERED => {
                if inst.as_ref().is_some_and(|i| event.seq <= i.entry) {
                    return Ok(Outcome::default());
                }
                Ok(self.fold(event, inst, parse(event)?))
            }
            // Read ahead of the stream: only where the log ends matters now; it is decided in its turn.
            _ if ahead => Ok(inst.map(|mut i| noted(&mut i, event.seq)).unwrap_or_default()),
            TIMER_FIRED => {
                let Some(mut inst) = inst else { return Ok(Outcome::default()) };
                let fired: TimerFired = parse(event)?;
                let mut outcome = noted(&mut inst, event.seq);
                // A state of an older definition (its log was folded after a change) has no transitions.
                let timeout = self.states.get(&inst.state).and_then(|st| st.timeout.as_ref());
                match timeout {
                    // A timer of a state already left, or of an entry before this one: stale.
                    Some(list) if fired.entry == inst.entry && !inst.done => {
                        outcome.append = self.transition(&inst, list, event, &Json::Null, ON_TIMEOUT)?;
                        outcome.ignored = outcome.append.is_none();
                    }
                    _ => {}
                }
                Ok(outcome)
            }
            REJECTED => {
                let Some(mut inst) = inst else { return Ok(Outcome::default()) };
                let rejected: Rejected = parse(event)?;
                let mut outcome = noted(&mut inst, event.seq);
                if rejected.entry != inst.entry || inst.done {
                    return Ok(outcome);
                }
                let rejection =
                    json!({"command": rejected.command, "code": rejected.code, "message": rejected.message});
                match self.states.get(&inst.state).and_then(|st| st.rejected.as_ref()) {
                    Some(list) => {
                        outcome.append = self.transition(&inst, list, event, &rejection, ON_REJECTED)?;
                        outcome.ignored = outcome.append.is_none();
                    }
                    None => {
                        tracing::warn!(saga = %self.name, instance = %inst.id, state = %inst.state, command = %rejected.command, reason = %rejected.message, "a command was rejected and the state has no `rejected` transition; the instance waits");
                        outcome.ignored = true;
                    }
                }
                Ok(outcome)
            }
            // An event a `do` emitted: part of the log, no trigger.
            _ => Ok(inst.map(|mut i| noted(&mut i, event.seq)).unwrap_or_default()),
        }
    }

    /// Applies a stored transition: the new state, and what entering it does.
    fn fold(&self, event: &StoredEvent, prev: Option<Instance>, entered: Entered) -> Outcome {
        let id = event.id.clone();
        let mut actions = Vec::new();
        // Each entry's timer has its own subject, so cancelling the old one never touches the new one,
        // even when a crash makes both actions run again.
        if let Some(prev) = prev.as_ref().filter(|p| p.timer_at.is_some()) {
            actions.push(Action::Cancel { subject: self.timer(&id, prev.entry) });
        }
        if let Some(at) = entered.timer_at {
            actions.push(Action::Schedule {
                subject: self.timer(&id, event.seq),
                at,
                aggregate: self.log.clone(),
                key: id.clone(),
                event_type: TIMER_FIRED.to_string(),
                version: 0,
                data: json!(TimerFired { entry: event.seq, state: entered.state.clone() }),
            });
        }
        actions.extend(entered.actions);
        let step = Step {
            seq: event.seq,
            cause: entered.cause,
            trigger: entered.trigger,
            from: entered.from,
            to: entered.state.clone(),
            at: event.time,
        };
        let (started_at, last_seq, mut history) = match prev {
            Some(p) => (p.started_at, p.last_seq.max(event.seq), p.history),
            None => (event.time, event.seq, Vec::new()),
        };
        history.push(step);
        let inst = Instance {
            id: id.clone(),
            state: entered.state,
            data: entered.data,
            done: entered.done,
            entry: event.seq,
            version: event.version,
            last_seq,
            started_at,
            entered_at: event.time,
            timer_at: entered.timer_at,
            history,
        };
        Outcome {
            changes: vec![(id.clone(), Some(inst.to_entry()))],
            actions,
            correlation_id: Some(self.correlation(&id)),
            ..Outcome::default()
        }
    }

    fn timer(&self, id: &str, entry: u64) -> String {
        timer_subject(&self.log, id, entry)
    }

    /// An event from outside the saga's log: a start, or a trigger of an instance.
    fn on_event(&self, event: &StoredEvent, state: &dyn Entries) -> Result<Outcome, String> {
        let scope = EventScope::new(event);
        if self.start.matches(&event.aggregate, &event.event_type) {
            let id = match &self.start_id {
                Some(expr) => scope.eval_string(expr).map_err(|e| format!("start.id: {e}"))?,
                None => event.id.clone(),
            };
            if !id.is_empty() && self.instance(state, &id)?.is_none() {
                if !valid_id(&id) {
                    return Err(format!("start.id: `{id}` is not a valid instance id"));
                }
                let mut data = scope.eval_map(&self.data).map_err(|e| format!("data: {e}"))?;
                data.insert("id".into(), Json::String(id.clone()));
                let trigger = format!("{}.{}", event.aggregate, event.event_type);
                let append = self.enter(event, &id, None, &self.initial, data, trigger, &Json::Null)?;
                return Ok(Outcome { append: Some(append), ..Outcome::default() });
            }
        }
        let id = match event.correlation_id.strip_prefix(&self.correlation("")) {
            Some(id) => id.to_string(),
            None => match self.correlate.find(&event.aggregate, &event.event_type) {
                Some(expr) => scope.eval_string(expr).map_err(|e| format!("correlate: {e}"))?,
                None => return Ok(Outcome::default()),
            },
        };
        if id.is_empty() {
            return Ok(Outcome::default());
        }
        let ignored = Outcome { ignored: true, ..Outcome::default() };
        let Some(inst) = self.instance(state, &id)? else { return Ok(ignored) };
        if inst.moved_by(event.seq) {
            return Ok(Outcome::default());
        }
        let list = self.states.get(&inst.state).and_then(|st| st.on.find(&event.aggregate, &event.event_type));
        let (Some(list), false) = (list, inst.done) else { return Ok(ignored) };
        let trigger = format!("{}.{}", event.aggregate, event.event_type);
        let append = self.transition(&inst, list, event, &Json::Null, &trigger)?;
        Ok(Outcome { ignored: append.is_none(), append, ..Outcome::default() })
    }

    /// The first transition of `list` whose `when` holds, as the event that records it.
    fn transition(
        &self,
        inst: &Instance,
        list: &[Transition],
        event: &StoredEvent,
        rejection: &Json,
        trigger: &str,
    ) -> Result<Option<Append>, String> {
        let saga = inst.saga_var();
        let scope = EventScope::new(event).bind("saga", &saga, None).bind("rejection", rejection, None);
        for t in list {
            if let Some(when) = &t.when {
                if !scope.eval_bool(when).map_err(|e| format!("{}: when: {e}", inst.state))? {
                    continue;
                }
            }
            let mut data = inst.data.clone();
            if let Some(set) = &t.set {
                data.extend(scope.eval_map(set).map_err(|e| format!("{}: set: {e}", inst.state))?);
            }
            data.insert("id".into(), Json::String(inst.id.clone()));
            return self.enter(event, &inst.id, Some(inst), &t.goto, data, trigger.to_string(), rejection).map(Some);
        }
        Ok(None)
    }

    /// The event recording the entry into `state`, with what the state does on entry.
    #[allow(clippy::too_many_arguments)]
    fn enter(
        &self,
        event: &StoredEvent,
        id: &str,
        inst: Option<&Instance>,
        state: &str,
        data: Map<String, Json>,
        trigger: String,
        rejection: &Json,
    ) -> Result<Append, String> {
        let st = &self.states[state];
        let saga = Json::Object(data);
        let scope = EventScope::new(event).bind("saga", &saga, None).bind("rejection", rejection, None);
        let mut actions = Vec::new();
        for (i, action) in st.actions.iter().enumerate() {
            actions.extend(action.build(&scope, id).map_err(|e| format!("{state}: do[{i}]: {e}"))?);
        }
        let Json::Object(data) = saga else { unreachable!("built from a map") };
        let entered = Entered {
            state: state.to_string(),
            from: inst.map(|i| i.state.clone()),
            trigger,
            cause: event.seq,
            data,
            actions,
            // From the trigger's time, so a replay of the stream arms the same timer.
            timer_at: st.timeout_secs.map(|s| event.time + Duration::seconds(s as i64)),
            done: st.done,
        };
        Ok(Append {
            aggregate: self.log.clone(),
            key: id.to_string(),
            expected_seq: Some(inst.map_or(0, |i| i.last_seq)),
            version: inst.map_or(0, |i| i.version) + 1,
            event_type: if inst.is_some() { ENTERED } else { STARTED }.to_string(),
            data: json!(entered),
            msg_id: format!("{}:{}:enter", self.name, event.seq),
            correlation_id: self.correlation(id),
        })
    }
}

/// Records that the log reaches `seq`.
fn noted(inst: &mut Instance, seq: u64) -> Outcome {
    if seq <= inst.last_seq {
        return Outcome::default();
    }
    inst.last_seq = seq;
    Outcome { changes: vec![(inst.id.clone(), Some(inst.to_entry()))], ..Outcome::default() }
}

impl Logic for Saga {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "saga"
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
        if event.aggregate == self.log {
            return self.on_log(event, state, false);
        }
        self.on_event(event, state)
    }

    fn handle_ahead(&self, event: &StoredEvent, state: &dyn Entries) -> Result<Outcome, String> {
        if event.aggregate == self.log {
            return self.on_log(event, state, true);
        }
        Ok(Outcome::default())
    }

    fn concurrent_actions(&self) -> bool {
        true
    }

    fn on_rejected(&self, pending: &Pending, failure: &Failure) -> Option<Append> {
        let id = pending.correlation_id.strip_prefix(&self.correlation(""))?;
        let Action::Command { aggregate, command, .. } = &pending.action else { return None };
        let rejected = Rejected {
            entry: pending.seq,
            command: format!("{aggregate}.{command}"),
            code: failure.code.as_str().to_string(),
            message: failure.message.clone(),
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
