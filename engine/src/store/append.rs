//! Optimistic appends. One event is one publish; several are one ADR-50 atomic batch, so a command's events
//! are stored all together or not at all. Either way the first message carries
//! `Nats-Expected-Last-Subject-Sequence`, which the server checks against the stream as it was before.

use async_nats::{HeaderMap, RequestErrorKind};
use serde::Deserialize;

use super::{Error, EventStore, Result};
use crate::envelope::{headers, subject, OutgoingEvent};

/// Room left for an event's headers under the server's payload limit (ids are bounded, so this is ample).
const HEADER_ALLOWANCE: usize = 2048;

/// JetStream's error code for a failed `Nats-Expected-Last-Subject-Sequence` check.
const WRONG_LAST_SEQUENCE: u64 = 10071;

/// The outcome of an append that the server answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored; the sequence of the last event. The batch occupies `last_seq - n + 1 ..= last_seq`.
    Stored { last_seq: u64 },
    /// The subject moved past the expected sequence: reload and decide again.
    Conflict,
    /// The server had already stored a message with this `Nats-Msg-Id`: the command ran before.
    Duplicate,
}

#[derive(Deserialize)]
struct PubAck {
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    duplicate: bool,
    error: Option<ApiError>,
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: String,
}

impl EventStore {
    /// Appends `events` to `events.<aggregate>.<id>` if its last sequence is still `expected_last_seq`
    /// (0: the subject has no events).
    pub async fn append(
        &self,
        aggregate: &str,
        id: &str,
        expected_last_seq: u64,
        events: &[OutgoingEvent],
    ) -> Result<Appended> {
        self.append_expecting(aggregate, id, Some(expected_last_seq), events).await
    }

    /// [`append`](Self::append), or with `None` whatever the subject holds: for events whose order does not
    /// matter to their subject's writer (a saga records a rejection this way; the instance checks it belongs).
    pub async fn append_expecting(
        &self,
        aggregate: &str,
        id: &str,
        expected_last_seq: Option<u64>,
        events: &[OutgoingEvent],
    ) -> Result<Appended> {
        let subject = subject(aggregate, id);
        let payloads: Vec<Vec<u8>> =
            events.iter().map(|e| serde_json::to_vec(&e.data).expect("JSON values serialize")).collect();
        // Checked before anything is sent, so no batch is cut short: the server would refuse the message,
        // and reporting that as unavailable would invite a retry that cannot succeed.
        let limit = self.client.server_info().max_payload;
        if let Some((event, payload)) = events.iter().zip(&payloads).find(|(_, p)| p.len() + HEADER_ALLOWANCE > limit) {
            return Err(Error::TooLarge { event_type: event.event_type.clone(), size: payload.len(), limit });
        }
        let batch_id = (events.len() > 1).then(|| uuid::Uuid::new_v4().simple().to_string());
        let mut last = None;
        let schemas = self.schemas.current();
        for (i, (event, payload)) in events.iter().zip(payloads).enumerate() {
            let mut h: HeaderMap = event.headers();
            schemas.stamp(aggregate, &event.event_type, &mut h);
            if let (0, Some(expected)) = (i, expected_last_seq) {
                h.insert(headers::EXPECTED_LAST_SUBJECT_SEQ, expected.to_string().as_str());
            }
            if let Some(batch_id) = &batch_id {
                h.insert("Nats-Batch-Id", batch_id.as_str());
                h.insert("Nats-Batch-Sequence", (i + 1).to_string().as_str());
                if i + 1 < events.len() {
                    // Not the last: no ack needed, the commit's ack speaks for the whole batch.
                    self.client
                        .publish_with_headers(subject.clone(), h, payload.into())
                        .await
                        .map_err(|e| Error::Unavailable(e.to_string()))?;
                    continue;
                }
                h.insert("Nats-Batch-Commit", "1");
            }
            last = Some((h, payload));
        }
        let Some((h, payload)) = last else {
            return Err(Error::JetStream("nothing to append".into()));
        };
        let request = async_nats::Request::new().headers(h).payload(payload.into()).timeout(Some(self.timeout));
        let reply = self.client.send_request(subject, request).await.map_err(|e| match e.kind() {
            RequestErrorKind::NoResponders => Error::Unavailable(format!("no stream serves events.{aggregate}.{id}")),
            _ => Error::Unavailable(e.to_string()),
        })?;
        let ack: PubAck = serde_json::from_slice(&reply.payload)
            .map_err(|e| Error::JetStream(format!("unreadable publish ack: {e}")))?;
        match ack.error {
            Some(err) if err.err_code == WRONG_LAST_SEQUENCE => Ok(Appended::Conflict),
            Some(err) => Err(Error::JetStream(format!("{} (code {})", err.description, err.err_code))),
            None if ack.duplicate => Ok(Appended::Duplicate),
            None => Ok(Appended::Stored { last_seq: ack.seq }),
        }
    }
}
