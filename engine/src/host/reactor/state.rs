//! A reactor's own sled database: state entries (`e/<key>`), the bookmark and fingerprint (`m/`), the
//! outbox of actions decided but not yet run (`o/<seq><n>`), and parked events and actions (`p/<seq><n>`).
//! A batch of events commits entries, bookmark and outbox in one sled batch, so an action is durable
//! together with the state that produced it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use super::Action;

const BOOKMARK: &[u8] = b"m/bookmark";
const FINGERPRINT: &[u8] = b"m/fingerprint";
const COUNTERS: &[u8] = b"m/counters";
const ENTRIES: &[u8] = b"e/";
const OUTBOX: &[u8] = b"o/";
const PARKED: &[u8] = b"p/";

/// Errors of a reactor's store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored {what} is unreadable: {message}")]
    Corrupt { what: String, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An action decided and committed, waiting to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    /// `<reactor>:<seq>:<n>`: command id, `Nats-Msg-Id` and `Eddy-Effect-Id`.
    pub id: String,
    pub seq: u64,
    pub n: u32,
    pub correlation_id: String,
    pub action: Action,
    /// Put back by `eddy reactors retry` (a parked action, or a parked event decided again): older than the
    /// watermark, yet this engine's to run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redriven: bool,
    /// The `traceparent` of the event that caused it, so the action joins that trace (empty: none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub traceparent: String,
}

impl Pending {
    /// The trace of the event that caused it, if it had one.
    pub fn trace(&self) -> Option<crate::telemetry::TraceParent> {
        crate::telemetry::TraceParent::parse(&self.traceparent)
    }

    /// A new span in the cause's trace, as a header value (a new trace when the cause had none).
    pub fn child_trace(&self) -> String {
        self.trace().map_or_else(crate::telemetry::TraceParent::root, |t| t.child()).to_string()
    }
}

/// An event whose decision failed, or an action that failed, set aside by `on_error = "park"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parked {
    pub seq: u64,
    /// The action, if an action failed; `None` if deciding the event failed.
    pub action: Option<Pending>,
    pub error: String,
}

/// What a reactor has done, kept across restarts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counters {
    pub commands: u64,
    pub rejected: u64,
    pub publishes: u64,
    pub emits: u64,
    pub skipped: u64,
    /// Events that reached an entry but named nothing it does (a saga trigger its state does not name).
    pub ignored: u64,
    /// Timers armed.
    pub timers: u64,
    /// Calls whose outcome was recorded, and how many of those as `CallFailed`.
    pub calls: u64,
    pub failed_calls: u64,
}

impl Counters {
    /// Adds `other`'s counts (a partitioned reactor's total).
    pub fn add(&mut self, other: &Counters) {
        let Counters { commands, rejected, publishes, emits, skipped, ignored, timers, calls, failed_calls } = other;
        self.commands += commands;
        self.rejected += rejected;
        self.publishes += publishes;
        self.emits += emits;
        self.skipped += skipped;
        self.ignored += ignored;
        self.timers += timers;
        self.calls += calls;
        self.failed_calls += failed_calls;
    }
}

/// Entries changed by a batch: `None` removes.
pub type Changes = BTreeMap<String, Option<Map<String, Json>>>;

/// A reactor's sled database.
#[derive(Clone)]
pub struct ReactorState {
    db: sled::Db,
}

impl ReactorState {
    pub fn open(dir: &Path) -> Result<Self> {
        let db = sled::Config::new().path(dir).flush_every_ms(Some(200)).open()?;
        Ok(Self { db })
    }

    /// The last stream sequence folded in (0: none).
    pub fn bookmark(&self) -> Result<u64> {
        Ok(self.db.get(BOOKMARK)?.map(|v| be_u64(&v)).unwrap_or(0))
    }

