//! `/healthz` (the process answers) and `/readyz` (it can take commands: connected to NATS, the stream
//! present, and the command endpoint registered with the server).

use std::time::Duration;

use async_nats::connection::State as Connection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::AppState;

/// How long one readiness probe waits for NATS: a probe must answer even when the server does not.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz))
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Each check of `/readyz`, and whether all hold.
#[derive(Serialize)]
struct Readiness {
    ready: bool,
    connected: bool,
    stream: bool,
    command_service: bool,
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let connected = state.client.connection_state() == Connection::Connected;
    let (stream, command_service) = if connected && !state.stop.is_cancelled() {
        tokio::join!(stream_present(&state), command_endpoint_registered(&state))
    } else {
        (false, false)
    };
    let ready = connected && stream && command_service;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(Readiness { ready, connected, stream, command_service }))
}

async fn stream_present(state: &AppState) -> bool {
    let js = async_nats::jetstream::new(state.client.clone());
    let lookup = js.get_stream(&state.config.engine.stream);
    matches!(tokio::time::timeout(PROBE_TIMEOUT, lookup).await, Ok(Ok(_)))
}

/// Asks the server for this engine's service info: an answer naming the command endpoint proves the
/// subscription is live, not just that the engine meant to make it.
async fn command_endpoint_registered(state: &AppState) -> bool {
    let subject = format!("$SRV.INFO.{}.{}", eddy_engine::runtime::SERVICE_NAME, state.service_id);
    let commands = format!("{}.cmd.>", state.config.engine.api_prefix);
    let Ok(Ok(reply)) = tokio::time::timeout(PROBE_TIMEOUT, state.client.request(subject, "".into())).await else {
        return false;
    };
    serde_json::from_slice::<async_nats::service::Info>(&reply.payload)
        .is_ok_and(|info| info.endpoints.iter().any(|e| e.subject == commands))
}
