//! Reactor kinds hosted by the engine: `rule` (state per key, actions on change) and `saga` (process
//! managers). Each compiles its config into an [`eddy_engine::host::reactor::Logic`] that the host runs.

mod common;
pub mod rule;
pub mod saga;

use std::sync::Arc;

use eddy_engine::config::{is_token, Config, ConfigErrors, Source};
use eddy_engine::host::reactor::Logic;
use figment::value::Value;

/// The kinds a reactor can be.
const KINDS: &[&str] = &["rule", "saga"];

/// Reads every `[reactors.*]`, recording problems in `errors`.
pub fn load(source: &Source, config: &Config, errors: &mut ConfigErrors) -> Vec<Arc<dyn Logic>> {
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
                if let Some(rule) = rule::load(source, config, &name, errors) {
                    out.push(Arc::new(rule));
                }
            }
            Some("saga") => {
                if let Some(saga) = saga::load(source, config, &name, errors) {
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
