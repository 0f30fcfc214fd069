//! Loading an aggregate's events with batch Direct Get (ADR-31): one request returns up to a batch of
//! messages for one subject, ended by an EOB status message that tells whether more remain.

use futures::StreamExt;
use serde::Serialize;

use super::{Error, EventStore, Result};
use crate::envelope::{subject, StoredEvent};

const BATCH: usize = 1000;

#[derive(Serialize)]
struct DirectGet<'a> {
    seq: u64,
    next_by_subj: &'a str,
    batch: usize,
}

impl EventStore {
    /// The events of `events.<aggregate>.<id>` with sequence >= `from_seq`, in order.
    pub async fn load(&self, aggregate: &str, id: &str, from_seq: u64) -> Result<Vec<StoredEvent>> {
        self.load_subject(&subject(aggregate, id), from_seq).await
    }

    /// The sequence of the first message at or after `from_seq` on any of `filters` (subjects, wildcards
    /// allowed), or `None` when there is none: tells a reader whether it has seen everything up to a point.
    pub async fn next_matching_seq(&self, filters: &[String], from_seq: u64) -> Result<Option<u64>> {
        #[derive(Serialize)]
        struct Next<'a> {
            seq: u64,
            next_by_subj: &'a str,
        }
        let api = format!("$JS.API.DIRECT.GET.{}", self.stream);
        let mut first: Option<u64> = None;
        for filter in filters {
            let body = serde_json::to_vec(&Next { seq: from_seq.max(1), next_by_subj: filter }).expect("serializes");
            let request = async_nats::Request::new().payload(body.into()).timeout(Some(self.timeout));
            let msg =
                self.client.send_request(api.clone(), request).await.map_err(|e| Error::Unavailable(e.to_string()))?;
            match msg.status.map(|s| s.as_u16()) {
                Some(404) => continue,
                Some(code) if code >= 300 => {
                    return Err(Error::JetStream(format!("direct get {code} {}", msg.description.unwrap_or_default())))
                }
                _ => {}
            }
            let seq =
                msg.headers.as_ref().and_then(|h| h.get("Nats-Sequence")).and_then(|v| v.as_str().parse::<u64>().ok());
            first = match (first, seq) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok(first)
    }

    /// The event at `seq`, if there is one (parked events are re-read by their seq).
    pub async fn event_at(&self, seq: u64) -> Result<Option<StoredEvent>> {
        self.direct_get_one(serde_json::json!({ "seq": seq })).await
    }

    /// The last event of `events.<aggregate>.<id>`, if any: where a writer that is not an aggregate (a
    /// reactor's emit) continues the subject's versions from.
    pub async fn last_event(&self, aggregate: &str, id: &str) -> Result<Option<StoredEvent>> {
        self.direct_get_one(serde_json::json!({ "last_by_subj": subject(aggregate, id) })).await
    }

    /// One Direct Get request answered by at most one message.
    async fn direct_get_one(&self, body: serde_json::Value) -> Result<Option<StoredEvent>> {
        let api = format!("$JS.API.DIRECT.GET.{}", self.stream);
        let request = async_nats::Request::new().payload(body.to_string().into()).timeout(Some(self.timeout));
        let msg = self.client.send_request(api, request).await.map_err(|e| Error::Unavailable(e.to_string()))?;
        match msg.status.map(|s| s.as_u16()) {
            Some(404) => return Ok(None),
            Some(code) if code >= 300 => {
                return Err(Error::JetStream(format!("direct get {code} {}", msg.description.unwrap_or_default())))
            }
            _ => {}
        }
        let header = |name: &str| msg.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_string());
        let seq = header("Nats-Sequence")
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| Error::JetStream("direct get reply without Nats-Sequence".into()))?;
        let subject = header("Nats-Subject").unwrap_or_default();
        Ok(Some(self.schemas.current().read(seq, &subject, msg.headers.as_ref(), &msg.payload)?))
    }

    /// The events of one subject with sequence >= `from_seq`, in order.
    pub async fn load_subject(&self, subject: &str, from_seq: u64) -> Result<Vec<StoredEvent>> {
        let api = format!("$JS.API.DIRECT.GET.{}", self.stream);
        let inbox = self.client.new_inbox();
        let mut replies = self.client.subscribe(inbox.clone()).await.map_err(|e| Error::Unavailable(e.to_string()))?;
        let mut events = Vec::new();
        let mut next = from_seq.max(1);
        let schemas = self.schemas.current();
        loop {
            let body = serde_json::to_vec(&DirectGet { seq: next, next_by_subj: subject, batch: BATCH })
                .expect("request serializes");
            self.client
                .publish_with_reply(api.clone(), inbox.clone(), body.into())
                .await
                .map_err(|e| Error::Unavailable(e.to_string()))?;
            let pending = loop {
                let msg = tokio::time::timeout(self.timeout, replies.next())
                    .await
                    .map_err(|_| Error::Unavailable(format!("direct get on {subject} timed out")))?
                    .ok_or_else(|| Error::Unavailable("subscription closed".into()))?;
                let header =
                    |name: &str| msg.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_string());
                match msg.status.map(|s| s.as_u16()) {
                    Some(404) => break 0,
                    Some(204) => break header("Nats-Num-Pending").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0),
                    Some(503) => return Err(Error::Unavailable(format!("direct get on {subject}: no responders"))),
                    Some(code) if code >= 300 => {
                        return Err(Error::JetStream(format!(
                            "direct get on {subject}: {code} {}",
                            msg.description.clone().unwrap_or_default()
                        )))
                    }
                    _ => {}
                }
                let seq = header("Nats-Sequence")
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| Error::JetStream("direct get reply without Nats-Sequence".into()))?;
                let msg_subject = header("Nats-Subject").unwrap_or_else(|| subject.to_string());
                events.push(schemas.read(seq, &msg_subject, msg.headers.as_ref(), &msg.payload)?);
                next = seq + 1;
            };
            if pending == 0 {
                break;
            }
        }
        Ok(events)
    }
}
