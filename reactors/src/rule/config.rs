//! `[reactors.<name>]` with `kind = "rule"`: patterns, the state entry's key and update, and the actions.

use std::collections::BTreeMap;

use eddy_engine::cel::Expr;
use eddy_engine::config::{Config, ConfigErrors, Source};
use eddy_engine::host::reactor::Policy;
use eddy_engine::host::reactor::{OnError, Start};
use eddy_engine::host::{Catalog, Pattern, PatternMap};
use serde::Deserialize;
use serde_json::{Map, Value as Json};

use super::Rule;
use crate::common::{fields_read, load_action, reactor_fingerprint, ActionToml, Compiler, DEFAULT_MAX_RETRIES};

/// Variables of `key`.
const KEY_VARS: &[&str] = &["event", "meta"];
/// Variables of an `update` expression.
const UPDATE_VARS: &[&str] = &["event", "meta", "state"];
/// Variables of an action's `when` and `data`.
const THEN_VARS: &[&str] = &["event", "meta", "state", "prev"];

/// `[reactors.<name>]`, kind `rule`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleToml {
    /// `rule`.
    #[allow(dead_code)]
    kind: String,
    /// Event patterns read; default: the patterns of `update`.
    on: Option<Vec<String>>,
    /// beginning: state from all history; new: only events after deployment.
    #[serde(default)]
    start: Start,
    /// Act on history too (a backfill).
    #[serde(default)]
    replay_effects: bool,
    /// Which state entry an event touches (CEL string); default `meta.id`.
    key: Option<String>,
    /// A new entry.
    #[serde(default)]
    initial: Map<String, Json>,
    /// After `max_retries`: stop | skip | park.
    #[serde(default)]
    on_error: OnError,
    /// Retries, with backoff, of a failing event or action.
    #[serde(default = "default_max_retries")]
    max_retries: u32,
    /// Per event pattern: a CEL map merged into the entry.
    #[serde(default)]
    update: BTreeMap<String, String>,
    /// Actions, in order.
    #[serde(default)]
    then: Vec<ActionToml>,
    /// How many partitions its keys (the entries named by `key`) are split into, each leased, run and failed over on its own
    /// and spread evenly over the engines (1 to 256; default 1: one engine runs the whole reactor).
    /// Changed only by restarting every engine: see the README.
    partitions: Option<u32>,
}

fn default_max_retries() -> u32 {
    DEFAULT_MAX_RETRIES
}

/// Reads one rule reactor; `None` after recording its errors.
pub fn load(
    source: &Source,
    config: &Config,
    catalog: &Catalog,
    name: &str,
    errors: &mut ConfigErrors,
) -> Option<Rule> {
    let key = format!("reactors.{name}");
    let before = errors.len();
    let (toml, raw): (RuleToml, _) = crate::common::extract(source, &key, errors)?;
    let c = Compiler::new(source, catalog, errors);
    let partitions = crate::common::partitions(&c, &key, toml.partitions);
    let entry_key = toml.key.as_ref().and_then(|k| c.compile(&format!("{key}.key"), k, KEY_VARS));
    let mut update = PatternMap::default();
    let mut update_patterns = Vec::new();
    for (pattern, expr) in &toml.update {
        let at = format!("{key}.update.\"{pattern}\"");
        let parsed = c.pattern(&at, pattern);
        let expr = c.compile(&at, expr, UPDATE_VARS);
        if let (Some(p), Some(e)) = (parsed, expr) {
            update_patterns.push(p.clone());
            update.insert(p, e);
        }
    }
    let on: Vec<Pattern> = match &toml.on {
        Some(list) => list.iter().enumerate().filter_map(|(i, p)| c.pattern(&format!("{key}.on[{i}]"), p)).collect(),
        None => update_patterns,
    };
    if on.is_empty() && c.len() == before {
        c.push(&format!("{key}.on"), "a rule needs `on` or `update` patterns");
    }
    let mut then = Vec::new();
    for (i, action) in toml.then.iter().enumerate() {
        let at = format!("{key}.then[{i}]");
        if let Some(a) = load_action(&c, config, name, &at, action, THEN_VARS) {
            then.push(a);
        }
    }
    if c.len() != before {
        return None;
    }
    let mut exprs: Vec<&Expr> = entry_key.iter().collect();
    exprs.extend(update.values());
    for a in &then {
        exprs.extend(a.when.iter().chain([&a.data]));
    }
    let then_exprs: Vec<&Expr> = then.iter().flat_map(|a| a.when.iter().chain([&a.data])).collect();
    let (event_fields, meta_fields) = (fields_read("event", &exprs), fields_read("meta", &exprs));
    let update_state_fields = fields_read("state", &update.values().collect::<Vec<_>>());
    let (then_state_fields, then_prev_fields) = (fields_read("state", &then_exprs), fields_read("prev", &then_exprs));
    let mut on_map = PatternMap::default();
    for p in on {
        on_map.insert(p, ());
    }
    Some(Rule {
        name: name.to_string(),
        fingerprint: reactor_fingerprint(&raw),
        policy: Policy {
            start: toml.start,
            replay_effects: toml.replay_effects,
            on_error: toml.on_error,
            max_retries: toml.max_retries,
            partitions,
        },
        on: on_map,
        key: entry_key,
        initial: toml.initial,
        event_fields,
        meta_fields,
        update_state_fields,
        then_state_fields,
        then_prev_fields,
        update,
        then,
    })
}
