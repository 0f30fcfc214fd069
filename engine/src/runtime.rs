//! The engine's lifecycle: embedded server (or a configured one), connection, store, micro service, and
//! two-stage shutdown. `Engine::start` returns once commands are being accepted, so tests run it in-process.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::service::{Service, ServiceExt};
use async_nats::Client;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::command::{self, CommandService};
use crate::config::Config;
use crate::nats::{self, Embedded, NatsServer, Supervisor};
use crate::peers;
use crate::store::{self, EventStore};
use crate::upcast::Schemas;

/// The service name seen by `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS`.
pub const SERVICE_NAME: &str = "eddy";
/// Queue group of every endpoint, so several engines share the load.
pub const QUEUE_GROUP: &str = "eddy";

/// Errors of starting the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Nats(#[from] nats::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("micro service: {0}")]
    Service(String),
    #[error(transparent)]
    Mixed(#[from] peers::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The two stages of shutdown: the first signal drains, the second stops at once.
#[derive(Clone, Default)]
pub struct Shutdown {
    pub graceful: CancellationToken,
    pub immediate: CancellationToken,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }
}

/// A started engine.
pub struct Engine {
    config: Config,
    client: Client,
    store: EventStore,
    service: Service,
    commands: Arc<CommandService>,
    /// What it serves now, answered to peers (see `peers::serves_subject`).
    serves: Arc<RwLock<String>>,
    url: String,
    /// Cancelled to stop accepting work; child of nothing, so the owner decides when.
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    server: Option<(Supervisor, CancellationToken)>,
}

impl Engine {
    /// Starts the embedded nats-server when `nats.url` is absent, connects, prepares the stream and starts
    /// serving commands.
    pub async fn start(config: &Config) -> Result<Engine> {
        let (urls, server) = match &config.nats.url {
            Some(urls) => (urls.0.clone(), None),
            None => {
                let binary = nats::locate_binary()?;
                let server = NatsServer::start_with(&binary, &Embedded::from_config(config)).await?;
                tracing::info!(url = %server.url(), binary = %binary.display(), "embedded nats-server started");
                let token = CancellationToken::new();
                let url = server.url();
                (vec![url], Some((Supervisor::spawn(server, token.clone()), token)))
            }
        };
        let client = nats::connect(&urls, &config.nats, "eddy").await?;
        // Shown in logs and by `url()`: never with a password in it.
        let url = nats::redact_all(&urls);
        let store = EventStore::open(client.clone(), &config.engine).await?;
        store.set_schemas(Schemas::new(&config.aggregates));
        let service = client
            .service_builder()
            .description("eddy: workflow and saga engine on JetStream")
            .queue_group(QUEUE_GROUP)
            .metadata(peers::metadata(config))
            .start(SERVICE_NAME, env!("CARGO_PKG_VERSION"))
            .await
            .map_err(|e| Error::Service(e.to_string()))?;
        // Before taking any command: the service is up (so an engine starting at the same moment sees this one
        // too, and at worst both refuse), but no endpoint is.
        if let Err(e) = peers::check(&client, SERVICE_NAME, &service.info().await.id, config).await {
            let _stopped = service.stop().await;
            return Err(e.into());
        }
        let commands = Arc::new(CommandService::new(config, store.clone()));
        let stop = CancellationToken::new();
        let serves = Arc::new(RwLock::new(peers::fingerprint(config)));
        let subject = peers::serves_subject(&config.engine.api_prefix, &service.info().await.id);
        let answer = peers::answer_serves(client.clone(), subject, serves.clone(), stop.clone());
        let endpoint =
            command::endpoint(&service, &config.engine.api_prefix).await.map_err(|e| Error::Service(e.to_string()))?;
        let prefix = config.engine.api_prefix.clone();
        let cmds = commands.clone();
        let token = stop.clone();
        let tasks = vec![
            tokio::spawn(commands.snapshot_writer(stop.clone())),
            tokio::spawn(async move { command::serve(endpoint, &prefix, cmds, token).await }),
            tokio::spawn(answer),
        ];
        round_trip(&client).await?;
        // The absolute path: a relative data_dir resolves against the working directory, and an engine started
        // from elsewhere would otherwise start an empty store unnoticed.
        let data_dir = std::path::absolute(&config.engine.data_dir).unwrap_or_else(|_| config.engine.data_dir.clone());
        tracing::info!(%url, stream = %config.engine.stream, aggregates = config.aggregates.len(), data_dir = %data_dir.display(), "eddy is serving commands");
        Ok(Engine { config: config.clone(), client, store, service, commands, serves, url, stop, tasks, server })
    }

