//! `eddy history <aggregate> <id> [--at-version N]`: each event with its seq, version, time and type, and
//! the state after it.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use eddy_engine::envelope::format_time;
use eddy_engine::store::EventStore;

pub async fn history(
    config: &Path,
    server: &super::Conn,
    aggregate: &str,
    id: &str,
    at_version: Option<u64>,
) -> anyhow::Result<ExitCode> {
    let config = super::load(config)?.engine;
    let def = config
        .aggregates
        .get(aggregate)
        .ok_or_else(|| anyhow!("{} defines no aggregate `{aggregate}`", config.path.display()))?;
    let (client, _url) = server.connect(&config, "eddy-cli").await?;
    let store = EventStore::attach(client, &config.engine);
    let events = store.load(aggregate, id, 1).await.context("reading the stream")?;
    if events.is_empty() {
        println!("{aggregate} {id} has no events");
        return Ok(ExitCode::FAILURE);
    }
    let mut state = def.initial.clone();
    for event in events.iter().take_while(|e| at_version.is_none_or(|v| e.version <= v)) {
        def.apply_stored(&mut state, event).with_context(|| format!("applying seq {}", event.seq))?;
        if at_version.is_none() {
            println!(
                "seq {:<8} v{:<5} {}  {:<20} {}\n    state: {}",
                event.seq,
                event.version,
                format_time(event.time),
                event.event_type,
                event.data,
                serde_json::Value::Object(state.clone())
            );
        }
    }
    if let Some(v) = at_version {
        let reached = events.iter().filter(|e| e.version <= v).count();
        println!("{aggregate} {id} at version {} ({reached} events)", v.min(reached as u64));
        println!("{}", serde_json::to_string_pretty(&serde_json::Value::Object(state))?);
    }
    Ok(ExitCode::SUCCESS)
}
