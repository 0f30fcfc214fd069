//! One reactor's task, read top to bottom: [`run`] waits for the lease (keeping a warm standby meanwhile),
//! [`Runner::open`] reads the watermark and runs what a crash left in the outbox, and [`Runner::follow`]
//! reads from the bookmark, decides each event, commits state + bookmark + outbox, runs the outbox and
//! advances the watermark. Reading runs in a second task joined by a short queue, so the next batch arrives
//! while this one is decided. Deciding an event that appends (a saga's transition) is in `settle.rs`;
//! running the outbox with retries and the error policy is in `drain.rs`.

mod drain;
mod settle;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::entries::{Cache, Overlay};
use super::lease::Lease;
use super::shared::{commit_retrying, retry_forever, Host, Shared, Status};
use super::spread::Seat;
use super::state::Changes;
use super::watermark::{deploy, Mark};
use super::{OnError, Outcome, Parked, Pending, Start, Step};
use crate::backoff::Backoff;
use crate::envelope::StoredEvent;
use crate::host::{Batch, Feed};

/// Events decided per sled batch during catch-up.
const BATCH: usize = 8192;
/// How often the watermark follows a bookmark that moved without actions.
const MARK_EVERY: Duration = Duration::from_secs(1);

/// Why deciding or settling an event did not complete.
#[derive(Debug)]
pub(super) enum Halt {
    /// The reactor stops or lost its lease: nothing more is done, nothing is recorded.
    Cancelled,
    /// The event failed after its retries: the error policy decides.
    Failed(String),
}

/// How a step ended.
pub(super) enum Flow {
    Go,
    /// Stopped by `on_error = "stop"`: wait for a retry.
    Failed,
    Cancelled,
}

/// Runs a reactor (or one of its partitions) until its token is cancelled, whenever this engine holds its
/// lease and `seat` leaves room for it.
pub(super) async fn run(shared: Arc<Shared>, host: Arc<Host>, seat: Seat) {
    let name = shared.key.clone();
    loop {
        shared.set_status(Status::Standby);
        // Cancelled when the lease is lost or the reactor stops; the keeper is owned by this loop.
        let term = shared.cancel.child_token();
        // While another engine holds the lease, keep the state warm; stop folding as soon as it is ours.
        let warming = term.child_token();
        let acquiring = host.leases.acquire(&shared, &seat, term.clone());
        tokio::pin!(acquiring);
        let acquired = tokio::select! {
            lease = &mut acquiring => lease,
            () = super::standby::warm(shared.clone(), host.clone(), warming.clone()) => acquiring.await,
        };
        warming.cancel();
        let Some(lease) = acquired else { break };
        let lease = Arc::new(lease);
        let keeper = {
            let lease = lease.clone();
            tokio::spawn(async move { lease.keep().await })
        };
        if let Some(mut runner) = Runner::open(shared.clone(), host.clone(), lease, term.clone()).await {
            runner.run().await;
            runner.finish().await;
        }
        term.cancel();
        if let Err(e) = keeper.await {
            tracing::error!(reactor = %name, error = %e, "lease keeper ended abnormally");
        }
        seat.release();
        if shared.cancel.is_cancelled() {
            break;
        }
    }
    shared.set_status(Status::Stopped);
}

pub(super) struct Runner {
    pub(super) shared: Arc<Shared>,
    pub(super) host: Arc<Host>,
    /// Cancelled when the reactor stops or this engine loses its lease.
    pub(super) cancel: CancellationToken,
    /// Checked right before every action: see [`Lease::check`].
    pub(super) lease: Arc<Lease>,
    pub(super) mark: Mark,
    pub(super) mark_put: Instant,
    /// Actions of events up to here are not run: history at deployment, or already handled.
    pub(super) quiet_until: u64,
    pub(super) bookmark: u64,
    pub(super) redrive: bool,
    pub(super) cache: Cache,
}

