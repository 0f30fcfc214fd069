//! Start and wait (see [`crate::api::StartWait`]): finds the instances a command's events start, and watches
//! their logs in the stream until each records a final transition. The stream, not this engine's state, is
//! read, so any engine answers as soon as the lease holder has stored the transition.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde_json::{json, Value as Json};

use super::{Logic, Reactors};
use crate::api::{Reply, StartWait};
use crate::envelope::{subject, StoredEvent};
use crate::store::EventStore;

/// Re-checks back off from 20 ms to this, so many waiting clients do not flood JetStream.
const MAX_POLL: Duration = Duration::from_millis(500);

/// The reactor host's [`StartWait`]. Holds the reactors weakly: the command service outlives nothing.
pub struct Waiter {
    reactors: Weak<Reactors>,
}

impl Waiter {
    pub fn new(reactors: &Arc<Reactors>) -> Arc<Self> {
        Arc::new(Self { reactors: Arc::downgrade(reactors) })
    }
}

impl StartWait for Waiter {
    fn wait<'a>(&'a self, reply: &'a Reply, wait: Duration) -> BoxFuture<'a, Reply> {
        Box::pin(async move {
            let Some(reactors) = self.reactors.upgrade() else { return reply.clone() };
            let Ok(mut body) = serde_json::from_slice::<Json>(&reply.body) else { return reply.clone() };
            let deadline = Instant::now() + wait;
            let store = reactors.store();
            let mut sagas = Vec::new();
            for (logic, (log, key)) in started(store, &reactors.logics(), &body).await {
                let view = until_final(store, &*logic, &log, &key, deadline).await;
                sagas.push(json!({
                    "saga": logic.name(),
                    "id": key,
                    "state": view.as_ref().map(|v| v["state"].clone()),
                    "final": view.as_ref().is_some_and(|v| v["final"] == true),
                    "data": view.as_ref().map(|v| v["data"].clone()),
                }));
            }
            let timed_out = sagas.iter().any(|s| s["final"] != true);
            body["sagas"] = Json::Array(sagas);
            // The command succeeded either way; this says the instances are still running.
            body["timed_out"] = json!(timed_out);
            Reply::ok_json(&body)
        })
    }
}

/// The instances the reply's events start, with the subject of each one's log.
async fn started(
    store: &EventStore,
    logics: &[Arc<dyn Logic>],
    body: &Json,
) -> Vec<(Arc<dyn Logic>, (String, String))> {
    let mut out = Vec::new();
    for seq in body["events"].as_array().into_iter().flatten().filter_map(|e| e["seq"].as_u64()) {
        let event = match store.event_at(seq).await {
            Ok(Some(event)) => event,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(seq, error = %e, "cannot read a waiting command's event; not waiting for what it starts");
                continue;
            }
        };
        for logic in logics {
            if let Some(log) = logic.started_by(&event) {
                out.push((logic.clone(), log));
            }
        }
    }
    out
}

/// The instance's latest transition, once final or at `deadline`; `None` if it has none yet.
async fn until_final(store: &EventStore, logic: &dyn Logic, log: &str, key: &str, deadline: Instant) -> Option<Json> {
    let mut pause = Duration::from_millis(20);
    loop {
        let view = latest(store, logic, log, key).await;
        if view.as_ref().is_some_and(|v| v["final"] == true) || Instant::now() >= deadline {
            return view;
        }
        tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        pause = (pause * 2).min(MAX_POLL);
    }
}

async fn latest(store: &EventStore, logic: &dyn Logic, log: &str, key: &str) -> Option<Json> {
    let view = |e: &StoredEvent| logic.transition_view(e);
    // Usually the last event of the log is the last transition; other events (a call's outcome, a timer's
    // firing) mean reading the log.
    match store.last_event(log, key).await {
        Ok(Some(last)) => match view(&last) {
            Some(v) => Some(v),
            None => store.load_subject(&subject(log, key), 1).await.ok()?.iter().rev().find_map(view),
        },
        _ => None,
    }
}
