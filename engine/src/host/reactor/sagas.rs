//! `<api_prefix>.admin.sagas` (a saga's instances, filtered) and `.admin.sagas.get` (one instance with its
//! history), for the kinds whose entries are process instances.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value as Json};

use super::set::Error;
use super::{Kind, Logic, Reactors, States};
use crate::api::{ErrorCode, Failure, Reply};

/// Instances per reply unless asked otherwise.
const DEFAULT_LIMIT: usize = 100;

/// `{"saga": .., "state": .., "stuck_secs": .., "active": .., "after": .., "limit": ..}`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListRequest {
    saga: String,
    /// Only instances in this state.
    state: Option<String>,
    /// Only instances that have been in a non-final state at least this long.
    stuck_secs: Option<u64>,
    /// Only instances not yet in a final state.
    #[serde(default)]
    active: bool,
    /// Resume after this instance id (the previous reply's `next`).
    after: Option<String>,
    limit: Option<usize>,
}

/// `{"saga": .., "id": ..}`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GetRequest {
    saga: String,
    id: String,
}

fn invalid(e: impl std::fmt::Display) -> Reply {
    Reply::failure(Failure::new(ErrorCode::Invalid, e.to_string()))
}

/// The saga's definition and state, or the reply saying there is no such saga.
fn saga(reactors: &Reactors, name: &str) -> Result<(Arc<dyn Logic>, States), Reply> {
    match reactors.inspect(name) {
        Ok((logic, state)) if logic.kind() == Kind::Saga => Ok((logic, state)),
        Ok(_) | Err(Error::Unknown(_)) => {
            Err(Reply::failure(Failure::new(ErrorCode::NotFound, format!("no saga `{name}`"))))
        }
        Err(e) => Err(Reply::failure(Failure::new(ErrorCode::Internal, e.to_string()))),
    }
}

/// Lists instances in id order, with how many are in each state.
pub fn list(reactors: &Reactors, body: &[u8]) -> Reply {
    let req: ListRequest = match serde_json::from_slice(if body.is_empty() { b"{}" } else { body }) {
        Ok(r) => r,
        Err(e) => {
            return invalid(format!(
            "expected {{\"saga\": \"<name>\", \"state\"?, \"stuck_secs\"?, \"active\"?, \"after\"?, \"limit\"?}}: {e}"
        ))
        }
    };
    let (logic, state) = match saga(reactors, &req.saga) {
        Ok(found) => found,
        Err(reply) => return reply,
    };
    let entries = match state.entries() {
        Ok(e) => e,
        Err(e) => return Reply::failure(Failure::new(ErrorCode::Internal, e.to_string())),
    };
    let now = Utc::now();
    let limit = req.limit.unwrap_or(DEFAULT_LIMIT).max(1);
    let mut by_state: BTreeMap<String, u64> = BTreeMap::new();
    let mut items = Vec::new();
    let mut next = None;
    for (key, entry) in &entries {
        let Some(inst) = logic.instance(key, entry) else { continue };
        *by_state.entry(inst.state.clone()).or_default() += 1;
        let in_state = (now - inst.entered_at).num_milliseconds().max(0) as f64 / 1000.0;
        let wanted = req.state.as_ref().is_none_or(|s| *s == inst.state)
            && (!req.active || !inst.done)
            && req.stuck_secs.is_none_or(|s| !inst.done && in_state >= s as f64)
            && req.after.as_ref().is_none_or(|a| key > a);
        if !wanted {
            continue;
        }
        if items.len() == limit {
            // Full: the rest only count towards `states`.
            next = next.or_else(|| items.last().map(|i: &Json| i["id"].clone()));
            continue;
        }
        let age = (now - inst.started_at).num_milliseconds().max(0) as f64 / 1000.0;
        let mut item = json!(inst);
        item["age_secs"] = json!(age);
        item["in_state_secs"] = json!(in_state);
        items.push(item);
    }
    let mut reply = json!({"ok": true, "saga": req.saga, "items": items, "next": next, "states": by_state});
    answered_by(reactors, &req.saga, &mut reply);
    Reply::ok_json(&reply)
}

/// One instance, with its whole history.
pub fn get(reactors: &Reactors, body: &[u8]) -> Reply {
    let req: GetRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return invalid(format!("expected {{\"saga\": \"<name>\", \"id\": \"<instance>\"}}: {e}")),
    };
    let state = match saga(reactors, &req.saga) {
        Ok((_, state)) => state,
        Err(reply) => return reply,
    };
    match state.get(&req.id) {
        Ok(Some(entry)) => {
            let mut reply = json!({"ok": true, "saga": req.saga, "instance": entry});
            answered_by(reactors, &req.saga, &mut reply);
            Reply::ok_json(&reply)
        }
        Ok(None) => Reply::failure(Failure::new(
            ErrorCode::NotFound,
            format!("saga `{}` has no instance `{}`", req.saga, req.id),
        )),
        Err(e) => Reply::failure(Failure::new(ErrorCode::Internal, e.to_string())),
    }
}

/// Says what the answering engine knows: every engine answers the admin subjects (one at a time, picked by
/// the queue group), the holder of the saga's lease (`running`) or a standby, whose copy follows the holder's
/// watermark (`standby`). `position` is the last seq folded in.
fn answered_by(reactors: &Reactors, saga: &str, reply: &mut Json) {
    if let Ok(status) = reactors.status_of(saga) {
        reply["status"] = json!(status.status);
        reply["position"] = json!(status.position);
    }
}

/// How many instances of a saga are in each state, and how many have a timer armed.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Census {
    pub by_state: BTreeMap<String, u64>,
    pub timers: u64,
}

/// Counts a saga's instances (for `eddy_saga_instances` and `eddy_saga_timers_pending`); `None` when
/// `name` is not a saga or its state cannot be read.
pub fn census(reactors: &Reactors, name: &str) -> Option<Census> {
    let (logic, state) = saga(reactors, name).ok()?;
    let mut census = Census::default();
    for (key, entry) in &state.entries().ok()? {
        let Some(inst) = logic.instance(key, entry) else { continue };
        *census.by_state.entry(inst.state).or_default() += 1;
        census.timers += u64::from(!inst.done && inst.timer_at.is_some());
    }
    Some(census)
}
