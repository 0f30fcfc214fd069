//! What handlers are given: the engine's handles, shared by every room.

use std::ops::Deref;
use std::sync::Arc;

use async_nats::Client;
use eddy_engine::command::CommandService;
use eddy_engine::config::Config;
use eddy_engine::host::reactor::Reactors;
use eddy_engine::store::EventStore;
use eddy_projections::Views;
use tokio_util::sync::CancellationToken;

/// The engine's handles, as a running eddy has them.
pub struct Handles {
    /// The engine's NATS connection.
    pub client: Client,
    /// The config the engine started with (aggregates and `[http]` change only with a restart).
    pub config: Config,
    /// The event store.
    pub store: EventStore,
    /// The command service, for in-process command calls.
    pub commands: Arc<CommandService>,
    /// The read views.
    pub views: Arc<Views>,
    /// The reactors (rules and sagas).
    pub reactors: Arc<Reactors>,
    /// This engine's micro-service id (`$SRV.INFO.eddy.<id>`).
    pub service_id: String,
    /// Cancelled when the engine stops taking work; long-lived responses (event streams) end with it.
    pub stop: CancellationToken,
}

/// Cheap to clone: every handler gets one.
#[derive(Clone)]
pub struct AppState(Arc<Handles>);

impl AppState {
    pub fn new(handles: Handles) -> Self {
        Self(Arc::new(handles))
    }
}

impl Deref for AppState {
    type Target = Handles;

    fn deref(&self) -> &Handles {
        &self.0
    }
}
