//! `[reactors.<name>]` with `kind = "saga"`: the start, the states and their transitions, and the checks
//! that the state machine can run (known targets, every state reachable, a way out of every state).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use eddy_engine::config::{did_you_mean, Config, ConfigErrors, Source};
use eddy_engine::host::reactor::{OnError, Policy, Start};
use eddy_engine::host::{Catalog, Pattern, PatternMap};
use figment::value::Value;
use serde::Deserialize;

use super::state::{ON_CANCEL, ON_FAILED, ON_REJECTED, ON_REPLIED, ON_TIMEOUT};
use super::{Definition, Saga, State, Transition};
use crate::common::{
    fingerprint, load_action, reactor_fingerprint, ActionKind, ActionToml, Compiler, DEFAULT_MAX_RETRIES,
};

/// Variables of `start.id`, `data` and `correlate`.
const EVENT_VARS: &[&str] = &["event", "meta"];
/// Variables of `when`, `set` and `do`.
const SAGA_VARS: &[&str] = &["saga", "event", "meta", "rejection", "reply", "failure", "operator"];

/// `[reactors.<name>]`, kind `saga`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SagaToml {
    /// `saga`.
    #[allow(dead_code)]
    kind: String,
    /// The event that starts an instance: a pattern, or `{ on, id }`.
    start: StartToml,
    /// The instance's data from the starting event (CEL map); `saga.id` is added.
    data: Option<String>,
    /// The state an instance starts in.
    initial: String,
    /// Events not caused by the saga's own commands: pattern -> CEL string naming the instance.
    #[serde(default)]
    correlate: BTreeMap<String, String>,
    /// The states.
    #[serde(default)]
    states: BTreeMap<String, StateToml>,
    /// After `max_retries`: stop | skip | park.
    #[serde(default)]
    on_error: OnError,
    /// Retries, with backoff, of a failing event or action.
    #[serde(default = "default_max_retries")]
    max_retries: u32,
    /// This definition's version (default 1). An instance runs to its end on the version it started on.
    #[serde(default = "first_version")]
    version: u32,
    /// Earlier versions that instances still run on: version -> `{ initial, states, correlate }`.
    #[serde(default)]
    versions: BTreeMap<String, VersionToml>,
    /// How many partitions its keys (instances) are split into, each leased, run and failed over on its own
    /// and spread evenly over the engines (1 to 256; default 1: one engine runs the whole reactor).
    /// Changed only by restarting every engine: see the README.
    partitions: Option<u32>,
}

/// `[reactors.<name>.versions.<n>]`: an earlier definition, kept for the instances started on it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionToml {
    /// The state its instances started in.
    initial: String,
    /// Events not caused by the saga's own commands: pattern -> CEL string naming the instance.
    #[serde(default)]
    correlate: BTreeMap<String, String>,
    /// Its states.
    #[serde(default)]
    states: BTreeMap<String, StateToml>,
}

fn default_max_retries() -> u32 {
    DEFAULT_MAX_RETRIES
}

fn first_version() -> u32 {
    1
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StartToml {
    Pattern(String),
    Long(LongStart),
}

/// `start = { on = "...", id = "..." }`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongStart {
    /// The starting event's pattern.
    on: String,
    /// The instance id (CEL string); default `meta.id`.
    id: Option<String>,
}

/// `[reactors.<name>.states.<state>]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateToml {
    /// Actions run on entry.
    #[serde(default, rename = "do")]
    actions: Vec<ActionToml>,
    /// A durable timer armed on entry; it fires the `timeout` trigger.
    timeout_secs: Option<u64>,
    /// The instance ends here.
    #[serde(default, rename = "final")]
    done: bool,
    /// Trigger -> transition(s).
    #[serde(default)]
    on: BTreeMap<String, TransitionToml>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TransitionToml {
    Goto(String),
    One(LongTransition),
    Many(Vec<LongTransition>),
}

/// `{ goto, when, set }`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongTransition {
    /// The next state.
    goto: String,
    /// Taken only when this CEL bool holds.
    when: Option<String>,
    /// A CEL map merged into the instance's data.
    set: Option<String>,
}

