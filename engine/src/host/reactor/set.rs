//! The running reactors: one task per partition (one for a whole reactor), started, stopped, rebuilt and re-driven as the config and the
//! operators ask, without touching the others.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::lease::Leases;
use super::partition::{Partition, States};
use super::runner;
use super::shared::{Host, Shared};
use super::spread::{Seat, Spread};
use super::status::{status_of, ReactorStatus};
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

/// One partition's task (the whole reactor's, when it has one partition).
struct Part {
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
    dir: PathBuf,
}

/// A running reactor: its partitions, and while it has more than one, the task that spreads them over the
/// engines.
struct Reactor {
    logic: Arc<dyn Logic>,
    parts: Vec<Part>,
    /// Parent of the partitions' tokens.
    cancel: CancellationToken,
    spread: Mutex<Option<JoinHandle<()>>>,
}

impl Reactor {
    async fn stop(&self) {
        self.cancel.cancel();
        let spread = self.spread.lock().expect("lock").take();
        let tasks = self.parts.iter().filter_map(|p| p.task.lock().expect("lock").take());
        for task in tasks.chain(spread) {
            if let Err(e) = task.await {
                tracing::error!(reactor = %self.logic.name(), error = %e, "reactor task ended abnormally");
            }
        }
    }

    fn states(&self) -> States {
        States(self.parts.iter().map(|p| (p.shared.partition, p.shared.state.clone())).collect())
    }

    fn status(&self, engine: &str) -> ReactorStatus {
        let shared: Vec<&Shared> = self.parts.iter().map(|p| p.shared.as_ref()).collect();
        status_of(&shared, engine)
    }
}

/// Every reactor of the engine.
pub struct Reactors {
    reactors: RwLock<BTreeMap<String, Arc<Reactor>>>,
    host: Arc<Host>,
    dir: PathBuf,
    /// Parent of every reactor's token: stopping the engine stops them all.
    cancel: CancellationToken,
    /// This engine's id in the lease bucket.
    engine: String,
}

impl Reactors {
    /// Starts `logics`, with their files under `<data_dir>/reactors/`.
    pub async fn start(logics: Vec<Arc<dyn Logic>>, effects: Effects, engine: &EngineConfig) -> Result<Arc<Self>> {
        let watermarks = Watermarks::open(effects.store().jetstream(), &engine.stream, engine.replicas).await?;
        let dir = engine.data_dir.join("reactors");
        let holder = engine_id(&dir)?;
        let leases = Leases::open(effects.store().jetstream(), &engine.stream, engine.replicas, holder.clone()).await?;
        let reactors = Arc::new(Reactors {
            engine: holder,
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

    /// Starts `logic`'s partitions, on `states` when it is restarted (a rebuild, a changed definition).
    fn add(&self, logic: Arc<dyn Logic>, states: Option<States>) -> Result<()> {
        let name = logic.name().to_string();
        let count = logic.policy().partitions.max(1);
        let cancel = self.cancel.child_token();
        let spread = (count > 1).then(|| {
            let (kv, holder) = self.host.leases.store();
            Arc::new(Spread::new(&name, count, kv, holder))
        });
        let mut parts = Vec::new();
        for partition in Partition::all(count) {
            let dir = self.dir.join(partition.key(&name));
            let state = match states.as_ref().and_then(|s| s.0.iter().find(|(p, _)| *p == partition)) {
                Some((_, state)) => state.clone(),
                None => ReactorState::open(&dir)?,
            };
            let shared = Arc::new(Shared::new(logic.clone(), partition, state, cancel.child_token())?);
            let seat = Seat { spread: spread.clone(), index: partition.index };
            let run = runner::run(shared.clone(), self.host.clone(), seat);
            let task = if count > 1 {
                tokio::spawn(run.instrument(tracing::info_span!("partition", partition = %shared.key)))
            } else {
                tokio::spawn(run)
            };
            parts.push(Part { shared, task: Mutex::new(Some(task)), dir });
        }
        let spread = spread.map(|s| tokio::spawn(s.run(cancel.clone())));
        let reactor = Arc::new(Reactor { logic, parts, cancel, spread: Mutex::new(spread) });
        self.reactors.write().expect("lock").insert(name.clone(), reactor);
        tracing::info!(reactor = %name, partitions = count, "reactor started");
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
                self.forget_watermarks(name).await;
                let dirs: Vec<PathBuf> = reactor.parts.iter().map(|p| p.dir.clone()).collect();
                drop(reactor);
                for dir in dirs {
                    if let Err(e) = std::fs::remove_dir_all(&dir) {
                        tracing::warn!(reactor = %name, error = %e, "cannot remove the reactor's files");
                    }
                }
                tracing::info!(reactor = %name, "reactor deleted");
            }
        }
        for (name, logic) in wanted {
            match self.get(&name) {
                Err(_) => self.add(logic, None)?,
                Ok(reactor) if reactor.logic.policy().partitions != logic.policy().partitions => {
                    // Refused before it gets here (the app's pins); kept as a second line of defence.
                    tracing::error!(reactor = %name, "`partitions` changes only at a restart of every engine; the reactor runs on as it was");
                }
                Ok(reactor) if reactor.logic.fingerprint() != logic.fingerprint() => {
                    tracing::info!(reactor = %name, "definition changed; rebuilding");
                    reactor.stop().await;
                    // The new tasks see the new fingerprint and rebuild once the old outbox has run.
                    self.add(logic, Some(reactor.states()))?;
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
        for part in &reactor.parts {
            part.shared.state.forget_fingerprint()?;
        }
        self.add(reactor.logic.clone(), Some(reactor.states()))
    }

    /// Resumes a failed reactor and re-drives what it parked, in every partition this engine holds.
    pub fn retry(&self, name: &str) -> Result<()> {
        for part in &self.get(name)?.parts {
            part.shared.retry.notify_one();
        }
        Ok(())
    }

    pub fn status(&self) -> Vec<ReactorStatus> {
        self.all().iter().map(|r| r.status(&self.engine)).collect()
    }

    /// One reactor's status.
    pub fn status_of(&self, name: &str) -> Result<ReactorStatus> {
        Ok(self.get(name)?.status(&self.engine))
    }

    /// A reactor's definition and state across its partitions (the admin API reads saga instances from it).
    pub fn inspect(&self, name: &str) -> Result<(Arc<dyn Logic>, States)> {
        let reactor = self.get(name)?;
        Ok((reactor.logic.clone(), reactor.states()))
    }

    /// This engine's id in the lease bucket (`holder` of the partitions it runs).
    pub fn engine_id(&self) -> &str {
        &self.engine
    }

    /// Removes the watermarks of a deleted reactor, under whatever partition layout they were written.
    async fn forget_watermarks(&self, name: &str) {
        let keys = match self.host.watermarks.layouts(name).await {
            Ok(marks) => marks.into_iter().map(|(k, _)| k).collect(),
            Err(e) => {
                tracing::warn!(reactor = %name, error = %e, "cannot list the reactor's watermarks");
                vec![name.to_string()]
            }
        };
        for key in keys {
            if let Err(e) = self.host.watermarks.remove(&key).await {
                tracing::warn!(reactor = %name, error = %e, "cannot remove the reactor's watermark");
            }
        }
    }

    /// The event store the reactors use.
    pub fn store(&self) -> &crate::store::EventStore {
        self.host.effects.store()
    }

    /// The running reactors' definitions.
    pub fn logics(&self) -> Vec<Arc<dyn Logic>> {
        self.all().iter().map(|r| r.logic.clone()).collect()
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