    pub fn fingerprint(&self) -> Result<Option<String>> {
        Ok(self.db.get(FINGERPRINT)?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub fn counters(&self) -> Result<Counters> {
        match self.db.get(COUNTERS)? {
            Some(v) => decode("counters", &v),
            None => Ok(Counters::default()),
        }
    }

    pub fn get(&self, key: &str) -> Result<Option<Map<String, Json>>> {
        match self.db.get(prefixed(ENTRIES, key.as_bytes()))? {
            Some(v) => decode(key, &v).map(Some),
            None => Ok(None),
        }
    }

    /// Every state entry, in key order.
    pub fn entries(&self) -> Result<Vec<(String, Map<String, Json>)>> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix(ENTRIES) {
            let (k, v) = item?;
            let key = String::from_utf8_lossy(&k[ENTRIES.len()..]).into_owned();
            let entry = decode(&key, &v)?;
            out.push((key, entry));
        }
        Ok(out)
    }

    /// Makes the next start rebuild the state (after running what is left in the outbox).
    pub fn forget_fingerprint(&self) -> Result<()> {
        self.db.remove(FINGERPRINT)?;
        Ok(())
    }

    /// Forgets everything but the fingerprint it is about to be rebuilt with.
    pub fn wipe(&self, fingerprint: &str) -> Result<()> {
        self.db.clear()?;
        self.db.insert(FINGERPRINT, fingerprint.as_bytes())?;
        Ok(())
    }

    /// Commits a batch: entries, bookmark, new outbox entries, parked items and counters, atomically. When
    /// the batch holds actions the caller must [`flush`](Self::flush) before running them, so no action runs
    /// before its cause is durable; the flush is awaited, not blocking, since an fsync would stall a worker
    /// of the runtime that serves commands.
    pub fn commit(
        &self,
        changes: &Changes,
        bookmark: u64,
        outbox: &[Pending],
        parked: &[Parked],
        counters: &Counters,
    ) -> Result<()> {
        let mut batch = sled::Batch::default();
        for (key, entry) in changes {
            let k = prefixed(ENTRIES, key.as_bytes());
            match entry {
                Some(e) => batch.insert(k, serde_json::to_vec(e).expect("JSON serializes")),
                None => batch.remove(k),
            }
        }
        for p in outbox {
            batch.insert(position_key(OUTBOX, p.seq, p.n), serde_json::to_vec(p).expect("serializes"));
        }
        for p in parked {
            let n = p.action.as_ref().map_or(u32::MAX, |a| a.n);
            batch.insert(position_key(PARKED, p.seq, n), serde_json::to_vec(p).expect("serializes"));
        }
        batch.insert(BOOKMARK, &bookmark.to_be_bytes());
        batch.insert(COUNTERS, serde_json::to_vec(counters).expect("serializes"));
        self.db.apply_batch(batch)?;
        Ok(())
    }

    /// The outbox, oldest first.
    pub fn outbox(&self) -> Result<Vec<Pending>> {
        self.db.scan_prefix(OUTBOX).values().map(|v| decode("outbox entry", &v?)).collect()
    }

    /// An outbox entry ran: it goes (parked instead, when `parked` is given).
    pub fn done(&self, pending: &Pending, parked: Option<&Parked>, counters: &Counters) -> Result<()> {
        let mut batch = sled::Batch::default();
        batch.remove(position_key(OUTBOX, pending.seq, pending.n));
        if let Some(p) = parked {
            batch.insert(position_key(PARKED, pending.seq, pending.n), serde_json::to_vec(p).expect("serializes"));
        }
        batch.insert(COUNTERS, serde_json::to_vec(counters).expect("serializes"));
        self.db.apply_batch(batch)?;
        Ok(())
    }

    /// Parked items, oldest first.
    pub fn parked(&self) -> Result<Vec<Parked>> {
        self.db.scan_prefix(PARKED).values().map(|v| decode("parked item", &v?)).collect()
    }

    pub fn parked_count(&self) -> usize {
        self.db.scan_prefix(PARKED).count()
    }

    /// Takes a parked item out (it is being re-driven).
    pub fn unpark(&self, item: &Parked) -> Result<()> {
        let n = item.action.as_ref().map_or(u32::MAX, |a| a.n);
        self.db.remove(position_key(PARKED, item.seq, n))?;
        Ok(())
    }

    pub async fn flush(&self) -> Result<()> {
        self.db.flush_async().await?;
        Ok(())
    }
}

fn be_u64(v: &[u8]) -> u64 {
    u64::from_be_bytes(v.try_into().unwrap_or([0; 8]))
}

fn prefixed(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + rest.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(rest);
    k
}

/// Big-endian so that sled's key order is stream order.
fn position_key(prefix: &[u8], seq: u64, n: u32) -> Vec<u8> {
    let mut k = prefixed(prefix, &seq.to_be_bytes());
    k.extend_from_slice(&n.to_be_bytes());
    k
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt { what: what.to_string(), message: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pending(seq: u64, n: u32) -> Pending {
        Pending {
            id: format!("r:{seq}:{n}"),
            seq,
            n,
            correlation_id: String::new(),
            action: Action::Publish { subject: "s".into(), data: json!({}) },
            redriven: false,
            traceparent: String::new(),
        }
    }

    #[test]
    fn state_bookmark_and_outbox_commit_together_in_stream_order() {
        let dir = tempfile::tempdir().unwrap();
        let state = ReactorState::open(dir.path()).unwrap();
        let mut changes = Changes::new();
        changes.insert("p1".into(), json!({"on_hand": 3}).as_object().cloned());
        let outbox = [pending(300, 0), pending(7, 1), pending(7, 0)];
        state.commit(&changes, 300, &outbox, &[], &Counters::default()).unwrap();
        assert_eq!(state.bookmark().unwrap(), 300);
        assert_eq!(state.get("p1").unwrap().unwrap()["on_hand"], 3);
        let ids: Vec<String> = state.outbox().unwrap().into_iter().map(|p| p.id).collect();
        assert_eq!(ids, ["r:7:0", "r:7:1", "r:300:0"]);
        let parked = Parked { seq: 7, action: Some(pending(7, 1)), error: "boom".into() };
        state.done(&pending(7, 1), Some(&parked), &Counters::default()).unwrap();
        assert_eq!(state.outbox().unwrap().len(), 2);
        assert_eq!(state.parked().unwrap(), std::slice::from_ref(&parked));
        state.unpark(&parked).unwrap();
        assert_eq!(state.parked_count(), 0);
        state.wipe("f2").unwrap();
        assert_eq!(state.bookmark().unwrap(), 0);
        assert_eq!(state.fingerprint().unwrap().as_deref(), Some("f2"));
    }
}
