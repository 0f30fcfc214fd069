//! `eddy send <aggregate>.<command> '<json>'`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use async_nats::{HeaderMap, RequestErrorKind};
use eddy_engine::envelope::headers;

/// Optional command headers.
pub struct SendHeaders {
    pub command_id: Option<String>,
    pub expected_version: Option<String>,
    pub correlation_id: Option<String>,
    /// Eddy-Wait, in seconds.
    pub wait: Option<u64>,
}

pub async fn send(
    config: &Path,
    server: &super::Conn,
    target: &str,
    body: &str,
    h: SendHeaders,
) -> anyhow::Result<ExitCode> {
    let config = super::load_or_default(config)?;
    if target.split('.').count() != 2 {
        bail!("`{target}` is not <aggregate>.<command>");
    }
    let (client, url) = server.connect(&config, "eddy-cli").await?;
    let mut map = HeaderMap::new();
    for (name, value) in [
        (headers::COMMAND_ID, &h.command_id),
        (headers::EXPECTED_VERSION, &h.expected_version),
        (headers::CORRELATION_ID, &h.correlation_id),
    ] {
        if let Some(v) = value {
            map.insert(name, v.as_str());
        }
    }
    if let Some(wait) = h.wait {
        map.insert(eddy_engine::api::WAIT_HEADER, wait.to_string().as_str());
    }
    let subject = format!("{}.cmd.{target}", config.engine.api_prefix);
    // A waiting command is answered when its sagas end or its wait runs out: give it that long, and more.
    let timeout = Duration::from_secs(10 + h.wait.unwrap_or(0));
    let request = async_nats::Request::new().headers(map).payload(body.to_string().into()).timeout(Some(timeout));
    let reply = client.send_request(subject, request).await.map_err(|e| match e.kind() {
        RequestErrorKind::NoResponders => {
            anyhow::anyhow!("no eddy engine serves commands at {url}")
        }
        RequestErrorKind::TimedOut => anyhow::anyhow!("eddy at {url} did not reply within {}s", timeout.as_secs()),
        _ => anyhow::Error::new(e).context("sending the command"),
    })?;
    let value: serde_json::Value = serde_json::from_slice(&reply.payload).context("the reply is not JSON")?;
    println!("{}", serde_json::to_string_pretty(&value)?);
    let ok = value.get("ok").and_then(|v| v.as_bool()).unwrap_or(false);
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
