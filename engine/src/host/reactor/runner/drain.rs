//! Running the outbox: each action with retries and the error policy, then the watermark; and re-driving
//! what was parked.

use std::collections::HashMap;
use std::time::Instant;

use futures::StreamExt;

use super::{Flow, Halt, Runner, MARK_EVERY};
use crate::api::{ErrorCode, Failure};
use crate::backoff::Backoff;
use crate::command::Fence;
use crate::host::reactor::effects::{Done, Failed};
use crate::host::reactor::shared::{retry_forever, Status};
use crate::host::reactor::state::Changes;
use crate::host::reactor::watermark::Mark;
use crate::host::reactor::{OnError, Parked, Pending};

/// Correlation ids whose actions run at once.
const LANES: usize = 64;

impl Runner {
    /// The lease as the fence the commands it sends carry.
    fn fence(&self) -> Fence {
        Fence::Local(self.lease.clone())
    }

    /// Runs the outbox: in order, or, for kinds whose actions are independent across correlation ids
    /// (saga instances), in order within each id and up to [`LANES`] ids at once.
    async fn run_lanes(&self, outbox: Vec<Pending>) -> Vec<Result<Vec<Pending>, Flow>> {
        let mut lanes: Vec<Vec<Pending>> = Vec::new();
        if self.shared.logic.concurrent_actions() {
            let mut index: HashMap<String, usize> = HashMap::new();
            for pending in outbox {
                let i = *index.entry(pending.correlation_id.clone()).or_insert_with(|| {
                    lanes.push(Vec::new());
                    lanes.len() - 1
                });
                lanes[i].push(pending);
            }
        } else {
            lanes.push(outbox);
        }
        let run = |lane: Vec<Pending>| async move {
            let mut published = Vec::new();
            for pending in lane {
                if let Some(Done::Published) = self.run_action(&pending).await? {
                    published.push(pending);
                }
            }
            Ok(published)
        };
        futures::stream::iter(lanes).map(run).buffer_unordered(LANES).collect().await
    }

