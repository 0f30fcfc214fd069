//! One engine at a time runs a given reactor. It holds the reactor's lease, a key in the KV bucket
//! `<stream>_leases`, renews it every third of [`LEASE_TTL`], and loses it when it stops renewing: the
//! bucket's max age removes the key. Without a lease, two engines would both run every action. Commands and
//! emits dedup, but a command rejected on one engine could succeed on the other moments later (rejections
//! are not stored), and publishes would repeat. During a hand-over both may briefly act. Transitions stay
//! exactly once, because they are appended with the expected sequence.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use tokio_util::sync::CancellationToken;

use super::runner::sleep;
use super::watermark::Error;

/// How long a lease outlives its holder's last renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(6);

/// The lease bucket, and who this engine is in it.
pub struct Leases {
    kv: kv::Store,
    holder: String,
}

impl Leases {
    /// Creates the bucket if needed. `holder` names this engine: the same after a restart on the same data,
    /// so a restarted engine takes its leases back at once instead of waiting for them to expire.
    pub async fn open(js: &jetstream::Context, stream: &str, replicas: usize, holder: String) -> Result<Self, Error> {
        let bucket = super::watermark::kv_bucket(stream, "leases");
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

    /// Waits until this engine holds `name`'s lease; its revision, or `None` if cancelled first.
    pub async fn acquire(&self, name: &str, cancel: &CancellationToken) -> Option<u64> {
        let mut waiting = false;
        loop {
            match self.kv.create(name, self.holder.clone().into()).await {
                Ok(revision) => {
                    if waiting {
                        tracing::info!(reactor = %name, "took over the reactor's lease");
                    }
                    return Some(revision);
                }
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                    if let Some(revision) = self.reclaim(name).await {
                        return Some(revision);
                    }
                    if !waiting {
                        tracing::info!(reactor = %name, "another engine runs this reactor; standing by");
                        waiting = true;
                    }
                }
                Err(e) => tracing::warn!(reactor = %name, error = %e, "cannot take the reactor's lease; retrying"),
            }
            if !sleep(cancel, LEASE_TTL / 3).await {
                return None;
            }
        }
    }

    /// Takes back a lease this engine held before it restarted.
    async fn reclaim(&self, name: &str) -> Option<u64> {
        let entry = self.kv.entry(name).await.ok()??;
        if entry.value != self.holder.as_bytes() || entry.operation != kv::Operation::Put {
            return None;
        }
        self.kv.update(name, self.holder.clone().into(), entry.revision).await.ok()
    }

    /// Renews the lease until `term` is cancelled (then gives it up), or cancels `term` when it is lost.
    pub async fn keep(&self, name: &str, mut revision: u64, term: CancellationToken) {
        let mut renewed = Instant::now();
        loop {
            if !sleep(&term, LEASE_TTL / 3).await {
                if let Err(e) = self.kv.delete_expect_revision(name, Some(revision)).await {
                    tracing::debug!(reactor = %name, error = %e, "lease not released; it expires");
                }
                return;
            }
            match self.kv.update(name, self.holder.clone().into(), revision).await {
                Ok(r) => {
                    revision = r;
                    renewed = Instant::now();
                }
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    tracing::warn!(reactor = %name, "lost the reactor's lease to another engine; standing by");
                    term.cancel();
                    return;
                }
                Err(e) if renewed.elapsed() >= LEASE_TTL => {
                    tracing::warn!(reactor = %name, error = %e, "could not renew the reactor's lease in time; standing by");
                    term.cancel();
                    return;
                }
                Err(e) => tracing::warn!(reactor = %name, error = %e, "cannot renew the reactor's lease; retrying"),
            }
        }
    }
}
