//! A standby's warm copy. While another engine holds a reactor's lease, this engine follows the stream and
//! folds events into the reactor's state (entries, bookmark) without acting: no commands, publishes, emits,
//! timers, and no transitions appended. So when the lease comes to it, it goes on from where the holder's
//! watermark was instead of rebuilding from the start of the stream, and its admin answers are current.
//!
//! It folds only up to the holder's watermark (the seq up to which every action has run), as a rebuild folds
//! history up to it:
//! - Every event up to the watermark was decided by the holder: a saga transition it caused is in the stream
//!   (appended before the holder's bookmark moved past its trigger), and the standby folds the stored
//!   transition when it reads it instead of deciding one itself. Its state is the holder's.
//! - Every action of those events has run, so the standby keeps no outbox: there is nothing of theirs for a
//!   new holder to run.
//! - Events after the watermark are decided by whoever holds the lease next, live, exactly as after a cold
//!   rebuild: a trigger whose transition the dead holder stored conflicts on the expected subject sequence
//!   and reads it, and actions of those events run with their deterministic ids, so what the dead holder
//!   already ran is deduplicated by command ids and msg ids.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::entries::{Cache, Overlay};
use super::shared::{commit_retrying, Host, Shared};
use super::state::Changes;
use super::watermark::Mark;
use super::Start;
use crate::backoff::sleep;
use crate::host::{Batch, Feed};

/// How often a standby looks at the watermark while the stream is ahead of it.
const MARK_POLL: Duration = Duration::from_millis(200);
/// Events folded per sled batch.
const BATCH: usize = 8192;

/// Keeps `shared`'s state warm until `cancel`. Returns only when cancelled: a standby that cannot fold an
/// event (see [`Warm::fold`]) stays where it is, and the next holder goes on from there.
pub(super) async fn warm(shared: Arc<Shared>, host: Arc<Host>, cancel: CancellationToken) {
    let mut warm = Warm { shared, host, cancel, cache: Cache::default(), bookmark: 0, mark: Mark::default() };
    warm.run().await;
    warm.cancel.cancelled().await;
}

struct Warm {
    shared: Arc<Shared>,
    host: Arc<Host>,
    cancel: CancellationToken,
    cache: Cache,
    bookmark: u64,
    mark: Mark,
}

impl Warm {
    fn name(&self) -> &str {
        self.shared.logic.name()
    }

    async fn run(&mut self) {
        // Deployment writes the watermark; until then there is no history to speak of.
        loop {
            match self.host.watermarks.get(&self.shared.key).await {
                Ok(Some(mark)) => {
                    self.mark = mark;
                    break;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(reactor = %self.name(), error = %e, "standby cannot read the watermark; retrying")
                }
            }
            if !sleep(&self.cancel, MARK_POLL).await {
                return;
            }
        }
        if !self.prepare() {
            return;
        }
        let name = format!("standby {}", self.name());
        let feed = Feed::new(self.host.effects.store().clone(), self.shared.logic.filters(), self.bookmark + 1, name);
        let reading = self.cancel.child_token();
        let _stop_reading = reading.clone().drop_guard();
        let mut rx = feed.spawn(BATCH, reading);
        loop {
            let batch = tokio::select! {
                _ = self.cancel.cancelled() => return,
                batch = rx.recv() => match batch {
                    Some(batch) => batch,
                    None => return,
                },
            };
            if !self.take(&batch).await {
                return;
            }
        }
    }

