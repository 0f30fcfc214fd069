//! A saga's decisions, with its instances typed. The host keeps instances as JSON entries in sled and goes
//! through [`Saga::decide`] with [`Stored`]; an offline replay keeps them typed in memory, so a step costs no
//! JSON round trip of the instance (its history grows with every transition).

use std::borrow::Cow;
use std::collections::HashMap;

use chrono::Duration;
use eddy_engine::aggregate::input::valid_id;
use eddy_engine::cel::EventScope;
use eddy_engine::envelope::StoredEvent;
use eddy_engine::host::reactor::call::{self, Failure as CallFailure, Replied};
use eddy_engine::host::reactor::steer::{Steer, SteerAction, STEERED};
use eddy_engine::host::reactor::{Action, Append, Entries, Outcome};
use eddy_engine::store::timer_subject;
use eddy_engine::telemetry::TraceParent;
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value as Json};

use super::state::{Entered, Instance, Rejected, Step, TimerFired, ENTERED, REJECTED, STARTED, TIMER_FIRED};
use super::state::{CANCELLED, ON_CANCEL, ON_FAILED, ON_REJECTED, ON_REPLIED, ON_TIMEOUT};
use super::{Saga, Transition};

/// What a trigger binds besides `saga`, `event` and `meta`: null unless the trigger sets it.
#[derive(Default)]
struct Vars {
    rejection: Json,
    reply: Json,
    failure: Json,
    operator: Json,
}

impl Vars {
    fn scope<'a>(&'a self, event: &'a StoredEvent, saga: &'a Json) -> EventScope<'a> {
        EventScope::new(event)
            .bind("saga", saga, None)
            .bind("rejection", &self.rejection, None)
            .bind("reply", &self.reply, None)
            .bind("failure", &self.failure, None)
            .bind("operator", &self.operator, None)
    }
}

/// Where a saga finds its instances.
pub trait Instances {
    fn instance(&self, id: &str) -> Result<Option<Cow<'_, Instance>>, String>;

    /// The version on which the event at `cause` started instance `id`, when that is already known: an
    /// offline replay starts a recorded instance again on the version it started on live, whatever the
    /// current one is. The host starts every new instance on the current version.
    fn started_on(&self, _id: &str, _cause: u64) -> Option<u32> {
        None
    }
}

/// The host's entries: instances stored as JSON.
pub struct Stored<'a>(pub &'a dyn Entries);

impl Instances for Stored<'_> {
    fn instance(&self, id: &str) -> Result<Option<Cow<'_, Instance>>, String> {
        Ok(self.0.get(id)?.map(Instance::from_entry).transpose()?.map(Cow::Owned))
    }
}

impl Instances for HashMap<String, Instance> {
    fn instance(&self, id: &str) -> Result<Option<Cow<'_, Instance>>, String> {
        Ok(self.get(id).map(Cow::Borrowed))
    }
}

/// A decision with the instance still typed.
#[derive(Debug, Default)]
pub struct Decided {
    /// Everything but the instance's entry.
    pub outcome: Outcome,
    /// The instance after the event, when the event changed it.
    pub instance: Option<Instance>,
    /// The transition the outcome's append records.
    pub entered: Option<Entered>,
}

impl Decided {
    /// The outcome as the host stores it: the instance becomes its JSON entry.
    pub fn into_outcome(self) -> Outcome {
        let mut outcome = self.outcome;
        if let Some(inst) = self.instance {
            outcome.changes.push((inst.id.clone(), Some(inst.to_entry())));
        }
        outcome
    }

    fn ignored() -> Self {
        Decided { outcome: Outcome { ignored: true, ..Outcome::default() }, ..Decided::default() }
    }

    /// An outcome that appends `found` (the first transition whose `when` holds), or is ignored.
    fn appending(found: Option<(Append, Entered)>, instance: Option<Instance>) -> Self {
        let ignored = found.is_none();
        let (append, entered) = found.unzip();
        Decided { outcome: Outcome { append, ignored, ..Outcome::default() }, instance, entered }
    }
}

fn parse<T: DeserializeOwned>(event: &StoredEvent) -> Result<T, String> {
    T::deserialize(&event.data).map_err(|e| format!("seq {}: unreadable {}: {e}", event.seq, event.event_type))
}

/// Records that the log reaches `seq`: the instance, if that moves it.
fn noted(mut inst: Instance, seq: u64) -> (Instance, bool) {
    let moved = seq > inst.last_seq;
    if moved {
        inst.last_seq = seq;
    }
    (inst, moved)
}