/// Reads one saga; `None` after recording its errors.
pub fn load(
    source: &Source,
    config: &Config,
    catalog: &Catalog,
    name: &str,
    errors: &mut ConfigErrors,
) -> Option<Saga> {
    let key = format!("reactors.{name}");
    let before = errors.len();
    let (mut toml, raw): (SagaToml, _) = crate::common::extract(source, &key, errors)?;
    let c = Compiler::new(source, catalog, errors);
    let log = super::log_aggregate(name);
    if config.aggregates.contains_key(&log) {
        c.push(&key, format!("its instances are kept on events.{log}.*, which aggregate `{log}` uses"));
    }
    let (start_pattern, start_id) = match &toml.start {
        StartToml::Pattern(p) => (p.as_str(), None),
        StartToml::Long(l) => (l.on.as_str(), l.id.as_deref()),
    };
    let partitions = crate::common::partitions(&c, &key, toml.partitions);
    let start = c.pattern(&format!("{key}.start"), start_pattern);
    let start_id = start_id.and_then(|s| c.compile(&format!("{key}.start.id"), s, EVENT_VARS));
    let data = c.compile(&format!("{key}.data"), toml.data.as_deref().unwrap_or("{}"), EVENT_VARS);
    let raw_version = |v: &str| raw.find_ref(&format!("versions.{v}"));
    let current = VersionToml {
        initial: toml.initial.clone(),
        correlate: std::mem::take(&mut toml.correlate),
        states: std::mem::take(&mut toml.states),
    };
    let mut definitions = BTreeMap::new();
    if toml.version == 0 {
        c.push(&format!("{key}.version"), "versions start at 1");
    }
    definitions.insert(toml.version, definition(&c, config, &log, &key, &current, Some(&raw)));
    for (v, old) in &toml.versions {
        let at = format!("{key}.versions.{v}");
        match v.parse::<u32>() {
            Ok(n) if n >= 1 && n < toml.version => {
                definitions.insert(n, definition(&c, config, &log, &at, old, raw_version(v)));
            }
            Ok(n) if n == toml.version => {
                c.push(&at, format!("is the current `version = {n}`; keep only earlier definitions here"))
            }
            Ok(n) if n > toml.version => c.push(
                &at,
                format!("is newer than the current `version = {}`; raise `version` to make it current", toml.version),
            ),
            _ => c.push(
                &at,
                format!("`{v}` is not an earlier version: a number below the current `version = {}`", toml.version),
            ),
        }
    }
    if c.len() != before {
        return None;
    }
    let mut patterns: Vec<Pattern> = start.iter().cloned().collect();
    for def in definitions.values() {
        patterns.extend(def.correlate.patterns().cloned());
        for st in def.states.values() {
            patterns.extend(st.on.patterns().cloned());
        }
    }
    Some(Saga {
        name: name.to_string(),
        log,
        fingerprint: reactor_fingerprint(&raw),
        policy: Policy {
            start: Start::Beginning,
            replay_effects: false,
            on_error: toml.on_error,
            max_retries: toml.max_retries,
            partitions,
        },
        start: start?,
        start_id,
        data: data?,
        version: toml.version,
        definitions,
        patterns,
    })
}

/// One version's states and correlations, checked as a state machine.
fn definition(
    c: &Compiler,
    config: &Config,
    log: &str,
    key: &str,
    toml: &VersionToml,
    raw: Option<&Value>,
) -> Definition {
    let mut correlate = PatternMap::default();
    for (pattern, expr) in &toml.correlate {
        let at = format!("{key}.correlate.\"{pattern}\"");
        if let (Some(p), Some(e)) = (c.pattern(&at, pattern), c.compile(&at, expr, EVENT_VARS)) {
            correlate.insert(p, e);
        }
    }
    let mut states = BTreeMap::new();
    for (state_name, st) in &toml.states {
        states.insert(state_name.clone(), load_state(c, config, log, &format!("{key}.states.{state_name}"), st));
    }
    check_graph(c, key, toml, &states);
    // What its instances run on, wherever it is written: the same at the top level and under `versions`.
    let part = |k: &str| raw.and_then(|r| r.find_ref(k));
    let fingerprint = fingerprint(&(part("initial"), part("states"), part("correlate")));
    Definition { initial: toml.initial.clone(), correlate, states, fingerprint }
}

