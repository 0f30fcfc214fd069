//! Cold loads from a snapshot: an aggregate instance not in the cache starts from its latest snapshot (see
//! `crate::store::snapshots`) and folds only the events after it, instead of its whole history. A
//! snapshot is taken after every `snapshot_every` events and queued for the writer, a task the engine owns,
//! so no command waits for it.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::cache::Entry;
use super::CommandService;
use crate::aggregate::Aggregate;
use crate::store::snapshots::{Snapshot, Snapshots};

/// Snapshots waiting for the writer. Past this a snapshot is skipped (and logged): it is only an
/// optimisation, and the instance's next one comes `snapshot_every` events later.
const QUEUED: usize = 1024;

/// One snapshot to store.
struct Job {
    aggregate: String,
    id: String,
    snapshot: Snapshot,
}

/// The writer's queue; its receiving end goes to the task [`CommandService::snapshot_writer`] returns.
pub(super) struct Queue {
    tx: mpsc::Sender<Job>,
    rx: Mutex<Option<mpsc::Receiver<Job>>>,
}

impl Queue {
    pub(super) fn new() -> Self {
        let (tx, rx) = mpsc::channel(QUEUED);
        Queue { tx, rx: Mutex::new(Some(rx)) }
    }
}

impl CommandService {
    /// Starts a fresh entry from the aggregate's snapshot, if it has a usable one.
    pub(super) async fn restore_snapshot(&self, aggregate: &Aggregate, id: &str, entry: &mut Entry) {
        if aggregate.snapshot_every == 0 || entry.last_seq != 0 {
            return;
        }
        let fingerprint = Entry::snapshot_fingerprint(&aggregate.fingerprint);
        if let Some(snapshot) = self.snapshots.get(&aggregate.name, id, &fingerprint).await {
            entry.restore(snapshot);
        }
    }

    /// Queues a snapshot when `snapshot_every` events have been folded since the last one.
    pub(super) fn maybe_snapshot(&self, aggregate: &Aggregate, id: &str, entry: &mut Entry) {
        let every = aggregate.snapshot_every;
        if every == 0 || entry.version < entry.snapshot_version + every {
            return;
        }
        entry.snapshot_version = entry.version;
        let job = Job {
            aggregate: aggregate.name.clone(),
            id: id.to_string(),
            snapshot: entry.snapshot(&aggregate.fingerprint),
        };
        if let Err(e) = self.snapshot_queue.tx.try_send(job) {
            let (why, job) = match e {
                mpsc::error::TrySendError::Full(job) => ("the snapshot writer is behind", job),
                mpsc::error::TrySendError::Closed(job) => ("the engine is stopping", job),
            };
            tracing::warn!(aggregate = %job.aggregate, id = %job.id, version = entry.version, "{why}; snapshot skipped (a cold load folds the events after the previous one)");
        }
    }

    /// The task that stores the queued snapshots, for the engine to own: it runs until `stop`, then writes
    /// what is still queued (the engine's drain bounds that; a second signal aborts it). Only the first call
    /// gets the queue; a later one returns a task that ends at once.
    pub fn snapshot_writer(&self, stop: CancellationToken) -> impl Future<Output = ()> + Send + 'static {
        let rx = self.snapshot_queue.rx.lock().expect("lock").take();
        let snapshots = Arc::clone(&self.snapshots);
        async move {
            if let Some(rx) = rx {
                write(&snapshots, rx, stop).await;
            }
        }
    }
}

async fn write(snapshots: &Snapshots, mut rx: mpsc::Receiver<Job>, stop: CancellationToken) {
    loop {
        tokio::select! {
            // What is queued goes first, so a stop never overtakes it.
            biased;
            job = rx.recv() => match job {
                Some(job) => snapshots.put(&job.aggregate, &job.id, &job.snapshot).await,
                None => return,
            },
            _ = stop.cancelled() => break,
        }
    }
    rx.close();
    let mut drained = 0;
    while let Some(job) = rx.recv().await {
        snapshots.put(&job.aggregate, &job.id, &job.snapshot).await;
        drained += 1;
    }
    tracing::debug!(drained, "snapshot writer stopped");
}
