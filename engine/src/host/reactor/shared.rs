//! What a reactor's holder (`runner/`) and its standby (`standby.rs`) share: the state and status the admin
//! API reads, the connections every reactor uses, and the two ways they wait out a failure.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::lease::Leases;
use super::partition::Partition;
use super::state::{Changes, Counters, Error as StateError};
use super::watermark::Watermarks;
use super::{Effects, Logic, Parked, Pending, ReactorState};
use crate::backoff::Backoff;

/// What operators see a reactor doing.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Starting,
    Running,
    /// Folding history (first deployment, lost state, changed definition) with its actions suppressed.
    Rebuilding,
    /// Another engine holds the reactor's lease and runs it.
    Standby,
    Stopped,
    /// Stopped at an event or action by `on_error = "stop"`; `eddy reactors retry` resumes.
    Failed(String),
}

/// What the host and the admin API share with a reactor's task.
pub struct Shared {
    pub logic: Arc<dyn Logic>,
    /// Which part of the reactor's keys this task runs (the whole reactor unless `partitions > 1`).
    pub partition: Partition,
    /// The partition's name in the lease and watermark buckets: the reactor's name when it is whole.
    pub key: String,
    /// The engine holding the lease when another does, as its lease says.
    pub holder: Mutex<Option<String>>,
    pub state: ReactorState,
    pub status: Mutex<Status>,
    pub position: AtomicU64,
    pub lag: AtomicU64,
    pub counters: Mutex<Counters>,
    /// `eddy reactors retry`: resume after a stop, re-drive what is parked.
    pub retry: Notify,
    pub cancel: CancellationToken,
}

impl Shared {
    pub fn new(
        logic: Arc<dyn Logic>,
        partition: Partition,
        state: ReactorState,
        cancel: CancellationToken,
    ) -> Result<Self, StateError> {
        Ok(Self {
            key: partition.key(logic.name()),
            partition,
            holder: Mutex::new(None),
            position: AtomicU64::new(state.bookmark()?),
            counters: Mutex::new(state.counters()?),
            logic,
            state,
            status: Mutex::new(Status::Starting),
            lag: AtomicU64::new(0),
            retry: Notify::new(),
            cancel,
        })
    }

    pub(super) fn name(&self) -> &str {
        self.logic.name()
    }

    /// Whether this partition decides `event`: the reactor reads it and its key is this partition's.
    pub(super) fn reads(&self, event: &crate::envelope::StoredEvent) -> bool {
        self.logic.reads(event)
            && (self.partition.count <= 1 || self.partition.owns(self.logic.partition_key(event).as_deref()))
    }

    pub(super) fn set_status(&self, status: Status) {
        *self.status.lock().expect("lock") = status;
    }
}

/// What every reactor's task uses.
pub struct Host {
    pub effects: Effects,
    pub watermarks: Watermarks,
    pub leases: Leases,
}

/// Commits a batch of the reactor's state, retrying a failing disk with backoff until it works; false if
/// `cancel` comes first. The holder and a standby both commit this way.
pub(super) async fn commit_retrying(
    shared: &Shared,
    name: &str,
    cancel: &CancellationToken,
    changes: &Changes,
    bookmark: u64,
    outbox: &[Pending],
    parked: &[Parked],
) -> bool {
    let mut backoff = Backoff::failure();
    loop {
        let counters = shared.counters.lock().expect("lock").clone();
        let committed = match shared.state.commit(changes, bookmark, outbox, parked, &counters) {
            Ok(()) if outbox.is_empty() => Ok(()),
            Ok(()) => shared.state.flush().await,
            Err(e) => Err(e),
        };
        match committed {
            Ok(()) => return true,
            Err(e) => {
                tracing::error!(reactor = %name, seq = bookmark, error = %e, "cannot store the reactor's state; retrying");
                if !backoff.wait(cancel).await {
                    return false;
                }
            }
        }
    }
}

/// Retries `f` with backoff until it works; `None` if cancelled first. For talking to NATS, which a reactor
/// waits for for as long as it takes.
pub(super) async fn retry_forever<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
    cancel: &CancellationToken,
    reactor: &str,
    what: &str,
    mut f: impl FnMut() -> F,
) -> Option<T> {
    // Capped low: what fails here is NATS itself, and once it is back the reactor should go on within a
    // second, not sit out a long backoff.
    let mut backoff = Backoff::reconnect();
    loop {
        match f().await {
            Ok(v) => return Some(v),
            Err(e) => {
                tracing::warn!(%reactor, error = %e, retry_in = ?backoff.peek(), "{what} failed; retrying");
                if !backoff.wait(cancel).await {
                    return None;
                }
            }
        }
    }
}