impl Saga {
    /// Decides one event. `ahead`: an event of the saga's log read ahead of the stream after a conflict,
    /// which only moves where the log ends.
    pub fn decide(&self, event: &StoredEvent, instances: &dyn Instances, ahead: bool) -> Result<Decided, String> {
        if event.aggregate == self.log {
            return self.on_log(event, instances, ahead);
        }
        if ahead {
            return Ok(Decided::default());
        }
        self.on_event(event, instances)
    }

    /// Applies a stored transition, already read: the new state, and what entering it does.
    fn apply_entered(
        &self,
        event: &StoredEvent,
        instances: &dyn Instances,
        entered: Entered,
    ) -> Result<Decided, String> {
        let inst = instances.instance(&event.id)?;
        if inst.as_ref().is_some_and(|i| i.has_folded(event.seq)) {
            return Ok(Decided::default());
        }
        Ok(self.fold(event, inst.map(Cow::into_owned), entered))
    }

    /// The message id of the transition the event at `cause` makes: one per cause, so a second engine
    /// deciding the same event stores nothing new.
    pub fn enter_msg_id(&self, cause: u64) -> String {
        format!("{}:{cause}:enter", self.name)
    }

    /// The correlation id of everything an instance does.
    pub(super) fn correlation(&self, id: &str) -> String {
        format!("{}:{id}", self.name)
    }

