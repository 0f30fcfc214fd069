//! Projections: read views built in sled by one worker each, served over NATS request-reply with
//! read-your-writes (`min_seq`), and rebuilt blue/green without downtime.

mod apply;
pub mod config;
mod query;
mod scan;
mod store;
mod view;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use eddy_engine::store::EventStore;

pub use apply::{apply_event, Documents, NoDocuments};
pub use config::{load, ViewDef};
pub use query::{admin_endpoints, query_endpoint, serve_admin, serve_queries};
pub use store::{Changes, ViewStore};
pub use view::{View, ViewStatus};

/// Errors of the projections.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("view files: {0}")]
    Io(#[from] std::io::Error),
    #[error("no view `{0}`")]
    UnknownView(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every view of the engine.
pub struct Views {
    views: RwLock<BTreeMap<String, Arc<View>>>,
    events: EventStore,
    dir: PathBuf,
}

impl Views {
    /// Opens (or starts building) every view in `defs`, with their files under `<data_dir>/views/`.
    pub fn start(
        defs: &BTreeMap<String, ViewDef>,
        events: EventStore,
        data_dir: &std::path::Path,
    ) -> Result<Arc<Views>> {
        let views = Arc::new(Views { views: RwLock::new(BTreeMap::new()), events, dir: data_dir.join("views") });
        for def in defs.values() {
            views.add(def)?;
        }
        Ok(views)
    }

    fn add(&self, def: &ViewDef) -> Result<()> {
        let view = View::open(Arc::new(def.clone()), &self.dir.join(&def.name), self.events.clone())?;
        self.views.write().expect("lock").insert(def.name.clone(), view);
        tracing::info!(view = %def.name, "view started");
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<Arc<View>> {
        self.views.read().expect("lock").get(name).cloned()
    }

    fn all(&self) -> Vec<Arc<View>> {
        self.views.read().expect("lock").values().cloned().collect()
    }

    /// Brings the running views to `defs`: new ones build from the beginning, deleted ones stop and their
    /// files go, changed ones rebuild beside the old copy.
    pub async fn update(&self, defs: &BTreeMap<String, ViewDef>) -> Result<()> {
        let running: Vec<String> = self.views.read().expect("lock").keys().cloned().collect();
        for name in running.iter().filter(|n| !defs.contains_key(*n)) {
            let removed = self.views.write().expect("lock").remove(name);
            if let Some(view) = removed {
                view.delete().await;
                tracing::info!(view = %name, "view deleted");
            }
        }
        for def in defs.values() {
            match self.get(&def.name) {
                None => self.add(def)?,
                Some(view) if view.def().fingerprint != def.fingerprint => {
                    tracing::info!(view = %def.name, "definition changed; rebuilding beside the old copy");
                    view.rebuild(Arc::new(def.clone()))?;
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Starts a blue/green rebuild of `name` with its current definition.
    pub fn rebuild(&self, name: &str) -> Result<()> {
        let view = self.get(name).ok_or_else(|| Error::UnknownView(name.to_string()))?;
        view.rebuild(view.def())
    }

    pub async fn status(&self) -> Vec<ViewStatus> {
        let mut out = Vec::new();
        for view in self.all() {
            out.push(view.status().await);
        }
        out
    }

    /// Stops every worker.
    pub async fn stop(&self) {
        for view in self.all() {
            view.stop().await;
        }
    }
}
