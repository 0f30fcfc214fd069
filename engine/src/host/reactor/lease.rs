//! One engine at a time runs a given reactor. It holds the reactor's lease, a key in the KV bucket
//! `<stream>_leases`, renews it every third of [`LEASE_TTL`], and loses it when it stops renewing: the
//! bucket's max age removes the key. Without a lease, two engines would both run every action.
//!
//! Holding the key is not enough: an engine paused (SIGSTOP, a frozen VM) for longer than the TTL wakes up
//! believing it still holds a lease that another engine took meanwhile, with actions half-way. So the lease
//! is also a fence, checked right before every action ([`Lease::check`]):
//! - After each write of the key this engine knows a lower bound of when the server can expire it: the
//!   instant the write was sent plus the TTL (the server stamps the key later than that). Up to that instant,
//!   less [`MARGIN`], no other engine can hold the lease, whatever happened to this process; the boot-time
//!   clock ([`BootInstant`]) keeps counting while the process is stopped or the machine suspended, so a
//!   pause shows as an expired deadline.
//! - Past that instant the engine acts again only after writing the key with the revision it last wrote
//!   (compare-and-set). That succeeds only if nobody created the key since, so nobody acted meanwhile. If it
//!   fails, the lease is gone: the reactor stops and stands by until it acquires the lease again.
//!
//! What remains is the time between a check and the action it guards. Appends carry their own fence
//! (transitions the expected subject sequence, commands this lease, checked by the command service right
//! before it appends (`command/fence.rs`), and their id checked against the aggregate's whole history, emits
//! a look at what their subject holds after the causing event, then the expected sequence), so a pause
//! there cannot store anything twice. Timers are set by subject, and a firing for a state the
//! instance has left is ignored. A core NATS publish cannot be fenced by the server: a pause longer than the lease's remaining validity
//! that falls exactly between the check and the socket write can deliver it after another engine delivered
//! the same effect id. The check runs immediately before each publish to make that window a few
//! instructions wide; receivers drop a repeat by `Eddy-Effect-Id`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::backoff::sleep;
use crate::clock::BootInstant;

use async_nats::jetstream::{self, kv};
use tokio_util::sync::CancellationToken;

use super::shared::Shared;
use super::spread::Seat;
use super::watermark::Error;

/// How long a lease outlives its holder's last renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(6);
/// How much earlier than the server could expire the key the holder stops trusting it: room for the two
/// clocks to run at slightly different rates.
const MARGIN: Duration = Duration::from_secs(1);
/// How often a standby asks for a lease another engine holds. The key's expiry is not announced (max age
/// removes it silently), so this bounds how long after expiry a takeover starts: two KV requests per
/// reactor and standby every half second.
const STANDBY_POLL: Duration = Duration::from_millis(500);
/// How soon a lease is asked for again when the server did not answer (rather than refused).
const UNREACHABLE_RETRY: Duration = Duration::from_millis(500);

/// The lease bucket, and who this engine is in it.
pub struct Leases {
    kv: kv::Store,
    holder: String,
}

impl Leases {
    /// Creates the bucket if needed. `holder` names this engine: the same after a restart on the same data,
    /// so a restarted engine takes its leases back at once instead of waiting for them to expire.
    pub async fn open(js: &jetstream::Context, stream: &str, replicas: usize, holder: String) -> Result<Self, Error> {
        let bucket = crate::store::kv_bucket(stream, crate::store::LEASES);
        let config = kv::Config {
            bucket: bucket.clone(),
            history: 1,
            max_age: LEASE_TTL,
            num_replicas: replicas,
            ..Default::default()
        };
        let kv = js
            .create_or_update_key_value(config)
            .await
            .map_err(|e| Error::Bucket { bucket, message: e.to_string() })?;
        Ok(Self { kv, holder })
    }

    /// Waits until this engine holds the lease of `shared`'s partition and `seat` leaves room for it under
    /// the engine's share, or `None` if `term` is cancelled first. The lease ends `term` when it is lost.
    pub(super) async fn acquire(&self, shared: &Shared, seat: &Seat, term: CancellationToken) -> Option<Lease> {
        let name = &shared.key;
        let mut waiting = false;
        loop {
            let wait = match seat.claim() {
                None => STANDBY_POLL,
                Some(handback) => match self.take(name).await {
                    Ok((revision, sent)) => {
                        if waiting {
                            tracing::info!(reactor = %name, "took over the reactor's lease");
                        }
                        *shared.holder.lock().expect("lock") = None;
                        return Some(self.lease(name, revision, sent, term, handback));
                    }
                    Err(other) => {
                        seat.release();
                        match other {
                            Some(holder) => {
                                if !waiting {
                                    tracing::info!(reactor = %name, %holder, "another engine runs this reactor; standing by");
                                    waiting = true;
                                }
                                *shared.holder.lock().expect("lock") = Some(holder);
                                STANDBY_POLL
                            }
                            None => UNREACHABLE_RETRY,
                        }
                    }
                },
            };
            if !sleep(&term, wait).await {
                return None;
            }
        }
    }

