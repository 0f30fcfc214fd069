//! The replay itself: one pass over the recording, feeding each event to the config's aggregates, views and
//! reactors as the live engine would, with nothing executed.
//!
//! The recorded events are facts. A reactor's actions are listed, never run: their effects, if they
//! happened, are already in the recording. Only a saga's own transitions are fed back, because its next
//! decision depends on them. A transition the recording holds (same subject, message id and content) is
//! taken with its recorded sequence, so the actions it causes get the ids they had live; otherwise the
//! replay makes it up with a sequence after the recording's last, and that instance stays made up.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use eddy_engine::envelope::{format_time, subject, StoredEvent};
use eddy_engine::host::reactor::{Action, Append, Entries, Logic, Pending, Step};
use eddy_engine::upcast::Schemas;
use eddy_projections::{apply_event, Changes, NoDocuments, ViewDef};
use eddy_reactors::saga::state::{self as saga_state, Instance};
use eddy_reactors::saga::{Decided, Instances, Saga};
use serde_json::{Map, Value as Json};

use super::finished::{Finished, SagaEnd};
use super::index::Index;
use super::recording::{Error, Line, Result, Source};
use super::timers::{firing_time, Timer, Timers};
use super::transcript::{Acted, Decision, End, Reaction, Reactions, Sink, Summary, Tail, Transition};
use crate::app::Settings;

type Docs = BTreeMap<String, Map<String, Json>>;

/// A reactor's state during the replay.
struct Reactor<'a> {
    logic: Arc<dyn Logic>,
    entries: Docs,
    /// A saga, decided through its typed API: its instances stay typed between steps instead of going
    /// through JSON entries as sled needs them.
    saga: Option<&'a Saga>,
    /// The saga's instances still running.
    instances: HashMap<String, Instance>,
    /// The saga's final instances, on disk when the replay reads a file (see `finished.rs`).
    finished: Finished,
}

struct Memory<'a>(&'a Docs);

impl Entries for Memory<'_> {
    fn get(&self, key: &str) -> Result<Option<Map<String, Json>>, String> {
        Ok(self.0.get(key).cloned())
    }
}

/// The replay in progress.
pub(super) struct Run<'a, 's> {
    settings: &'a Settings,
    source: Source<'a>,
    /// The first pass's findings.
    index: Index,
    /// Where each decision goes as it is made.
    sink: &'s mut dyn Sink,
    /// The sink's first failure: the replay stops at the line it happened on.
    sink_failed: Option<std::io::Error>,
    /// Final saga instances go to disk: a file can be millions of lines; a recording in memory is small.
    spill: bool,
    /// The first failure to keep a final instance on disk: the replay stops there too.
    spill_failed: Option<std::io::Error>,
    /// Aggregate -> id -> state; hashed while replaying, sorted in the transcript.
    aggregates: HashMap<String, HashMap<String, Map<String, Json>>>,
    views: Vec<(&'a ViewDef, Changes)>,
    reactors: Vec<Reactor<'a>>,
    timers: Timers,
    /// Instance logs the replay has had to make a transition up for.
    made_up: HashSet<String>,
    next_seq: u64,
    /// The virtual clock: the time of the event being replayed.
    now: DateTime<Utc>,
    unknown_aggregates: BTreeSet<String>,
    /// How the config reads older versions of its events.
    schemas: Schemas,
    warnings: Vec<String>,
    timers_fired: usize,
}

impl<'a, 's> Run<'a, 's> {
    /// Reads `source` a first time, to check and index it.
    pub(super) fn new(settings: &'a Settings, source: Source<'a>, sink: &'s mut dyn Sink) -> Result<Self> {
        let reactors: Vec<Reactor> = settings
            .reactors
            .iter()
            .map(|reactor| Reactor {
                logic: reactor.logic(),
                entries: Docs::new(),
                saga: reactor.saga(),
                instances: HashMap::new(),
                finished: Finished::default(),
            })
            .collect();
        let index = Index::build(&source, |aggregate| owned(&reactors, aggregate))?;
        let spill = matches!(source, Source::File(_));
        Ok(Run {
            settings,
            source,
            sink,
            sink_failed: None,
            spill,
            spill_failed: None,
            aggregates: HashMap::new(),
            views: settings.views.values().map(|def| (def, Changes::new())).collect(),
            reactors,
            timers: Timers::default(),
            made_up: HashSet::new(),
            next_seq: index.next_seq(),
            now: DateTime::<Utc>::UNIX_EPOCH,
            unknown_aggregates: BTreeSet::new(),
            schemas: Schemas::new(&settings.engine.aggregates),
            warnings: index.warnings.clone(),
            index,
            timers_fired: 0,
        })
    }

    /// Whether `aggregate` is a subject part some reactor writes.
    fn owned(&self, aggregate: &str) -> bool {
        owned(&self.reactors, aggregate)
    }

