//! Reading what the system holds after the faults: the whole stream and the views.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use async_nats::Client;
use eddy_engine::envelope::StoredEvent;
use futures::StreamExt;
use serde_json::{json, Value};

use super::checker::{Stored, Views};
use crate::common::{events_on, last_seq};

/// Every event on `events.>`, in stream order, read with an ordered consumer up to the last seq.
pub async fn stream(c: &Client) -> Vec<Stored> {
    let last = last_seq(c).await;
    let js = async_nats::jetstream::new(c.clone());
    let stream = js.get_stream("EVENTS").await.expect("the stream");
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::All,
            filter_subject: "events.>".into(),
            ..Default::default()
        })
        .await
        .expect("an ordered consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let mut out = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(5), messages.next()).await {
        let m = m.expect("a message");
        let seq = m.info().expect("info").stream_sequence;
        let msg_id = m.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")).map(|v| v.as_str().to_string());
        let event = StoredEvent::from_parts(seq, &m.subject, m.headers.as_ref(), &m.payload)
            .unwrap_or_else(|e| panic!("seq {seq} on {} is not an event: {e}", m.subject));
        out.push(Stored { msg_id: msg_id.unwrap_or_default(), event });
        if seq >= last {
            break;
        }
    }
    out
}

/// Every document of `view` as of `min_seq`, paged with `next`.
async fn list(c: &Client, view: &str, min_seq: u64) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let body = json!({"after": after, "limit": 500, "min_seq": min_seq, "timeout_ms": 20_000});
        let msg = c
            .request(format!("eddy.query.{view}.list"), body.to_string().into())
            .await
            .unwrap_or_else(|e| panic!("eddy.query.{view}.list: {e}"));
        let reply: Value = serde_json::from_slice(&msg.payload).expect("JSON");
        assert_eq!(reply["ok"], true, "eddy.query.{view}.list: {reply}");
        for item in reply["items"].as_array().into_iter().flatten() {
            out.push((item["key"].as_str().unwrap_or("").to_string(), item["doc"].clone()));
        }
        match reply["next"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => return out,
        }
    }
}

/// The views as `tries` queries see them: each may be answered by another engine (each keeps its own copy).
pub async fn views(c: &Client, min_seq: u64, tries: usize) -> Vec<Views> {
    let mut out = Vec::new();
    for _ in 0..tries {
        let mut v = Views::default();
        for (key, doc) in list(c, "balances", min_seq).await {
            v.balances.insert(key, doc["balance"].as_i64().unwrap_or(0));
        }
        for (_, doc) in list(c, "daily-totals", min_seq).await {
            let n = |k: &str| doc[k].as_i64().unwrap_or(0);
            v.daily = (v.daily.0 + n("deposited"), v.daily.1 + n("withdrawn"), v.daily.2 + n("count"));
        }
        out.push(v);
    }
    out
}

/// Whether every requested transfer is completed or failed.
pub async fn transfers_settled(c: &Client) -> bool {
    let events = events_on(c, "events.transfer.*").await;
    let mut open = std::collections::BTreeSet::new();
    for e in events {
        match e.event_type.as_str() {
            "TransferRequested" => {
                open.insert(e.id);
            }
            "TransferCompleted" | "TransferFailed" => {
                open.remove(&e.id);
            }
            _ => {}
        }
    }
    open.is_empty()
}
