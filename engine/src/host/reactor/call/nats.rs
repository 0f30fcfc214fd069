//! A call by NATS request-reply. A reply carrying `Nats-Service-Error-Code` (the micro services convention,
//! which eddy's own endpoints follow) is the service's failure: a 5xx code is retried, others are final.

use std::time::Duration;

use async_nats::{Client, HeaderMap, RequestErrorKind};

use super::super::effects::{EFFECT_ID_HEADER, REACTOR_HEADER};
use super::super::Pending;
use super::{reply_of, Attempt, Call, Outcome};
use crate::envelope::headers;

/// One attempt of a call to `subject`.
pub(super) async fn attempt(
    client: &Client,
    reactor: &str,
    pending: &Pending,
    call: &Call,
    subject: &str,
) -> Result<Outcome, Attempt> {
    let mut h = HeaderMap::new();
    h.insert(EFFECT_ID_HEADER, pending.id.as_str());
    h.insert(REACTOR_HEADER, reactor);
    h.insert(headers::CAUSATION_ID, pending.id.as_str());
    if !pending.correlation_id.is_empty() {
        h.insert(headers::CORRELATION_ID, pending.correlation_id.as_str());
    }
    let payload = serde_json::to_vec(&call.data).expect("JSON serializes");
    let limit = client.server_info().max_payload;
    if payload.len() > limit {
        let message = format!("the request has {} bytes, more than the server's max_payload {limit}", payload.len());
        return Ok(Outcome::Failed { status: 0, reason: "invalid", message });
    }
    let request = async_nats::Request::new()
        .headers(h)
        .payload(payload.into())
        .timeout(Some(Duration::from_millis(call.timeout_ms)));
    let reply = client.send_request(subject.to_string(), request).await.map_err(|e| {
        let (reason, message) = match e.kind() {
            RequestErrorKind::NoResponders => ("unreachable", format!("no service answers {subject}")),
            RequestErrorKind::TimedOut => {
                ("timeout", format!("{subject} did not answer within {} ms", call.timeout_ms))
            }
            _ => ("unreachable", format!("{subject}: {e}")),
        };
        Attempt { status: 0, reason, message }
    })?;
    let error = reply.headers.as_ref().and_then(|h| {
        let code = h.get("Nats-Service-Error-Code")?.as_str().trim().parse::<u16>().unwrap_or(500);
        let text = h.get("Nats-Service-Error").map(|v| v.as_str().to_string()).unwrap_or_default();
        Some((code, text))
    });
    match error {
        Some((status, message)) if status >= 500 => Err(Attempt { status, reason: "status", message }),
        Some((status, message)) => Ok(Outcome::Failed { status, reason: "status", message }),
        None => Ok(reply_of(&reply.payload)),
    }
}
