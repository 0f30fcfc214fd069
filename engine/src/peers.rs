//! Refusing to mix engines that serve different aggregates behind one `api_prefix`.
//!
//! Every engine joins the queue group of `<api_prefix>.cmd.>`, so NATS hands each command to any of them. An
//! engine whose config lacks an aggregate or a command answers its share with `not_found`: two different
//! applications silently mixed. Each engine therefore advertises what it serves in its micro service's
//! metadata (seen by `$SRV.INFO.eddy`), and at start-up, before it takes commands, asks the live instances and
//! refuses to start when one on the same `api_prefix` serves a different set. `[engine] allow_mixed = true`
//! lets a rolling upgrade run old and new configs side by side on purpose.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::Client;
use futures::StreamExt;

use crate::config::Config;

/// Metadata keys of the micro service.
pub const META_API_PREFIX: &str = "api_prefix";
pub const META_STREAM: &str = "stream";
pub const META_AGGREGATES: &str = "aggregates";

/// How long discovery waits for one more instance to answer after the last answer (or after asking): local
/// and clustered servers answer within milliseconds; a frozen engine never does and is not live anyway.
const QUIET: Duration = Duration::from_millis(250);
const AT_MOST: Duration = Duration::from_secs(2);

/// Errors of the start-up check.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "another eddy engine (service id {peer}) serves different aggregates on api_prefix \"{prefix}\": \
         it serves [{theirs}], this config serves [{ours}]. Both would take commands from the same queue group \
         and answer each other's with not_found. To run a different application, give it its own \
         `[engine] api_prefix` (both then append to the same stream `events.>`, so aggregate names must not \
         clash) or its own NATS server or account; for a rolling upgrade between configs, set \
         `[engine] allow_mixed = true`"
    )]
    Mixed { peer: String, prefix: String, theirs: String, ours: String },
    #[error("discovering other engines: {0}")]
    Discovery(String),
}

/// What an engine serves, as one comparable string: `account(close,deposit,open,withdraw) transfer(...)`,
/// aggregates and commands sorted.
pub fn fingerprint(config: &Config) -> String {
    config
        .aggregates
        .iter()
        .map(|(name, aggregate)| {
            let commands: Vec<&str> = aggregate.commands.keys().map(String::as_str).collect();
            format!("{name}({})", commands.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The metadata this engine advertises.
pub fn metadata(config: &Config) -> HashMap<String, String> {
    HashMap::from([
        (META_API_PREFIX.to_string(), config.engine.api_prefix.clone()),
        (META_STREAM.to_string(), config.engine.stream.clone()),
        (META_AGGREGATES.to_string(), fingerprint(config)),
    ])
}

/// Fails when a live engine other than `own_id` serves a different set on the same api_prefix (unless
/// `allow_mixed`, which only logs it).
pub async fn check(client: &Client, service_name: &str, own_id: &str, config: &Config) -> Result<(), Error> {
    let ours = fingerprint(config);
    let prefix = &config.engine.api_prefix;
    for info in discover(client, service_name).await? {
        let meta = |key: &str| info.metadata.get(key).cloned().unwrap_or_default();
        // An engine from before this check advertises nothing; it cannot be compared.
        if info.id == own_id || !info.metadata.contains_key(META_AGGREGATES) || &meta(META_API_PREFIX) != prefix {
            continue;
        }
        // The metadata is what the peer started with; a peer that reloaded its config answers what it
        // serves now.
        let theirs = match live(client, prefix, &info.id).await {
            Some(live) => live,
            None => meta(META_AGGREGATES),
        };
        if theirs == ours {
            continue;
        }
        if config.engine.allow_mixed {
            tracing::warn!(peer = %info.id, %theirs, %ours, "a live engine serves different aggregates (allow_mixed)");
            continue;
        }
        return Err(Error::Mixed { peer: info.id, prefix: prefix.clone(), theirs, ours });
    }
    Ok(())
}

/// Where the engine with service id `id` answers what it serves now (its micro service's metadata cannot
/// change after start, and a config reload may add commands or aggregates).
pub fn serves_subject(api_prefix: &str, id: &str) -> String {
    format!("{api_prefix}.admin.serves.{id}")
}

/// What the engine `id` serves now, if it answers (an engine from before reloads could change it does not).
async fn live(client: &Client, api_prefix: &str, id: &str) -> Option<String> {
    let ask = client.request(serves_subject(api_prefix, id), "".into());
    let reply = tokio::time::timeout(QUIET, ask).await.ok()?.ok()?;
    String::from_utf8(reply.payload.to_vec()).ok()
}

/// Answers [`serves_subject`] for this engine with `serves` as it is at each request, until `stop`.
pub async fn answer_serves(
    client: Client,
    subject: String,
    serves: std::sync::Arc<std::sync::RwLock<String>>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut requests = match client.subscribe(subject.clone()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(%subject, error = %e, "cannot answer what this engine serves; peers see its start-up set");
            return;
        }
    };
    loop {
        let request = tokio::select! {
            _ = stop.cancelled() => break,
            request = requests.next() => match request { Some(r) => r, None => break },
        };
        let Some(reply) = request.reply else { continue };
        let body = serves.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Err(e) = client.publish(reply, body.into()).await {
            tracing::warn!(error = %e, "answering what this engine serves failed");
        }
    }
}

/// Every live instance's `$SRV.INFO` reply.
async fn discover(client: &Client, service_name: &str) -> Result<Vec<async_nats::service::Info>, Error> {
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.map_err(|e| Error::Discovery(e.to_string()))?;
    client
        .publish_with_reply(format!("$SRV.INFO.{service_name}"), inbox, "".into())
        .await
        .map_err(|e| Error::Discovery(e.to_string()))?;
    client.flush().await.map_err(|e| Error::Discovery(e.to_string()))?;
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + AT_MOST;
    loop {
        let wait = QUIET.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        match tokio::time::timeout(wait, replies.next()).await {
            Ok(Some(msg)) => {
                if let Ok(info) = serde_json::from_slice(&msg.payload) {
                    out.push(info);
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    let _unsubscribed = replies.unsubscribe().await;
    Ok(out)
}
