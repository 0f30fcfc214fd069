//! `eddy views [rebuild NAME]` and `eddy query <view> <key> | --list`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use async_nats::RequestErrorKind;
use serde_json::{json, Value};

pub(super) async fn request(
    config: &Path,
    server: &super::Conn,
    subject: impl Fn(&str) -> String,
    body: Value,
) -> anyhow::Result<Value> {
    let config = super::load_or_default(config)?;
    let (client, url) = server.connect(&config, "eddy-cli").await?;
    let request = async_nats::Request::new().payload(body.to_string().into()).timeout(Some(Duration::from_secs(10)));
    let reply = client.send_request(subject(&config.engine.api_prefix), request).await.map_err(|e| match e.kind() {
        RequestErrorKind::NoResponders => anyhow!("no eddy engine answers at {url}"),
        RequestErrorKind::TimedOut => anyhow!("eddy at {url} did not reply within 10s"),
        _ => anyhow::Error::new(e),
    })?;
    serde_json::from_slice(&reply.payload).context("the reply is not JSON")
}

pub(super) fn finish(reply: &Value) -> ExitCode {
    if reply["ok"] == true {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "{}: {}",
            reply["error"]["code"].as_str().unwrap_or("error"),
            reply["error"]["message"].as_str().unwrap_or("")
        );
        ExitCode::FAILURE
    }
}

/// `eddy views`: a table of every view; `eddy views rebuild NAME`.
pub async fn views(
    config: &Path,
    server: &super::Conn,
    rebuild: Option<String>,
    json_out: bool,
) -> anyhow::Result<ExitCode> {
    if let Some(name) = rebuild {
        let reply = request(config, server, |p| format!("{p}.admin.views.rebuild"), json!({"name": name})).await?;
        if reply["ok"] == true {
            println!("{name}: rebuilding beside the old copy; queries switch when it has caught up");
        }
        return Ok(finish(&reply));
    }
    let reply = request(config, server, |p| format!("{p}.admin.views"), json!({})).await?;
    if reply["ok"] != true || json_out {
        return Ok(print_json(&reply, json_out));
    }
    println!(
        "{:<24} {:<11} {:>10} {:>8} {:>10} {:>7} {:>7}",
        "VIEW", "STATUS", "POSITION", "LAG", "DOCUMENTS", "FAILED", "PARKED"
    );
    let views = reply["views"].as_array().cloned().unwrap_or_default();
    for v in &views {
        println!(
            "{:<24} {:<11} {:>10} {:>8} {:>10} {:>7} {:>7}",
            v["name"].as_str().unwrap_or(""),
            v["status"].as_str().unwrap_or(""),
            v["position"].as_u64().unwrap_or(0),
            v["lag"].as_u64().unwrap_or(0),
            v["documents"].as_u64().unwrap_or(0),
            v["failed_events"].as_u64().unwrap_or(0),
            v["parked"].as_u64().unwrap_or(0)
        );
    }
    for v in &views {
        let name = v["name"].as_str().unwrap_or("");
        let failing = v["stopped_at"].as_object().map(|s| ("stopped at", s)).into_iter().chain(
            v["parked_events"].as_array().into_iter().flatten().filter_map(|p| p.as_object()).map(|p| ("parked", p)),
        );
        for (what, p) in failing {
            println!(
                "{name}: {what} seq {} ({}): {}",
                p["seq"],
                p["subject"].as_str().unwrap_or(""),
                p["error"].as_str().unwrap_or("")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What `eddy query` asks.
pub struct QueryArgs {
    pub view: String,
    pub key: Option<String>,
    pub list: bool,
    pub filter: Option<String>,
    pub prefix: Option<String>,
    pub limit: Option<usize>,
    pub min_seq: Option<u64>,
}

/// `eddy query <view> <key>` prints the document; `--list` prints the documents, following `next`.
pub async fn query(config: &Path, server: &super::Conn, args: QueryArgs) -> anyhow::Result<ExitCode> {
    let view = args.view.clone();
    if !args.list {
        let Some(key) = args.key else { bail!("give a key, or --list") };
        let body = json!({"key": key, "min_seq": args.min_seq});
        let reply = request(config, server, |p| format!("{p}.query.{view}.get"), body).await?;
        if reply["ok"] == true && reply["doc"].is_null() {
            // Like `history` of a missing id: a missing document is an answer, but not a success.
            eprintln!("{view} has no document `{key}`");
            return Ok(ExitCode::FAILURE);
        }
        if reply["ok"] == true {
            println!("{}", serde_json::to_string_pretty(&reply["doc"])?);
        }
        return Ok(finish(&reply));
    }
    let mut after: Option<String> = None;
    let mut remaining = args.limit;
    loop {
        let page = remaining.map(|r| r.min(1000)).unwrap_or(1000);
        let body = json!({"prefix": args.prefix, "after": after, "limit": page, "where": args.filter, "min_seq": args.min_seq});
        let body = Value::Object(
            body.as_object().cloned().unwrap_or_default().into_iter().filter(|(_, v)| !v.is_null()).collect(),
        );
        let reply = request(config, server, |p| format!("{p}.query.{view}.list"), body).await?;
        if reply["ok"] != true {
            return Ok(finish(&reply));
        }
        let items = reply["items"].as_array().cloned().unwrap_or_default();
        for item in &items {
            println!("{}\t{}", item["key"].as_str().unwrap_or(""), item["doc"]);
        }
        remaining = remaining.map(|r| r.saturating_sub(items.len()));
        match reply["next"].as_str() {
            Some(next) if remaining != Some(0) => after = Some(next.to_string()),
            _ => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// `--json`: the reply as it came, pretty-printed on stdout (a failure too), with the exit code it means.
pub(super) fn print_json(reply: &serde_json::Value, json_out: bool) -> ExitCode {
    if json_out {
        println!("{}", serde_json::to_string_pretty(reply).unwrap_or_default());
    }
    finish(reply)
}
