//! The event envelope: how an event sits in the stream (subject, headers, JSON payload).

use async_nats::HeaderMap;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// Header names of the wire contract.
pub mod headers {
    pub const EVENT_TYPE: &str = "Eddy-Event-Type";
    pub const VERSION: &str = "Eddy-Version";
    pub const TIME: &str = "Eddy-Time";
    pub const COMMAND_ID: &str = "Eddy-Command-Id";
    /// A digest of the command's aggregate, name and body: a command id sent again with another body is a
    /// conflict, not a repeat.
    pub const COMMAND_DIGEST: &str = "Eddy-Command-Digest";
    pub const CORRELATION_ID: &str = "Eddy-Correlation-Id";
    pub const CAUSATION_ID: &str = "Eddy-Causation-Id";
    pub const EXPECTED_VERSION: &str = "Eddy-Expected-Version";
    pub const MSG_ID: &str = "Nats-Msg-Id";
    pub const EXPECTED_LAST_SUBJECT_SEQ: &str = "Nats-Expected-Last-Subject-Sequence";
    pub const SERVICE_ERROR: &str = "Nats-Service-Error";
    pub const SERVICE_ERROR_CODE: &str = "Nats-Service-Error-Code";
    /// W3C trace context of the command (or action) that stored the event.
    pub const TRACEPARENT: &str = crate::telemetry::TRACEPARENT;
}

/// The subject of an aggregate's events.
pub fn subject(aggregate: &str, id: &str) -> String {
    format!("events.{aggregate}.{id}")
}

/// Splits `events.<aggregate>.<id>`.
pub fn parse_subject(subject: &str) -> Option<(&str, &str)> {
    let rest = subject.strip_prefix("events.")?;
    let (aggregate, id) = rest.split_once('.')?;
    (!id.contains('.')).then_some((aggregate, id))
}

/// Formats a time as the contract's RFC 3339 UTC.
pub fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// An event as stored, with its position in the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub seq: u64,
    pub aggregate: String,
    pub id: String,
    pub event_type: String,
    /// The aggregate's version after this event.
    pub version: u64,
    pub time: DateTime<Utc>,
    pub command_id: String,
    /// The digest of the command that stored it (empty: none, as for reactors' own events and older events).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub command_digest: String,
    pub correlation_id: String,
    pub causation_id: String,
    /// The `traceparent` it was stored with (empty: none, as before tracing).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub traceparent: String,
    pub data: Json,
}

