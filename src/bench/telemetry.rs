//! `eddy bench commands --telemetry`: the run with everything an operator turns on, to weigh what it costs
//! the command path: the Prometheus recorder, and every span exported over OTLP to a receiver in this process
//! (it accepts and counts the batches, as a collector's would be accepted).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::routing::post;
use axum::Router;
use eddy_engine::config::{LogConfig, TelemetryConfig};
use tokio_util::sync::CancellationToken;

/// A local OTLP/HTTP receiver: counts the export requests and their bytes.
pub struct Sink {
    pub requests: Arc<AtomicU64>,
    pub bytes: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl Sink {
    /// Starts the receiver and installs the metrics recorder and the exporting log subscriber.
    pub async fn install() -> anyhow::Result<Sink> {
        let requests = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let (r, b) = (requests.clone(), bytes.clone());
        let app = Router::new().route(
            "/v1/traces",
            post(move |body: Bytes| async move {
                r.fetch_add(1, Ordering::Relaxed);
                b.fetch_add(body.len() as u64, Ordering::Relaxed);
                ""
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(token.cancelled_owned()).await;
            if let Err(e) = served {
                eprintln!("bench: the OTLP receiver stopped: {e}");
            }
        });
        let telemetry = TelemetryConfig { otlp_endpoint: Some(endpoint), ..Default::default() };
        eddy::telemetry::init(&LogConfig::default(), &telemetry)?;
        anyhow::ensure!(eddy::http::metrics::install().is_some(), "the metrics recorder could not be installed");
        Ok(Sink { requests, bytes, stop })
    }

    /// Flushes the exporter (outside the runtime's worker: its client blocks) and stops the receiver.
    pub async fn finish(&self) -> (u64, u64) {
        let _flushed = tokio::task::spawn_blocking(eddy::telemetry::flush).await;
        self.stop.cancel();
        (self.requests.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed))
    }
}