    /// Puts a reloaded config's aggregates in force: their commands, how their events are read and
    /// written, and what this engine tells peers it serves. `[nats]` and `[engine]` stay as started.
    pub fn reload(&mut self, config: &Config) {
        self.commands.update(&config.aggregates);
        self.store.set_schemas(Schemas::new(&config.aggregates));
        *self.serves.write().unwrap_or_else(|p| p.into_inner()) = peers::fingerprint(config);
        self.config.aggregates = config.aggregates.clone();
    }

    /// The NATS URLs the engine uses, comma-separated, with passwords and tokens redacted.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The engine's NATS client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The event store.
    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// The command service, for in-process callers.
    pub fn commands(&self) -> &Arc<CommandService> {
        &self.commands
    }

    /// The micro service, for other components to add endpoints to.
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// The config it runs.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A token cancelled when the engine stops accepting work.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Adds a task the engine owns: it must end soon after `stop_token()` is cancelled.
    pub fn own(&mut self, task: JoinHandle<()>) {
        self.tasks.push(task);
    }

    /// Runs until `shutdown.graceful`, then drains work in flight (at most 30s, or until
    /// `shutdown.immediate`), then stops the service and the embedded server.
    pub async fn run_until(self, shutdown: Shutdown) -> Result<()> {
        shutdown.graceful.cancelled().await;
        self.stop(shutdown.immediate).await;
        Ok(())
    }

    /// Stops: drains, or aborts when `immediate` is cancelled.
    pub async fn stop(mut self, immediate: CancellationToken) {
        tracing::info!("shutting down: draining work in flight");
        self.stop.cancel();
        let drain = futures::future::join_all(self.tasks.iter_mut());
        tokio::select! {
            _ = drain => {}
            _ = immediate.cancelled() => {
                tracing::warn!("second signal: stopping at once");
                self.tasks.iter().for_each(|t| t.abort());
            }
            _ = tokio::time::sleep(Duration::from_secs(30)) => {
                tracing::warn!("work still in flight after 30s; aborting it");
                self.tasks.iter().for_each(|t| t.abort());
            }
        }
        // Both wait on the server, which may be gone: the second signal does not wait for them.
        tokio::select! {
            _ = immediate.cancelled() => {}
            stopped = self.service.stop() => if let Err(e) = stopped {
                tracing::warn!(error = %e, "could not stop the micro service cleanly");
            },
        }
        tokio::select! {
            _ = immediate.cancelled() => {}
            flushed = self.client.flush() => if let Err(e) = flushed {
                tracing::warn!(error = %e, "could not flush the NATS connection");
            },
        }
        if let Some((supervisor, token)) = self.server.take() {
            token.cancel();
            supervisor.join().await;
        }
        tracing::info!("eddy stopped");
    }
}

/// Waits until the server has processed everything this client sent so far, subscriptions included.
/// `Client::flush` only empties the socket buffer; a request answered by the server on the same connection
/// proves the earlier SUBs were handled, so a client that connects afterwards finds the endpoints.
pub async fn round_trip(client: &Client) -> Result<()> {
    async_nats::jetstream::new(client.clone())
        .query_account()
        .await
        .map(drop)
        .map_err(|e| Error::Service(format!("server round trip: {e}")))
}

/// Starts the engine and runs it until shutdown.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<()> {
    Engine::start(&config).await?.run_until(shutdown).await
}