/// One state; its emits go to the saga's log, `events.<log>.<instance>`.
fn load_state(c: &Compiler, config: &Config, log: &str, at: &str, st: &StateToml) -> State {
    let actions: Vec<_> = st
        .actions
        .iter()
        .enumerate()
        .filter_map(|(i, a)| load_action(c, config, log, &format!("{at}.do[{i}]"), a, SAGA_VARS))
        .collect();
    let mut state = State {
        actions,
        timeout_secs: st.timeout_secs,
        done: st.done,
        on: PatternMap::default(),
        rejected: None,
        timeout: None,
        replied: None,
        failed: None,
        cancel: None,
    };
    // As written: a call with a mistake of its own is reported once, not again as a missing call.
    let calls = st.actions.iter().any(ActionToml::is_call);
    for (trigger, t) in &st.on {
        let key = format!("{at}.on.\"{trigger}\"");
        let list = transitions(c, &key, t);
        match trigger.as_str() {
            ON_REJECTED => {
                if !state.actions.iter().any(|a| matches!(a.kind, ActionKind::Command { .. })) {
                    c.push(&key, "the state sends no command that could be rejected");
                }
                state.rejected = Some(list);
            }
            ON_REPLIED | ON_FAILED => {
                if !calls {
                    c.push(&key, "the state makes no `call` or `http` request that could reply or fail");
                }
                *if trigger == ON_REPLIED { &mut state.replied } else { &mut state.failed } = Some(list);
            }
            ON_CANCEL => state.cancel = Some(list),
            ON_TIMEOUT => {
                if st.timeout_secs.is_none() {
                    c.push(&key, "the state has no `timeout_secs`");
                }
                state.timeout = Some(list);
            }
            pattern => {
                if let Some(p) = c.pattern(&key, pattern) {
                    state.on.insert(p, list);
                }
            }
        }
    }
    if st.timeout_secs.is_some() && state.timeout.is_none() {
        c.push(&format!("{at}.timeout_secs"), "a timer needs an `on.timeout` transition");
    }
    if st.timeout_secs == Some(0) {
        c.push(&format!("{at}.timeout_secs"), "must be at least 1");
    }
    state
}

fn transitions(c: &Compiler, key: &str, t: &TransitionToml) -> Vec<Transition> {
    let long = |at: &str, l: &LongTransition| Transition {
        goto: l.goto.clone(),
        when: l.when.as_ref().and_then(|w| c.compile(&format!("{at}.when"), w, SAGA_VARS)),
        set: l.set.as_ref().and_then(|s| c.compile(&format!("{at}.set"), s, SAGA_VARS)),
    };
    match t {
        TransitionToml::Goto(goto) => vec![Transition { goto: goto.clone(), when: None, set: None }],
        TransitionToml::One(l) => vec![long(key, l)],
        TransitionToml::Many(list) => list.iter().enumerate().map(|(i, l)| long(&format!("{key}[{i}]"), l)).collect(),
    }
}

/// Unknown targets, unreachable states, states with no way out.
fn check_graph(c: &Compiler, key: &str, toml: &VersionToml, states: &BTreeMap<String, State>) {
    if toml.states.is_empty() {
        c.push(&format!("{key}.states"), "a saga needs states");
        return;
    }
    let known: Vec<String> = states.keys().cloned().collect();
    let unknown = |name: &str| {
        let hint = did_you_mean(name, &known).map(|k| format!("; did you mean `{k}`?")).unwrap_or_default();
        format!("unknown state `{name}` ({}){hint}", known.join(", "))
    };
    if !states.contains_key(&toml.initial) {
        c.push(&format!("{key}.initial"), unknown(&toml.initial));
        return;
    }
    let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, st) in &toml.states {
        let at = format!("{key}.states.{name}");
        for (trigger, t) in &st.on {
            let gotos: Vec<(String, &str)> = match t {
                TransitionToml::Goto(g) => vec![(format!("{at}.on.\"{trigger}\""), g.as_str())],
                TransitionToml::One(l) => vec![(format!("{at}.on.\"{trigger}\".goto"), l.goto.as_str())],
                TransitionToml::Many(list) => list
                    .iter()
                    .enumerate()
                    .map(|(i, l)| (format!("{at}.on.\"{trigger}\"[{i}].goto"), l.goto.as_str()))
                    .collect(),
            };
            for (at, goto) in gotos {
                if states.contains_key(goto) {
                    edges.entry(name).or_default().push(goto);
                } else {
                    c.push(&at, unknown(goto));
                }
            }
        }
        if st.done && !st.on.is_empty() {
            c.push(&format!("{at}.on"), "a final state has no transitions");
        }
        if !st.done && st.on.is_empty() {
            c.push(&at, "not final and without transitions: an instance would never leave it");
        }
    }
    let mut reached = BTreeSet::from([toml.initial.as_str()]);
    let mut queue = VecDeque::from([toml.initial.as_str()]);
    while let Some(s) = queue.pop_front() {
        for next in edges.get(s).into_iter().flatten() {
            if reached.insert(next) {
                queue.push_back(next);
            }
        }
    }
    for name in toml.states.keys() {
        if !reached.contains(name.as_str()) {
            c.push(&format!("{key}.states.{name}"), format!("unreachable from the initial state `{}`", toml.initial));
        }
    }
    if !toml.states.values().any(|s| s.done) {
        c.push(&format!("{key}.states"), "no final state: instances would never end");
    }
}
