//! `[projections.<view>]`: how a view's documents are keyed and updated.

use std::collections::BTreeMap;
use std::hash::Hasher;

use eddy_engine::cel::Expr;
use eddy_engine::config::{from_value, is_token, ConfigErrors, Source};
use eddy_engine::host::reactor::OnError;
use eddy_engine::host::{Catalog, Pattern, PatternMap};
use figment::value::Value;
use serde::Deserialize;
use serde_json::{Map, Value as Json};

/// Variables of a view's `key` expressions.
const KEY_VARS: &[&str] = &["event", "meta"];
/// Variables of a view's update expressions.
const UPDATE_VARS: &[&str] = &["event", "meta", "doc"];

/// `[projections.<view>]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ViewToml {
    /// Which document an event touches (CEL string); default `meta.id`.
    key: Option<String>,
    /// A new document.
    #[serde(default)]
    initial: Map<String, Json>,
    /// Per event pattern: a CEL map merged into the document, or `{ key, update }`.
    #[serde(default)]
    on: BTreeMap<String, Value>,
    /// What happens to an event whose update fails: `stop` holds the view at it, `skip` logs it and goes
    /// on, `park` (default) also lists it in `eddy views`. The document is left as it was in every case.
    #[serde(default)]
    on_error: OnError,
}

/// The long form of an `on` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HandlerToml {
    /// This pattern's own key (CEL string).
    key: Option<String>,
    /// A CEL map merged into the document; null deletes it.
    update: String,
}

/// How one event pattern changes a view.
#[derive(Debug, Clone)]
pub struct Handler {
    pub key: Option<Expr>,
    pub update: Expr,
    /// The `meta` fields its expressions read (`None`: all of them).
    pub meta_fields: Option<Vec<String>>,
    /// The `event` fields its expressions read (`None`: all of them).
    pub event_fields: Option<Vec<String>>,
    /// The `doc` fields its update reads (`None`: all of them).
    pub doc_fields: Option<Vec<String>>,
}

/// The union of the fields of `var` that `exprs` read; `None` if any reads it as a whole.
fn fields_read(var: &str, exprs: &[Option<&Expr>]) -> Option<Vec<String>> {
    let mut all = Vec::new();
    for e in exprs.iter().flatten() {
        all.extend(e.fields_of(var)?);
    }
    all.sort();
    all.dedup();
    Some(all)
}

/// A compiled view definition.
#[derive(Debug, Clone)]
pub struct ViewDef {
    pub name: String,
    pub key: Option<Expr>,
    pub initial: Map<String, Json>,
    pub on: PatternMap<Handler>,
    /// What happens to an event whose update fails.
    pub on_error: OnError,
    /// Changes whenever the definition does: a stored copy built by another definition is rebuilt.
    pub fingerprint: String,
}

impl ViewDef {
    /// The stream filters that cover the view's patterns.
    pub fn filters(&self) -> Vec<String> {
        eddy_engine::host::subject_filters(self.on.patterns())
    }
}

/// Reads every `[projections.*]`, recording problems in `errors`.
pub fn load(source: &Source, catalog: &Catalog, errors: &mut ConfigErrors) -> BTreeMap<String, ViewDef> {
    let mut views = BTreeMap::new();
    for name in source.children("projections", errors) {
        let key = format!("projections.{name}");
        if !is_token(&name) {
            errors.push(source.file_of(&key), &key, "the view name must be letters, digits, `_` or `-`");
            continue;
        }
        let Some(raw) = source.extract::<Value>(&key, errors) else { continue };
        let before = errors.len();
        let toml: ViewToml = match from_value(&key, &raw) {
            Ok(t) => t,
            Err((k, message)) => {
                errors.push(source.file_of(&k), k, message);
                continue;
            }
        };
        let compile = |errors: &mut ConfigErrors, k: &str, src: &str, vars: &[&str]| match Expr::compile(src, vars) {
            Ok(e) => Some(e),
            Err(e) => {
                errors.push(source.file_of(k), k, e.to_string());
                None
            }
        };
        let view_key = toml.key.as_ref().and_then(|k| compile(errors, &format!("{key}.key"), k, KEY_VARS));
        let mut on = PatternMap::default();
        for (pattern, value) in &toml.on {
            let at = format!("{key}.on.\"{pattern}\"");
            let parsed = match Pattern::parse(pattern) {
                Ok(p) => p,
                Err(m) => {
                    errors.push(source.file_of(&key), &at, m);
                    continue;
                }
            };
            // A pattern that can never match is reported, and its update is still checked.
            if let Err(m) = catalog.check(&parsed) {
                errors.push(source.file_of(&key), &at, m);
            }
            let (handler_key, update) = match value {
                Value::String(_, s) => (None, s.clone()),
                other => match from_value::<HandlerToml>(&at, other) {
                    Ok(h) => (h.key, h.update),
                    Err((k, m)) => {
                        errors.push(source.file_of(&key), k, m);
                        continue;
                    }
                },
            };
            let handler_key = match handler_key {
                Some(k) => match compile(errors, &format!("{at}.key"), &k, KEY_VARS) {
                    Some(e) => Some(e),
                    None => continue,
                },
                None => None,
            };
            if let Some(update) = compile(errors, &format!("{at}.update"), &update, UPDATE_VARS) {
                let exprs = [handler_key.as_ref(), view_key.as_ref(), Some(&update)];
                let meta_fields = fields_read("meta", &exprs);
                let event_fields = fields_read("event", &exprs);
                let doc_fields = fields_read("doc", &[Some(&update)]);
                on.insert(parsed, Handler { key: handler_key, update, meta_fields, event_fields, doc_fields });
            }
        }
        if on.is_empty() && errors.len() == before {
            errors.push(source.file_of(&key), format!("{key}.on"), "a view needs at least one event pattern");
        }
        if errors.len() == before {
            let mut hasher = fnv::FnvHasher::default();
            hasher.write(serde_json::to_string(&raw).unwrap_or_default().as_bytes());
            let fingerprint = format!("{:016x}", hasher.finish());
            views.insert(
                name.clone(),
                ViewDef { name, key: view_key, initial: toml.initial, on, on_error: toml.on_error, fingerprint },
            );
        }
    }
    views
}
