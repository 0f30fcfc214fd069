//! Running a call from the outbox: attempts with backoff under `max_retries`, then its outcome recorded on
//! the reactor's own subject. A hook of [`Runner::run_action`]: nothing else in the host knows about calls.

use async_nats::connection::State;

use super::super::effects::{Done, Failed};
use super::super::runner::{Flow, Runner};
use super::super::shared::retry_forever;
use super::super::Pending;
use super::{http, nats, record, Call, Outcome, Target};
use crate::backoff::Backoff;

impl Runner {
    /// Runs the call `pending` unless its outcome is recorded already, and records the outcome.
    pub(in crate::host::reactor) async fn run_call(
        &self,
        pending: &Pending,
        call: &Call,
    ) -> Result<Option<Done>, Flow> {
        let probe = record(pending, call, &Outcome::Replied(serde_json::Value::Null));
        let effects = &self.host.effects;
        // A crash (or a lost lease) between recording the outcome and clearing the outbox: the call was made
        // and its outcome is a fact; calling again could only contradict it.
        let recorded = retry_forever(&self.cancel, self.name(), "looking for a call's recorded outcome", || {
            effects.recorded(&probe, pending.seq)
        });
        if recorded.await.ok_or(Flow::Cancelled)? {
            tracing::info!(reactor = %self.name(), seq = pending.seq, effect = %pending.id, "the call's outcome is recorded already; not calling again");
            self.done(pending, None);
            return Ok(Some(Done::Called { failed: false }));
        }
        let outcome = self.attempts(pending, call).await?;
        if let Outcome::Failed { reason, message, .. } = &outcome {
            tracing::warn!(reactor = %self.name(), seq = pending.seq, effect = %pending.id, call = %call.target.name(), %reason, %message, "the call failed; recording its failure");
        }
        let append = record(pending, call, &outcome);
        let lease = &self.lease;
        let recording = retry_forever(&self.cancel, self.name(), "recording a call's outcome", || async {
            if !lease.check().await {
                return Err(Failed::Disconnected("the lease is lost".into()));
            }
            effects.record(&append, pending.seq, lease.as_ref()).await
        });
        recording.await.ok_or(Flow::Cancelled)?;
        let done = Done::Called { failed: matches!(outcome, Outcome::Failed { .. }) };
        self.count(pending, &done);
        self.done(pending, None);
        Ok(Some(done))
    }

    /// Attempts the call until it gives an outcome: a transient failure is retried with backoff
    /// `max_retries` times and is then the outcome; a lost NATS connection is waited out.
    async fn attempts(&self, pending: &Pending, call: &Call) -> Result<Outcome, Flow> {
        let max_retries = self.shared.logic.policy().max_retries;
        let client = self.host.effects.client();
        let mut backoff = Backoff::failure();
        let mut reconnect = Backoff::reconnect();
        let mut attempt = 0;
        loop {
            // Right before the call, as before every action: an engine paused past its lease acts no more.
            if !self.lease.check().await {
                return Err(Flow::Cancelled);
            }
            let tried = match &call.target {
                Target::Nats { subject } => nats::attempt(client, self.name(), pending, call, subject).await,
                Target::Http { method, url, headers } => {
                    http::attempt(self.name(), pending, call, (method, url, headers)).await
                }
            };
            let failed = match tried {
                Ok(outcome) => return Ok(outcome),
                Err(failed) => failed,
            };
            let nats_down = matches!(call.target, Target::Nats { .. }) && client.connection_state() != State::Connected;
            if nats_down {
                tracing::warn!(reactor = %self.name(), effect = %pending.id, error = %failed.message, "NATS unreachable; retrying the call");
                if !reconnect.wait(&self.cancel).await {
                    return Err(Flow::Cancelled);
                }
                continue;
            }
            if attempt >= max_retries {
                return Ok(Outcome::Failed { status: failed.status, reason: failed.reason, message: failed.message });
            }
            attempt += 1;
            tracing::warn!(reactor = %self.name(), seq = pending.seq, effect = %pending.id, attempt, error = %failed.message, "call failed; retrying");
            if !backoff.wait(&self.cancel).await {
                return Err(Flow::Cancelled);
            }
        }
    }
}
