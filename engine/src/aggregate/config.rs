//! The TOML shape of an aggregate, and its compilation into the model. Each command and event is read on
//! its own so that one bad entry does not hide the errors of the others.

use std::collections::BTreeMap;

use figment::value::Value;
use serde::Deserialize;
use serde_json::{Map, Value as Json};

use super::input::{Field, FieldType};
use super::{Aggregate, Command, Emit, EventDef, Rule};
use crate::cel::Expr;
use crate::config::{did_you_mean, from_value, is_token, ConfigErrors, Source};

/// Variables of command expressions (rules and emits).
pub const COMMAND_VARS: &[&str] = &["state", "cmd", "meta"];
/// Variables of `apply`.
pub const APPLY_VARS: &[&str] = &["state", "event", "meta"];

/// `[aggregates.<name>]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AggregateToml {
    /// The state before the first event.
    #[serde(default)]
    initial: Map<String, Json>,
    /// Commands by name, read one by one.
    #[serde(default)]
    commands: BTreeMap<String, Value>,
    /// Event types by name, read one by one.
    #[serde(default)]
    events: BTreeMap<String, Value>,
}

/// `[aggregates.<name>.commands.<command>]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandToml {
    /// Declared input fields and their types; `id` is implicit.
    #[serde(default)]
    input: BTreeMap<String, String>,
    /// Checks in order; the first false one rejects the command.
    #[serde(default)]
    rules: Vec<RuleToml>,
    /// Events to append when every rule holds.
    #[serde(default)]
    emit: Vec<EmitToml>,
}

/// One rule.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleToml {
    /// A CEL bool.
    check: String,
    /// The rejection message when `check` is false.
    error: String,
}

/// One emitted event.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmitToml {
    /// The event type; it must have an `apply`.
    event: String,
    /// A CEL map: the event's data.
    data: String,
    /// A CEL bool: emit only when it holds.
    when: Option<String>,
}

/// `[aggregates.<name>.events.<EventType>]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventToml {
    /// A CEL map merged (shallow) into the state.
    apply: String,
}

impl Aggregate {
    /// Reads and compiles `aggregates.<name>`, recording every problem in `errors`.
    pub fn load(source: &Source, name: &str, errors: &mut ConfigErrors) -> Option<Aggregate> {
        let key = format!("aggregates.{name}");
        if !is_token(name) {
            errors.push(source.file_of(&key), &key, "the name must be letters, digits, `_` or `-`");
        }
        let toml: AggregateToml = source.extract(&key, errors)?;
        let mut ctx = Ctx { source, errors, ok: true };

        let mut events: BTreeMap<String, EventDef> = BTreeMap::new();
        for (event, value) in &toml.events {
            let key = format!("{key}.events.{event}");
            if !is_token(event) {
                ctx.error(&key, "the event type must be letters, digits, `_` or `-`");
            }
            let Some(raw) = ctx.parse::<EventToml>(&key, value) else {
                continue;
            };
            if let Some(apply) = ctx.expr(&format!("{key}.apply"), &raw.apply, APPLY_VARS) {
                events.insert(event.clone(), EventDef { apply });
            }
        }

        let state_keys = known_state_keys(&toml.initial, &events);
        for (event, def) in &events {
            ctx.check_fields(&format!("{key}.events.{event}.apply"), &def.apply, "state", state_keys.as_deref());
        }

        let mut commands = BTreeMap::new();
        for (command, value) in &toml.commands {
            let key = format!("{key}.commands.{command}");
            if !is_token(command) {
                ctx.error(&key, "the command name must be letters, digits, `_` or `-`");
            }
            let Some(raw) = ctx.parse::<CommandToml>(&key, value) else {
                continue;
            };
            let input: Vec<Field> = raw
                .input
                .iter()
                .filter_map(|(field, ty)| {
                    let parsed = Field::parse(field, ty);
                    if let Err(message) = &parsed {
                        ctx.error(&format!("{key}.input.{field}"), message);
                    }
                    parsed.ok()
                })
                .collect();
            let inputs: Vec<String> = std::iter::once("id".to_string()).chain(raw.input.keys().cloned()).collect();
            let checked = |ctx: &mut Ctx, at: &str, source: &str| {
                let expr = ctx.expr(at, source, COMMAND_VARS)?;
                ctx.check_fields(at, &expr, "cmd", Some(&inputs));
                ctx.check_fields(at, &expr, "state", state_keys.as_deref());
                Some(expr)
            };
            let rules = raw
                .rules
                .iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    let check = checked(&mut ctx, &format!("{key}.rules[{i}].check"), &r.check)?;
                    Some(Rule { check, error: r.error.clone() })
                })
                .collect();
            let mut emit = Vec::new();
            for (i, e) in raw.emit.iter().enumerate() {
                let at = format!("{key}.emit[{i}]");
                if !toml.events.contains_key(&e.event) {
                    let known: Vec<String> = toml.events.keys().cloned().collect();
                    let hint =
                        did_you_mean(&e.event, &known).map(|k| format!("; did you mean `{k}`?")).unwrap_or_default();
                    ctx.error(
                        &format!("{at}.event"),
                        &format!(
                            "emits `{}`, which has no `[{}.events.{}]` apply{hint}",
                            e.event,
                            key_of(name),
                            e.event
                        ),
                    );
                }
                let data = checked(&mut ctx, &format!("{at}.data"), &e.data);
                // `Some(None)`: no `when`; `None`: a `when` that failed to compile.
                let when = match &e.when {
                    Some(w) => checked(&mut ctx, &format!("{at}.when"), w).map(Some),
                    None => Some(None),
                };
                if let (Some(data), Some(when)) = (data, when) {
                    emit.push(Emit { event: e.event.clone(), data, when });
                }
            }
            commands.insert(command.clone(), Command { name: command.clone(), input, rules, emit });
        }
        // Returned even with errors (the load fails anyway), so that reactors' checks against its commands
        // are reported in the same run.
        Some(Aggregate { name: name.to_string(), initial: toml.initial, commands, events })
    }
}

