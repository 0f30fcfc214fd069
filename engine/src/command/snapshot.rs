//! Cold loads from a snapshot: an aggregate instance not in the cache starts from its latest snapshot (see
//! `crate::store::snapshots`) and folds only the events after it, instead of its whole history. A
//! snapshot is taken after every `snapshot_every` events, written in the background so no command waits
//! for it.

use std::sync::Arc;

use super::cache::Entry;
use super::CommandService;
use crate::aggregate::Aggregate;

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

    /// Writes a snapshot when `snapshot_every` events have been folded since the last one.
    pub(super) fn maybe_snapshot(&self, aggregate: &Aggregate, id: &str, entry: &mut Entry) {
        let every = aggregate.snapshot_every;
        if every == 0 || entry.version < entry.snapshot_version + every {
            return;
        }
        entry.snapshot_version = entry.version;
        let snapshot = entry.snapshot(&aggregate.fingerprint);
        let snapshots = Arc::clone(&self.snapshots);
        let (name, id) = (aggregate.name.clone(), id.to_string());
        // Owned by the runtime: it only writes one key, and losing it on exit costs only a longer load.
        tokio::spawn(async move { snapshots.put(&name, &id, &snapshot).await });
    }
}
