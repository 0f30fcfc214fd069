//! `eddy validate`'s check against the live stream: a config must keep every saga version that running
//! instances were started on (an instance runs to its end on its version).

use std::collections::BTreeMap;
use std::time::Duration;

use eddy::Settings;
use eddy_engine::store::EventStore;
use eddy_reactors::saga::state::{Entered, ENTERED, STARTED};
use eddy_reactors::saga::{log_aggregate, Saga};
use eddy_reactors::Reactor;

/// How long validate waits for a server before saying it could not check.
const REACH: Duration = Duration::from_secs(5);

/// One running instance on a version the config no longer has.
pub struct Dropped {
    pub saga: String,
    pub version: u32,
    pub instances: Vec<String>,
}

/// What the check found: `Err` says why it could not check.
pub async fn dropped_versions(settings: &Settings, server: &super::Conn) -> Result<Vec<Dropped>, String> {
    let sagas: Vec<&Saga> = settings
        .reactors
        .iter()
        .filter_map(|r| match r {
            Reactor::Saga(s) => Some(s.as_ref()),
            Reactor::Rule(_) => None,
        })
        .collect();
    if sagas.is_empty() {
        return Ok(Vec::new());
    }
    let connect = server.connect(&settings.engine, "eddy-validate");
    let (client, url) = match tokio::time::timeout(REACH, connect).await {
        Ok(Ok(connected)) => connected,
        Ok(Err(e)) => return Err(format!("no NATS server reachable ({e:#})")),
        Err(_) => return Err(format!("no NATS server answered within {} s", REACH.as_secs())),
    };
    let store = EventStore::attach(client, &settings.engine.engine);
    let mut dropped = Vec::new();
    for saga in sagas {
        let running = running(&store, &saga.name).await.map_err(|e| format!("reading the stream at {url}: {e}"))?;
        let mut by_version: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for (id, version) in running.into_iter().filter(|(_, v)| !saga.definitions.contains_key(v)) {
            by_version.entry(version).or_default().push(id);
        }
        dropped.extend(by_version.into_iter().map(|(version, instances)| Dropped {
            saga: saga.name.clone(),
            version,
            instances,
        }));
    }
    Ok(dropped)
}

/// The instances of `saga` not yet in a final state, with the version each started on, folded from the
/// saga's log (the transition records say the version and whether the state is final).
async fn running(store: &EventStore, saga: &str) -> Result<BTreeMap<String, u32>, String> {
    let subject = format!("events.{}.*", log_aggregate(saga));
    let mut instances: BTreeMap<String, (u32, bool)> = BTreeMap::new();
    for event in store.load_subject(&subject, 1).await.map_err(|e| e.to_string())? {
        if !matches!(event.event_type.as_str(), STARTED | ENTERED) {
            continue;
        }
        let entered: Entered = serde::Deserialize::deserialize(&event.data)
            .map_err(|e| format!("seq {}: unreadable {}: {e}", event.seq, event.event_type))?;
        instances.insert(event.id.clone(), (entered.saga_version, entered.done));
    }
    Ok(instances.into_iter().filter(|(_, (_, done))| !done).map(|(id, (v, _))| (id, v)).collect())
}
