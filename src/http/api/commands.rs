//! `POST /v1/commands/{aggregate}/{command}`: the JSON body as on NATS; `Idempotency-Key` is the
//! `Eddy-Command-Id`, `If-Match` the `Eddy-Expected-Version`, `?wait=SECS` the `Eddy-Wait`, and the other
//! `Eddy-*` id headers and `traceparent` pass as they are.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;
use eddy_engine::api::{parse_wait, ErrorCode, Refusal};
use eddy_engine::command::context_from_headers;
use eddy_engine::envelope::headers;
use serde::Deserialize;

use super::{failure, refusal, refused, reply};
use crate::http::auth::Scope;
use crate::http::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SendQuery {
    wait: Option<String>,
}

pub(super) async fn send(
    State(state): State<AppState>,
    peer: ConnectInfo<SocketAddr>,
    Path((aggregate, command)): Path<(String, String)>,
    query: Result<Query<SendQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Some(refused) = refused(&state, &headers, &peer, Scope::Commands) {
        return refused;
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")));
    if !is_json {
        return refusal(Refusal::UnsupportedMediaType, "send the command as `Content-Type: application/json`");
    }
    let body = match body {
        Ok(body) => body,
        Err(e) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
            return refusal(Refusal::TooLarge, "the body is larger than 1 MiB");
        }
        Err(e) => return failure(ErrorCode::Invalid, format!("cannot read the body: {e}")),
    };
    let wait = match query {
        Ok(Query(SendQuery { wait: Some(w) })) => match parse_wait(&w) {
            Ok(w) => Some(w),
            Err(f) => return reply(&f.into()),
        },
        Ok(_) => None,
        Err(e) => return failure(ErrorCode::Invalid, format!("query: {e}")),
    };
    let ctx = match context_from_headers(Some(&as_nats_headers(&headers))) {
        Ok(ctx) => ctx,
        Err(f) => return reply(&f.into()),
    };
    reply(&*state.commands.execute_waiting(&aggregate, &command, &body, ctx, wait).await)
}

/// The request's headers under their NATS names.
fn as_nats_headers(h: &HeaderMap) -> async_nats::HeaderMap {
    let mut out = async_nats::HeaderMap::new();
    let text = |name: &HeaderName| h.get(name).and_then(|v: &HeaderValue| v.to_str().ok()).map(str::trim);
    let pairs = [
        ("idempotency-key", headers::COMMAND_ID),
        ("eddy-command-id", headers::COMMAND_ID),
        ("eddy-correlation-id", headers::CORRELATION_ID),
        ("eddy-causation-id", headers::CAUSATION_ID),
        ("eddy-expected-version", headers::EXPECTED_VERSION),
        // W3C trace context: the command's span is its child, and its events carry it on.
        ("traceparent", eddy_engine::telemetry::trace::TRACEPARENT),
    ];
    for (http, nats) in pairs {
        if let Some(v) = text(&HeaderName::from_static(http)) {
            out.insert(nats, v);
        }
    }
    // An ETag is quoted (and maybe weak): `If-Match: "3"` is version 3.
    if let Some(v) = text(&header::IF_MATCH) {
        out.insert(headers::EXPECTED_VERSION, v.trim_start_matches("W/").trim_matches('"'));
    }
    out
}
