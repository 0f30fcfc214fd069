//! W3C Trace Context (`traceparent`): parsed from a command request, stored as a header on every event the
//! command appends, and carried by the reactor and saga actions those events cause, so that one trace spans a
//! whole saga. Spans are `tracing` spans; when the binary installs the OpenTelemetry layer they are exported
//! and the ids stored are theirs, otherwise fresh ids are made here so the chain holds all the same.

use std::fmt;

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header name, as W3C spells it (NATS headers keep case).
pub const TRACEPARENT: &str = "traceparent";

/// One `traceparent`: a trace, the span that is the parent of what comes next, and the sampled flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: TraceId,
    span_id: SpanId,
    flags: TraceFlags,
}

impl TraceParent {
    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`; anything else (a wrong length, upper case, all-zero ids,
    /// version `ff`) is `None`, and the command starts a trace of its own as if none was sent. A later
    /// version's extra fields are ignored, as the spec asks.
    pub fn parse(header: &str) -> Option<TraceParent> {
        let mut parts = header.trim().splitn(5, '-');
        let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let rest = parts.next();
        let lower_hex =
            |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !lower_hex(version, 2) || version == "ff" || (version == "00" && rest.is_some()) {
            return None;
        }
        if !lower_hex(trace, 32) || !lower_hex(span, 16) || !lower_hex(flags, 2) {
            return None;
        }
        let trace_id = TraceId::from_hex(trace).ok().filter(|t| *t != TraceId::INVALID)?;
        let span_id = SpanId::from_hex(span).ok().filter(|s| *s != SpanId::INVALID)?;
        let flags = TraceFlags::new(u8::from_str_radix(flags, 16).ok()? & 0x01);
        Some(TraceParent { trace_id, span_id, flags })
    }

    /// Parses the header from a header map, if there is a valid one.
    pub fn from_headers(headers: Option<&async_nats::HeaderMap>) -> Option<TraceParent> {
        headers.and_then(|h| h.get(TRACEPARENT)).and_then(|v| TraceParent::parse(v.as_str()))
    }

    /// A new trace, sampled.
    pub fn root() -> TraceParent {
        TraceParent { trace_id: random_trace_id(), span_id: random_span_id(), flags: TraceFlags::SAMPLED }
    }

    /// A new span in the same trace.
    pub fn child(&self) -> TraceParent {
        TraceParent { span_id: random_span_id(), ..*self }
    }

    /// The trace id in hex, as trace back ends show it.
    pub fn trace_id(&self) -> String {
        self.trace_id.to_string()
    }

    /// The span id in hex.
    pub fn span_id(&self) -> String {
        self.span_id.to_string()
    }

    /// As a remote parent for OpenTelemetry.
    pub fn span_context(&self) -> SpanContext {
        SpanContext::new(self.trace_id, self.span_id, self.flags, true, TraceState::NONE)
    }

    /// The `traceparent` of an OpenTelemetry span, if it is a real one.
    pub fn of(span: &SpanContext) -> Option<TraceParent> {
        span.is_valid().then(|| TraceParent {
            trace_id: span.trace_id(),
            span_id: span.span_id(),
            flags: span.trace_flags() & TraceFlags::SAMPLED,
        })
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{}-{}-{:02x}", self.trace_id, self.span_id, self.flags.to_u8())
    }
}

/// Makes `span` a child of `parent` (the caller's, or the event's that caused this action) and returns the
/// context that what it stores or sends carries: the span's own when spans are exported, else a fresh child
/// of `parent`, else a new trace.
pub fn adopt(span: &tracing::Span, parent: Option<TraceParent>) -> TraceParent {
    if let Some(p) = parent {
        // Without the OpenTelemetry layer (no exporter) there is nothing to set: the ids below carry the trace.
        if let Err(e) = span.set_parent(Context::new().with_remote_span_context(p.span_context())) {
            tracing::trace!(error = %e, "span not exported");
        }
    }
    TraceParent::of(&span.context().span().span_context().clone())
        .unwrap_or_else(|| parent.map_or_else(TraceParent::root, |p| p.child()))
}

fn random_trace_id() -> TraceId {
    loop {
        let id = TraceId::from_bytes(*uuid::Uuid::new_v4().as_bytes());
        if id != TraceId::INVALID {
            return id;
        }
    }
}

fn random_span_id() -> SpanId {
    loop {
        let bytes = uuid::Uuid::new_v4().into_bytes();
        let id = SpanId::from_bytes(bytes[..8].try_into().expect("8 of 16 bytes"));
        if id != SpanId::INVALID {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TraceParent;

    #[test]
    fn parses_what_w3c_allows_and_nothing_else() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parsed = TraceParent::parse(ok).expect("valid");
        assert_eq!(parsed.to_string(), ok);
        assert_eq!(parsed.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        // A later version may add fields.
        assert!(TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra").is_some());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_child_keeps_the_trace_and_changes_the_span() {
        let root = TraceParent::root();
        let child = root.child();
        assert_eq!(child.trace_id(), root.trace_id());
        assert_ne!(child.span_id(), root.span_id());
        assert_ne!(TraceParent::root().trace_id(), root.trace_id());
        assert_eq!(TraceParent::parse(&child.to_string()), Some(child));
    }
}
