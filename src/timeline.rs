//! A saga instance's timeline, read from its log on the stream (`events.saga-<saga>.<id>`): each step with
//! its trigger, the state entered, the commands sent with their replies (the event each stored, or the
//! rejection and its message), the timers armed and fired, and the data after the step. The console's
//! instance page and `eddy sagas <saga> <id>` show the same one.

use eddy_engine::envelope::{format_time, StoredEvent};
use eddy_engine::host::reactor::effect_id;
use eddy_engine::store::{self, EventStore};
use serde_json::Value;

/// At most this many log records are read: a looping instance must not make the timeline unbounded.
const MAX_RECORDS: usize = 2000;

/// One step of the timeline.
pub struct Step {
    pub seq: u64,
    pub at: String,
    /// What moved it (`account.MoneyWithdrawn`, `rejected`, `timeout`, ...), ` (final)` appended when the
    /// state entered is final; or a note about a record that is not a transition.
    pub trigger: String,
    /// The state entered (empty for a note).
    pub state: String,
    /// (command, body, reply)
    pub commands: Vec<(String, String, String)>,
    pub timers: Vec<String>,
    /// The instance's data after the step, pretty-printed.
    pub data: String,
}

/// The steps of `saga`'s instance `id`, oldest first (empty when it has none).
pub async fn load(store: &EventStore, saga: &str, id: &str) -> Result<Vec<Step>, store::Error> {
    let log = eddy_reactors::saga::log_aggregate(saga);
    let records: Vec<_> = store.load(&log, id, 1).await?.into_iter().take(MAX_RECORDS).collect();
    let mut steps = Vec::new();
    for record in &records {
        match record.event_type.as_str() {
            "SagaStarted" | "StateEntered" => steps.push(entered(store, saga, record, &records).await),
            "CommandRejected" | "TimerFired" => {}
            other => steps.push(note(record.seq, format!("{other}: {}", record.data))),
        }
    }
    Ok(steps)
}

/// A line that is not a transition.
pub fn note(seq: u64, text: String) -> Step {
    Step {
        seq,
        at: String::new(),
        trigger: text,
        state: String::new(),
        commands: Vec::new(),
        timers: Vec::new(),
        data: String::new(),
    }
}

/// The timeline as text, for the terminal.
pub fn text(steps: &[Step]) -> String {
    let mut out = String::new();
    for s in steps {
        out.push_str(&format!("seq {:<8} {}  {} -> {}\n", s.seq, s.at, s.trigger, s.state));
        for (command, body, reply) in &s.commands {
            out.push_str(&format!("    sent {command} {}\n      reply: {reply}\n", one_line(body)));
        }
        for timer in &s.timers {
            out.push_str(&format!("    timer {timer}\n"));
        }
        if !s.data.is_empty() {
            out.push_str(&format!("    data after: {}\n", one_line(&s.data)));
        }
    }
    out
}

fn one_line(pretty: &str) -> String {
    serde_json::from_str::<Value>(pretty).map(|v| v.to_string()).unwrap_or_else(|_| pretty.to_string())
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// One transition: what it entered, and what its `do` did.
async fn entered(store: &EventStore, saga: &str, record: &StoredEvent, records: &[StoredEvent]) -> Step {
    let d = &record.data;
    let mut trigger = d["trigger"].as_str().unwrap_or_default().to_string();
    if record.event_type == "SagaStarted" {
        // The version the instance runs on to its end (absent on a log written before versions: 1).
        trigger.push_str(&format!(" on version {}", d["saga_version"].as_u64().unwrap_or(1)));
    }
    if d["final"] == true {
        trigger.push_str(" (final)");
    }
    let mut commands = Vec::new();
    for (n, action) in d["do"].as_array().into_iter().flatten().enumerate() {
        let effect = effect_id(saga, record.seq, n as u32);
        match action["kind"].as_str() {
            Some("command") => {
                let aggregate = action["aggregate"].as_str().unwrap_or_default();
                let target = format!("{aggregate}.{}", action["command"].as_str().unwrap_or_default());
                let reply = reply(store, action, &effect, records).await;
                commands.push((target, pretty(&action["data"]), reply));
            }
            Some(kind) => commands.push((kind.to_string(), pretty(action), String::new())),
            None => {}
        }
    }
    let mut timers = Vec::new();
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
async fn reply(store: &EventStore, action: &Value, effect: &str, records: &[StoredEvent]) -> String {
    if let Some(r) = records.iter().find(|r| r.event_type == "CommandRejected" && r.data["effect"] == effect) {
        let code = r.data["code"].as_str().unwrap_or("rejected");
        return format!("{code}: {}", r.data["message"].as_str().unwrap_or(""));
    }
    let (Some(aggregate), Some(id)) = (action["aggregate"].as_str(), action["data"]["id"].as_str()) else {
        return "sent".into();
    };
    match store.load(aggregate, id, 1).await {
        Ok(events) => match events.iter().find(|e| e.command_id == effect) {
            Some(e) => format!("ok: {} at seq {}", e.event_type, e.seq),
            None => "no reply yet".into(),
        },
        Err(e) => format!("unknown: {e}"),
    }
}
