//! One reactor's task: read from the bookmark, decide each event, commit state + bookmark + outbox, run the
//! outbox, advance the watermark. Reading runs in a second task joined by a short queue, so the next batch
//! arrives while this one is decided.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value as Json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::effects::{Done, Failed};
use super::state::{Changes, Counters, Error as StateError};
use super::watermark::{Mark, Watermarks};
use super::{effect_id, Effects, Entries, Logic, OnError, Outcome, Parked, Pending, ReactorState, Start};
use crate::envelope::StoredEvent;
use crate::host::{Batch, Feed};

/// Events decided per sled batch during catch-up.
const BATCH: usize = 8192;
/// How often the watermark follows a bookmark that moved without actions.
const MARK_EVERY: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What operators see a reactor doing.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Starting,
    Running,
    /// Folding history (first deployment, lost state, changed definition) with its actions suppressed.
    Rebuilding,
    Stopped,
    /// Stopped at an event or action by `on_error = "stop"`; `eddy reactors retry` resumes.
    Failed(String),
}

/// What the host and the admin API share with a reactor's task.
pub struct Shared {
    pub logic: Arc<dyn Logic>,
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
    pub fn new(logic: Arc<dyn Logic>, state: ReactorState, cancel: CancellationToken) -> Result<Self, StateError> {
        Ok(Self {
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

    fn name(&self) -> &str {
        self.logic.name()
    }

    fn set_status(&self, status: Status) {
        *self.status.lock().expect("lock") = status;
    }
}

/// What every reactor's task uses.
pub struct Host {
    pub effects: Effects,
    pub watermarks: Watermarks,
}

/// How a step ended.
enum Flow {
    Go,
    /// Stopped by `on_error = "stop"`: wait for a retry.
    Failed,
    Cancelled,
}

/// Committed entries kept in memory, so that a catch-up over many keys does not read each from sled again
/// in every batch. Cleared when it grows past this many.
const CACHE_MAX: usize = 100_000;

/// The entries of a batch in progress over the committed ones.
struct Overlay<'a> {
    changes: &'a Changes,
    cache: &'a std::sync::Mutex<HashMap<String, Option<Map<String, Json>>>>,
    state: &'a ReactorState,
}

impl Entries for Overlay<'_> {
    fn get(&self, key: &str) -> Result<Option<Map<String, Json>>, String> {
        if let Some(entry) = self.changes.get(key) {
            return Ok(entry.clone());
        }
        let mut cache = self.cache.lock().expect("lock");
        if let Some(entry) = cache.get(key) {
            return Ok(entry.clone());
        }
        let entry = self.state.get(key).map_err(|e| e.to_string())?;
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(key.to_string(), entry.clone());
        Ok(entry)
    }
}

/// Runs a reactor until its token is cancelled.
pub async fn run(shared: Arc<Shared>, host: Arc<Host>) {
    let Some(mut runner) = Runner::open(shared.clone(), host).await else {
        shared.set_status(Status::Stopped);
        return;
    };
    runner.run().await;
    runner.finish().await;
}

struct Runner {
    shared: Arc<Shared>,
    host: Arc<Host>,
    mark: Mark,
    mark_put: Instant,
    /// Actions of events up to here are not run: history at deployment, or already handled.
    quiet_until: u64,
    bookmark: u64,
    redrive: bool,
    /// See [`CACHE_MAX`]; holds only what is committed.
    cache: std::sync::Mutex<HashMap<String, Option<Map<String, Json>>>>,
}

impl Runner {
    /// Reads the watermark (creating it on first deployment), runs what a crash left in the outbox, and
    /// rebuilds the state if the definition changed. `None` if cancelled meanwhile.
    async fn open(shared: Arc<Shared>, host: Arc<Host>) -> Option<Runner> {
        let name = shared.name().to_string();
        let cancel = shared.cancel.clone();
        let mark = match retry_forever(&cancel, &name, "reading the watermark", || host.watermarks.get(&name)).await? {
            Some(mark) => mark,
            None => {
                let store = host.effects.store().clone();
                let last = retry_forever(&cancel, &name, "reading the stream", || store.last_seq()).await?;
                let mark = Mark { deployed_seq: last, handled_seq: 0 };
                retry_forever(&cancel, &name, "writing the watermark", || host.watermarks.put(&name, mark)).await?;
                tracing::info!(reactor = %name, deployed_seq = last, "reactor deployed");
                mark
            }
        };
        let mut runner = Runner {
            shared,
            host,
            mark,
            mark_put: Instant::now(),
            quiet_until: 0,
            bookmark: 0,
            redrive: false,
            cache: Default::default(),
        };
        // Decisions already committed are honoured, whatever definition made them.
        runner.bookmark = runner.shared.state.bookmark().unwrap_or(0);
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

    fn name(&self) -> &str {
        self.shared.name()
    }

    fn set_running(&self) {
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
        let mut feed =
            Feed::new(self.host.effects.store().clone(), self.shared.logic.filters(), self.bookmark + 1, name);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(4);
        let reading = self.shared.cancel.child_token();
        let stop_reading = reading.clone().drop_guard();
        tokio::spawn(async move {
            loop {
                let batch = tokio::select! {
                    _ = reading.cancelled() => return,
                    batch = feed.next_batch(BATCH) => batch,
                };
                if tx.send(batch).await.is_err() {
                    return;
                }
            }
        });
        loop {
            if std::mem::take(&mut self.redrive) {
                match self.redrive_parked().await {
                    Flow::Go => {}
                    other => return other,
                }
            }
            let batch = tokio::select! {
                _ = self.shared.cancel.cancelled() => return Flow::Cancelled,
                _ = self.shared.retry.notified() => {
                    self.redrive = true;
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
            if event.seq <= self.bookmark || !logic.reads(event) {
                continue;
            }
            match self.decide(event, &changes).await {
                Ok(outcome) => self.accept(event, outcome, &mut changes, &mut outbox, false),
                Err(None) => return Flow::Cancelled,
                Err(Some(error)) => match logic.policy().on_error {
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
    fn accept(
        &self,
        event: &StoredEvent,
        outcome: Outcome,
        changes: &mut Changes,
        outbox: &mut Vec<Pending>,
        force: bool,
    ) {
        changes.extend(outcome.changes);
        if event.seq <= self.quiet_until && !force {
            return;
        }
        let correlation_id = outcome.correlation_id.unwrap_or_else(|| event.correlation_id.clone());
        for (n, action) in outcome.actions.into_iter().enumerate() {
            let n = n as u32;
            outbox.push(Pending {
                id: effect_id(self.name(), event.seq, n),
                seq: event.seq,
                n,
                correlation_id: correlation_id.clone(),
                action,
            });
        }
    }

    /// Decides one event, retrying a failure with backoff. `Err(None)`: cancelled.
    async fn decide(&self, event: &StoredEvent, changes: &Changes) -> Result<Outcome, Option<String>> {
        let logic = &self.shared.logic;
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            let overlay = Overlay { changes, cache: &self.cache, state: &self.shared.state };
            match logic.handle(event, &overlay) {
                Ok(outcome) => return Ok(outcome),
                Err(e) if attempt < logic.policy().max_retries => {
                    attempt += 1;
                    tracing::warn!(reactor = %self.name(), seq = event.seq, attempt, error = %e, "deciding an event failed; retrying");
                    if !sleep(&self.shared.cancel, backoff).await {
                        return Err(None);
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(e) => return Err(Some(e)),
            }
        }
    }

    /// Commits, retrying a failing disk until it works; false if cancelled first.
    async fn commit(&mut self, changes: &Changes, bookmark: u64, outbox: &[Pending], parked: &[Parked]) -> bool {
        let mut backoff = Duration::from_millis(100);
        loop {
            let counters = self.shared.counters.lock().expect("lock").clone();
            match self.shared.state.commit(changes, bookmark, outbox, parked, &counters) {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(reactor = %self.name(), seq = bookmark, error = %e, "cannot store the reactor's state; retrying");
                    if !sleep(&self.shared.cancel, backoff).await {
                        return false;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        let mut cache = self.cache.lock().expect("lock");
        for (key, entry) in changes {
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(key.clone(), entry.clone());
        }
        drop(cache);
        self.bookmark = bookmark;
        self.shared.position.store(bookmark, Ordering::Relaxed);
        true
    }

    /// Runs the outbox in order.
    async fn drain(&mut self) -> Flow {
        let outbox = match self.shared.state.outbox() {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(reactor = %self.name(), error = %e, "cannot read the outbox");
                self.shared.set_status(Status::Failed(format!("outbox: {e}")));
                return Flow::Failed;
            }
        };
        let ran = !outbox.is_empty();
        // Publishes leave the outbox only once the server is known to have them.
        let mut unconfirmed = Vec::new();
        for pending in outbox {
            match self.run_action(&pending).await {
                Ok(Some(Done::Published)) => unconfirmed.push(pending),
                Ok(_) => {}
                Err(flow) => return flow,
            }
        }
        if !unconfirmed.is_empty() {
            if let Err(e) = crate::runtime::round_trip(self.host.effects.client()).await {
                tracing::warn!(reactor = %self.name(), error = %e, "publishes not confirmed; they will be sent again");
                return if sleep(&self.shared.cancel, Duration::from_millis(500)).await {
                    Flow::Go
                } else {
                    Flow::Cancelled
                };
            }
            for pending in &unconfirmed {
                self.done(pending, None);
            }
        }
        if ran {
            self.advance_mark(true).await;
        }
        Flow::Go
    }

    /// Runs one action with retries and the error policy. `Ok(Some(Published))` still needs confirming;
    /// every other `Ok` has left the outbox.
    async fn run_action(&mut self, pending: &Pending) -> Result<Option<Done>, Flow> {
        let policy = self.shared.logic.policy().clone();
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            match self.host.effects.run(self.name(), pending).await {
                Ok(done) => {
                    self.count(pending, &done);
                    if done != Done::Published {
                        self.done(pending, None);
                    }
                    return Ok(Some(done));
                }
                Err(Failed::Disconnected(e)) => {
                    tracing::warn!(reactor = %self.name(), seq = pending.seq, effect = %pending.id, error = %e, retry_in = ?backoff, "NATS unreachable; retrying the action");
                }
                Err(Failed::Transient(e)) if attempt < policy.max_retries => {
                    attempt += 1;
                    tracing::warn!(reactor = %self.name(), seq = pending.seq, effect = %pending.id, attempt, error = %e, "action failed; retrying");
                }
                Err(Failed::Transient(e) | Failed::Permanent(e)) => {
                    return self.action_failed(pending, e, policy.on_error).map(|()| None);
                }
            }
            if !sleep(&self.shared.cancel, backoff).await {
                return Err(Flow::Cancelled);
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn action_failed(&mut self, pending: &Pending, error: String, on_error: OnError) -> Result<(), Flow> {
        let (name, seq, effect) = (self.name().to_string(), pending.seq, pending.id.as_str());
        match on_error {
            OnError::Skip => {
                self.shared.counters.lock().expect("lock").skipped += 1;
                tracing::error!(reactor = %name, seq, %effect, %error, "action skipped after retries");
                self.done(pending, None);
                Ok(())
            }
            OnError::Park => {
                tracing::error!(reactor = %name, seq, %effect, %error, "action parked after retries");
                let parked = Parked { seq, action: Some(pending.clone()), error };
                self.done(pending, Some(&parked));
                Ok(())
            }
            OnError::Stop => {
                tracing::error!(reactor = %name, seq, %effect, %error, "reactor stopped at this action after retries");
                self.shared.set_status(Status::Failed(format!("seq {seq}: {effect}: {error}")));
                Err(Flow::Failed)
            }
        }
    }

    fn count(&self, pending: &Pending, done: &Done) {
        let mut c = self.shared.counters.lock().expect("lock");
        match done {
            Done::Command(None) => c.commands += 1,
            Done::Command(Some(rejection)) => {
                c.commands += 1;
                c.rejected += 1;
                tracing::info!(reactor = %self.name(), seq = pending.seq, effect = %pending.id, reason = %rejection.message, "command rejected");
            }
            Done::Published => c.publishes += 1,
            Done::Emitted => c.emits += 1,
        }
    }

    fn done(&self, pending: &Pending, parked: Option<&Parked>) {
        let counters = self.shared.counters.lock().expect("lock").clone();
        if let Err(e) = self.shared.state.done(pending, parked, &counters) {
            // It stays in the outbox and runs again later: harmless, the effect id dedups it.
            tracing::warn!(reactor = %self.name(), seq = pending.seq, effect = %pending.id, error = %e, "cannot clear an outbox entry");
        }
    }

    /// Moves the watermark up to the bookmark once the outbox is empty: at once after actions ran, at most
    /// every second otherwise.
    async fn advance_mark(&mut self, now: bool) {
        if self.shared.state.outbox().map(|o| !o.is_empty()).unwrap_or(true) || self.bookmark <= self.mark.handled_seq {
            return;
        }
        if !now && self.mark_put.elapsed() < MARK_EVERY {
            return;
        }
        let mark = Mark { handled_seq: self.bookmark, ..self.mark };
        match self.host.watermarks.put(self.name(), mark).await {
            Ok(()) => {
                self.mark = mark;
                self.mark_put = Instant::now();
            }
            Err(e) => {
                tracing::warn!(reactor = %self.name(), seq = self.bookmark, error = %e, "cannot move the watermark; will try again")
            }
        }
    }

    /// Re-drives parked events and actions (`eddy reactors retry`).
    async fn redrive_parked(&mut self) -> Flow {
        let items = self.shared.state.parked().unwrap_or_default();
        if !items.is_empty() {
            tracing::info!(reactor = %self.name(), count = items.len(), "re-driving parked items");
        }
        for item in items {
            if let Err(e) = self.shared.state.unpark(&item) {
                tracing::error!(reactor = %self.name(), seq = item.seq, error = %e, "cannot unpark");
                continue;
            }
            let mut changes = Changes::new();
            let mut outbox = Vec::new();
            let mut parked = Vec::new();
            match item.action {
                Some(pending) => outbox.push(pending),
                None => {
                    let store = self.host.effects.store().clone();
                    let cancel = self.shared.cancel.clone();
                    let event =
                        retry_forever(&cancel, self.name(), "reading a parked event", || store.event_at(item.seq))
                            .await;
                    let Some(event) = event else { return Flow::Cancelled };
                    let Some(event) = event else {
                        tracing::error!(reactor = %self.name(), seq = item.seq, "the parked event is no longer in the stream; dropped");
                        continue;
                    };
                    match self.decide(&event, &changes).await {
                        Ok(outcome) => self.accept(&event, outcome, &mut changes, &mut outbox, true),
                        Err(None) => return Flow::Cancelled,
                        Err(Some(error)) => {
                            tracing::error!(reactor = %self.name(), seq = item.seq, %error, "the parked event failed again; parked");
                            parked.push(Parked { seq: item.seq, action: None, error });
                        }
                    }
                }
            }
            let bookmark = self.bookmark;
            if !self.commit(&changes, bookmark, &outbox, &parked).await {
                return Flow::Cancelled;
            }
        }
        self.drain().await
    }

    /// Waits for `eddy reactors retry`; false if cancelled first.
    async fn wait_for_retry(&mut self) -> bool {
        tokio::select! {
            _ = self.shared.cancel.cancelled() => false,
            _ = self.shared.retry.notified() => {
                tracing::info!(reactor = %self.name(), "retrying");
                self.redrive = true;
                self.set_running();
                true
            }
        }
    }

    async fn finish(&mut self) {
        self.advance_mark(true).await;
        if let Err(e) = self.shared.state.flush().await {
            tracing::warn!(reactor = %self.name(), error = %e, "flushing the reactor's state failed");
        }
        self.shared.set_status(Status::Stopped);
    }
}

/// Sleeps unless cancelled first; false if cancelled.
async fn sleep(cancel: &CancellationToken, duration: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(duration) => true,
    }
}

/// Retries `f` with backoff until it works; `None` if cancelled first. For talking to NATS, which a reactor
/// waits for for as long as it takes.
async fn retry_forever<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
    cancel: &CancellationToken,
    reactor: &str,
    what: &str,
    mut f: impl FnMut() -> F,
) -> Option<T> {
    let mut backoff = Duration::from_millis(100);
    loop {
        match f().await {
            Ok(v) => return Some(v),
            Err(e) => {
                tracing::warn!(%reactor, error = %e, retry_in = ?backoff, "{what} failed; retrying");
                if !sleep(cancel, backoff).await {
                    return None;
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}