    /// Reads the recording again, replaying each line as it comes.
    pub(super) fn run(mut self) -> Result<Tail> {
        let mut lines = 0;
        for line in self.source.pass()? {
            let line = line?;
            lines += 1;
            self.line(&line);
            if let Some(e) = self.sink_failed.take() {
                return Err(Error::Write(e));
            }
            if let Some(e) = self.spill_failed.take() {
                return Err(Error::Spill(e));
            }
        }
        if lines != self.index.summary.events {
            let (first, second) = (self.index.summary.events, lines);
            return Err(Error::Changed { path: self.source.name(), first, second });
        }
        self.finish()
    }

    fn line(&mut self, line: &Line) {
        self.fire_timers(line.time);
        self.now = line.time;
        let event = line.event().map(|e| (e, self.schemas.upcast_ref(e, line.event_version.as_deref())));
        match event {
            Ok((_, Ok(event))) => self.take(&event, Some(line)),
            Ok((stored, Err(e))) => self.warn(
                Some(line.line),
                format!("{}.{} cannot be upcast ({e}); skipped", stored.aggregate, stored.event_type),
            ),
            Err(e) => self.warn(Some(line.line), format!("not an eddy event ({e}); skipped")),
        }
    }

    fn warn(&mut self, line: Option<usize>, message: String) {
        let message = match line {
            Some(line) => format!("line {line}: {message}"),
            None => message,
        };
        tracing::debug!("{message}");
        self.warnings.push(message);
    }

    /// Fires, in time order, every armed timer the clock passes before `until`.
    fn fire_timers(&mut self, until: DateTime<Utc>) {
        while let Some(timer) = self.timers.next_due(until) {
            // The recording holds this firing: it is replayed in its turn.
            if self.index.holds_firing(&timer.effect_id) {
                continue;
            }
            self.now = timer.fires;
            let event = StoredEvent {
                seq: self.made_up_seq(),
                aggregate: timer.aggregate,
                id: timer.key,
                event_type: timer.event_type,
                version: timer.version,
                time: timer.at,
                command_id: timer.effect_id.clone(),
                command_digest: String::new(),
                correlation_id: timer.correlation_id,
                causation_id: timer.effect_id,
                traceparent: String::new(),
                data: timer.data,
            };
            self.timers_fired += 1;
            self.take(&event, None);
        }
    }

    fn made_up_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq - 1
    }

    /// Replays one event: `rec` is its line, `None` when the replay made it up.
    fn take(&mut self, event: &StoredEvent, rec: Option<&Line>) {
        let line = rec.map(|r| r.line);
        if !self.fold_aggregate(event, line) {
            return;
        }
        for i in 0..self.views.len() {
            let (def, changes) = &mut self.views[i];
            if let Err(e) = apply_event(def, &NoDocuments, event, changes) {
                let name = def.name.clone();
                self.warn(line, format!("view {name}: {e}; the event is not in the view"));
            }
        }
        let mut reactions = Reactions::default();
        for i in 0..self.reactors.len() {
            if !self.reactors[i].logic.reads(event) || self.decided_in_replay(i, event) {
                continue;
            }
            let reaction = self.decide(i, event);
            if !reaction.is_empty() {
                reactions.0.push((self.reactors[i].logic.name().to_string(), reaction));
            }
        }
        if !reactions.is_empty() && self.sink_failed.is_none() {
            let written = self.sink.decision(Decision {
                event: format!("{}.{}", event.aggregate, event.event_type),
                id: event.id.clone(),
                reactors: reactions,
                seq: event.seq,
                time: format_time(event.time),
                made_up: rec.is_none(),
            });
            self.sink_failed = written.err();
        }
    }

    /// Folds an aggregate's event into its state. `false`: an unknown event type, skipped.
    fn fold_aggregate(&mut self, event: &StoredEvent, line: Option<usize>) -> bool {
        let Some(aggregate) = self.settings.engine.aggregates.get(&event.aggregate) else {
            if !self.owned(&event.aggregate) && self.unknown_aggregates.insert(event.aggregate.clone()) {
                self.warn(
                    line,
                    format!(
                        "events.{}.* is no aggregate or reactor of this config; its events go to reactors and views as they are",
                        event.aggregate
                    ),
                );
            }
            return true;
        };
        if !aggregate.events.contains_key(&event.event_type) {
            self.warn(
                line,
                format!(
                    "unknown event type {}.{} (seq {}): not in the config; skipped",
                    event.aggregate, event.event_type, event.seq
                ),
            );
            return false;
        }
        // Looked up before inserting: most events are of an aggregate and id already seen.
        let states = match self.aggregates.get_mut(&event.aggregate) {
            Some(states) => states,
            None => self.aggregates.entry(event.aggregate.clone()).or_default(),
        };
        let state = match states.get_mut(&event.id) {
            Some(state) => state,
            None => states.entry(event.id.clone()).or_insert_with(|| aggregate.initial.clone()),
        };
        if let Err(e) = aggregate.apply_stored(state, event) {
            self.warn(line, format!("aggregate {}: apply {}: {e}", event.aggregate, event.event_type));
        }
        true
    }

