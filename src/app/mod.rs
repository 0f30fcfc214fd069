//! Loading the whole config and running every component, with reload on config change or SIGHUP.

mod pins;
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
            let mut catalog = config.catalog(source);
            eddy_reactors::emitted(source, &mut catalog);
            (eddy_projections::load(source, &catalog, errors), eddy_reactors::load(source, config, &catalog, errors))
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
    #[error(transparent)]
    Http(#[from] crate::http::Error),
}

/// A running eddy: the engine and its components.
pub struct Running {
    pub engine: Engine,
    pub views: Arc<Views>,
    pub reactors: Arc<Reactors>,
    settings: Settings,
    http: Option<std::net::SocketAddr>,
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
        engine.commands().set_waiter(reactor::wait::Waiter::new(&reactors));
        let reactor_admin =
            reactor::admin_endpoints(engine.service(), &prefix).await.map_err(|e| Error::Service(e.to_string()))?;
        let stop = engine.stop_token();
        engine.own(tokio::spawn(eddy_projections::serve_queries(query, prefix, views.clone(), stop.clone())));
        engine.own(tokio::spawn(eddy_projections::serve_admin(admin, views.clone(), stop.clone())));
        engine.own(tokio::spawn(reactor::serve_admin(reactor_admin, reactors.clone(), stop)));
        runtime::round_trip(engine.client()).await?;
        if settings.engine.telemetry.metrics {
            crate::http::metrics::install();
        }
        let http = serve_http(&mut engine, &views, &reactors).await?;
        Ok(Running { engine, views, reactors, settings, http })
    }

    /// Where HTTP listens (`None` when `[http] listen = ""`).
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        self.http
    }

    /// The settings it runs.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Applies a new, already validated config to the running components; refused as a whole (logged) when
    /// it would change the states that running saga instances are on.
    pub async fn apply(&mut self, settings: Settings) {
        let pinned = pins::changed_under_instances(&self.reactors, &self.settings.reactors, &settings.reactors);
        if !pinned.is_empty() {
            for problem in &pinned {
                tracing::error!(error = %problem, "new config rejected");
            }
            tracing::error!("the new config would move running saga instances or re-partition a reactor; the running set stays as it is");
            return;
        }
        if let Err(e) = self.views.update(&settings.views).await {
            tracing::error!(error = %e, "applying the new views failed");
        }
        if let Err(e) = self.reactors.update(eddy_reactors::logics(&settings.reactors)).await {
            tracing::error!(error = %e, "applying the new reactors failed");
        }
        let changed = changed_aggregates(&self.settings.engine, &settings.engine);
        if !changed.is_empty() {
            self.engine.reload(&settings.engine);
            tracing::info!(aggregates = %changed.join(", "), "aggregate changes applied: every later command and read uses them");
        }
        let restart = restart_keys(&self.settings.engine, &settings.engine);
        if !restart.is_empty() {
            tracing::warn!(keys = %restart.join(", "), "these changes are NOT applied: they take effect after a restart");
        }
        // What runs: the new config, except the sections that only a restart changes.
        let mut settings = settings;
        settings.engine.nats = self.settings.engine.nats.clone();
        settings.engine.engine = self.settings.engine.engine.clone();
        self.settings = settings;
    }

    /// Stops: components first, then the engine (which drains and stops its server).
    pub async fn stop(self, immediate: CancellationToken) {
        self.reactors.stop().await;
        self.views.stop().await;
        self.engine.stop(immediate).await;
    }
}

/// Starts the HTTP listener, owned by the engine, unless `[http] listen` is empty.
async fn serve_http(
    engine: &mut Engine,
    views: &Arc<Views>,
    reactors: &Arc<Reactors>,
) -> Result<Option<std::net::SocketAddr>, Error> {
    let config = engine.config().clone();
    if !config.http.enabled() {
        return Ok(None);
    }
    let listen = config.http.listen.clone();
    let state = crate::http::AppState::new(crate::http::Handles {
        client: engine.client().clone(),
        store: engine.store().clone(),
        commands: engine.commands().clone(),
        views: views.clone(),
        reactors: reactors.clone(),
        service_id: engine.service().info().await.id,
        stop: engine.stop_token(),
        config,
    });
    let server = crate::http::serve(&listen, state, engine.stop_token()).await?;
    engine.own(server.task);
    Ok(Some(server.addr))
}

/// The aggregates added, removed or changed between two configs (a change is any in what `peers` advertises,
/// or in how events fold: see each aggregate's fingerprint; rules and emits are compared by their source).
fn changed_aggregates(old: &Config, new: &Config) -> Vec<String> {
    let names: std::collections::BTreeSet<&String> = old.aggregates.keys().chain(new.aggregates.keys()).collect();
    names
        .into_iter()
        .filter(|name| match (old.aggregates.get(*name), new.aggregates.get(*name)) {
            (Some(a), Some(b)) => {
                a.fingerprint != b.fingerprint || format!("{:?}", a.commands) != format!("{:?}", b.commands)
            }
            _ => true,
        })
        .cloned()
        .collect()
}

/// The `[nats]`, `[engine]`, `[http]`, `[log]` and `[telemetry]` keys that differ between two configs: the
/// connection, the stream, the engine's limits, the listener and the exporters are set up at start.
fn restart_keys(old: &Config, new: &Config) -> Vec<String> {
    let mut keys = Vec::new();
    let sections = [
        ("nats", serde_json::to_value(&old.nats), serde_json::to_value(&new.nats)),
        ("engine", serde_json::to_value(&old.engine), serde_json::to_value(&new.engine)),
        ("http", serde_json::to_value(&old.http), serde_json::to_value(&new.http)),
        ("log", serde_json::to_value(&old.log), serde_json::to_value(&new.log)),
        ("telemetry", serde_json::to_value(&old.telemetry), serde_json::to_value(&new.telemetry)),
    ];
    for (section, a, b) in sections {
        let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) = (a, b) else { continue };
        let names: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        keys.extend(names.into_iter().filter(|k| a.get(*k) != b.get(*k)).map(|k| format!("{section}.{k}")));
    }
    keys
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
                    tracing::info!(path = %path.display(), "config changed and valid");
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
