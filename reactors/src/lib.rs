//! Reactor kinds hosted by the engine: `rule` (state per key, actions on change) and `saga` (process
//! managers). Each compiles its config into an [`eddy_engine::host::reactor::Logic`] that the host runs.

mod common;
pub mod rule;
pub mod saga;

use std::sync::Arc;

use eddy_engine::config::{is_token, Config, ConfigErrors, Source};
use eddy_engine::host::reactor::{Kind, Logic};
use eddy_engine::host::Catalog;
use figment::value::Value;

/// A loaded reactor, typed by its kind: the host runs any [`Logic`], while code that knows a kind (the
/// offline replay drives a saga's instances) reaches its own API.
#[derive(Debug, Clone)]
pub enum Reactor {
    Rule(Arc<rule::Rule>),
    Saga(Arc<saga::Saga>),
}

impl Reactor {
    /// What the host runs.
    pub fn logic(&self) -> Arc<dyn Logic> {
        match self {
            Reactor::Rule(rule) => rule.clone(),
            Reactor::Saga(saga) => saga.clone(),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Reactor::Rule(rule) => &rule.name,
            Reactor::Saga(saga) => &saga.name,
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Reactor::Rule(_) => Kind::Rule,
            Reactor::Saga(_) => Kind::Saga,
        }
    }

    pub fn saga(&self) -> Option<&saga::Saga> {
        match self {
            Reactor::Saga(saga) => Some(saga),
            Reactor::Rule(_) => None,
        }
    }
}

/// What the host runs of each reactor.
pub fn logics(reactors: &[Reactor]) -> Vec<Arc<dyn Logic>> {
    reactors.iter().map(Reactor::logic).collect()
}

/// Reads every `[reactors.*]`, recording problems in `errors`.
pub fn load(source: &Source, config: &Config, catalog: &Catalog, errors: &mut ConfigErrors) -> Vec<Reactor> {
    let mut out = Vec::new();
    for name in source.children("reactors", errors) {
        let key = format!("reactors.{name}");
        if !is_token(&name) {
            errors.push(source.file_of(&key), &key, "the reactor name must be letters, digits, `_` or `-`");
            continue;
        }
        let kind = source.extract::<Value>(&format!("{key}.kind"), &mut ConfigErrors::default());
        let kind = kind.as_ref().and_then(|k| k.as_str().map(str::to_string));
        // A saga keeps its instances apart (events.saga-<name>.*) and may drive an aggregate of its name.
        if config.aggregates.contains_key(&name) && kind.as_deref() != Some(Kind::Saga.name()) {
            errors.push(
                source.file_of(&key),
                &key,
                "a reactor cannot share its name with an aggregate (its emits go to events.<name>.*)",
            );
            continue;
        }
        let kinds = || Kind::ALL.map(Kind::name).join(", ");
        match kind.as_deref().map(|k| (k, Kind::parse(k))) {
            Some((_, Some(Kind::Rule))) => {
                if let Some(rule) = rule::load(source, config, catalog, &name, errors) {
                    out.push(Reactor::Rule(Arc::new(rule)));
                }
            }
            Some((_, Some(Kind::Saga))) => {
                if let Some(saga) = saga::load(source, config, catalog, &name, errors) {
                    out.push(Reactor::Saga(Arc::new(saga)));
                }
            }
            Some((other, None)) => errors.push(
                source.file_of(&key),
                format!("{key}.kind"),
                format!("unknown kind `{other}` (expected one of: {})", kinds()),
            ),
            None => errors.push(source.file_of(&key), format!("{key}.kind"), format!("missing (one of: {})", kinds())),
        }
    }
    let names: Vec<String> = out.iter().map(|r| r.name().to_string()).collect();
    for saga in out.iter().filter_map(Reactor::saga) {
        let log = saga::log_aggregate(&saga.name);
        if names.contains(&log) {
            let key = format!("reactors.{log}");
            errors.push(
                source.file_of(&key),
                key,
                format!("its emits would share events.{log}.* with saga `{}`", saga.name),
            );
        }
    }
    out
}

/// Adds to `catalog` what the reactors put in the stream: the event types of their `emit` actions (on
/// `events.<reactor>.*`, or a saga's log) and the records of every saga's log. A reactor that cannot be read
/// is known by name only, so its own errors are not repeated as unknown patterns elsewhere.
pub fn emitted(source: &Source, catalog: &mut Catalog) {
    for name in source.children("reactors", &mut ConfigErrors::default()) {
        let raw = source.extract::<Value>(&format!("reactors.{name}"), &mut ConfigErrors::default());
        let kind = raw.as_ref().and_then(|r| r.find_ref("kind")).and_then(|k| k.as_str().map(str::to_string));
        let target = match kind.as_deref() {
            Some("saga") => {
                let log = saga::log_aggregate(&name);
                for record in saga::state::RECORDS {
                    catalog.add(&log, record);
                }
                log
            }
            _ => name.clone(),
        };
        match raw {
            Some(raw) => emits(&raw, &mut |event| catalog.add(&target, event)),
            None => catalog.add_unchecked(&target),
        }
    }
}

/// Calls `found` with every `emit = "<EventType>"` below `value`.
fn emits(value: &Value, found: &mut dyn FnMut(&str)) {
    match value {
        Value::Dict(_, dict) => {
            for (k, v) in dict {
                match (k.as_str(), v.as_str()) {
                    ("emit", Some(event)) => found(event),
                    _ => emits(v, found),
                }
            }
        }
        Value::Array(_, items) => items.iter().for_each(|v| emits(v, found)),
        _ => {}
    }
}
