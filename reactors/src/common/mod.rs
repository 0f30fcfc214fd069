//! What the reactor kinds share: config helpers that collect every error with its key, and actions.

mod action;

use std::cell::RefCell;
use std::hash::Hasher;

use eddy_engine::cel::Expr;
use eddy_engine::config::{did_you_mean, from_value, is_token, Config, ConfigErrors, Source};
use eddy_engine::host::reactor::MAX_PARTITIONS;
use eddy_engine::host::{Catalog, Pattern};
use figment::value::Value;
use serde::de::DeserializeOwned;

pub use action::{load_action, ActionDef, ActionKind, ActionToml};

/// Retries of a failing event or action before `on_error` applies.
pub const DEFAULT_MAX_RETRIES: u32 = 5;

/// Compiles a reactor's parts, recording each problem under its key.
pub struct Compiler<'a> {
    source: &'a Source,
    /// What patterns may name.
    catalog: &'a Catalog,
    errors: RefCell<&'a mut ConfigErrors>,
}

impl<'a> Compiler<'a> {
    pub fn new(source: &'a Source, catalog: &'a Catalog, errors: &'a mut ConfigErrors) -> Self {
        Self { source, catalog, errors: RefCell::new(errors) }
    }

    /// How many errors are recorded so far.
    pub fn len(&self) -> usize {
        self.errors.borrow().len()
    }

    pub fn push(&self, key: &str, message: impl Into<String>) {
        self.errors.borrow_mut().push(self.source.file_of(key), key, message);
    }

    pub fn compile(&self, key: &str, source: &str, vars: &[&str]) -> Option<Expr> {
        Expr::compile(source, vars).map_err(|e| self.push(key, e.to_string())).ok()
    }

    pub fn pattern(&self, key: &str, pattern: &str) -> Option<Pattern> {
        Pattern::parse(pattern).and_then(|p| self.catalog.check(&p).map(|()| p)).map_err(|m| self.push(key, m)).ok()
    }

    /// A publish subject: tokens, no wildcards.
    pub fn subject(&self, key: &str, subject: &str) -> Option<String> {
        let ok = subject.split('.').all(|t| !t.is_empty() && !t.contains(['*', '>', ' ', '\t']));
        if !ok {
            self.push(key, format!("`{subject}` is not a subject to publish to"));
        }
        ok.then(|| subject.to_string())
    }

    /// `<aggregate>.<command>`; one of this config's aggregates must have the command, unless the aggregate
    /// is decided elsewhere (not in this config at all).
    pub fn command(&self, key: &str, config: &Config, target: &str) -> Option<ActionKind> {
        let Some((aggregate, command)) = target.split_once('.').filter(|(a, c)| is_token(a) && is_token(c)) else {
            self.push(key, format!("`{target}` is not <aggregate>.<command>"));
            return None;
        };
        if let Some(agg) = config.aggregates.get(aggregate) {
            let declared =
                self.source.children(&format!("aggregates.{aggregate}.commands"), &mut ConfigErrors::default());
            // A declared command that failed to compile has its own errors: not repeated here.
            if !agg.commands.contains_key(command) && !declared.iter().any(|c| c == command) {
                let known: Vec<String> = agg.commands.keys().cloned().collect();
                let hint = did_you_mean(command, &known).map(|k| format!("; did you mean `{k}`?")).unwrap_or_default();
                self.push(
                    key,
                    format!("aggregate `{aggregate}` has no command `{command}` ({}){hint}", known.join(", ")),
                );
                return None;
            }
        }
        Some(ActionKind::Command { aggregate: aggregate.to_string(), command: command.to_string() })
    }
}

impl Compiler<'_> {
    /// When `data` is a map literal sent as `<aggregate>.<command>` of this config: it supplies `id` and every
    /// required input, and nothing the command does not declare (the command would answer `invalid`).
    pub fn command_data(&self, key: &str, config: &Config, aggregate: &str, command: &str, data: &Expr) {
        let (Some(def), Some(keys)) =
            (config.aggregates.get(aggregate).and_then(|a| a.commands.get(command)), data.literal_map_keys())
        else {
            return;
        };
        let inputs: Vec<String> =
            std::iter::once("id".to_string()).chain(def.input.iter().map(|f| f.name.clone())).collect();
        let required = std::iter::once("id").chain(def.input.iter().filter(|f| !f.optional).map(|f| f.name.as_str()));
        let missing: Vec<&str> = required.filter(|r| !keys.iter().any(|k| k == r)).collect();
        if !missing.is_empty() {
            self.push(
                key,
                format!("`{aggregate}.{command}` requires {} (missing from this map)", backticked(&missing)),
            );
        }
        for unknown in keys.iter().filter(|k| !inputs.contains(k)) {
            let hint = did_you_mean(unknown, &inputs).map(|k| format!("; did you mean `{k}`?")).unwrap_or_default();
            self.push(
                key,
                format!("`{unknown}` is not an input of `{aggregate}.{command}` ({}){hint}", inputs.join(", ")),
            );
        }
    }
}

fn backticked(names: &[&str]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// Deserializes `key` strictly, also returning its raw value (for the fingerprint).
pub fn extract<T: DeserializeOwned>(source: &Source, key: &str, errors: &mut ConfigErrors) -> Option<(T, Value)> {
    let raw = source.extract::<Value>(key, errors)?;
    match from_value(key, &raw) {
        Ok(t) => Some((t, raw)),
        Err((k, message)) => {
            errors.push(source.file_of(&k), k, message);
            None
        }
    }
}

/// The union of the fields of `var` that `exprs` read; `None` if any reads it as a whole.
pub fn fields_read(var: &str, exprs: &[&Expr]) -> Option<Vec<String>> {
    let mut all = Vec::new();
    for e in exprs {
        if e.uses(var) {
            all.extend(e.fields_of(var)?);
        }
    }
    all.sort();
    all.dedup();
    Some(all)
}

/// `partitions` as configured (1 when unset), checked against [`MAX_PARTITIONS`].
pub fn partitions(c: &Compiler, key: &str, configured: Option<u32>) -> u16 {
    match configured {
        None => 1,
        Some(n) if (1..=u32::from(MAX_PARTITIONS)).contains(&n) => n as u16,
        Some(n) => {
            let message =
                format!("{n} partitions: a reactor has 1 to {MAX_PARTITIONS} (its keys split over the engines)");
            c.push(&format!("{key}.partitions"), message);
            1
        }
    }
}

/// A reactor's fingerprint: its definition as written, less `partitions`, which says where its state is
/// kept rather than what it decides (see the README's partitions section for what a change of it does).
pub fn reactor_fingerprint(raw: &Value) -> String {
    let mut raw = raw.clone();
    if let Value::Dict(_, dict) = &mut raw {
        dict.remove("partitions");
    }
    fingerprint(&raw)
}

/// Changes whenever the definition does.
pub fn fingerprint(raw: &impl serde::Serialize) -> String {
    let mut hasher = fnv::FnvHasher::default();
    hasher.write(serde_json::to_string(raw).unwrap_or_default().as_bytes());
    format!("{:016x}", hasher.finish())
}