    /// Readies the state for folding: state of the current definition is followed on from its bookmark;
    /// otherwise (first run, changed definition, `eddy reactors rebuild`) it is wiped and rebuilt from
    /// history. False if it must stay as it is: its outbox holds actions from when this engine held the lease
    /// under another definition, which only a holder may run before the state is rebuilt.
    fn prepare(&mut self) -> bool {
        let logic = self.shared.logic.clone();
        let state = &self.shared.state;
        let current = state.fingerprint().ok().flatten().as_deref() == Some(logic.fingerprint());
        if current {
            match state.bookmark() {
                Ok(b) => self.bookmark = b,
                Err(e) => {
                    tracing::error!(reactor = %self.name(), error = %e, "standby cannot read its bookmark; it stays cold until it takes over");
                    return false;
                }
            }
        } else {
            match state.outbox() {
                Ok(outbox) if outbox.is_empty() => {}
                Ok(_) => {
                    tracing::info!(reactor = %self.name(), "standby keeps its state cold: its outbox holds actions of an older definition, run when it takes over");
                    return false;
                }
                Err(e) => {
                    tracing::error!(reactor = %self.name(), error = %e, "standby cannot read its outbox; it stays cold until it takes over");
                    return false;
                }
            }
            if let Err(e) = state.wipe(logic.fingerprint()) {
                tracing::error!(reactor = %self.name(), error = %e, "standby cannot reset the reactor's state; it stays cold until it takes over");
                return false;
            }
            self.bookmark = 0;
        }
        if self.bookmark == 0 && logic.policy().start == Start::New {
            self.bookmark = self.mark.deployed_seq;
        }
        self.shared.position.store(self.bookmark, Ordering::Relaxed);
        true
    }

    /// Folds a batch, as far as the watermark goes, waiting for the holder to move it for the rest. False if
    /// cancelled or the standby stops folding.
    async fn take(&mut self, batch: &Batch) -> bool {
        let mut next = 0;
        loop {
            let upto = self.mark.handled_seq;
            let mut changes = Changes::new();
            while let Some(event) = batch.events.get(next).filter(|e| e.seq <= upto) {
                next += 1;
                if event.seq <= self.bookmark || !self.shared.reads(event) {
                    continue;
                }
                let overlay = Overlay { changes: &changes, cache: &self.cache, state: &self.shared.state };
                match self.shared.logic.handle(event, &overlay) {
                    // Appends and actions were the holder's to make; what it appended is read in its turn.
                    Ok(outcome) => changes.extend(outcome.changes),
                    Err(error) => {
                        // The holder retried this event and then applied its error policy; which outcome it
                        // came to, the standby cannot know. It stops here, and whoever takes over decides
                        // from here on as a rebuild would.
                        tracing::warn!(reactor = %self.name(), seq = event.seq, %error, "standby cannot fold this event; it stops warming here until it takes over");
                        self.commit(&changes, event.seq - 1).await;
                        return false;
                    }
                }
            }
            // Past the batch's events up to the watermark, nothing this reactor reads lies below it.
            let reached = batch.last_seq.min(upto).max(self.bookmark);
            if (reached > self.bookmark || !changes.is_empty()) && !self.commit(&changes, reached).await {
                return false;
            }
            let left = (batch.events.len() - next) as u64;
            self.shared.lag.store(batch.pending + left, Ordering::Relaxed);
            if batch.last_seq <= upto {
                return true;
            }
            // The holder has not run (or not yet recorded) the actions of the rest: wait for its watermark.
            if !sleep(&self.cancel, MARK_POLL).await {
                return false;
            }
            match self.host.watermarks.get(&self.shared.key).await {
                Ok(Some(mark)) => self.mark = mark,
                // The reactor was deleted meanwhile: the config change stops this task.
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(reactor = %self.name(), error = %e, "standby cannot read the watermark; retrying")
                }
            }
        }
    }

    /// Commits folded entries and the bookmark, retrying a failing disk; false if cancelled first.
    async fn commit(&mut self, changes: &Changes, bookmark: u64) -> bool {
        if !commit_retrying(&self.shared, self.name(), &self.cancel, changes, bookmark, &[], &[]).await {
            return false;
        }
        self.cache.committed(changes);
        self.bookmark = bookmark;
        self.shared.position.store(bookmark, Ordering::Relaxed);
        true
    }
}
