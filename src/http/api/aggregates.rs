//! `GET /v1/aggregates/{aggregate}/{id}[?at_version=N]` (state and version, folded from the stream) and
//! `GET /v1/aggregates/{aggregate}/{id}/events[?after_version=N&limit=M]` (its history).

use std::net::SocketAddr;

use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use eddy_engine::aggregate::input::valid_id;
use eddy_engine::aggregate::Aggregate;
use eddy_engine::api::{ErrorCode, Reply};
use eddy_engine::envelope::{format_time, StoredEvent};
use serde::Deserialize;
use serde_json::{json, Map};

use super::{failure, refused, reply};
use crate::http::auth::Scope;
use crate::http::AppState;

/// Events per page of a history, unless asked for fewer.
const MAX_EVENTS: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StateQuery {
    at_version: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventsQuery {
    after_version: Option<u64>,
    limit: Option<usize>,
}

/// The aggregate's definition and stored events, or the failure to answer.
async fn load<'s>(
    state: &'s AppState,
    aggregate: &str,
    id: &str,
) -> Result<(&'s Aggregate, Vec<StoredEvent>), (ErrorCode, String)> {
    let Some(def) = state.config.aggregates.get(aggregate) else {
        return Err((ErrorCode::NotFound, format!("no aggregate `{aggregate}`")));
    };
    if !valid_id(id) {
        return Err((ErrorCode::Invalid, format!("`{id}` is not a valid id")));
    }
    let events = state.store.load(aggregate, id, 1).await.map_err(|e| (ErrorCode::Unavailable, e.to_string()))?;
    if events.is_empty() {
        return Err((ErrorCode::NotFound, format!("{aggregate} `{id}` has no events")));
    }
    Ok((def, events))
}

pub(super) async fn state(
    State(state): State<AppState>,
    peer: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((aggregate, id)): Path<(String, String)>,
    query: Result<Query<StateQuery>, QueryRejection>,
) -> Response {
    if let Some(refused) = refused(&state, &headers, &peer, Scope::Queries) {
        return refused;
    }
    let Ok(Query(q)) = query.map_err(|e| e.to_string()) else {
        return failure(ErrorCode::Invalid, "query: `at_version` is a version number");
    };
    let (def, events) = match load(&state, &aggregate, &id).await {
        Ok(found) => found,
        Err((code, message)) => return failure(code, message),
    };
    let mut folded: Map<String, serde_json::Value> = def.initial.clone();
    let (mut version, mut seq) = (0, 0);
    for event in events.iter().take_while(|e| q.at_version.is_none_or(|v| e.version <= v)) {
        if let Err(e) = def.apply_stored(&mut folded, event) {
            let message = format!(
                "seq {} ({}) cannot be applied: {e}; see eddy history {aggregate} {id}",
                event.seq, event.event_type
            );
            return failure(ErrorCode::Internal, message);
        }
        (version, seq) = (event.version, event.seq);
    }
    reply(&Reply::ok_json(&json!({
        "ok": true, "aggregate": aggregate, "id": id, "version": version, "seq": seq, "state": folded,
    })))
}

pub(super) async fn events(
    State(state): State<AppState>,
    peer: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((aggregate, id)): Path<(String, String)>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Response {
    if let Some(refused) = refused(&state, &headers, &peer, Scope::Queries) {
        return refused;
    }
    let Ok(Query(q)) = query else {
        return failure(ErrorCode::Invalid, "query: `after_version` and `limit` are numbers");
    };
    let (_, events) = match load(&state, &aggregate, &id).await {
        Ok(found) => found,
        Err((code, message)) => return failure(code, message),
    };
    let limit = q.limit.unwrap_or(MAX_EVENTS).clamp(1, MAX_EVENTS);
    let after = q.after_version.unwrap_or(0);
    let page: Vec<_> = events.iter().filter(|e| e.version > after).take(limit + 1).collect();
    let next = (page.len() > limit).then(|| page[limit - 1].version);
    let items: Vec<_> = page.iter().take(limit).map(|e| event_json(e)).collect();
    reply(&Reply::ok_json(&json!({"ok": true, "aggregate": aggregate, "id": id, "events": items, "next": next})))
}

/// An event as the API shows it (also in `/v1/events`).
pub(super) fn event_json(e: &StoredEvent) -> serde_json::Value {
    json!({
        "seq": e.seq, "aggregate": e.aggregate, "id": e.id, "type": e.event_type, "version": e.version,
        "time": format_time(e.time), "command_id": e.command_id, "correlation_id": e.correlation_id,
        "causation_id": e.causation_id, "data": e.data,
    })
}
