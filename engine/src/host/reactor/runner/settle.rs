//! Appends a reactor makes while deciding (a saga's transitions). The event is stored before the next event
//! is decided, with the subject's expected last sequence, so two engines deciding the same event store one
//! transition, and an event that arrives meanwhile is decided on the new state. The stored event is then
//! handed back to the reactor like any event: what it causes (a saga's `do` commands) runs under its own
//! sequence, whoever stored it.

use chrono::{SubsecRound, Utc};

use super::{Halt, Runner};
use crate::envelope::{subject, StoredEvent};
use crate::host::reactor::shared::retry_forever;
use crate::host::reactor::state::Changes;
use crate::host::reactor::{Append, Outcome, Pending, Step};
use crate::store::{self, Appended};

/// Conflicts in a row before the event counts as failed: another writer would have to move the subject
/// this many times while one event is decided.
const MAX_ROUNDS: usize = 16;

impl Runner {
    /// Decides `event` and applies the decision to the batch in progress (see [`Runner::settle`]).
    pub(super) async fn take(
        &mut self,
        event: &StoredEvent,
        changes: &mut Changes,
        outbox: &mut Vec<Pending>,
        force: bool,
    ) -> Result<(), Halt> {
        let outcome = self.decide(event, changes, false).await?;
        self.settle(event, outcome, changes, outbox, force).await
    }

    /// Applies a decision to the batch in progress, first storing the event it appends, if any.
    pub(super) async fn settle(
        &mut self,
        event: &StoredEvent,
        outcome: Outcome,
        changes: &mut Changes,
        outbox: &mut Vec<Pending>,
        force: bool,
    ) -> Result<(), Halt> {
        let mut step = Step::new(event, outcome);
        // History was decided when it happened: its appends are in the stream, or were never wanted.
        if step.append.is_none() || (event.seq <= self.quiet_until && !force) {
            step.append = None;
            self.accept(step, changes, outbox, force);
            return Ok(());
        }
        for _ in 0..MAX_ROUNDS {
            let Some(append) = step.append.take() else {
                self.accept(step, changes, outbox, force);
                return Ok(());
            };
            let (stored, appended) = self.store(&append).await?;
            match appended {
                Appended::Stored { last_seq } => {
                    self.accept(step, changes, outbox, force);
                    let stored = StoredEvent { seq: last_seq, ..stored };
                    let next = self.decide(&stored, changes, false).await?;
                    let (next, again) = Step::after_append(&stored, next);
                    if again.is_some() {
                        tracing::error!(reactor = %self.name(), seq = stored.seq, "an appended event asked for another append; ignored");
                    }
                    self.accept(next, changes, outbox, false);
                    return Ok(());
                }
                Appended::Conflict | Appended::Duplicate => {
                    // Another engine, or this one before a crash, moved the subject: catch up with it.
                    let from = append.expected_seq.unwrap_or(0) + 1;
                    let store = self.host.effects.store().clone();
                    let subject = subject(&append.aggregate, &append.key);
                    let cancel = self.cancel.clone();
                    let newer = retry_forever(&cancel, self.name(), "reading the reactor's own subject", || {
                        store.load_subject(&subject, from)
                    })
                    .await
                    .ok_or(Halt::Cancelled)?;
                    for ahead in &newer {
                        let mut decided = Step::new(ahead, self.decide(ahead, changes, true).await?);
                        decided.append = None;
                        self.accept(decided, changes, outbox, false);
                    }
                    step = Step::new(event, self.decide(event, changes, false).await?);
                    // Not the event's fault that the state moved on.
                    step.ignored = false;
                }
            }
        }
        Err(Halt::Failed(format!("events.{} keeps moving while this event is decided", event.aggregate)))
    }

    /// Stores `append`, waiting out an unreachable server.
    async fn store(&self, append: &Append) -> Result<(StoredEvent, Appended), Halt> {
        // The expected sequence already keeps a transition single; an engine that lost its lease should not
        // be deciding at all.
        if !self.lease.check().await {
            return Err(Halt::Cancelled);
        }
        // Microseconds, as the stream will give the time back.
        let event = append.event(Utc::now().trunc_subsecs(6));
        let store = self.host.effects.store().clone();
        let cancel = self.cancel.clone();
        let (agg, key) = (append.aggregate.as_str(), append.key.as_str());
        let attempt = || async {
            match store.append_expecting(agg, key, append.expected_seq, std::slice::from_ref(&event)).await {
                Err(store::Error::Unavailable(e)) => Err(e),
                other => Ok(other),
            }
        };
        let appended = retry_forever(&cancel, self.name(), "appending to the reactor's own subject", attempt)
            .await
            .ok_or(Halt::Cancelled)?
            .map_err(|e| Halt::Failed(format!("{} on events.{agg}.{key}: {e}", append.event_type)))?;
        Ok((event.stored(0, agg, key), appended))
    }
}
