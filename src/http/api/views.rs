//! `GET /v1/views/{view}/{key}` and `GET /v1/views/{view}?prefix=&after=&limit=&where=&min_seq=&timeout_ms=`:
//! the view's NATS query endpoint, asked over the engine's connection, so the answer, its limits and its
//! read-your-writes are the same.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use eddy_engine::api::ErrorCode;
use eddy_engine::config::is_token;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::{failure, json, refused};
use crate::http::auth::Scope;
use crate::http::AppState;

/// Past the longest read-your-writes wait (30 s), the query endpoint has surely answered or is gone.
const ASK_TIMEOUT: Duration = Duration::from_secs(35);

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GetQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    min_seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout_ms: Option<u64>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<usize>,
    #[serde(rename = "where", skip_serializing_if = "Option::is_none")]
    filter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout_ms: Option<u64>,
}

pub(super) async fn get(
    State(state): State<AppState>,
    peer: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((view, key)): Path<(String, String)>,
    query: Result<Query<GetQuery>, QueryRejection>,
) -> Response {
    if let Some(refused) = refused(&state, &headers, &peer, Scope::Queries) {
        return refused;
    }
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return failure(ErrorCode::Invalid, format!("query: {e}")),
    };
    let mut body = serde_json::to_value(&q).expect("serializes");
    body["key"] = Json::String(key);
    ask(&state, &view, "get", body).await
}

pub(super) async fn list(
    State(state): State<AppState>,
    peer: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(view): Path<String>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    if let Some(refused) = refused(&state, &headers, &peer, Scope::Queries) {
        return refused;
    }
    match query {
        Ok(Query(q)) => ask(&state, &view, "list", serde_json::to_value(&q).expect("serializes")).await,
        Err(e) => failure(ErrorCode::Invalid, format!("query: {e}")),
    }
}

async fn ask(state: &AppState, view: &str, op: &str, body: Json) -> Response {
    // The view's name becomes a subject token: anything else is no view at all.
    if !is_token(view) {
        return failure(ErrorCode::NotFound, format!("no view `{view}`"));
    }
    let subject = format!("{}.query.{view}.{op}", state.config.engine.api_prefix);
    let request = async_nats::Request::new().payload(body.to_string().into()).timeout(Some(ASK_TIMEOUT));
    match state.client.send_request(subject, request).await {
        Ok(msg) => {
            let code = msg.headers.as_ref().and_then(|h| h.get("Nats-Service-Error-Code"));
            let status = code.and_then(|c| c.as_str().parse::<u16>().ok()).unwrap_or(200);
            json(status, msg.payload)
        }
        Err(e) => failure(ErrorCode::Unavailable, format!("no engine answered the query: {e}")),
    }
}