    /// The instance a correlation id names, when it is one of this saga's.
    pub(super) fn correlated<'c>(&self, correlation_id: &'c str) -> Option<&'c str> {
        correlation_id.strip_prefix(self.name.as_str())?.strip_prefix(':')
    }

    /// An event of an instance's own log.
    fn on_log(&self, event: &StoredEvent, instances: &dyn Instances, ahead: bool) -> Result<Decided, String> {
        if matches!(event.event_type.as_str(), STARTED | ENTERED) {
            return self.apply_entered(event, instances, parse(event)?);
        }
        let Some(inst) = instances.instance(&event.id)? else { return Ok(Decided::default()) };
        let (inst, moved) = noted(inst.into_owned(), event.seq);
        let unchanged = |inst: Instance| Decided { instance: moved.then_some(inst), ..Decided::default() };
        // Read ahead of the stream: only where the log ends matters now; it is decided in its turn.
        if ahead {
            return Ok(unchanged(inst));
        }
        match event.event_type.as_str() {
            TIMER_FIRED => {
                let fired: TimerFired = parse(event)?;
                // A state of an older definition (its log was folded after a change) has no transitions.
                let timeout = self.state_of(&inst)?.and_then(|st| st.timeout.as_ref());
                match timeout {
                    // A timer of a state already left, or of an entry before this one: stale.
                    Some(list) if fired.entry == inst.entry && !inst.done => {
                        let found = self.transition(&inst, list, event, &Vars::default(), ON_TIMEOUT)?;
                        Ok(Decided::appending(found, moved.then_some(inst)))
                    }
                    _ => Ok(unchanged(inst)),
                }
            }
            REJECTED => {
                let rejected: Rejected = parse(event)?;
                if rejected.entry != inst.entry || inst.done {
                    return Ok(unchanged(inst));
                }
                let rejection =
                    json!({"command": rejected.command, "code": rejected.code, "message": rejected.message});
                let vars = Vars { rejection, ..Vars::default() };
                let list = self.state_of(&inst)?.and_then(|st| st.rejected.as_ref());
                self.outcome(inst, moved, list, event, &vars, ON_REJECTED, &rejected.message)
            }
            call::REPLIED => {
                let replied: Replied = parse(event)?;
                if replied.entry != inst.entry || inst.done {
                    return Ok(unchanged(inst));
                }
                let vars = Vars { reply: replied.reply, ..Vars::default() };
                let list = self.state_of(&inst)?.and_then(|st| st.replied.as_ref());
                self.outcome(inst, moved, list, event, &vars, ON_REPLIED, &replied.call)
            }
            call::FAILED => {
                let failed: CallFailure = parse(event)?;
                if failed.entry != inst.entry || inst.done {
                    return Ok(unchanged(inst));
                }
                let failure = json!({"call": failed.call, "status": failed.status, "reason": failed.reason, "message": failed.message});
                let vars = Vars { failure, ..Vars::default() };
                let list = self.state_of(&inst)?.and_then(|st| st.failed.as_ref());
                self.outcome(inst, moved, list, event, &vars, ON_FAILED, &failed.message)
            }
            STEERED => self.steered(inst, moved, event),
            // An event a `do` emitted: part of the log, no trigger.
            _ => Ok(unchanged(inst)),
        }
    }

    /// An operator's cancel or move: the state's `on.cancel` (the first whose `when` holds), else `cancelled`;
    /// or the state moved to. Recorded with who asked in the trigger (`cancel by ann`).
    fn steered(&self, inst: Instance, moved: bool, event: &StoredEvent) -> Result<Decided, String> {
        let steer: Steer = parse(event)?;
        if inst.done {
            tracing::warn!(saga = %self.name, instance = %inst.id, state = %inst.state, by = %steer.by, "an operator's steer reached a final instance; ignored");
            let mut decided = Decided { instance: moved.then_some(inst), ..Decided::default() };
            decided.outcome.ignored = true;
            return Ok(decided);
        }
        let operator = json!({"by": steer.by, "reason": steer.reason, "state": steer.state});
        let vars = Vars { operator, ..Vars::default() };
        let (to, verb) = match (steer.action, &steer.state) {
            (SteerAction::Move, Some(to)) => (to.as_str(), "move"),
            _ => (CANCELLED, ON_CANCEL),
        };
        let trigger = format!("{verb} by {}", steer.by);
        let declared = self.state_of(&inst)?.and_then(|st| st.cancel.as_ref()).filter(|_| verb == ON_CANCEL);
        if let Some(list) = declared {
            if let Some(found) = self.transition(&inst, list, event, &vars, &trigger)? {
                return Ok(Decided::appending(Some(found), moved.then_some(inst)));
            }
        }
        let on = (Some(&inst), inst.saga_version);
        let found = self.enter(event, &inst.id, on, to, inst.data.clone(), trigger, &vars)?;
        Ok(Decided::appending(Some(found), moved.then_some(inst)))
    }

    /// A recorded outcome of the current state's action (a rejection, a call's reply or failure): the
    /// transition it names, or, when the state names none, the instance waits (logged, counted as ignored).
    #[allow(clippy::too_many_arguments)]
    fn outcome(
        &self,
        inst: Instance,
        moved: bool,
        list: Option<&Vec<Transition>>,
        event: &StoredEvent,
        vars: &Vars,
        trigger: &str,
        detail: &str,
    ) -> Result<Decided, String> {
        if let Some(list) = list {
            let found = self.transition(&inst, list, event, vars, trigger)?;
            return Ok(Decided::appending(found, moved.then_some(inst)));
        }
        tracing::warn!(saga = %self.name, instance = %inst.id, state = %inst.state, %trigger, %detail, "the state has no transition for this outcome; the instance waits");
        let mut decided = Decided { instance: moved.then_some(inst), ..Decided::default() };
        decided.outcome.ignored = true;
        Ok(decided)
    }

    /// [`Self::apply_entered`] for a caller that keeps its instances in a map and has just decided the
    /// transition (an offline replay): the instance is taken out and put back, its history moved, not copied.
    pub fn fold_into(
        &self,
        event: &StoredEvent,
        instances: &mut HashMap<String, Instance>,
        entered: Entered,
    ) -> Outcome {
        if instances.get(&event.id).is_some_and(|i| i.has_folded(event.seq)) {
            return Outcome::default();
        }
        let Decided { outcome, instance, .. } = self.fold(event, instances.remove(&event.id), entered);
        if let Some(inst) = instance {
            instances.insert(inst.id.clone(), inst);
        }
        outcome
    }

    /// Applies a stored transition to the instance it moves (`prev`): the new state, and what entering it
    /// does.
    fn fold(&self, event: &StoredEvent, prev: Option<Instance>, entered: Entered) -> Decided {
        let id = &event.id;
        let mut actions = Vec::new();
        // Each entry's timer has its own subject, so cancelling the old one never touches the new one,
        // even when a crash makes both actions run again.
        if let Some(prev) = prev.as_ref().filter(|p| p.timer_at.is_some()) {
            actions.push(Action::Cancel { subject: self.timer(id, prev.entry) });
        }
        if let Some(at) = entered.timer_at {
            actions.push(Action::Schedule {
                subject: self.timer(id, event.seq),
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
            saga_version: entered.saga_version,
            history,
        };
        Decided {
            outcome: Outcome { actions, correlation_id: Some(self.correlation(id)), ..Outcome::default() },
            instance: Some(inst),
            entered: None,
        }
    }

    /// The instance's current state in the definition it runs on (`None`: a state that definition lacks,
    /// such as `cancelled`).
    fn state_of(&self, inst: &Instance) -> Result<Option<&super::State>, String> {
        Ok(self.definition(inst.saga_version)?.states.get(&inst.state))
    }

    fn timer(&self, id: &str, entry: u64) -> String {
        timer_subject(&self.log, id, entry)
    }

    /// An event from outside the saga's log: a start, or a trigger of an instance.
    fn on_event(&self, event: &StoredEvent, instances: &dyn Instances) -> Result<Decided, String> {
        let scope = EventScope::new(event);
        if self.start.matches(&event.aggregate, &event.event_type) {
            let id = match &self.start_id {
                Some(expr) => scope.eval_string(expr).map_err(|e| format!("start.id: {e}"))?,
                None => event.id.clone(),
            };
            if !id.is_empty() && instances.instance(&id)?.is_none() {
                if !valid_id(&id) {
                    return Err(format!("start.id: `{id}` is not a valid instance id"));
                }
                let mut data = scope.eval_map(&self.data).map_err(|e| format!("data: {e}"))?;
                data.insert("id".into(), Json::String(id.clone()));
                let trigger = format!("{}.{}", event.aggregate, event.event_type);
                let version = instances.started_on(&id, event.seq).unwrap_or(self.version);
                let initial = &self.definition(version)?.initial;
                let found = self.enter(event, &id, (None, version), initial, data, trigger, &Vars::default())?;
                return Ok(Decided::appending(Some(found), None));
            }
        }
        let id = match self.correlated(&event.correlation_id) {
            Some(id) => id.to_string(),
            // The current version's correlations first, then older ones' for the instances still on them.
            None => match self
                .definitions
                .values()
                .rev()
                .find_map(|d| d.correlate.find(&event.aggregate, &event.event_type))
            {
                Some(expr) => scope.eval_string(expr).map_err(|e| format!("correlate: {e}"))?,
                None => return Ok(Decided::default()),
            },
        };
        if id.is_empty() {
            return Ok(Decided::default());
        }
        let Some(inst) = instances.instance(&id)? else { return Ok(Decided::ignored()) };
        if inst.moved_by(event.seq) {
            return Ok(Decided::default());
        }
        let list = self.state_of(&inst)?.and_then(|st| st.on.find(&event.aggregate, &event.event_type));
        let (Some(list), false) = (list, inst.done) else { return Ok(Decided::ignored()) };
        let trigger = format!("{}.{}", event.aggregate, event.event_type);
        let found = self.transition(&inst, list, event, &Vars::default(), &trigger)?;
        Ok(Decided::appending(found, None))
    }

    /// The first transition of `list` whose `when` holds, as the event that records it.
    fn transition(
        &self,
        inst: &Instance,
        list: &[Transition],
        event: &StoredEvent,
        vars: &Vars,
        trigger: &str,
    ) -> Result<Option<(Append, Entered)>, String> {
        let saga = inst.saga_var();
        let scope = vars.scope(event, &saga);
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
            let on = (Some(inst), inst.saga_version);
            return self.enter(event, &inst.id, on, &t.goto, data, trigger.to_string(), vars).map(Some);
        }
        Ok(None)
    }

    /// The event recording the entry into `state`, with what the state does on entry. `on`: the instance
    /// (none for a start) and the saga version it runs on.
    #[allow(clippy::too_many_arguments)]
    fn enter(
        &self,
        event: &StoredEvent,
        id: &str,
        (inst, saga_version): (Option<&Instance>, u32),
        state: &str,
        data: Map<String, Json>,
        trigger: String,
        vars: &Vars,
    ) -> Result<(Append, Entered), String> {
        // Only an operator's cancel enters a state the config may lack: `cancelled`, final, doing nothing.
        let st = self.definition(saga_version)?.states.get(state);
        if st.is_none() && state != CANCELLED {
            return Err(format!("no state `{state}`"));
        }
        let saga = Json::Object(data);
        let scope = vars.scope(event, &saga);
        let mut actions = Vec::new();
        for (i, action) in st.map(|st| &st.actions[..]).unwrap_or_default().iter().enumerate() {
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
            timer_at: st.and_then(|st| st.timeout_secs).map(|s| event.time + Duration::seconds(s as i64)),
            done: st.is_none_or(|st| st.done),
            saga_version,
        };
        let append = Append {
            aggregate: self.log.clone(),
            key: id.to_string(),
            expected_seq: Some(inst.map_or(0, |i| i.last_seq)),
            version: inst.map_or(0, |i| i.version) + 1,
            event_type: if inst.is_some() { ENTERED } else { STARTED }.to_string(),
            data: json!(entered),
            msg_id: self.enter_msg_id(event.seq),
            correlation_id: self.correlation(id),
            // The transition joins the trace of the event that caused it.
            traceparent: TraceParent::parse(&event.traceparent).map(|t| t.child().to_string()).unwrap_or_default(),
        };
        Ok((append, entered))
    }
}
