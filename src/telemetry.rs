//! Logging and trace export for `eddy run`: the `[log]` format on stderr, `RUST_LOG` filtering, and, when
//! `[telemetry] otlp_endpoint` is set, the engine's spans exported over OTLP/HTTP.

use std::sync::OnceLock;

use eddy_engine::config::{LogConfig, LogFormat, TelemetryConfig};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The default filter when `RUST_LOG` is unset.
const DEFAULT_FILTER: &str = "info,async_nats=warn";

/// The exporting provider, flushed by [`shutdown`].
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Errors of setting up telemetry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("telemetry.otlp_endpoint: {0}")]
    Exporter(String),
}

/// Installs the process's log subscriber (once; later calls do nothing) with the OTLP layer when an
/// endpoint is configured. Colour codes only when stderr is a terminal.
pub fn init(log: &LogConfig, telemetry: &TelemetryConfig) -> Result<(), Error> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let fmt = match log.format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().with_current_span(false).boxed(),
    };
    let otel = match &telemetry.otlp_endpoint {
        Some(endpoint) => {
            let provider = provider(endpoint, &telemetry.service_name)?;
            let tracer = provider.tracer("eddy");
            let _first = PROVIDER.set(provider);
            Some(tracing_opentelemetry::layer().with_tracer(tracer).boxed())
        }
        None => None,
    };
    // Already set (a test that starts several engines): the first stays.
    if tracing_subscriber::registry().with(filter).with(fmt).with(otel).try_init().is_ok() {
        if let Some(endpoint) = &telemetry.otlp_endpoint {
            tracing::info!(endpoint = %eddy_engine::nats::redact(endpoint), "exporting spans over OTLP/HTTP");
        }
    }
    Ok(())
}

/// A batch exporter to `<endpoint>/v1/traces`.
fn provider(endpoint: &str, service: &str) -> Result<SdkTracerProvider, Error> {
    let endpoint = endpoint.trim_end_matches('/');
    let url = if endpoint.ends_with("/v1/traces") { endpoint.to_string() } else { format!("{endpoint}/v1/traces") };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url)
        .build()
        .map_err(|e| Error::Exporter(e.to_string()))?;
    let resource = Resource::builder().with_service_name(service.to_string()).build();
    Ok(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
}

/// Sends the spans that wait in the exporter's batch (the process goes on). Blocks: call it off the runtime.
pub fn flush() {
    if let Some(provider) = PROVIDER.get() {
        if let Err(e) = provider.force_flush() {
            eprintln!("eddy: flushing spans: {e}");
        }
    }
}

/// Flushes and stops the exporter: spans of the last moments are sent before the process exits. Call it
/// outside the async runtime (the exporter's HTTP client blocks).
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get() {
        if let Err(e) = provider.shutdown() {
            eprintln!("eddy: flushing spans at exit: {e}");
        }
    }
}