/// The keys the state can have: the initial state's and those every `apply` sets. `None` when some
/// `apply` is not a map literal (its keys depend on the event), so nothing can be said.
fn known_state_keys(initial: &Map<String, Json>, events: &BTreeMap<String, EventDef>) -> Option<Vec<String>> {
    let mut keys: Vec<String> = initial.keys().cloned().collect();
    for def in events.values() {
        keys.extend(def.apply.literal_map_keys()?);
    }
    keys.sort();
    keys.dedup();
    Some(keys)
}

fn key_of(name: &str) -> String {
    format!("aggregates.{name}")
}

/// Shared state of one aggregate's compilation.
struct Ctx<'a> {
    source: &'a Source,
    errors: &'a mut ConfigErrors,
    ok: bool,
}

impl Ctx<'_> {
    fn error(&mut self, key: &str, message: &str) {
        self.ok = false;
        self.errors.push(self.source.file_of(key), key, message);
    }

    fn parse<T: serde::de::DeserializeOwned>(&mut self, key: &str, value: &Value) -> Option<T> {
        match from_value::<T>(key, value) {
            Ok(v) => Some(v),
            Err((key, message)) => {
                self.error(&key, &message);
                None
            }
        }
    }

    /// Every `<var>.<field>` in `expr` names one of `known` (when known): a typo would only fail at run
    /// time, on the first command that reaches it.
    fn check_fields(&mut self, key: &str, expr: &Expr, var: &str, known: Option<&[String]>) {
        let Some(known) = known else { return };
        for field in expr.selected_fields(var) {
            if !known.contains(&field) {
                let what = if var == "cmd" { "an input of this command" } else { "a key of the state" };
                let hint = did_you_mean(&field, known).map(|k| format!("; did you mean `{k}`?")).unwrap_or_default();
                let message = format!("`{var}.{field}`: `{field}` is not {what} ({}){hint}", known.join(", "));
                self.error(key, &message);
            }
        }
    }

    fn expr(&mut self, key: &str, source: &str, vars: &[&str]) -> Option<Expr> {
        match Expr::compile(source, vars) {
            Ok(e) => Some(e),
            Err(e) => {
                self.error(key, &e.to_string());
                None
            }
        }
    }
}

impl FieldType {
    fn parse(name: &str) -> Option<FieldType> {
        Some(match name {
            "string" => FieldType::String,
            "int" => FieldType::Int,
            "double" => FieldType::Double,
            "bool" => FieldType::Bool,
            "list" => FieldType::List,
            "map" => FieldType::Map,
            "any" => FieldType::Any,
            _ => return None,
        })
    }
}

impl Field {
    fn parse(name: &str, ty: &str) -> Result<Field, String> {
        if name == "id" {
            return Err("`id` is implicit and cannot be declared".into());
        }
        let (base, optional) = match ty.strip_suffix('?') {
            Some(base) => (base, true),
            None => (ty, false),
        };
        let ty = FieldType::parse(base).ok_or_else(|| {
            format!("unknown type `{ty}` (expected string, int, double, bool, list, map or any, with an optional trailing `?`)")
        })?;
        Ok(Field { name: name.to_string(), ty, optional })
    }
}
