//! Spreading a partitioned reactor's partitions evenly over the engines that run it. Each such engine
//! announces itself under `<reactor>.engine.<id>` in the lease bucket, rewritten every third of the lease
//! TTL, so the bucket's max age removes an engine that died; a stopping engine deletes its key. From the
//! live announcements an engine takes its quota, ceil(N / engines), and holds at most that many
//! partitions: the first engine up takes every partition, and when another appears it hands the surplus
//! back gracefully (its highest partitions: the batch in hand is finished, the watermark moved and the lease
//! released), for the newcomer to take. When an engine dies, its announcement and leases expire and the
//! others' quota grows to cover its partitions.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use async_nats::jetstream::kv;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::lease::LEASE_TTL;
use crate::backoff::sleep;

/// One partitioned reactor's share on this engine.
pub(super) struct Spread {
    reactor: String,
    count: u16,
    kv: kv::Store,
    holder: String,
    /// How many partitions this engine may hold now; 0 until the engines are first counted.
    quota: AtomicU16,
    /// The partitions held or being taken, each with the token that asks its holder to hand it back.
    held: Mutex<BTreeMap<u16, CancellationToken>>,
}

impl Spread {
    pub(super) fn new(reactor: &str, count: u16, kv: kv::Store, holder: String) -> Self {
        Self { reactor: reactor.to_string(), count, kv, holder, quota: AtomicU16::new(0), held: Default::default() }
    }

    fn presence(&self) -> String {
        format!("{}.engine.{}", self.reactor, self.holder)
    }

    /// Announces this engine and follows the others until `cancel`, then withdraws the announcement.
    pub(super) async fn run(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            match self.count_engines().await {
                Ok(engines) => self.set_quota(engines),
                Err(e) => {
                    tracing::warn!(reactor = %self.reactor, error = %e, "cannot count the engines running the reactor; keeping its partitions as they are")
                }
            }
            if !sleep(&cancel, LEASE_TTL / 3).await {
                break;
            }
        }
        if let Err(e) = self.kv.delete(self.presence()).await {
            tracing::debug!(reactor = %self.reactor, error = %e, "announcement not withdrawn; it expires");
        }
    }

    /// Writes this engine's announcement and counts the live ones (this engine's included).
    async fn count_engines(&self) -> Result<u16, String> {
        self.kv.put(self.presence(), self.holder.clone().into()).await.map_err(|e| e.to_string())?;
        let filter = format!("{}{}.engine.*", self.kv.prefix, self.reactor);
        let info = self.kv.stream.info_with_subjects(filter).await.map_err(|e| e.to_string())?;
        let subjects: Vec<(String, usize)> = info.collect::<Vec<_>>().await.into_iter().flatten().collect();
        let mut live = 0u16;
        for (subject, _) in subjects {
            let key = subject.strip_prefix(&self.kv.prefix).unwrap_or(&subject).to_string();
            // A withdrawn announcement stays as a delete marker until it ages out.
            match self.kv.entry(key).await {
                Ok(Some(entry)) if entry.operation == kv::Operation::Put => live = live.saturating_add(1),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(live.max(1))
    }

    fn set_quota(&self, engines: u16) {
        let quota = self.count.div_ceil(engines);
        if self.quota.swap(quota, Ordering::Relaxed) != quota {
            tracing::info!(reactor = %self.reactor, engines, quota, partitions = self.count, "partitions this engine may hold");
        }
        let held = self.held.lock().expect("lock");
        let surplus = held.len().saturating_sub(usize::from(quota));
        for (index, handback) in held.iter().rev().take(surplus) {
            if !handback.is_cancelled() {
                tracing::info!(reactor = %self.reactor, partition = index, "handing the partition back to even out the engines");
                handback.cancel();
            }
        }
    }
}

/// Where one partition's task stands in its reactor's [`Spread`]; a whole reactor has no spread and may
/// always take its lease.
pub(super) struct Seat {
    pub(super) spread: Option<Arc<Spread>>,
    pub(super) index: u16,
}

impl Seat {
    /// Reserves a place under this engine's quota, with the token that asks for the partition back; `None`
    /// while the engine holds its share.
    pub(super) fn claim(&self) -> Option<CancellationToken> {
        let Some(spread) = &self.spread else { return Some(CancellationToken::new()) };
        let mut held = spread.held.lock().expect("lock");
        if held.len() >= usize::from(spread.quota.load(Ordering::Relaxed)) {
            return None;
        }
        let token = CancellationToken::new();
        held.insert(self.index, token.clone());
        Some(token)
    }

    /// Gives the place back: the lease was not taken, or has ended.
    pub(super) fn release(&self) {
        if let Some(spread) = &self.spread {
            spread.held.lock().expect("lock").remove(&self.index);
        }
    }
}
