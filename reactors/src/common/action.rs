//! An action as configured (`command`, `publish` or `emit`, with `when` and `data`) and how it becomes the
//! host's [`Action`] for one event.

use eddy_engine::cel::{EventScope, Expr};
use eddy_engine::config::{is_token, Config};
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
    /// The payload (CEL map); default `{}`.
    data: Option<String>,
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
    let kind = match (&a.command, &a.publish, &a.emit) {
        (Some(target), None, None) => c.command(&format!("{at}.command"), config, target),
        (None, Some(subject), None) => c.subject(&format!("{at}.publish"), subject).map(ActionKind::Publish),
        (None, None, Some(event)) => {
            if is_token(event) {
                Some(ActionKind::Emit { aggregate: emit_to.to_string(), event_type: event.clone() })
            } else {
                c.push(&format!("{at}.emit"), "must be an event type name (letters, digits, `_`, `-`)");
                None
            }
        }
        _ => {
            c.push(at, "needs exactly one of `command`, `publish` or `emit`");
            None
        }
    };
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
        }))
    }
}