    /// A transition on a saga's own log whose trigger is in the recording: the replay decides that trigger
    /// itself, so the recorded transition is the live decision, not an input.
    fn decided_in_replay(&self, i: usize, event: &StoredEvent) -> bool {
        let is_transition = matches!(event.event_type.as_str(), saga_state::STARTED | saga_state::ENTERED);
        if !is_transition || self.reactors[i].saga.map(|s| s.log.as_str()) != Some(event.aggregate.as_str()) {
            return false;
        }
        let cause = event.data.get("cause").and_then(Json::as_u64);
        cause.is_some_and(|c| self.index.holds(c))
    }

    /// One reactor's decision on `event`, with the transition it stores and what that causes.
    fn decide(&mut self, i: usize, event: &StoredEvent) -> Reaction {
        if let Some(saga) = self.reactors[i].saga {
            return self.decide_saga(i, saga, event);
        }
        let mut reaction = Reaction::default();
        let logic = self.reactors[i].logic.clone();
        let mut step = match logic.handle(event, &Memory(&self.reactors[i].entries)) {
            Ok(outcome) => Step::new(event, outcome),
            Err(e) => return Reaction { error: Some(e), ..reaction },
        };
        let append = step.append.take();
        self.accept(i, step, &mut reaction);
        let Some(append) = append else { return reaction };
        let (stored, recorded) = self.store(&append);
        reaction.transitions.push(transition(&stored, recorded));
        match logic.handle(&stored, &Memory(&self.reactors[i].entries)) {
            Ok(next) => self.accept(i, Step::after_append(&stored, next).0, &mut reaction),
            Err(e) => reaction.error = Some(e),
        }
        reaction
    }

    /// [`Self::decide`] for a saga, with its instances typed.
    fn decide_saga(&mut self, i: usize, saga: &Saga, event: &StoredEvent) -> Reaction {
        let mut reaction = Reaction::default();
        let reactor = &self.reactors[i];
        let known = Known { instances: &reactor.instances, finished: &reactor.finished, index: &self.index, saga };
        let decided = match saga.decide(event, &known, false) {
            Ok(decided) => decided,
            Err(e) => return Reaction { error: Some(e), ..reaction },
        };
        let Decided { outcome, instance, entered } = decided;
        self.keep(i, instance);
        let mut step = Step::new(event, outcome);
        let append = step.append.take();
        self.accept(i, step, &mut reaction);
        let (Some(append), Some(entered)) = (append, entered) else { return reaction };
        let (stored, recorded) = self.store(&append);
        reaction.transitions.push(transition(&stored, recorded));
        // The stored transition's data is `entered` as JSON (the recorded one is compared equal), so it is
        // folded as it is instead of being read back.
        self.revive(i, &stored.id);
        let outcome = saga.fold_into(&stored, &mut self.reactors[i].instances, entered);
        if let Some(inst) = self.reactors[i].instances.remove(&stored.id) {
            self.keep(i, Some(inst));
        }
        self.accept(i, Step::after_append(&stored, outcome).0, &mut reaction);
        reaction
    }

    /// Keeps an instance the replay moved: running in memory, or, once final, on disk.
    fn keep(&mut self, i: usize, instance: Option<Instance>) {
        let Some(inst) = instance else { return };
        let reactor = &mut self.reactors[i];
        if !(self.spill && inst.done) {
            reactor.instances.insert(inst.id.clone(), inst);
            return;
        }
        reactor.instances.remove(&inst.id);
        if let Err(e) = reactor.finished.put(&inst) {
            self.spill_failed.get_or_insert(e);
        }
    }

    /// Brings a final instance back into memory before a transition is folded into it.
    fn revive(&mut self, i: usize, id: &str) {
        let reactor = &mut self.reactors[i];
        match reactor.finished.take(id) {
            Ok(Some(inst)) => {
                reactor.instances.insert(inst.id.clone(), inst);
            }
            Ok(None) => {}
            Err(e) => {
                self.spill_failed.get_or_insert(e);
            }
        }
    }

