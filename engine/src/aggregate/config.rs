//! The TOML shape of an aggregate, and its compilation into the model. Each command and event is read on
//! its own so that one bad entry does not hide the errors of the others.

use std::collections::BTreeMap;

use figment::value::Value;
use serde::Deserialize;
use serde_json::{Map, Value as Json};

use super::input::{Field, FieldType};
use super::{Aggregate, Command, Emit, EventDef, Message, Rule};
use crate::cel::Expr;
use crate::config::{did_you_mean, from_value, is_token, ConfigErrors, Source};

/// Variables of command expressions (rules and emits).
pub const COMMAND_VARS: &[&str] = &["state", "cmd", "meta"];
/// Variables of `apply`.
pub const APPLY_VARS: &[&str] = &["state", "event", "meta"];
/// Variables of an upcast: the older version's data, and where the event sits.
pub const UPCAST_VARS: &[&str] = &["event", "meta"];

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
    /// Store a snapshot of an instance's state after every this many events (0: never).
    #[serde(default = "default_snapshot_every")]
    snapshot_every: u64,
}

fn default_snapshot_every() -> u64 {
    100
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
    /// The rejection message when `check` is false; `{{ expr }}` holes are CEL over the check's variables
    /// (`"account {{ cmd.id }} is not open"`).
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
    /// The version of the data that new events of this type carry; older stored versions are read through
    /// `upcast`.
    #[serde(default = "first_version")]
    version: u32,
    /// Per older version `n` (`"1"`, `"2"`, ...): a CEL map from that version's data (`event`) to version
    /// `n + 1`'s.
    #[serde(default)]
    upcast: BTreeMap<String, String>,
    /// Names this type had before; stored events of those names read as this type.
    #[serde(default)]
    renamed_from: Vec<String>,
}

fn first_version() -> u32 {
    1
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
        let mut renames: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (event, value) in &toml.events {
            let key = format!("{key}.events.{event}");
            if !is_token(event) {
                ctx.error(&key, "the event type must be letters, digits, `_` or `-`");
            }
            let Some(raw) = ctx.parse::<EventToml>(&key, value) else {
                continue;
            };
            renames.insert(event, raw.renamed_from.clone());
            let upcasts = ctx.upcasts(&key, raw.version, &raw.upcast);
            if let (Some(apply), Some(upcasts)) = (ctx.expr(&format!("{key}.apply"), &raw.apply, APPLY_VARS), upcasts) {
                let renamed_from = raw.renamed_from.clone();
                events.insert(event.clone(), EventDef { apply, version: raw.version, upcasts, renamed_from });
            }
        }
        ctx.check_renames(&key, &renames);

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
                    let at = format!("{key}.rules[{i}].error");
                    let error = match Message::parse(&r.error, |hole| checked(&mut ctx, &at, hole)) {
                        Ok(message) => message?,
                        Err(why) => {
                            ctx.error(&at, &why);
                            return None;
                        }
                    };
                    Some(Rule { check, error })
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
        let fingerprint = fingerprint(&toml.initial, &events);
        let snapshot_every = toml.snapshot_every;
        Some(Aggregate { name: name.to_string(), initial: toml.initial, commands, events, snapshot_every, fingerprint })
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

/// Changes whenever the same events would fold into a different state: the initial state, and every event
/// type's name, `apply`, version, upcasts and older names. A snapshot stamped otherwise is not used.
fn fingerprint(initial: &Map<String, Json>, events: &BTreeMap<String, EventDef>) -> String {
    use std::hash::Hasher;
    let mut hasher = fnv::FnvHasher::default();
    let mut write = |s: &str| {
        hasher.write(s.as_bytes());
        hasher.write_u8(0);
    };
    write("eddy-snapshot-1");
    write(&Json::Object(initial.clone()).to_string());
    for (name, def) in events {
        write(name);
        write(def.apply.source());
        write(&def.version.to_string());
        def.upcasts.iter().for_each(|u| write(u.source()));
        def.renamed_from.iter().for_each(|r| write(r));
    }
    format!("{:016x}", hasher.finish())
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

    /// The upcasts of an event type at `version`: exactly one per older version, each a CEL map of `event`.
    fn upcasts(&mut self, key: &str, version: u32, raw: &BTreeMap<String, String>) -> Option<Vec<Expr>> {
        if version == 0 {
            self.error(&format!("{key}.version"), "versions start at 1");
            return None;
        }
        let mut upcasts = Vec::new();
        let mut ok = true;
        for from in raw.keys().filter(|from| from.parse::<u32>().ok().is_none_or(|n| !(1..version).contains(&n))) {
            let why = format!("`{from}` is not an older version of this type (1 to {})", version - 1);
            self.error(
                &format!("{key}.upcast.{from}"),
                if version == 1 { "an upcast needs `version` 2 or more" } else { &why },
            );
            ok = false;
        }
        for from in 1..version {
            match raw.get(&from.to_string()) {
                Some(source) => match self.expr(&format!("{key}.upcast.{from}"), source, UPCAST_VARS) {
                    Some(expr) => upcasts.push(expr),
                    None => ok = false,
                },
                None => {
                    self.error(
                        &format!("{key}.upcast"),
                        &format!("version {version} needs `upcast.{from}`, reading version {from} as {}", from + 1),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(upcasts)
    }

    /// Each older name is a valid name, and belongs to one type that does not still exist under it.
    fn check_renames(&mut self, key: &str, renames: &BTreeMap<&str, Vec<String>>) {
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        for (event, olds) in renames {
            for old in olds {
                let at = format!("{key}.events.{event}.renamed_from");
                if !is_token(old) {
                    self.error(&at, &format!("`{old}` is not an event type name"));
                } else if renames.contains_key(old.as_str()) {
                    self.error(&at, &format!("`{old}` is still an event type of this aggregate"));
                } else if let Some(other) = seen.insert(old, event) {
                    self.error(&at, &format!("`{old}` is also an older name of `{other}`"));
                }
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
