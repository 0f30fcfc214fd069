//! Operators steering a stuck process instance: `<api_prefix>.admin.sagas.cancel` and `.move`. The request is
//! recorded as an event on the instance's own log (`OperatorSteered`, with who asked and why), and the saga
//! decides it like any trigger, in stream order, on the lease holder; so it is in the history, on every
//! standby and in a replay.

use serde::{Deserialize, Serialize};

use super::set::Error;
use super::Reactors;
use crate::api::{ErrorCode, Failure, Reply};

/// Event type of a steer on an instance's log.
pub const STEERED: &str = "OperatorSteered";
/// The longest `by`, `reason` and `request_id` accepted.
const MAX_TEXT: usize = 1024;

/// What an operator asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SteerAction {
    /// Take the state's `on.cancel` transition, or end the instance in `cancelled`.
    Cancel,
    /// Enter `state` (running its `do` and arming its timer).
    Move,
}

/// An `OperatorSteered` event's data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Steer {
    pub action: SteerAction,
    /// The state to move to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Who asked.
    pub by: String,
    #[serde(default)]
    pub reason: String,
    /// The state the operator saw the instance in (its entry's seq).
    pub entry: u64,
}

/// `{"saga", "id", "by", "reason"?, "state"? (move), "request_id"?}`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SteerRequest {
    saga: String,
    id: String,
    by: String,
    #[serde(default)]
    reason: String,
    state: Option<String>,
    /// Makes a repeated request (a client's retry) a no-op.
    request_id: Option<String>,
}

fn invalid(message: impl AsRef<str>) -> Reply {
    Reply::failure(Failure::new(ErrorCode::Invalid, message))
}

/// Records a steer of one instance.
pub async fn steer(reactors: &Reactors, body: &[u8], action: SteerAction) -> Reply {
    let req: SteerRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return invalid(format!(
                "expected {{\"saga\", \"id\", \"by\", \"reason\"?, \"state\"?, \"request_id\"?}}: {e}"
            ))
        }
    };
    let texts = [("by", &req.by), ("reason", &req.reason)];
    let extra = req.request_id.iter().map(|r| ("request_id", r));
    for (field, text) in texts.into_iter().chain(extra) {
        if text.len() > MAX_TEXT || text.chars().any(char::is_control) {
            return invalid(format!("`{field}`: at most {MAX_TEXT} bytes, without control characters"));
        }
    }
    if req.by.trim().is_empty() {
        return invalid("`by` must say who asks");
    }
    if (action == SteerAction::Move) != req.state.is_some() {
        return invalid("`state` names where to move, and only a move has one");
    }
    let (logic, state) = match reactors.inspect(&req.saga) {
        Ok(found) if found.0.kind() == super::Kind::Saga => found,
        Ok(_) | Err(Error::Unknown(_)) => {
            return Reply::failure(Failure::new(ErrorCode::NotFound, format!("no saga `{}`", req.saga)))
        }
        Err(e) => return Reply::failure(Failure::new(ErrorCode::Internal, e.to_string())),
    };
    let entry = match state.get(&req.id) {
        Ok(Some(entry)) => entry,
        Ok(None) => {
            let message = format!("saga `{}` has no instance `{}`", req.saga, req.id);
            return Reply::failure(Failure::new(ErrorCode::NotFound, message));
        }
        Err(e) => return Reply::failure(Failure::new(ErrorCode::Internal, e.to_string())),
    };
    let steer = Steer { action, state: req.state, by: req.by, reason: req.reason, entry: 0 };
    let mut append = match logic.steer(&req.id, &entry, &steer) {
        Ok(append) => append,
        Err(failure) => return Reply::failure(failure),
    };
    let request_id = req.request_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    append.msg_id = format!("{}:{}:steer:{request_id}", req.saga, req.id);
    let event = append.event(chrono::Utc::now());
    match reactors.store().append_expecting(&append.aggregate, &append.key, None, &[event]).await {
        Ok(_) => Reply::ok_json(&serde_json::json!({
            "ok": true, "saga": req.saga, "id": req.id, "steer": append.data,
        })),
        Err(e) => Reply::failure(Failure::new(ErrorCode::Unavailable, format!("recording the steer: {e}"))),
    }
}
