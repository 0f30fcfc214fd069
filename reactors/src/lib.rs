//! Reactor kinds hosted by the engine: `rule` (state per key, actions on change) and `saga` (process
//! managers). Each compiles its config into an [`eddy_engine::host::reactor::Logic`] that the host runs.

mod common;
pub mod rule;
pub mod saga;

use std::sync::Arc;

use eddy_engine::config::{is_token, Config, ConfigErrors, Source};
use eddy_engine::host::reactor::Logic;
use eddy_engine::host::Catalog;
use figment::value::Value;

/// The kinds a reactor can be.
const KINDS: &[&str] = &["rule", "saga"];

/// Reads every `[reactors.*]`, recording problems in `errors`.
pub fn load(source: &Source, config: &Config, catalog: &Catalog, errors: &mut ConfigErrors) -> Vec<Arc<dyn Logic>> {
    let mut out: Vec<Arc<dyn Logic>> = Vec::new();
    for name in source.children("reactors", errors) {
        let key = format!("reactors.{name}");
        if !is_token(&name) {
            errors.push(source.file_of(&key), &key, "the reactor name must be letters, digits, `_` or `-`");
            continue;
        }
        let kind = source.extract::<Value>(&format!("{key}.kind"), &mut ConfigErrors::default());
        let kind = kind.as_ref().and_then(|k| k.as_str().map(str::to_string));
        // A saga keeps its instances apart (events.saga-<name>.*) and may drive an aggregate of its name.
        if config.aggregates.contains_key(&name) && kind.as_deref() != Some("saga") {
            errors.push(
                source.file_of(&key),
                &key,
                "a reactor cannot share its name with an aggregate (its emits go to events.<name>.*)",
            );
            continue;
        }
        match kind.as_deref() {
            Some("rule") => {
                if let Some(rule) = rule::load(source, config, catalog, &name, errors) {
                    out.push(Arc::new(rule));
                }
            }
            Some("saga") => {
                if let Some(saga) = saga::load(source, config, catalog, &name, errors) {
                    out.push(Arc::new(saga));
                }
            }
            Some(other) => errors.push(
                source.file_of(&key),
                format!("{key}.kind"),
                format!("unknown kind `{other}` (expected one of: {})", KINDS.join(", ")),
            ),
            None => errors.push(
                source.file_of(&key),
                format!("{key}.kind"),
                format!("missing (one of: {})", KINDS.join(", ")),
            ),
        }
    }
    let names: Vec<String> = out.iter().map(|l| l.name().to_string()).collect();
    for logic in out.iter().filter(|l| l.kind() == "saga") {
        let log = saga::log_aggregate(logic.name());
        if names.contains(&log) {
            let key = format!("reactors.{log}");
            errors.push(
                source.file_of(&key),
                key,
                format!("its emits would share events.{log}.* with saga `{}`", logic.name()),
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
