//! A saga instance's timeline, read from its log on the stream (`events.saga-<saga>.<id>`): each step with
//! its trigger, the state entered, the commands sent with their replies (the event each stored, or the
//! rejection and its message), the timers armed and fired, and the data after the step.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use eddy_engine::envelope::{format_time, StoredEvent};
use eddy_engine::host::reactor::effect_id;
use serde_json::Value;

use super::{pretty, render, saga_names};
use crate::http::AppState;

/// At most this many log records are shown: a looping instance must not make the page unbounded.
const MAX_RECORDS: usize = 2000;

#[derive(Template)]
#[template(path = "console/instance.html")]
struct Instance {
    nav_sagas: Vec<String>,
    saga: String,
    id: String,
    state: String,
    done: bool,
    steps: Vec<Step>,
}

struct Step {
    seq: u64,
    at: String,
    trigger: String,
    state: String,
    /// (command, body, reply)
    commands: Vec<(String, String, String)>,
    timers: Vec<String>,
    data: String,
}

pub async fn instance(State(state): State<AppState>, Path((saga, id)): Path<(String, String)>) -> Response {
    let log = eddy_reactors::saga::log_aggregate(&saga);
    let records = match state.store.load(&log, &id, 1).await {
        Ok(records) => records,
        Err(e) => return render(page(&state, saga, id, vec![step_note(0, format!("reading the log: {e}"))])),
    };
    let records: Vec<_> = records.into_iter().take(MAX_RECORDS).collect();
    let mut steps = Vec::new();
    for record in &records {
        match record.event_type.as_str() {
            "SagaStarted" | "StateEntered" => steps.push(entered(&state, &saga, record, &records).await),
            "CommandRejected" | "TimerFired" => {}
            other => steps.push(step_note(record.seq, format!("{other}: {}", record.data))),
        }
    }
    render(page(&state, saga, id, steps))
}

fn page(state: &AppState, saga: String, id: String, steps: Vec<Step>) -> Instance {
    let last = steps.iter().rev().find(|s| !s.state.is_empty());
    let current = last.map(|s| s.state.clone()).unwrap_or_default();
    let done = last.is_some_and(|s| s.trigger.ends_with("(final)"));
    Instance { nav_sagas: saga_names(state), saga, id, state: current, done, steps }
}

fn step_note(seq: u64, note: String) -> Step {
    Step {
        seq,
        at: String::new(),
        trigger: note,
        state: String::new(),
        commands: Vec::new(),
        timers: Vec::new(),
        data: String::new(),
    }
}

/// One transition: what it entered, and what its `do` did.
async fn entered(state: &AppState, saga: &str, record: &StoredEvent, records: &[StoredEvent]) -> Step {
    let d = &record.data;
    let mut trigger = d["trigger"].as_str().unwrap_or_default().to_string();
    if d["final"] == true {
        trigger.push_str(" (final)");
    }
    let mut commands = Vec::new();
    let mut timers = Vec::new();
    for (n, action) in d["do"].as_array().into_iter().flatten().enumerate() {
        let effect = effect_id(saga, record.seq, n as u32);
        match action["kind"].as_str() {
            Some("command") => {
                let target = format!(
                    "{}.{}",
                    action["aggregate"].as_str().unwrap_or(""),
                    action["command"].as_str().unwrap_or("")
                );
                let reply = reply(state, action, &effect, records).await;
                commands.push((target, pretty(&action["data"]), reply));
            }
            Some(kind) => commands.push((kind.to_string(), pretty(action), String::new())),
            None => {}
        }
    }
    if let Some(at) = d["timer_at"].as_str() {
        let fired = records.iter().any(|r| r.event_type == "TimerFired" && r.data["entry"] == record.seq);
        timers.push(format!("armed for {at}{}", if fired { ", fired" } else { ", not fired" }));
    }
    Step {
        seq: record.seq,
        at: format_time(record.time),
        trigger,
        state: d["state"].as_str().unwrap_or_default().to_string(),
        commands,
        timers,
        data: pretty(&d["data"]),
    }
}

/// What a saga's command got back: its rejection as recorded on the log, else the event it stored (found by
/// its command id, the effect id, on the target's subject), else that it has not been answered yet.
async fn reply(state: &AppState, action: &Value, effect: &str, records: &[StoredEvent]) -> String {
    if let Some(r) = records.iter().find(|r| r.event_type == "CommandRejected" && r.data["effect"] == effect) {
        return format!(
            "{}: {}",
            r.data["code"].as_str().unwrap_or("rejected"),
            r.data["message"].as_str().unwrap_or("")
        );
    }
    let (Some(aggregate), Some(id)) = (action["aggregate"].as_str(), action["data"]["id"].as_str()) else {
        return "sent".into();
    };
    match state.store.load(aggregate, id, 1).await {
        Ok(events) => match events.iter().find(|e| e.command_id == effect) {
            Some(e) => format!("ok: {} at seq {}", e.event_type, e.seq),
            None => "no reply yet".into(),
        },
        Err(e) => format!("unknown: {e}"),
    }
}
