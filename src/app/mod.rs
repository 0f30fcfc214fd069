//! Loading the whole config and running every component, with reload on config change or SIGHUP.

mod reload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use eddy_engine::config::{Config, ConfigErrors};
use eddy_engine::host::reactor::{self, Effects, Reactors};
use eddy_engine::runtime::{self, Engine, Shutdown};
use eddy_projections::{ViewDef, Views};
use tokio_util::sync::CancellationToken;

/// Everything a config declares.
#[derive(Debug, Clone)]
pub struct Settings {
    /// NATS, engine settings and aggregates.
    pub engine: Config,
    /// Read views by name.
    pub views: BTreeMap<String, ViewDef>,
    /// Reactors (rules and sagas), in name order.
    pub reactors: Vec<eddy_reactors::Reactor>,
}

/// Loads and validates every section of the config at `path`, reporting every error at once.
pub fn load(path: &Path) -> Result<Settings, ConfigErrors> {
    let (engine, (views, reactors)) =
        Config::load_with(path, &["projections", "reactors"], |source, config, errors| {
            (eddy_projections::load(source, errors), eddy_reactors::load(source, config, errors))
        })?;
    Ok(Settings { engine, views, reactors })
}

/// Errors of running eddy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Engine(#[from] runtime::Error),
    #[error(transparent)]
    Views(#[from] eddy_projections::Error),
    #[error(transparent)]
    Reactors(#[from] reactor::Error),
    #[error("micro service: {0}")]
    Service(String),
}

/// A running eddy: the engine and its components.
pub struct Running {
    pub engine: Engine,
    pub views: Arc<Views>,
    pub reactors: Arc<Reactors>,
    settings: Settings,
}

impl Running {
    /// Starts the engine, the views and their endpoints. Returns once every endpoint is subscribed.
    pub async fn start(settings: Settings) -> Result<Running, Error> {
        let mut engine = Engine::start(&settings.engine).await?;
        let views = Views::start(&settings.views, engine.store().clone(), &settings.engine.engine.data_dir)?;
        let prefix = settings.engine.engine.api_prefix.clone();
        let query = eddy_projections::query_endpoint(engine.service(), &prefix)
            .await
            .map_err(|e| Error::Service(e.to_string()))?;
        let admin = eddy_projections::admin_endpoints(engine.service(), &prefix)
            .await
            .map_err(|e| Error::Service(e.to_string()))?;
        let effects = Effects::new(engine.commands().clone(), engine.client().clone(), prefix.clone());
        let reactors =
            Reactors::start(eddy_reactors::logics(&settings.reactors), effects, &settings.engine.engine).await?;
        let reactor_admin =
            reactor::admin_endpoints(engine.service(), &prefix).await.map_err(|e| Error::Service(e.to_string()))?;
        let stop = engine.stop_token();
        engine.own(tokio::spawn(eddy_projections::serve_queries(query, prefix, views.clone(), stop.clone())));
        engine.own(tokio::spawn(eddy_projections::serve_admin(admin, views.clone(), stop.clone())));
        engine.own(tokio::spawn(reactor::serve_admin(reactor_admin, reactors.clone(), stop)));
        runtime::round_trip(engine.client()).await?;
        Ok(Running { engine, views, reactors, settings })
    }

    /// The settings it runs.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Applies a new, already validated config to the running components.
    pub async fn apply(&mut self, settings: Settings) {
        if let Err(e) = self.views.update(&settings.views).await {
            tracing::error!(error = %e, "applying the new views failed");
        }
        if let Err(e) = self.reactors.update(eddy_reactors::logics(&settings.reactors)).await {
            tracing::error!(error = %e, "applying the new reactors failed");
        }
        if settings.engine.aggregates.keys().ne(self.settings.engine.aggregates.keys()) {
            tracing::warn!("aggregate changes take effect after a restart");
        }
        self.settings = settings;
    }

    /// Stops: components first, then the engine (which drains and stops its server).
    pub async fn stop(self, immediate: CancellationToken) {
        self.reactors.stop().await;
        self.views.stop().await;
        self.engine.stop(immediate).await;
    }
}

/// Runs eddy until `shutdown`, reloading when the config at `path` changes or on SIGHUP.
pub async fn run(path: PathBuf, settings: Settings, shutdown: Shutdown) -> Result<(), Error> {
    let path = path.as_path();
    let mut running = Running::start(settings).await?;
    let mut reloads = reload::watch(path.to_path_buf(), shutdown.graceful.clone());
    loop {
        tokio::select! {
            _ = shutdown.graceful.cancelled() => break,
            Some(()) = reloads.recv() => match load(path) {
                Ok(settings) => {
                    tracing::info!(path = %path.display(), "config changed; applying it");
                    running.apply(settings).await;
                }
                Err(errors) => {
                    for e in &errors.0 {
                        tracing::error!(error = %e, "new config rejected");
                    }
                    tracing::error!(count = errors.len(), "the new config has errors; the running set stays as it is");
                }
            },
        }
    }
    running.stop(shutdown.immediate).await;
    Ok(())
}
