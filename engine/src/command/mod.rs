//! The command side: `<api_prefix>.cmd.<aggregate>.<command>` served on the `eddy` micro service.

mod cache;
mod digest;
mod execute;
mod fence;
mod snapshot;
mod stall;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_nats::service::{endpoint::Endpoint, Service};
use async_nats::HeaderMap;
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{ErrorCode, Failure, Reply};
pub use execute::CommandContext;
pub use fence::{Fence, HeldLease, LEASE_HEADER};

use crate::aggregate::Aggregate;
use crate::config::Config;
use crate::envelope::headers;
use crate::store::snapshots::Snapshots;
use crate::store::EventStore;

/// How many commands one engine decides at once; more wait in NATS.
const MAX_IN_FLIGHT: usize = 4096;

/// Decides commands against the event store.
pub struct CommandService {
    /// Replaced whole by a config reload ([`CommandService::update`]).
    aggregates: RwLock<BTreeMap<String, Arc<Aggregate>>>,
    store: EventStore,
    cache: cache::Cache,
    window: chrono::Duration,
    fences: fence::Fences,
    snapshots: Arc<Snapshots>,
    /// Snapshots waiting for the engine's writer task.
    snapshot_queue: snapshot::Queue,
    /// Finishes the replies of commands sent with `Eddy-Wait`; set once the reactors run.
    waiter: std::sync::OnceLock<Arc<dyn crate::api::StartWait>>,
}

impl CommandService {
    pub fn new(config: &Config, store: EventStore) -> Self {
        Self {
            aggregates: RwLock::new(config.aggregates.clone()),
            cache: cache::Cache::new(config.engine.cache_size),
            window: chrono::Duration::seconds(config.engine.dedup_window_secs as i64),
            fences: fence::Fences::new(),
            snapshots: Arc::new(Snapshots::new(store.jetstream().clone(), &config.engine)),
            snapshot_queue: snapshot::Queue::new(),
            store,
            waiter: std::sync::OnceLock::new(),
        }
    }

    /// Sets what answers `Eddy-Wait` (once; later calls are ignored).
    pub fn set_waiter(&self, waiter: Arc<dyn crate::api::StartWait>) {
        let _already = self.waiter.set(waiter);
    }

    /// Runs a command and, when `wait` is asked for and it succeeded, waits for the instances it starts.
    pub async fn execute_waiting(
        &self,
        aggregate: &str,
        command: &str,
        body: &[u8],
        ctx: CommandContext,
        wait: Option<std::time::Duration>,
    ) -> Arc<Reply> {
        let reply = self.execute(aggregate, command, body, ctx).await;
        match (wait, self.waiter.get()) {
            (Some(wait), Some(waiter)) if reply.error.is_none() => Arc::new(waiter.wait(&reply, wait).await),
            _ => reply,
        }
    }

    /// Whether this engine decides `aggregate`'s commands itself.
    pub fn has(&self, aggregate: &str) -> bool {
        self.aggregate(aggregate).is_some()
    }

