//! What the engine tells operators about its work: W3C trace context carried from commands to the events they
//! store and on to the actions those cause ([`trace`]), and the metrics it records ([`metrics`]). Exporting
//! them (Prometheus, OTLP) is the binary's business; without an exporter installed, recording costs little.

pub mod metrics;
pub mod trace;

pub use trace::{TraceParent, TRACEPARENT};