    /// Runs the outbox.
    pub(super) async fn drain(&mut self) -> Flow {
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
        for lane in self.run_lanes(outbox).await {
            match lane {
                Ok(published) => unconfirmed.extend(published),
                Err(flow) => return flow,
            }
        }
        if !unconfirmed.is_empty() {
            if !self.confirm(&unconfirmed).await {
                return Flow::Cancelled;
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

    /// Drops what this engine left in its outbox when it lost the lease and another engine has handled
    /// since: that engine decided the same events and ran the same actions (same effect ids) itself.
    /// Running them again, maybe long after, would repeat publishes and, past the dedup window, emits.
    /// This engine's own entries are always past any watermark it wrote (it moves the mark only when its
    /// outbox is empty), so an entry at or below the mark, unless put back by a retry, is another's.
    pub(super) fn drop_handled_elsewhere(&self) {
        let Ok(outbox) = self.shared.state.outbox() else { return };
        for pending in outbox.iter().filter(|p| !p.redriven && p.seq <= self.mark.handled_seq) {
            tracing::info!(reactor = %self.name(), seq = pending.seq, effect = %pending.id, handled_seq = self.mark.handled_seq, "dropping an action left from a lost lease: another engine has handled it");
            self.done(pending, None);
        }
    }

    /// Waits until the server has the publishes: a round trip on the same connection. Until one succeeds they
    /// are sent again (same effect ids), so an idle reactor does not leave them waiting for its next event.
    /// False if cancelled first.
    async fn confirm(&self, publishes: &[Pending]) -> bool {
        let mut backoff = Backoff::reconnect();
        loop {
            match crate::runtime::round_trip(self.host.effects.client()).await {
                Ok(()) => return true,
                Err(e) => {
                    tracing::warn!(reactor = %self.name(), error = %e, retry_in = ?backoff.peek(), "publishes not confirmed; sending them again")
                }
            }
            if !backoff.wait(&self.cancel).await {
                return false;
            }
            for pending in publishes {
                if !self.lease.check().await {
                    return false;
                }
                if let Err(e) = self.host.effects.run(self.name(), pending, &self.fence()).await {
                    tracing::warn!(reactor = %self.name(), seq = pending.seq, effect = %pending.id, error = %e, "publish failed; retrying");
                }
            }
        }
    }

    /// Runs one action with retries and the error policy. `Ok(Some(Published))` still needs confirming;
    /// every other `Ok` has left the outbox.
    pub(super) async fn run_action(&self, pending: &Pending) -> Result<Option<Done>, Flow> {
        if let crate::host::reactor::Action::Call(call) = &pending.action {
            return self.run_call(pending, call).await;
        }
        let policy = self.shared.logic.policy().clone();
        // NATS coming back should not wait out a long backoff; a failing action should not be hammered.
        let (mut reconnect, mut failing) = (Backoff::reconnect(), Backoff::failure());
        let mut attempt = 0;
        loop {
            // Right before the action, so that an engine that was paused past its lease acts no more (the
            // residual window is described in `lease.rs`).
            if !self.lease.check().await {
                return Err(Flow::Cancelled);
            }
            // A saga command whose rejection is already on the instance's log was run before (by this engine
            // before a crash, or by a lease holder that lost the lease before clearing its outbox): the saga
            // has moved on, so running it again must not let it succeed now (a debit of a failed transfer).
            // Found by the fault suite (tests/chaos.rs) on a leader loss.
            let probe = Failure::new(ErrorCode::Rejected, "");
            if let Some(append) = self.shared.logic.on_rejected(pending, &probe) {
                match self.host.effects.recorded(&append, pending.seq).await {
                    Ok(true) => {
                        tracing::warn!(reactor = %self.name(), seq = pending.seq, effect = %pending.id, "the action was rejected before and the rejection is recorded; not running it again");
                        self.done(pending, None);
                        return Ok(Some(Done::Command(Some(probe))));
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(reactor = %self.name(), seq = pending.seq, effect = %pending.id, error = ?e, "cannot look for a recorded rejection; retrying");
                        if !reconnect.wait(&self.cancel).await {
                            return Err(Flow::Cancelled);
                        }
                        continue;
                    }
                }
            }
            match self.host.effects.run(self.name(), pending, &self.fence()).await {
                Ok(done) => {
                    if let Done::Command(Some(rejection)) = &done {
                        if let Some(append) = self.shared.logic.on_rejected(pending, rejection) {
                            let cancel = self.cancel.clone();
                            let effects = &self.host.effects;
                            let lease = &self.lease;
                            let recorded = retry_forever(&cancel, self.name(), "recording a rejection", || async {
                                if !lease.check().await {
                                    return Err(Failed::Disconnected("the lease is lost".into()));
                                }
                                effects.record(&append, pending.seq, lease.as_ref()).await
                            });
                            if recorded.await.is_none() {
                                return Err(Flow::Cancelled);
                            }
                        }
                    }
                    self.count(pending, &done);
                    if done != Done::Published {
                        self.done(pending, None);
                    }
                    return Ok(Some(done));
                }
                Err(Failed::Disconnected(e)) => {
                    tracing::warn!(reactor = %self.name(), seq = pending.seq, effect = %pending.id, error = %e, retry_in = ?reconnect.peek(), "NATS unreachable; retrying the action");
                    if !reconnect.wait(&self.cancel).await {
                        return Err(Flow::Cancelled);
                    }
                    continue;
                }
                Err(Failed::Transient(e)) if attempt < policy.max_retries => {
                    attempt += 1;
                    tracing::warn!(reactor = %self.name(), seq = pending.seq, effect = %pending.id, attempt, error = %e, "action failed; retrying");
                }
                Err(Failed::Transient(e) | Failed::Permanent(e)) => {
                    return self.action_failed(pending, e, policy.on_error).map(|()| None);
                }
            }
            if !failing.wait(&self.cancel).await {
                return Err(Flow::Cancelled);
            }
        }
    }

    pub(super) fn action_failed(&self, pending: &Pending, error: String, on_error: OnError) -> Result<(), Flow> {
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

    pub(in crate::host::reactor) fn count(&self, pending: &Pending, done: &Done) {
        let mut c = self.shared.counters.lock().expect("lock");
        match done {
            Done::Command(None) => c.commands += 1,
            Done::Command(Some(rejection)) => {
                c.commands += 1;
                c.rejected += 1;
                tracing::info!(reactor = %self.name(), seq = pending.seq, effect = %pending.id, reason = %rejection.message(), "command rejected");
            }
            Done::Published => c.publishes += 1,
            Done::Emitted => c.emits += 1,
            Done::Scheduled => c.timers += 1,
            Done::Cancelled => {}
            Done::Called { failed } => {
                c.calls += 1;
                c.failed_calls += u64::from(*failed);
            }
        }
    }

    pub(in crate::host::reactor) fn done(&self, pending: &Pending, parked: Option<&Parked>) {
        let counters = self.shared.counters.lock().expect("lock").clone();
        if let Err(e) = self.shared.state.done(pending, parked, &counters) {
            // It stays in the outbox and runs again later: harmless, the effect id dedups it.
            tracing::warn!(reactor = %self.name(), seq = pending.seq, effect = %pending.id, error = %e, "cannot clear an outbox entry");
        }
    }

    /// Moves the watermark up to the bookmark once the outbox is empty: at once after actions ran, at most
    /// every second otherwise.
    pub(super) async fn advance_mark(&mut self, now: bool) {
        // Called after every batch: the cheap checks first, the outbox scan last.
        if self.bookmark <= self.mark.handled_seq || (!now && self.mark_put.elapsed() < MARK_EVERY) {
            return;
        }
        if self.shared.state.outbox().map(|o| !o.is_empty()).unwrap_or(true) {
            return;
        }
        // Only the holder speaks for what has been handled.
        if !self.lease.check().await {
            return;
        }
        let mark = Mark { handled_seq: self.bookmark, ..self.mark };
        match self.host.watermarks.put(&self.shared.key, mark).await {
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
    pub(super) async fn redrive_parked(&mut self) -> Flow {
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
                Some(pending) => outbox.push(Pending { redriven: true, ..pending }),
                None => {
                    let store = self.host.effects.store().clone();
                    let cancel = self.cancel.clone();
                    let event =
                        retry_forever(&cancel, self.name(), "reading a parked event", || store.event_at(item.seq))
                            .await;
                    let Some(event) = event else { return Flow::Cancelled };
                    let Some(event) = event else {
                        tracing::error!(reactor = %self.name(), seq = item.seq, "the parked event is no longer in the stream; dropped");
                        continue;
                    };
                    match self.take(&event, &mut changes, &mut outbox, true).await {
                        Ok(()) => {}
                        Err(Halt::Cancelled) => return Flow::Cancelled,
                        Err(Halt::Failed(error)) => {
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
}