    /// Applies a decision: the reactor's state, its timers, and the actions listed with their live ids.
    fn accept(&mut self, i: usize, mut step: Step, reaction: &mut Reaction) {
        let reactor = &mut self.reactors[i];
        for (key, entry) in std::mem::take(&mut step.changes) {
            match entry {
                Some(entry) => reactor.entries.insert(key, entry),
                None => reactor.entries.remove(&key),
            };
        }
        for Pending { id, action, correlation_id, .. } in step.enqueue(reactor.logic.name(), false) {
            match &action {
                Action::Schedule { subject, at, aggregate, key, event_type, version, data } => self.timers.arm(Timer {
                    subject: subject.clone(),
                    at: *at,
                    fires: firing_time(*at),
                    aggregate: aggregate.clone(),
                    key: key.clone(),
                    event_type: event_type.clone(),
                    version: *version,
                    data: data.clone(),
                    effect_id: id.clone(),
                    correlation_id: correlation_id.clone(),
                }),
                Action::Cancel { subject } => self.timers.cancel(subject),
                _ => {}
            }
            reaction.actions.push(Acted { id, action });
        }
    }

    /// The event a reactor's append becomes: the recording's, when it holds this very decision, or one made
    /// up at the virtual clock. `true`: recorded.
    fn store(&mut self, append: &Append) -> (StoredEvent, bool) {
        let subject = subject(&append.aggregate, &append.key);
        if !self.made_up.contains(&subject) {
            let recorded = self
                .index
                .recorded(&append.msg_id, &append.aggregate, &append.key)
                .filter(|e| e.event_type == append.event_type && e.data == append.data);
            if let Some(event) = recorded {
                return (event.clone(), true);
            }
            // From here on this instance's log differs from the recording's.
            self.made_up.insert(subject);
        }
        let seq = self.made_up_seq();
        (append.event(self.now.trunc_subsecs(6)).stored(seq, &append.aggregate, &append.key), false)
    }

    fn finish(mut self) -> Result<Tail> {
        let mut end = End::default();
        for (name, states) in std::mem::take(&mut self.aggregates) {
            end.aggregates.insert(name, states.into_iter().collect());
        }
        for reactor in std::mem::take(&mut self.reactors) {
            let name = reactor.logic.name().to_string();
            if reactor.saga.is_some() {
                let running = reactor.instances.into_iter().collect();
                end.sagas.insert(name, SagaEnd::new(running, reactor.finished).map_err(Error::Spill)?);
            } else {
                end.reactors.insert(name, reactor.entries);
            }
        }
        for (def, changes) in std::mem::take(&mut self.views) {
            let docs = changes.into_iter().filter_map(|(k, doc)| doc.map(|d| (k, d))).collect();
            end.views.insert(def.name.clone(), docs);
        }
        while let Some(timer) = self.timers.next_due(DateTime::<Utc>::MAX_UTC) {
            end.timers.insert(timer.subject, format_time(timer.at));
        }
        let recording = Summary { timers_fired: self.timers_fired, ..std::mem::take(&mut self.index.summary) };
        Ok(Tail { end, warnings: self.warnings, recording })
    }
}

/// A saga's instances during the replay (running ones in memory, final ones on disk), with what the
/// recording says of how they started.
struct Known<'r> {
    instances: &'r HashMap<String, Instance>,
    finished: &'r Finished,
    index: &'r Index,
    saga: &'r Saga,
}

impl Instances for Known<'_> {
    fn instance(&self, id: &str) -> std::result::Result<Option<Cow<'_, Instance>>, String> {
        if let Some(inst) = self.instances.get(id) {
            return Ok(Some(Cow::Borrowed(inst)));
        }
        let finished = self.finished.get(id).map_err(|e| format!("reading final instance {id} back: {e}"))?;
        Ok(finished.map(Cow::Owned))
    }

    /// The version the recorded start names (absent: 1, as before sagas had versions), so an instance
    /// started before a version bump replays on its own version, as it ran live.
    fn started_on(&self, id: &str, cause: u64) -> Option<u32> {
        let started = self.index.recorded(&self.saga.enter_msg_id(cause), &self.saga.log, id)?;
        if started.event_type != saga_state::STARTED {
            return None;
        }
        let version = started.data.get("saga_version").map_or(Some(1), Json::as_u64)?;
        u32::try_from(version).ok()
    }
}

/// Whether `aggregate` is a subject part some reactor writes (a rule's emits, a saga's log; a saga may
/// share its name with the aggregate it drives).
fn owned(reactors: &[Reactor], aggregate: &str) -> bool {
    reactors.iter().any(|r| match r.saga {
        Some(saga) => saga.log == aggregate,
        None => r.logic.name() == aggregate,
    })
}

/// The transcript's view of a stored transition.
fn transition(stored: &StoredEvent, recorded: bool) -> Transition {
    let text = |k: &str| stored.data.get(k).and_then(Json::as_str).map(str::to_string);
    Transition {
        from: text("from"),
        instance: stored.id.clone(),
        recorded,
        seq: stored.seq,
        to: text("state").unwrap_or_default(),
        trigger: text("trigger").unwrap_or_default(),
    }
}
