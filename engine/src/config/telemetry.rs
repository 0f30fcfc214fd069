//! `[telemetry]` (metrics and trace export) and `[log]` (the log format). The binary installs what they
//! ask for; the engine records either way.

use serde::{Deserialize, Serialize};

use super::{ConfigErrors, Source};

/// Metrics and traces.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Record metrics and serve them at `/metrics` on the HTTP listener (default true).
    pub metrics: bool,
    /// Export spans over OTLP/HTTP (protobuf) to this collector, e.g. `http://127.0.0.1:4318` (spans go
    /// to `<endpoint>/v1/traces`). Absent: spans are not exported, but `traceparent` is still carried
    /// from commands to their events and the actions those cause.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// The `service.name` spans are exported under.
    pub service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self { metrics: true, otlp_endpoint: None, service_name: "eddy".into() }
    }
}

/// How logs are written (to stderr; `RUST_LOG` filters them).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (default; colour only on a terminal) or `json` (one object per line, for a collector).
    pub format: LogFormat,
}

/// The log line format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

pub(super) fn validate(telemetry: &TelemetryConfig, source: &Source, errors: &mut ConfigErrors) {
    if let Some(endpoint) = &telemetry.otlp_endpoint {
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
            || endpoint.contains(char::is_whitespace)
        {
            errors.push(
                source.file_of("telemetry.otlp_endpoint"),
                "telemetry.otlp_endpoint",
                "must be an http:// or https:// URL of an OTLP/HTTP collector (e.g. http://127.0.0.1:4318)",
            );
        }
    }
    if telemetry.service_name.trim().is_empty() {
        errors.push(source.file_of("telemetry.service_name"), "telemetry.service_name", "must not be empty");
    }
}
