//! The HTTP API: commands, views, aggregates, a live tail of events (server-sent events) and the OpenAPI
//! document generated from the config. Every reply and failure has the NATS endpoints' shape and codes
//! (`eddy_engine::api`), with the contract's HTTP status; refusals only HTTP has (a token, a content type,
//! a body size, a route) say so in the same shape.

mod aggregates;
mod commands;
mod events;
pub mod openapi;
mod views;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use eddy_engine::api::{status_of, ErrorCode, Failure, Refusal, Reply};

use super::auth::{authorize, Scope};
use super::AppState;

pub fn router() -> Router<AppState> {
    let refuse_method = || async { refusal(Refusal::MethodNotAllowed, "this route does not take that method") };
    Router::new()
        .route(
            "/v1/commands/{aggregate}/{command}",
            post(commands::send)
                .fallback(refuse_method)
                .layer(axum::extract::DefaultBodyLimit::max(eddy_engine::aggregate::input::limits::MAX_BODY)),
        )
        .route("/v1/views/{view}", get(views::list).fallback(refuse_method))
        .route("/v1/views/{view}/{key}", get(views::get).fallback(refuse_method))
        .route("/v1/aggregates/{aggregate}/{id}", get(aggregates::state).fallback(refuse_method))
        .route("/v1/aggregates/{aggregate}/{id}/events", get(aggregates::events).fallback(refuse_method))
        .route("/v1/events", get(events::tail).fallback(refuse_method))
        .route("/openapi.json", get(openapi::serve).fallback(refuse_method))
        .route("/v1", any(no_route))
        .route("/v1/{*rest}", any(no_route))
}

async fn no_route() -> Response {
    refusal(Refusal::NoRoute, "no such route; see /openapi.json")
}

/// A JSON response with `status`.
fn json(status: u16, body: impl Into<Body>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, "application/json")], body.into()).into_response()
}

/// A reply of the NATS endpoints, as HTTP.
fn reply(reply: &Reply) -> Response {
    json(status_of(reply), reply.body.clone())
}

fn failure(code: ErrorCode, message: impl AsRef<str>) -> Response {
    reply(&Reply::failure(Failure::new(code, message)))
}

fn refusal(refusal: Refusal, message: &str) -> Response {
    let mut response = json(refusal.status(), refusal.body(message));
    if refusal == Refusal::Unauthorized {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    }
    response
}

/// The refusal to answer when the caller may not use `scope`.
fn refused(state: &AppState, headers: &HeaderMap, peer: &ConnectInfo<SocketAddr>, scope: Scope) -> Option<Response> {
    authorize(&state.config.http, headers, peer.0, scope).err().map(|(r, message)| refusal(r, &message))
}