    /// The definition of `name` in force.
    pub fn aggregate(&self, name: &str) -> Option<Arc<Aggregate>> {
        self.aggregates.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// Puts a reloaded config's aggregates in force for every later command. The cached states of an
    /// aggregate whose folding changed (its `apply`s, event types, versions: see its fingerprint) are
    /// dropped, so they are folded again under the new rules; a command in flight finishes on the old ones.
    pub fn update(&self, aggregates: &BTreeMap<String, Arc<Aggregate>>) {
        let mut current = self.aggregates.write().unwrap_or_else(|p| p.into_inner());
        for (name, old) in current.iter() {
            if aggregates.get(name).is_none_or(|new| new.fingerprint != old.fingerprint) {
                self.cache.forget(name);
            }
        }
        *current = aggregates.clone();
    }

    /// The event store this service appends to.
    pub fn store(&self) -> &EventStore {
        &self.store
    }
}

/// The longest id a header may carry (`Eddy-Command-Id` and friends): ids travel into every event's
/// headers and `Nats-Msg-Id`, so they are bounded like the aggregate id.
pub const MAX_HEADER_ID: usize = 256;

/// Reads the optional command headers; a malformed `Eddy-Expected-Version`, or an id that is too long or
/// holds control characters, is `invalid`.
pub fn context_from_headers(h: Option<&HeaderMap>) -> Result<CommandContext, Failure> {
    let get = |name: &str| h.and_then(|h| h.get(name)).map(|v| v.as_str().to_string()).filter(|v| !v.is_empty());
    let id = |name: &str| match get(name) {
        Some(v) if v.len() > MAX_HEADER_ID || v.chars().any(char::is_control) => Err(Failure::new(
            ErrorCode::Invalid,
            format!("header {name}: at most {MAX_HEADER_ID} bytes, without control characters"),
        )),
        other => Ok(other),
    };
    let expected_version = match get(headers::EXPECTED_VERSION) {
        Some(v) => Some(v.trim().parse::<u64>().map_err(|_| {
            Failure::new(ErrorCode::Invalid, format!("header {}: `{v}` is not a version", headers::EXPECTED_VERSION))
        })?),
        None => None,
    };
    let fence = match id(LEASE_HEADER)? {
        Some(v) => Some(Fence::parse(&v).ok_or_else(|| {
            Failure::new(ErrorCode::Invalid, format!("header {LEASE_HEADER}: `{v}` is not <reactor>=<holder>"))
        })?),
        None => None,
    };
    Ok(CommandContext {
        command_id: id(headers::COMMAND_ID)?,
        expected_version,
        correlation_id: id(headers::CORRELATION_ID)?,
        causation_id: id(headers::CAUSATION_ID)?,
        fence,
        // A malformed traceparent is dropped, as W3C asks: the command starts a trace of its own.
        traceparent: crate::telemetry::TraceParent::from_headers(h),
    })
}

/// Adds the command endpoint to `service`; requests queue in NATS until [`serve`] reads them.
pub async fn endpoint(service: &Service, api_prefix: &str) -> Result<Endpoint, async_nats::Error> {
    service.endpoint_builder().name("cmd").add(format!("{api_prefix}.cmd.>")).await
}

/// Serves commands from `endpoint` until `shutdown`, then waits for the commands in flight.
pub async fn serve(
    mut endpoint: Endpoint,
    api_prefix: &str,
    commands: Arc<CommandService>,
    shutdown: CancellationToken,
) {
    let prefix = format!("{api_prefix}.cmd.");
    let tracker = TaskTracker::new();
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut gate = stall::Gate::new(commands.store().client().clone());
    loop {
        let request = if gate.draining() {
            // The queue is looked at first: `settle` runs only when it is empty.
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                request = endpoint.next() => request,
                () = gate.settle() => continue,
            }
        } else {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                request = endpoint.next() => request,
            }
        };
        let Some(request) = request else { break };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        // Read now, so it is judged now: a request read across a stall may have been sent again elsewhere.
        let admitted = gate.admit();
        let commands = commands.clone();
        let prefix = prefix.clone();
        tracker.spawn(async move {
            let reply = async {
                match admitted {
                    Ok(()) => handle(&commands, &prefix, &request.message).await,
                    Err(refused) => Arc::new(Reply::failure(refused)),
                }
            };
            crate::api::answer(&request, reply).await;
            drop(permit);
        });
    }
    drop(endpoint);
    tracker.close();
    tracker.wait().await;
}

async fn handle(commands: &CommandService, prefix: &str, msg: &async_nats::Message) -> Arc<Reply> {
    let target = msg.subject.as_str().strip_prefix(prefix).unwrap_or_default();
    let Some((aggregate, command)) = target.split_once('.').filter(|(_, c)| !c.contains('.')) else {
        return Arc::new(Reply::failure(Failure::new(
            ErrorCode::NotFound,
            format!("`{}` is not {prefix}<aggregate>.<command>", msg.subject),
        )));
    };
    let wait = crate::api::wait_of(msg.headers.as_ref());
    match context_from_headers(msg.headers.as_ref()).and_then(|ctx| Ok((ctx, wait?))) {
        Ok((ctx, wait)) => commands.execute_waiting(aggregate, command, &msg.payload, ctx, wait).await,
        Err(failure) => Arc::new(Reply::failure(failure)),
    }
}
