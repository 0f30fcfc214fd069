//! An action as configured (`command`, `publish` or `emit`, with `when` and `data`) and how it becomes the
//! host's [`Action`] for one event.

use eddy_engine::cel::{EventScope, Expr};
use eddy_engine::host::reactor::Action;
use serde_json::Value as Json;

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
