//! `eddy history <aggregate> <id> [--at-version N]`: each event with its seq, version, time and type, and
//! the state after it.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use eddy_engine::envelope::format_time;
use eddy_engine::store::EventStore;
use eddy_engine::upcast::Schemas;

pub async fn history(
    config: &Path,
    server: &super::Conn,
    aggregate: &str,
    id: &str,
    at_version: Option<u64>,
    json_out: bool,
) -> anyhow::Result<ExitCode> {
    let config = super::load(config)?.engine;
    let def = config
        .aggregates
        .get(aggregate)
        .ok_or_else(|| anyhow!("{} defines no aggregate `{aggregate}`", config.path.display()))?;
    let (client, _url) = server.connect(&config, "eddy-cli").await?;
    let store = EventStore::attach(client, &config.engine);
    store.set_schemas(Schemas::new(&config.aggregates));
    let events = store.load(aggregate, id, 1).await.with_context(|| {
        format!("reading {aggregate} {id}: a message on its subject is not an eddy event (published around eddy?); remove it from the stream")
    })?;
    if events.is_empty() {
        println!("{aggregate} {id} has no events");
        return Ok(ExitCode::FAILURE);
    }
    let last = events.last().map_or(0, |e| e.version);
    if let Some(v) = at_version.filter(|v| *v > last) {
        // Not quietly the last version: the operator asked for a state that never was.
        eprintln!("{aggregate} {id} is at version {last}; there is no version {v}");
        return Ok(ExitCode::FAILURE);
    }
    if json_out {
        return print_json(def, &events, at_version);
    }
    let mut state = def.initial.clone();
    let mut unfoldable = 0;
    for event in events.iter().take_while(|e| at_version.is_none_or(|v| e.version <= v)) {
        if let Err(e) = def.apply_stored(&mut state, event) {
            // Shown in place, not an abort: this is where an operator looks when the aggregate is held.
            unfoldable += 1;
            println!(
                "seq {:<8} v{:<5} {}  {:<20} CANNOT BE APPLIED: {e}",
                event.seq,
                event.version,
                format_time(event.time),
                event.event_type
            );
            continue;
        }
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
    if unfoldable > 0 {
        println!("{unfoldable} event(s) cannot be applied: commands on {aggregate} {id} fail until they are removed from the stream or the apply is fixed");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `--json`: an array of the events up to `at_version`, each with the state after it (or the error that
/// kept it from being applied); exit 1 when one cannot be applied, as in the text form.
fn print_json(
    def: &eddy_engine::aggregate::Aggregate,
    events: &[eddy_engine::envelope::StoredEvent],
    at_version: Option<u64>,
) -> anyhow::Result<ExitCode> {
    let mut state = def.initial.clone();
    let mut out = Vec::new();
    let mut failed = false;
    for event in events.iter().take_while(|e| at_version.is_none_or(|v| e.version <= v)) {
        let mut item = serde_json::to_value(event)?;
        match def.apply_stored(&mut state, event) {
            Ok(()) => item["state"] = serde_json::Value::Object(state.clone()),
            Err(e) => {
                failed = true;
                item["error"] = serde_json::Value::String(e.to_string());
            }
        }
        out.push(item);
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
