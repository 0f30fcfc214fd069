//! `eddy validate [--recording rec.jsonl]`: every config error at once, and, against a recording of the
//! stream, whether the config can read every recorded event (its type is known, every upcast evaluates).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use eddy::replay::Recording;
use eddy::Settings;
use eddy_engine::upcast::Schemas;

/// `eddy validate`.
pub async fn validate(path: &Path, recording: Option<&Path>, server: &super::Conn) -> anyhow::Result<ExitCode> {
    let settings = match eddy::load(path) {
        Ok(settings) => settings,
        Err(errors) => {
            println!("{errors}");
            eprintln!("{}: {} error(s)", path.display(), errors.len());
            return Ok(ExitCode::FAILURE);
        }
    };
    let config = &settings.engine;
    let commands: usize = config.aggregates.values().map(|a| a.commands.len()).sum();
    println!(
        "{}: ok ({} aggregates, {commands} commands, {} views, {} reactors)",
        path.display(),
        config.aggregates.len(),
        settings.views.len(),
        settings.reactors.len()
    );
    if !saga_versions_kept(&settings, server).await {
        return Ok(ExitCode::FAILURE);
    }
    let Some(recording) = recording else { return Ok(ExitCode::SUCCESS) };
    let read = Recording::read(recording)?;
    let problems = unreadable(&settings, &read);
    let events = read.events().filter(Result::is_ok).count();
    if problems.is_empty() {
        println!("{}: every one of {events} recorded events reads under this config", recording.display());
        return Ok(ExitCode::SUCCESS);
    }
    for (problem, lines) in &problems {
        let more = match lines.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        println!("{}: line {}{more}: {problem}", recording.display(), lines[0]);
    }
    let count: usize = problems.values().map(Vec::len).sum();
    eprintln!("{}: {count} of {events} recorded events cannot be read under this config", recording.display());
    Ok(ExitCode::FAILURE)
}

/// Whether every saga version that running instances use is still in the config. Not knowing (no server)
/// is said on stderr and passes: a config is often checked away from its stream.
async fn saga_versions_kept(settings: &Settings, server: &super::Conn) -> bool {
    match super::running::dropped_versions(settings, server).await {
        Ok(dropped) => {
            for d in &dropped {
                let more =
                    if d.instances.len() > 3 { format!(" and {} more", d.instances.len() - 3) } else { String::new() };
                println!(
                    "reactors.{}: drops version {}, which {} running instance(s) still use ({}{more}); keep it under `versions.{}` until they finish",
                    d.saga,
                    d.version,
                    d.instances.len(),
                    d.instances.iter().take(3).cloned().collect::<Vec<_>>().join(", "),
                    d.version
                );
            }
            dropped.is_empty()
        }
        Err(why) => {
            eprintln!("saga versions of running instances NOT checked: {why}");
            true
        }
    }
}

/// Each kind of recorded event the config cannot read, with the lines of every such event.
pub fn unreadable(settings: &Settings, recording: &Recording) -> BTreeMap<String, Vec<usize>> {
    let schemas = Schemas::new(&settings.engine.aggregates);
    let mut problems: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (line, event) in recording.upcast_events(&schemas) {
        let problem = match event {
            Err(e) => e.to_string(),
            Ok(event) => match settings.engine.aggregates.get(&event.aggregate) {
                Some(aggregate) if !aggregate.events.contains_key(&event.event_type) => {
                    let known: Vec<&str> = aggregate.events.keys().map(String::as_str).collect();
                    format!(
                        "`{}.{}` is no event type of this config (known: {}; a renamed type lists its old name in `renamed_from`)",
                        event.aggregate,
                        event.event_type,
                        known.join(", ")
                    )
                }
                _ => continue,
            },
        };
        problems.entry(problem).or_default().push(line);
    }
    problems
}