    /// One attempt at the lease: the revision written and when; otherwise the engine holding it, if known.
    async fn take(&self, name: &str) -> Result<(u64, BootInstant), Option<String>> {
        let sent = BootInstant::now();
        match self.kv.create(name, self.holder.clone().into()).await {
            Ok(revision) => Ok((revision, sent)),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                let sent = BootInstant::now();
                self.reclaim(name).await.map(|revision| (revision, sent))
            }
            Err(e) => {
                tracing::warn!(reactor = %name, error = %e, "cannot take the reactor's lease; retrying");
                Err(None)
            }
        }
    }

    fn lease(
        &self,
        name: &str,
        revision: u64,
        sent: BootInstant,
        term: CancellationToken,
        handback: CancellationToken,
    ) -> Lease {
        Lease {
            handback,
            kv: self.kv.clone(),
            name: name.to_string(),
            holder: self.holder.clone(),
            revision: tokio::sync::Mutex::new(revision),
            valid_until: Mutex::new(sent + LEASE_TTL - MARGIN),
            term,
            lost: AtomicBool::new(false),
        }
    }

    /// Takes back a lease this engine held before it restarted; otherwise the engine holding it.
    async fn reclaim(&self, name: &str) -> Result<u64, Option<String>> {
        let entry = match self.kv.entry(name).await {
            Ok(Some(entry)) if entry.operation == kv::Operation::Put => entry,
            _ => return Err(None),
        };
        if entry.value != self.holder.as_bytes() {
            return Err(Some(String::from_utf8_lossy(&entry.value).into_owned()));
        }
        self.kv.update(name, self.holder.clone().into(), entry.revision).await.map_err(|_| None)
    }

    /// The bucket, for the engines' announcements of partitioned reactors (`spread.rs`).
    pub(super) fn store(&self) -> (kv::Store, String) {
        (self.kv.clone(), self.holder.clone())
    }
}

/// Why a renewal did not work.
#[derive(Debug, thiserror::Error)]
enum Renewal {
    /// Another engine wrote the key, or it expired: someone else may be acting.
    #[error("the lease was taken over or expired")]
    Lost,
    #[error("the lease bucket did not answer: {0}")]
    Unreachable(String),
}

/// A held lease: renewed by [`Lease::keep`], checked by the runner before every action, and carried by the
/// commands it sends (the fence that the command service checks right before appending).
pub struct Lease {
    kv: kv::Store,
    name: String,
    holder: String,
    /// The revision this engine last wrote; locked while writing so the keeper and a check never race.
    revision: tokio::sync::Mutex<u64>,
    /// Until when no other engine can hold the lease, by this machine's monotonic clock.
    valid_until: Mutex<BootInstant>,
    /// Cancelled when the lease is lost or given up: everything acting under it stops.
    term: CancellationToken,
    lost: AtomicBool,
    /// Cancelled when this engine holds more than its share of a partitioned reactor: the runner finishes
    /// the batch in hand and gives the partition back.
    pub(super) handback: CancellationToken,
}

impl Lease {
    /// Whether this engine may act now: at once while the lease is surely valid, otherwise after confirming
    /// with a compare-and-set of the key that nobody took it since the last write. False means the lease is
    /// given up (its term is cancelled) and nothing may run until it is acquired again.
    pub async fn check(&self) -> bool {
        if self.term.is_cancelled() {
            return false;
        }
        if !self.expired() {
            return true;
        }
        // Concurrent actions all land here after a pause: the first confirms, the others see its outcome.
        let mut revision = self.revision.lock().await;
        if self.term.is_cancelled() {
            return false;
        }
        if !self.expired() {
            return true;
        }
        tracing::warn!(reactor = %self.name, "the reactor's lease is past its renewal deadline (paused, or renewals failing); confirming it before acting");
        match self.renew(&mut revision).await {
            Ok(()) => {
                tracing::info!(reactor = %self.name, "the lease is still this engine's; acting again");
                true
            }
            Err(e) => {
                tracing::warn!(reactor = %self.name, error = %e, "the reactor's lease is no longer sure; stopping its actions and standing by");
                self.give_up();
                false
            }
        }
    }

    /// Whether the lease was lost or could not be confirmed (rather than given back on a stop).
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    fn give_up(&self) {
        self.lost.store(true, Ordering::Relaxed);
        self.term.cancel();
    }

    /// Writes the key over the revision last written, moving the deadline on.
    async fn renew(&self, revision: &mut u64) -> Result<(), Renewal> {
        let sent = BootInstant::now();
        match self.kv.update(&self.name, self.holder.clone().into(), *revision).await {
            Ok(r) => {
                *revision = r;
                *self.valid_until.lock().expect("lock") = sent + LEASE_TTL - MARGIN;
                Ok(())
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Err(Renewal::Lost),
            Err(e) => Err(Renewal::Unreachable(e.to_string())),
        }
    }

    fn expired(&self) -> bool {
        BootInstant::now() >= *self.valid_until.lock().expect("lock")
    }

    /// Renews the lease until its term is cancelled (then gives it up), or cancels the term when it is lost
    /// or its deadline passes without a renewal.
    pub async fn keep(&self) {
        loop {
            if !sleep(&self.term, LEASE_TTL / 3).await {
                let revision = *self.revision.lock().await;
                if let Err(e) = self.kv.delete_expect_revision(&self.name, Some(revision)).await {
                    tracing::debug!(reactor = %self.name, error = %e, "lease not released; it expires");
                }
                return;
            }
            let renewed = {
                let mut revision = self.revision.lock().await;
                self.renew(&mut revision).await
            };
            match renewed {
                Ok(()) => {}
                Err(Renewal::Lost) => {
                    tracing::warn!(reactor = %self.name, "lost the reactor's lease to another engine; standing by");
                    self.give_up();
                    return;
                }
                Err(e) if self.expired() => {
                    tracing::warn!(reactor = %self.name, error = %e, "could not renew the reactor's lease in time; standing by");
                    self.give_up();
                    return;
                }
                Err(e) => {
                    tracing::warn!(reactor = %self.name, error = %e, "cannot renew the reactor's lease; retrying")
                }
            }
        }
    }
}

impl crate::command::HeldLease for Lease {
    fn key(&self) -> &str {
        &self.name
    }

    fn holder(&self) -> &str {
        &self.holder
    }

    fn valid(&self) -> bool {
        !self.term.is_cancelled() && !self.expired()
    }
}
