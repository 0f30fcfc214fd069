//! `eddy reactors [retry NAME | rebuild NAME]`.

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;

use super::views::{finish, print_json, request};

/// What to do to one reactor.
#[derive(clap::Subcommand)]
pub enum ReactorsAction {
    /// Resume a failed reactor and re-drive the events and actions it parked.
    Retry {
        /// The reactor's name in the config.
        name: String,
    },
    /// Rebuild the reactor's state from history; actions already run are not repeated.
    Rebuild {
        /// The reactor's name in the config.
        name: String,
    },
}

/// `eddy reactors`: a table of every reactor, or one action.
pub async fn reactors(
    config: &Path,
    server: &super::Conn,
    action: Option<ReactorsAction>,
    json_out: bool,
) -> anyhow::Result<ExitCode> {
    if let Some(action) = action {
        let (verb, name) = match action {
            ReactorsAction::Retry { name } => ("retry", name),
            ReactorsAction::Rebuild { name } => ("rebuild", name),
        };
        let reply = request(config, server, |p| format!("{p}.admin.reactors.{verb}"), json!({"name": name})).await?;
        if reply["ok"] == true {
            println!("{name}: {}", reply["status"].as_str().unwrap_or(""));
        }
        return Ok(finish(&reply));
    }
    let reply = request(config, server, |p| format!("{p}.admin.reactors"), json!({})).await?;
    if reply["ok"] != true || json_out {
        return Ok(print_json(&reply, json_out));
    }
    println!(
        "{:<24} {:<5} {:<11} {:>10} {:>8} {:>7} {:>9} {:>9} {:>9} {:>7} {:>8} {:>7}",
        "REACTOR",
        "KIND",
        "STATUS",
        "POSITION",
        "LAG",
        "PARKED",
        "COMMANDS",
        "REJECTED",
        "PUBLISHES",
        "EMITS",
        "IGNORED",
        "TIMERS"
    );
    for r in reply["reactors"].as_array().into_iter().flatten() {
        let n = |k: &str| r[k].as_u64().unwrap_or(0);
        println!(
            "{:<24} {:<5} {:<11} {:>10} {:>8} {:>7} {:>9} {:>9} {:>9} {:>7} {:>8} {:>7}",
            r["name"].as_str().unwrap_or(""),
            r["kind"].as_str().unwrap_or(""),
            r["status"].as_str().unwrap_or(""),
            n("position"),
            n("lag"),
            n("parked"),
            n("commands"),
            n("rejected"),
            n("publishes"),
            n("emits"),
            n("ignored"),
            n("timers"),
        );
        if let Some(error) = r["error"].as_str() {
            println!("  failed at {error}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
