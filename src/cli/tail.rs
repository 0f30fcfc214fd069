//! `eddy tail`: follows the stream live, from now on, so a user can watch what the engine and its reactors do
//! without the `nats` CLI: events, saga transitions (the records on a saga's log), and, for subjects outside
//! the stream (a rule's `publish`), the core NATS messages with the reactor that sent them.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use async_nats::HeaderMap;
use eddy_engine::envelope::{headers, parse_subject};
use futures::StreamExt;

/// `eddy tail [--subjects S]...`: until Ctrl-C. Subjects under `events.` filter the stream (default
/// `events.>`); any other subject is subscribed to as core NATS.
pub async fn tail(config: &Path, server: &super::Conn, subjects: Vec<String>) -> anyhow::Result<ExitCode> {
    let config = super::load_or_default(config)?;
    let (client, url) = server.connect(&config, "eddy-tail").await?;
    let (stored, core): (Vec<String>, Vec<String>) = subjects.into_iter().partition(|s| s.starts_with("events."));
    let filters = if stored.is_empty() && core.is_empty() { vec!["events.>".to_string()] } else { stored };
    let js = async_nats::jetstream::new(client.clone());
    let mut events = futures::stream::SelectAll::new();
    if !filters.is_empty() {
        let stream = js
            .get_stream(&config.engine.stream)
            .await
            .with_context(|| format!("stream {} at {url}", config.engine.stream))?;
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subjects: filters,
                deliver_policy: DeliverPolicy::New,
                ..Default::default()
            })
            .await
            .context("following the stream")?;
        let messages = consumer.messages().await.context("following the stream")?;
        events.push(messages.map(|m| m.map(|m| line_of_stored(&m)).unwrap_or_else(|e| format!("error: {e}"))).boxed());
    }
    for subject in core {
        let sub = client.subscribe(subject.clone()).await.with_context(|| format!("subscribing to {subject}"))?;
        events.push(sub.map(|m| line_of_publish(&m.subject, m.headers.as_ref(), &m.payload)).boxed());
    }
    eprintln!("following {url} (Ctrl-C stops)");
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            line = events.next() => match line {
                Some(line) => println!("{line}"),
                None => return Ok(ExitCode::SUCCESS),
            },
        }
    }
}

fn header<'a>(h: Option<&'a HeaderMap>, name: &str) -> &'a str {
    h.and_then(|h| h.get(name)).map(|v| v.as_str()).unwrap_or("")
}

/// An event on one line: `seq subject type data`; a saga record as its transition.
fn line_of_stored(m: &async_nats::jetstream::Message) -> String {
    let seq = m.info().map(|i| i.stream_sequence).unwrap_or(0);
    let h = m.headers.as_ref();
    let event_type = header(h, headers::EVENT_TYPE);
    let data: serde_json::Value = serde_json::from_slice(&m.payload).unwrap_or(serde_json::Value::Null);
    match parse_subject(&m.subject) {
        Some((aggregate, id)) if aggregate.starts_with("saga-") && event_type != "CommandRejected" => {
            let saga = &aggregate["saga-".len()..];
            let from = data["from"].as_str().unwrap_or("start");
            let to = data["state"].as_str().unwrap_or("?");
            format!(
                "seq {seq:<8} saga {saga} {id}: {from} -> {to} ({})",
                data["trigger"].as_str().unwrap_or(event_type)
            )
        }
        _ => format!("seq {seq:<8} {} {event_type} {data}", m.subject),
    }
}

/// A core NATS message: `publish subject [reactor R] payload`.
fn line_of_publish(subject: &str, h: Option<&HeaderMap>, payload: &[u8]) -> String {
    let reactor = header(h, eddy_engine::host::reactor::REACTOR_HEADER);
    let by = if reactor.is_empty() { String::new() } else { format!(" by {reactor}") };
    format!("publish {subject}{by} {}", String::from_utf8_lossy(payload))
}
