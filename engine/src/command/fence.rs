//! Fencing commands sent under a reactor's lease. A reactor checks its lease before each action, but a
//! command's execution takes round trips (load, decide, append), and an engine paused inside them (SIGSTOP,
//! a frozen VM) wakes up after another engine took the lease and ran the same step. If that step was
//! rejected, nothing is stored that the command id could be deduplicated against, and the woken engine's
//! append would apply a debit for a transfer the saga has already failed.
//!
//! So a command carries its sender's lease, and is appended only if the lease still holds at that moment:
//! - in this process, by the lease's own deadline on the boot-time clock (no I/O, checked immediately
//!   before the append is sent, so a pause before it shows as a passed deadline);
//! - from another engine (`Eddy-Lease: <reactor>=<holder>`), by reading the lease key, which must still
//!   name the sender.
//!
//! A fenced command is answered `unavailable` with nothing stored: the sender checks its lease again, finds
//! it lost and stands down, or confirms it and sends again.

use std::fmt;
use std::sync::Arc;

use async_nats::jetstream::kv;

use crate::api::{ErrorCode, Failure};
use crate::store::EventStore;

/// The header carrying `<reactor>=<holder>` on a command sent under a lease.
pub const LEASE_HEADER: &str = "Eddy-Lease";

/// A lease held in this process.
pub trait HeldLease: Send + Sync {
    /// The lease's key: the reactor's name.
    fn key(&self) -> &str;
    /// Who holds it: this engine's name.
    fn holder(&self) -> &str;
    /// Whether the holder may still act, from its own deadline: no I/O, so it can sit right before a send.
    fn valid(&self) -> bool;
}

/// The lease a command is sent under.
#[derive(Clone)]
pub enum Fence {
    /// Held in this process.
    Local(Arc<dyn HeldLease>),
    /// Held by the engine that sent the command over NATS.
    Remote { key: String, holder: String },
}

impl fmt::Debug for Fence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fence({})", self.header_value())
    }
}

impl Fence {
    /// `<reactor>=<holder>`, for [`LEASE_HEADER`].
    pub fn header_value(&self) -> String {
        match self {
            Fence::Local(lease) => format!("{}={}", lease.key(), lease.holder()),
            Fence::Remote { key, holder } => format!("{key}={holder}"),
        }
    }

    /// Reads [`LEASE_HEADER`]; `None` when it is not `<reactor>=<holder>`.
    pub fn parse(value: &str) -> Option<Fence> {
        let (key, holder) = value.split_once('=')?;
        (!key.is_empty() && !holder.is_empty())
            .then(|| Fence::Remote { key: key.to_string(), holder: holder.to_string() })
    }

    fn lapsed(&self) -> Failure {
        Failure::new(
            ErrorCode::Unavailable,
            format!("fenced: the sender no longer holds the lease of reactor `{}`; nothing was stored", self.key()),
        )
    }

    fn key(&self) -> &str {
        match self {
            Fence::Local(lease) => lease.key(),
            Fence::Remote { key, .. } => key,
        }
    }
}

/// Checks fences against the lease bucket (opened on the first remote check).
pub(super) struct Fences {
    bucket: tokio::sync::OnceCell<kv::Store>,
}

impl Fences {
    pub fn new() -> Self {
        Self { bucket: tokio::sync::OnceCell::new() }
    }

    /// `Ok` while `fence` holds; `unavailable` when it lapsed or cannot be read.
    pub async fn check(&self, fence: &Fence, store: &EventStore) -> Result<(), Failure> {
        let holds = match fence {
            Fence::Local(lease) => lease.valid(),
            Fence::Remote { key, holder } => {
                let bucket = self.bucket(store).await?;
                let entry = bucket.entry(key).await.map_err(|e| unreadable(key, e))?;
                entry.is_some_and(|e| e.operation == kv::Operation::Put && e.value == holder.as_bytes())
            }
        };
        if holds {
            Ok(())
        } else {
            Err(fence.lapsed())
        }
    }

    async fn bucket(&self, store: &EventStore) -> Result<&kv::Store, Failure> {
        let name = crate::store::kv_bucket(store.stream(), crate::store::LEASES);
        self.bucket
            .get_or_try_init(|| async { store.jetstream().get_key_value(&name).await })
            .await
            .map_err(|e| Failure::new(ErrorCode::Unavailable, format!("the lease bucket {name} cannot be read: {e}")))
    }
}

fn unreadable(key: &str, e: impl fmt::Display) -> Failure {
    Failure::new(ErrorCode::Unavailable, format!("the lease of reactor `{key}` cannot be read: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_round_trips_and_refuses_halves() {
        let fence = Fence::parse("transfer=engine-a").expect("parses");
        assert_eq!(fence.header_value(), "transfer=engine-a");
        assert!(Fence::parse("transfer").is_none());
        assert!(Fence::parse("=engine-a").is_none());
        assert!(Fence::parse("transfer=").is_none());
    }
}
