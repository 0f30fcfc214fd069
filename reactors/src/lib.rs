//! Reactor kinds hosted by the engine: `rule` (state per key, actions on change) and `saga` (process
//! managers). Each compiles its config into an [`eddy_engine::host::reactor::Logic`] that the host runs.

mod common;
pub mod rule;

use std::sync::Arc;

use eddy_engine::config::{is_token, Config, ConfigErrors, Source};
use eddy_engine::host::reactor::Logic;
use figment::value::Value;

/// The kinds a reactor can be.
const KINDS: &[&str] = &["rule"];

/// Reads every `[reactors.*]`, recording problems in `errors`.
pub fn load(source: &Source, config: &Config, errors: &mut ConfigErrors) -> Vec<Arc<dyn Logic>> {
    let mut out: Vec<Arc<dyn Logic>> = Vec::new();
    for name in source.children("reactors", errors) {
        let key = format!("reactors.{name}");
        if !is_token(&name) {
            errors.push(source.file_of(&key), &key, "the reactor name must be letters, digits, `_` or `-`");
            continue;
        }
        if config.aggregates.contains_key(&name) {
            errors.push(
                source.file_of(&key),
                &key,
                "a reactor cannot share its name with an aggregate (its emits go to events.<name>.*)",
            );
            continue;
        }
        let kind = source.extract::<Value>(&format!("{key}.kind"), &mut ConfigErrors::default());
        match kind.as_ref().and_then(|k| k.as_str()) {
            Some("rule") => {
                if let Some(rule) = rule::load(source, config, &name, errors) {
                    out.push(Arc::new(rule));
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
    out
}
