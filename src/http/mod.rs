//! The one HTTP listener: health, metrics, the console and the HTTP API, each a room of its own that adds a
//! sub-router. Served with axum on the engine's runtime and stopped with the engine's stop token.
//!
//! A room is a module with `pub fn router() -> Router<AppState>`; `router` below merges them. Handlers
//! reach the engine through [`AppState`].

mod api;
pub mod auth;
mod console;
mod health;
pub mod metrics;
mod state;

use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use api::openapi::document as openapi_document;
pub use state::{AppState, Handles};

/// Errors of starting the listener.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("http.listen = {listen:?}: cannot listen there: {source}")]
    Bind { listen: String, source: std::io::Error },
}

/// Every room's routes, sharing one state.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .merge(metrics::router())
        .merge(console::router())
        .merge(api::router())
        .with_state(state)
}

/// A listener being served.
pub struct Server {
    /// The address it listens on (with the port picked when `listen` had port 0).
    pub addr: SocketAddr,
    /// Ends once `stop` is cancelled and the requests in flight are answered.
    pub task: JoinHandle<()>,
}

/// Binds `listen` and serves every room until `stop`. A listener that cannot bind is an error: an engine that
/// was asked for its metrics and console should not run without them unnoticed.
pub async fn serve(listen: &str, state: AppState, stop: CancellationToken) -> Result<Server, Error> {
    let bind_error = |source| Error::Bind { listen: listen.to_string(), source };
    let listener = TcpListener::bind(listen).await.map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    let app = router(state);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
        {
            tracing::error!(error = %e, "the HTTP listener stopped");
        }
    });
    tracing::info!(%addr, "HTTP listening (console, /v1 API, /metrics, /healthz, /readyz)");
    Ok(Server { addr, task })
}
