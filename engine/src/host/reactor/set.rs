//! The running reactors: one task each, started, stopped, rebuilt and re-driven as the config and the
//! operators ask, without touching the others.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::lease::Leases;
use super::runner;
use super::shared::{Host, Shared, Status};
use super::state::Counters;
use super::watermark::Watermarks;
use super::{Effects, Logic, ReactorState};
use crate::config::EngineConfig;

/// Errors of the reactor host.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    State(#[from] super::state::Error),
    #[error(transparent)]
    Watermark(#[from] super::watermark::Error),
    #[error("no reactor `{0}`")]
    Unknown(String),
    #[error("reactor files: {0}")]
    Io(std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What operators see of a reactor.
#[derive(Debug, Clone, Serialize)]
pub struct ReactorStatus {
    pub name: String,
    pub kind: super::Kind,
    /// running | rebuilding | standby (another engine runs it) | stopped | failed (and starting, briefly)
    pub status: &'static str,
    /// Why it failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub position: u64,
    pub lag: u64,
    pub parked: usize,
    /// What it has done, as fields of the status.
    #[serde(flatten)]
    pub counters: Counters,
}

struct Reactor {
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
    dir: PathBuf,
}

impl Reactor {
    async fn stop(&self) {
        self.shared.cancel.cancel();
        let task = self.task.lock().expect("lock").take();
        if let Some(task) = task {
            if let Err(e) = task.await {
                tracing::error!(reactor = %self.shared.logic.name(), error = %e, "reactor task ended abnormally");
            }
        }
    }
}

/// Every reactor of the engine.
pub struct Reactors {
    reactors: RwLock<BTreeMap<String, Arc<Reactor>>>,
    host: Arc<Host>,
    dir: PathBuf,
    /// Parent of every reactor's token: stopping the engine stops them all.
    cancel: CancellationToken,
}

impl Reactors {
    /// Starts `logics`, with their files under `<data_dir>/reactors/`.
    pub async fn start(logics: Vec<Arc<dyn Logic>>, effects: Effects, engine: &EngineConfig) -> Result<Arc<Self>> {
        let watermarks = Watermarks::open(effects.store().jetstream(), &engine.stream, engine.replicas).await?;
        let dir = engine.data_dir.join("reactors");
        let holder = engine_id(&dir)?;
        let leases = Leases::open(effects.store().jetstream(), &engine.stream, engine.replicas, holder).await?;
        let reactors = Arc::new(Reactors {
            reactors: RwLock::new(BTreeMap::new()),
            host: Arc::new(Host { effects, watermarks, leases }),
            dir,
            cancel: CancellationToken::new(),
        });
        for logic in logics {
            reactors.add(logic, None)?;
        }
        Ok(reactors)
    }

    fn add(&self, logic: Arc<dyn Logic>, state: Option<ReactorState>) -> Result<()> {
        let name = logic.name().to_string();
        let dir = self.dir.join(&name);
        let state = match state {
            Some(s) => s,
            None => ReactorState::open(&dir)?,
        };
        let shared = Arc::new(Shared::new(logic, state, self.cancel.child_token())?);
        let task = tokio::spawn(runner::run(shared.clone(), self.host.clone()));
        let reactor = Arc::new(Reactor { shared, task: Mutex::new(Some(task)), dir });
        self.reactors.write().expect("lock").insert(name.clone(), reactor);
        tracing::info!(reactor = %name, "reactor started");
        Ok(())
    }

    fn get(&self, name: &str) -> Result<Arc<Reactor>> {
        self.reactors.read().expect("lock").get(name).cloned().ok_or_else(|| Error::Unknown(name.to_string()))
    }

    fn all(&self) -> Vec<Arc<Reactor>> {
        self.reactors.read().expect("lock").values().cloned().collect()
    }

    /// Brings the running set to `logics`: new ones start, deleted ones stop and lose their files, changed
    /// ones rebuild. The others are not touched.
    pub async fn update(&self, logics: Vec<Arc<dyn Logic>>) -> Result<()> {
        let wanted: BTreeMap<String, Arc<dyn Logic>> = logics.into_iter().map(|l| (l.name().to_string(), l)).collect();
        let running: Vec<String> = self.reactors.read().expect("lock").keys().cloned().collect();
        for name in running.iter().filter(|n| !wanted.contains_key(*n)) {
            let removed = self.reactors.write().expect("lock").remove(name);
            if let Some(reactor) = removed {
                reactor.stop().await;
                if let Err(e) = self.host.watermarks.remove(name).await {
                    tracing::warn!(reactor = %name, error = %e, "cannot remove the reactor's watermark");
                }
                let dir = reactor.dir.clone();
                drop(reactor);
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(reactor = %name, error = %e, "cannot remove the reactor's files");
                }
                tracing::info!(reactor = %name, "reactor deleted");
            }
        }
        for (name, logic) in wanted {
            match self.get(&name) {
                Err(_) => self.add(logic, None)?,
                Ok(reactor) if reactor.shared.logic.fingerprint() != logic.fingerprint() => {
                    tracing::info!(reactor = %name, "definition changed; rebuilding");
                    reactor.stop().await;
                    // The new task sees the new fingerprint and rebuilds once the old outbox has run.
                    self.add(logic, Some(reactor.shared.state.clone()))?;
                }
                Ok(_) => {}
            }
        }
        Ok(())
    }

    /// Rebuilds `name`'s state from history; actions already run are not repeated.
    pub async fn rebuild(&self, name: &str) -> Result<()> {
        let reactor = self.get(name)?;
        reactor.stop().await;
        reactor.shared.state.forget_fingerprint()?;
        self.add(reactor.shared.logic.clone(), Some(reactor.shared.state.clone()))
    }

    /// Resumes a failed reactor and re-drives what it parked.
    pub fn retry(&self, name: &str) -> Result<()> {
        self.get(name)?.shared.retry.notify_one();
        Ok(())
    }

    pub fn status(&self) -> Vec<ReactorStatus> {
        self.all().iter().map(|r| status_of(&r.shared)).collect()
    }

    /// One reactor's status.
    pub fn status_of(&self, name: &str) -> Result<ReactorStatus> {
        Ok(status_of(&self.get(name)?.shared))
    }

    /// A reactor's definition and state (the admin API reads saga instances from it).
    pub fn inspect(&self, name: &str) -> Result<(Arc<dyn Logic>, ReactorState)> {
        let reactor = self.get(name)?;
        Ok((reactor.shared.logic.clone(), reactor.shared.state.clone()))
    }

    /// The event store the reactors use.
    pub fn store(&self) -> &crate::store::EventStore {
        self.host.effects.store()
    }

    /// The running reactors' definitions.
    pub fn logics(&self) -> Vec<Arc<dyn Logic>> {
        self.all().iter().map(|r| r.shared.logic.clone()).collect()
    }

    /// The names of the running reactors.
    pub fn names(&self) -> Vec<String> {
        self.reactors.read().expect("lock").keys().cloned().collect()
    }

    /// Stops every reactor and waits for their tasks.
    pub async fn stop(&self) {
        self.cancel.cancel();
        for reactor in self.all() {
            reactor.stop().await;
        }
    }
}

/// This engine's name in the lease bucket, kept with its reactors' files.
fn engine_id(dir: &std::path::Path) -> Result<String> {
    let path = dir.join(".engine-id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        if !id.trim().is_empty() {
            return Ok(id.trim().to_string());
        }
    }
    let id = uuid::Uuid::new_v4().to_string();
    std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, &id)).map_err(Error::Io)?;
    Ok(id)
}

fn status_of(shared: &Shared) -> ReactorStatus {
    let (status, error) = match &*shared.status.lock().expect("lock") {
        Status::Starting => ("starting", None),
        Status::Running => ("running", None),
        Status::Rebuilding => ("rebuilding", None),
        Status::Standby => ("standby", None),
        Status::Stopped => ("stopped", None),
        Status::Failed(e) => ("failed", Some(e.clone())),
    };
    ReactorStatus {
        name: shared.logic.name().to_string(),
        kind: shared.logic.kind(),
        status,
        error,
        position: shared.position.load(Ordering::Relaxed),
        lag: shared.lag.load(Ordering::Relaxed),
        parked: shared.state.parked_count(),
        counters: shared.counters.lock().expect("lock").clone(),
    }
}