impl Runner {
    /// Reads the watermark (creating it on first deployment), runs what a crash left in the outbox, and
    /// rebuilds the state if the definition changed. `None` if cancelled meanwhile.
    async fn open(
        shared: Arc<Shared>,
        host: Arc<Host>,
        lease: Arc<Lease>,
        cancel: CancellationToken,
    ) -> Option<Runner> {
        let name = shared.key.clone();
        let mark = match retry_forever(&cancel, &name, "reading the watermark", || host.watermarks.get(&name)).await? {
            Some(mark) => mark,
            None => deploy(&shared, &host, &cancel).await?,
        };
        let mut runner = Runner {
            shared,
            host,
            cancel,
            lease,
            mark,
            mark_put: Instant::now(),
            quiet_until: 0,
            bookmark: 0,
            redrive: false,
            cache: Default::default(),
        };
        // Decisions already committed are honoured, whatever definition made them.
        runner.bookmark = runner.shared.state.bookmark().unwrap_or(0);
        runner.drop_handled_elsewhere();
        loop {
            match runner.drain().await {
                Flow::Go => break,
                Flow::Cancelled => return None,
                Flow::Failed => {
                    if !runner.wait_for_retry().await {
                        return None;
                    }
                }
            }
        }
        let logic = runner.shared.logic.clone();
        let state = &runner.shared.state;
        let stored = state.fingerprint().ok().flatten();
        if stored.as_deref() != Some(logic.fingerprint()) {
            if stored.is_some() {
                tracing::info!(reactor = %name, "the definition changed; rebuilding its state without repeating actions");
            }
            let wiped = state.wipe(logic.fingerprint());
            if let Err(e) = wiped {
                tracing::error!(reactor = %name, error = %e, "cannot reset the reactor's state");
                return None;
            }
            runner.bookmark = 0;
        }
        if runner.bookmark == 0 && logic.policy().start == Start::New {
            runner.bookmark = runner.mark.deployed_seq;
        }
        let history = if logic.policy().replay_effects { 0 } else { runner.mark.deployed_seq };
        runner.quiet_until = runner.mark.handled_seq.max(history);
        runner.shared.position.store(runner.bookmark, Ordering::Relaxed);
        runner.set_running();
        Some(runner)
    }

    pub(super) fn name(&self) -> &str {
        self.shared.name()
    }

    pub(super) fn set_running(&self) {
        let status = if self.bookmark < self.quiet_until { Status::Rebuilding } else { Status::Running };
        self.shared.set_status(status);
    }

    async fn run(&mut self) {
        loop {
            let flow = self.follow().await;
            match flow {
                Flow::Cancelled => return,
                Flow::Go => {}
                Flow::Failed => {
                    if !self.wait_for_retry().await {
                        return;
                    }
                }
            }
        }
    }

    /// Reads and decides batches until a failure stops it or it is cancelled.
    async fn follow(&mut self) -> Flow {
        let name = format!("reactor {}", self.name());
        let feed = Feed::new(self.host.effects.store().clone(), self.shared.logic.filters(), self.bookmark + 1, name);
        let reading = self.cancel.child_token();
        let stop_reading = reading.clone().drop_guard();
        let mut rx = feed.spawn(BATCH, reading);
        loop {
            if std::mem::take(&mut self.redrive) {
                match self.redrive_parked().await {
                    Flow::Go => {}
                    other => return other,
                }
            }
            let batch = tokio::select! {
                _ = self.cancel.cancelled() => return Flow::Cancelled,
                // Between batches: the one in hand is committed and its actions have run.
                _ = self.lease.handback.cancelled() => return Flow::Cancelled,
                _ = self.shared.retry.notified() => {
                    self.redrive = true;
                    continue;
                }
                // Idle after a batch whose mark was held back: standbys fold only up to the watermark, so it
                // must not wait for the next event to reach the bookmark.
                _ = tokio::time::sleep(MARK_EVERY), if self.bookmark > self.mark.handled_seq => {
                    self.advance_mark(false).await;
                    continue;
                }
                batch = rx.recv() => match batch {
                    Some(batch) => batch,
                    None => return Flow::Cancelled,
                },
            };
            let flow = self.fold(&batch).await;
            let flow = match flow {
                Flow::Go => self.drain().await,
                other => other,
            };
            if !matches!(flow, Flow::Go) {
                drop(stop_reading);
                return flow;
            }
            self.shared.lag.store(batch.pending, Ordering::Relaxed);
            self.set_running();
            self.advance_mark(false).await;
        }
    }