/// Why a stream message is not a readable event.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("seq {seq}: subject `{subject}` is not events.<aggregate>.<id>")]
    Subject { seq: u64, subject: String },
    #[error("seq {seq}: payload is not JSON: {message}")]
    Payload { seq: u64, message: String },
    #[error("seq {seq}: header {header} is missing or malformed")]
    Header { seq: u64, header: &'static str },
    /// The event cannot be read as the config's current version of its type (see `crate::upcast`).
    #[error("seq {seq}: {message}")]
    Upcast { seq: u64, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl StoredEvent {
    /// Reads an event from a stream message.
    pub fn from_parts(seq: u64, subject: &str, headers: Option<&HeaderMap>, payload: &[u8]) -> Result<Self> {
        let data = if payload.is_empty() {
            Json::Object(Default::default())
        } else {
            serde_json::from_slice(payload).map_err(|e| Error::Payload { seq, message: e.to_string() })?
        };
        Self::from_lookup(seq, subject, |name| headers.and_then(|h| h.get(name)).map(|v| v.as_str()), data)
    }

    /// Reads an event from its subject, a header lookup and its payload: a stream message, or a line of a
    /// recording.
    pub fn from_lookup<'h>(seq: u64, subject: &str, get: impl Fn(&str) -> Option<&'h str>, data: Json) -> Result<Self> {
        let (aggregate, id) =
            parse_subject(subject).ok_or_else(|| Error::Subject { seq, subject: subject.to_string() })?;
        let event_type = get(headers::EVENT_TYPE).ok_or(Error::Header { seq, header: headers::EVENT_TYPE })?;
        let version = get(headers::VERSION)
            .and_then(|v| v.parse().ok())
            .ok_or(Error::Header { seq, header: headers::VERSION })?;
        let time = get(headers::TIME)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .ok_or(Error::Header { seq, header: headers::TIME })?;
        let text = |name: &str| get(name).unwrap_or_default().to_string();
        Ok(StoredEvent {
            seq,
            aggregate: aggregate.to_string(),
            id: id.to_string(),
            event_type: event_type.to_string(),
            version,
            time,
            command_id: text(headers::COMMAND_ID),
            command_digest: text(headers::COMMAND_DIGEST),
            correlation_id: text(headers::CORRELATION_ID),
            causation_id: text(headers::CAUSATION_ID),
            traceparent: text(headers::TRACEPARENT),
            data,
        })
    }
}

/// An event about to be appended.
#[derive(Debug, Clone)]
pub struct OutgoingEvent {
    pub event_type: String,
    pub version: u64,
    pub time: DateTime<Utc>,
    pub command_id: String,
    /// See [`headers::COMMAND_DIGEST`] (empty: none).
    pub command_digest: String,
    pub correlation_id: String,
    pub causation_id: String,
    /// Idempotency key for JetStream's duplicate window.
    pub msg_id: String,
    /// W3C `traceparent` (empty: none).
    pub traceparent: String,
    pub data: Json,
}

impl OutgoingEvent {
    /// The event as it reads once stored at `seq` on `events.<aggregate>.<id>`.
    pub fn stored(self, seq: u64, aggregate: &str, id: &str) -> StoredEvent {
        StoredEvent {
            seq,
            aggregate: aggregate.to_string(),
            id: id.to_string(),
            event_type: self.event_type,
            version: self.version,
            time: self.time,
            command_id: self.command_id,
            command_digest: self.command_digest,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            traceparent: self.traceparent,
            data: self.data,
        }
    }

    /// The contract's headers for this event.
    pub fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(headers::EVENT_TYPE, self.event_type.as_str());
        h.insert(headers::VERSION, self.version.to_string().as_str());
        h.insert(headers::TIME, format_time(self.time).as_str());
        h.insert(headers::COMMAND_ID, self.command_id.as_str());
        if !self.command_digest.is_empty() {
            h.insert(headers::COMMAND_DIGEST, self.command_digest.as_str());
        }
        h.insert(headers::CORRELATION_ID, self.correlation_id.as_str());
        h.insert(headers::CAUSATION_ID, self.causation_id.as_str());
        h.insert(headers::MSG_ID, self.msg_id.as_str());
        if !self.traceparent.is_empty() {
            h.insert(headers::TRACEPARENT, self.traceparent.as_str());
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_round_trip() {
        assert_eq!(parse_subject(&subject("account", "a1")), Some(("account", "a1")));
        assert_eq!(parse_subject("events.account"), None);
        assert_eq!(parse_subject("other.account.a1"), None);
    }

    #[test]
    fn reads_what_it_writes() {
        let out = OutgoingEvent {
            event_type: "MoneyDeposited".into(),
            version: 3,
            time: Utc::now(),
            command_id: "c1".into(),
            command_digest: "d1".into(),
            correlation_id: "k1".into(),
            causation_id: "c1".into(),
            msg_id: "m".into(),
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            data: serde_json::json!({"amount": 5}),
        };
        let payload = serde_json::to_vec(&out.data).unwrap();
        let read = StoredEvent::from_parts(7, "events.account.a1", Some(&out.headers()), &payload).unwrap();
        assert_eq!(read.version, 3);
        assert_eq!(read.event_type, "MoneyDeposited");
        assert_eq!(read.command_digest, "d1");
        assert_eq!(read.data, out.data);
        assert_eq!(format_time(read.time), format_time(out.time));
    }
}
