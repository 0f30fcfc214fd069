//! An action as configured (`command`, `publish`, `emit` or `call`/`http`, with `when` and `data`) and how it
//! becomes the host's [`Action`] for one event.

use eddy_engine::cel::{EventScope, Expr};
use eddy_engine::config::{is_token, Config};
use eddy_engine::host::reactor::call::{self, Call, Target};
use eddy_engine::host::reactor::Action;
use serde::Deserialize;
use serde_json::Value as Json;

use super::Compiler;

/// An action in the config: `[[reactors.<name>.then]]`, or an item of a saga state's `do`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionToml {
    /// Runs the action only when this CEL bool holds.
    when: Option<String>,
    /// `<aggregate>.<command>` to send.
    command: Option<String>,
    /// Subject to publish to.
    publish: Option<String>,
    /// Event type to append to the reactor's own subject.
    emit: Option<String>,
    /// A NATS subject to send a request to; its outcome is recorded (`CallReplied`/`CallFailed`).
    call: Option<String>,
    /// An HTTP request to make; its outcome is recorded like a `call`'s.
    http: Option<HttpToml>,
    /// One attempt of a `call` or `http` may take this long (default 5000, at most 120000).
    timeout_ms: Option<u64>,
    /// The payload (CEL map); default `{}`.
    data: Option<String>,
}

/// `http = { method, url, headers }`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpToml {
    /// GET, POST, PUT, PATCH or DELETE; default POST. GET and DELETE send `data` as the query.
    method: Option<String>,
    /// An absolute http:// or https:// URL.
    url: String,
    /// Extra headers; `${NAME}` in a value is the environment variable NAME, read when the call runs.
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
}

impl ActionToml {
    /// A `call` or `http` action, as written (whether or not it compiles).
    pub fn is_call(&self) -> bool {
        self.call.is_some() || self.http.is_some()
    }
}

/// Compiles one action; emits go to `events.<emit_to>.<key>`. `None` after recording its errors.
pub fn load_action(
    c: &Compiler,
    config: &Config,
    emit_to: &str,
    at: &str,
    a: &ActionToml,
    vars: &[&str],
) -> Option<ActionDef> {
    let given = [a.command.is_some(), a.publish.is_some(), a.emit.is_some(), a.call.is_some(), a.http.is_some()];
    let kind = if given.iter().filter(|g| **g).count() != 1 {
        c.push(at, "needs exactly one of `command`, `publish`, `emit`, `call` or `http`");
        None
    } else if let Some(target) = &a.command {
        c.command(&format!("{at}.command"), config, target)
    } else if let Some(subject) = &a.publish {
        c.subject(&format!("{at}.publish"), subject).map(ActionKind::Publish)
    } else if let Some(event) = &a.emit {
        if is_token(event) {
            Some(ActionKind::Emit { aggregate: emit_to.to_string(), event_type: event.clone() })
        } else {
            c.push(&format!("{at}.emit"), "must be an event type name (letters, digits, `_`, `-`)");
            None
        }
    } else {
        let target = match (&a.call, &a.http) {
            (Some(subject), _) => c.subject(&format!("{at}.call"), subject).map(|subject| Target::Nats { subject }),
            (_, Some(http)) => http_target(c, &format!("{at}.http"), http),
            _ => None,
        };
        let timeout_ms = timeout(c, at, a.timeout_ms);
        target.zip(timeout_ms).map(|(target, timeout_ms)| ActionKind::Call {
            target,
            timeout_ms,
            record_to: emit_to.to_string(),
        })
    };
    if a.timeout_ms.is_some() && a.call.is_none() && a.http.is_none() {
        c.push(&format!("{at}.timeout_ms"), "only a `call` or `http` action has a timeout");
    }
    let when = a.when.as_ref().map(|w| c.compile(&format!("{at}.when"), w, vars));
    let data = c.compile(&format!("{at}.data"), a.data.as_deref().unwrap_or("{}"), vars);
    if let (Some(ActionKind::Command { aggregate, command }), Some(data)) = (&kind, &data) {
        c.command_data(&format!("{at}.data"), config, aggregate, command, data);
    }
    match (kind, when, data) {
        (Some(kind), None, Some(data)) => Some(ActionDef { kind, when: None, data }),
        (Some(kind), Some(Some(when)), Some(data)) => Some(ActionDef { kind, when: Some(when), data }),
        _ => None,
    }
}

fn http_target(c: &Compiler, at: &str, http: &HttpToml) -> Option<Target> {
    let errors = c.len();
    let method = http.method.as_deref().unwrap_or("POST").to_ascii_uppercase();
    if !call::is_method(&method) {
        c.push(&format!("{at}.method"), format!("`{method}` is not one of GET, POST, PUT, PATCH, DELETE"));
    }
    if let Err(e) = call::check_url(&http.url) {
        c.push(&format!("{at}.url"), e);
    }
    for (name, value) in &http.headers {
        let key = format!("{at}.headers.{name}");
        if let Err(e) = call::check_header(name, value).and_then(|()| call::expand_env(value).map(drop)) {
            c.push(&key, e);
        }
    }
    (c.len() == errors).then(|| Target::Http { method, url: http.url.clone(), headers: http.headers.clone() })
}

fn timeout(c: &Compiler, at: &str, timeout_ms: Option<u64>) -> Option<u64> {
    let ms = timeout_ms.unwrap_or(call::DEFAULT_TIMEOUT_MS);
    if ms == 0 || ms > call::MAX_TIMEOUT_MS {
        c.push(&format!("{at}.timeout_ms"), format!("must be between 1 and {}", call::MAX_TIMEOUT_MS));
        return None;
    }
    Some(ms)
}

/// What an action does.
#[derive(Debug, Clone)]
pub enum ActionKind {
    Command {
        aggregate: String,
        command: String,
    },
    Publish(String),
    /// To `events.<aggregate>.<key>`, where `aggregate` is the reactor's name.
    Emit {
        aggregate: String,
        event_type: String,
    },
    /// Its outcome goes to `events.<record_to>.<key>`, like an emit.
    Call {
        target: Target,
        timeout_ms: u64,
        record_to: String,
    },
}

/// A configured action.
#[derive(Debug, Clone)]
pub struct ActionDef {
    pub kind: ActionKind,
    pub when: Option<Expr>,
    pub data: Expr,
}

impl ActionDef {
    /// The action for the bound variables, or `None` when `when` does not hold. `key` is where an emit goes.
    pub fn build(&self, scope: &EventScope, key: &str) -> Result<Option<Action>, String> {
        if let Some(when) = &self.when {
            if !scope.eval_bool(when).map_err(|e| e.to_string())? {
                return Ok(None);
            }
        }
        let data = Json::Object(scope.eval_map(&self.data).map_err(|e| e.to_string())?);
        Ok(Some(match &self.kind {
            ActionKind::Command { aggregate, command } => {
                Action::Command { aggregate: aggregate.clone(), command: command.clone(), data }
            }
            ActionKind::Publish(subject) => Action::Publish { subject: subject.clone(), data },
            ActionKind::Emit { aggregate, event_type } => Action::Emit {
                aggregate: aggregate.clone(),
                key: key.to_string(),
                event_type: event_type.clone(),
                data,
            },
            ActionKind::Call { target, timeout_ms, record_to } => Action::Call(Call {
                target: target.clone(),
                data,
                timeout_ms: *timeout_ms,
                aggregate: record_to.clone(),
                key: key.to_string(),
            }),
        }))
    }
}