    /// Decides a batch and commits it with its outbox.
    async fn fold(&mut self, batch: &Batch) -> Flow {
        let logic = self.shared.logic.clone();
        let mut changes = Changes::new();
        let mut outbox = Vec::new();
        let mut parked = Vec::new();
        for event in &batch.events {
            if event.seq <= self.bookmark || !self.shared.reads(event) {
                continue;
            }
            match self.take(event, &mut changes, &mut outbox, false).await {
                Ok(()) => {}
                Err(Halt::Cancelled) => return Flow::Cancelled,
                Err(Halt::Failed(error)) => match logic.policy().on_error {
                    OnError::Skip => {
                        self.shared.counters.lock().expect("lock").skipped += 1;
                        tracing::error!(reactor = %self.name(), seq = event.seq, %error, "event skipped after retries");
                    }
                    OnError::Park => {
                        tracing::error!(reactor = %self.name(), seq = event.seq, %error, "event parked after retries");
                        parked.push(Parked { seq: event.seq, action: None, error });
                    }
                    OnError::Stop => {
                        tracing::error!(reactor = %self.name(), seq = event.seq, %error, "reactor stopped at this event after retries");
                        if !self.commit(&changes, event.seq - 1, &outbox, &parked).await {
                            return Flow::Cancelled;
                        }
                        self.shared.set_status(Status::Failed(format!("seq {}: {error}", event.seq)));
                        return Flow::Failed;
                    }
                },
            }
        }
        if !self.commit(&changes, batch.last_seq.max(self.bookmark), &outbox, &parked).await {
            return Flow::Cancelled;
        }
        Flow::Go
    }

    /// Applies a decision to the batch in progress; its actions go to the outbox unless the event is quiet.
    pub(super) fn accept(&self, mut step: Step, changes: &mut Changes, outbox: &mut Vec<Pending>, force: bool) {
        changes.extend(std::mem::take(&mut step.changes));
        if step.seq() <= self.quiet_until && !force {
            return;
        }
        if step.ignored {
            self.shared.counters.lock().expect("lock").ignored += 1;
        }
        outbox.extend(step.enqueue(self.name(), force));
    }

    /// Decides one event (`ahead`: read ahead of the stream, see [`Logic::handle_ahead`]), retrying a
    /// failure with backoff.
    pub(super) async fn decide(&self, event: &StoredEvent, changes: &Changes, ahead: bool) -> Result<Outcome, Halt> {
        let logic = &self.shared.logic;
        let mut backoff = Backoff::failure();
        let mut attempt = 0;
        loop {
            let overlay = Overlay { changes, cache: &self.cache, state: &self.shared.state };
            let decided = if ahead { logic.handle_ahead(event, &overlay) } else { logic.handle(event, &overlay) };
            match decided {
                Ok(outcome) => return Ok(outcome),
                Err(e) if attempt < logic.policy().max_retries => {
                    attempt += 1;
                    tracing::warn!(reactor = %self.name(), seq = event.seq, attempt, error = %e, "deciding an event failed; retrying");
                    if !backoff.wait(&self.cancel).await {
                        return Err(Halt::Cancelled);
                    }
                }
                Err(e) => return Err(Halt::Failed(e)),
            }
        }
    }

    /// Commits, retrying a failing disk until it works; false if cancelled first.
    pub(super) async fn commit(
        &mut self,
        changes: &Changes,
        bookmark: u64,
        outbox: &[Pending],
        parked: &[Parked],
    ) -> bool {
        if !commit_retrying(&self.shared, self.name(), &self.cancel, changes, bookmark, outbox, parked).await {
            return false;
        }
        self.cache.committed(changes);
        self.bookmark = bookmark;
        self.shared.position.store(bookmark, Ordering::Relaxed);
        true
    }

    /// Waits for `eddy reactors retry`; false if cancelled first.
    async fn wait_for_retry(&mut self) -> bool {
        tokio::select! {
            _ = self.cancel.cancelled() => false,
            _ = self.shared.retry.notified() => {
                tracing::info!(reactor = %self.name(), "retrying");
                self.redrive = true;
                self.set_running();
                true
            }
        }
    }

    async fn finish(&mut self) {
        // A lost lease is another engine's to mark; this one's bookmark may be behind or ahead of its.
        if !self.lease.lost() {
            self.advance_mark(true).await;
        }
        if let Err(e) = self.shared.state.flush().await {
            tracing::warn!(reactor = %self.name(), error = %e, "flushing the reactor's state failed");
        }
        self.shared.set_status(Status::Stopped);
    }
}
