//! Aggregate snapshots in the KV bucket `<stream>_snapshots`, keyed `<aggregate>.<id>`: the folded state,
//! the seq and version it is at, the hashes of every command id stored up to it (so a repeated command is
//! still recognised after a cold load), and the fingerprint of the rules that folded it.
//!
//! A snapshot is an optimisation only. The value is read as a whole or not at all: anything unreadable, or
//! a fingerprint other than the current one, is ignored and the aggregate is folded from its events. A
//! bucket that is missing or failing is logged and skipped, and created again on the next write.
//!
//! The value is one JSON line (the header and the state), then 16 bytes per stored command (its id's hash
//! and the seq of its first event, little-endian): ten thousand commands are 160 KB that need no parsing.

use async_nats::jetstream::{self, kv};
use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use tokio::sync::Mutex;

use crate::config::EngineConfig;

/// What a snapshot holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Changes whenever what folded the state would fold it differently.
    pub fingerprint: String,
    /// The stream sequence of the last event folded in.
    pub seq: u64,
    /// The aggregate's version at `seq`.
    pub version: u64,
    pub state: Map<String, Json>,
    /// (hash of a stored command id, seq of its first event).
    pub commands: Vec<(u64, u64)>,
}

#[derive(Serialize, Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    fingerprint: std::borrow::Cow<'a, str>,
    seq: u64,
    version: u64,
    state: Map<String, Json>,
}

impl Snapshot {
    pub fn encode(&self) -> Bytes {
        let header = Header {
            fingerprint: self.fingerprint.as_str().into(),
            seq: self.seq,
            version: self.version,
            state: self.state.clone(),
        };
        let json = serde_json::to_vec(&header).expect("a JSON map serializes");
        let mut out = BytesMut::with_capacity(json.len() + 1 + 16 * self.commands.len());
        out.put_slice(&json);
        out.put_u8(b'\n');
        for (hash, seq) in &self.commands {
            out.put_u64_le(*hash);
            out.put_u64_le(*seq);
        }
        out.freeze()
    }

    /// The snapshot in `bytes`, or `None` if they are not one.
    pub fn decode(bytes: &[u8]) -> Option<Snapshot> {
        let split = bytes.iter().position(|b| *b == b'\n')?;
        let (json, rest) = (&bytes[..split], &bytes[split + 1..]);
        let header: Header = serde_json::from_slice(json).ok()?;
        if rest.len() % 16 != 0 {
            return None;
        }
        let word = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
        let commands = rest.chunks_exact(16).map(|c| (word(&c[..8]), word(&c[8..]))).collect();
        Some(Snapshot {
            fingerprint: header.fingerprint.into_owned(),
            seq: header.seq,
            version: header.version,
            state: header.state,
            commands,
        })
    }
}

/// The snapshot bucket, opened on first use.
pub struct Snapshots {
    js: jetstream::Context,
    bucket: String,
    replicas: usize,
    kv: Mutex<Option<kv::Store>>,
}

impl Snapshots {
    pub fn new(js: jetstream::Context, engine: &EngineConfig) -> Self {
        Self { js, bucket: format!("{}_snapshots", engine.stream), replicas: engine.replicas, kv: Mutex::new(None) }
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn store(&self) -> Result<kv::Store, String> {
        let mut kv = self.kv.lock().await;
        if let Some(store) = &*kv {
            return Ok(store.clone());
        }
        let config =
            kv::Config { bucket: self.bucket.clone(), history: 1, num_replicas: self.replicas, ..Default::default() };
        let store = self.js.create_or_update_key_value(config).await.map_err(|e| e.to_string())?;
        Ok(kv.insert(store).clone())
    }

    /// After an error: open the bucket again next time (it may have been deleted).
    async fn forget(&self) {
        *self.kv.lock().await = None;
    }

    /// The snapshot of `<aggregate>.<id>` if there is a readable one with `fingerprint`; failures are logged.
    pub async fn get(&self, aggregate: &str, id: &str, fingerprint: &str) -> Option<Snapshot> {
        let key = format!("{aggregate}.{id}");
        let read = match self.store().await {
            Ok(store) => store.get(&key).await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        let bytes = match read {
            Ok(bytes) => bytes?,
            Err(error) => {
                tracing::warn!(bucket = %self.bucket, %key, %error, "cannot read the snapshot; folding every event");
                self.forget().await;
                return None;
            }
        };
        match Snapshot::decode(&bytes) {
            Some(s) if s.fingerprint == fingerprint => Some(s),
            Some(_) => {
                tracing::debug!(%key, "snapshot of other rules; folding every event");
                None
            }
            None => {
                tracing::warn!(bucket = %self.bucket, %key, "unreadable snapshot ignored; folding every event");
                None
            }
        }
    }

    /// Stores `snapshot` for `<aggregate>.<id>`; a failure is logged (the next one may succeed).
    pub async fn put(&self, aggregate: &str, id: &str, snapshot: &Snapshot) {
        let key = format!("{aggregate}.{id}");
        let written = match self.store().await {
            Ok(store) => store.put(&key, snapshot.encode()).await.map(drop).map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        if let Err(error) = written {
            tracing::warn!(bucket = %self.bucket, %key, %error, "cannot store the snapshot");
            self.forget().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_reads_back_and_garbage_is_none() {
        let s = Snapshot {
            fingerprint: "f1".into(),
            seq: 42,
            version: 7,
            state: serde_json::json!({"items": {"a\nb": 1}}).as_object().unwrap().clone(),
            commands: vec![(u64::MAX, 1), (3, 42)],
        };
        assert_eq!(Snapshot::decode(&s.encode()), Some(s.clone()));
        let bytes = s.encode();
        assert_eq!(Snapshot::decode(&bytes[..bytes.len() - 1]), None, "a cut value");
        assert_eq!(Snapshot::decode(b"not json\n"), None);
        assert_eq!(Snapshot::decode(b""), None);
    }
}
