//! One copy of a view in sled: documents under `d/<key>`, the bookmark and the definition's fingerprint
//! under `m/`. A batch of events is one atomic sled batch, documents and bookmark together, so a crash
//! leaves the copy at a bookmark it really reflects.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

const BOOKMARK: &[u8] = b"m/bookmark";
const FINGERPRINT: &[u8] = b"m/fingerprint";
const DOCS: &[u8] = b"d/";
const PARKED: &[u8] = b"p/";

/// Errors of the sled store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored document `{key}` is not JSON: {message}")]
    Corrupt { key: String, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A view copy.
#[derive(Clone)]
pub struct ViewStore {
    db: sled::Db,
}

/// An event whose update failed, kept in the copy (`on_error = "park"`) or held at (`"stop"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parked {
    pub seq: u64,
    pub subject: String,
    pub error: String,
}

/// Documents changed by a batch: `None` deletes. Hashed: a batch commits in one sled batch, so order does
/// not matter, and an offline replay keeps every view's documents here.
pub type Changes = std::collections::HashMap<String, Option<Map<String, Json>>>;

impl ViewStore {
    pub fn open(dir: &Path) -> Result<Self> {
        let db = sled::Config::new().path(dir).flush_every_ms(Some(200)).open()?;
        Ok(Self { db })
    }

    /// The last stream sequence applied (0: none).
    pub fn bookmark(&self) -> Result<u64> {
        Ok(self.db.get(BOOKMARK)?.map(|v| u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8]))).unwrap_or(0))
    }

    pub fn fingerprint(&self) -> Result<Option<String>> {
        Ok(self.db.get(FINGERPRINT)?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub fn set_fingerprint(&self, fingerprint: &str) -> Result<()> {
        self.db.insert(FINGERPRINT, fingerprint.as_bytes())?;
        Ok(())
    }

    pub fn get(&self, key: &str) -> Result<Option<Map<String, Json>>> {
        match self.db.get(doc_key(key))? {
            Some(v) => decode(key, &v).map(Some),
            None => Ok(None),
        }
    }

    /// Commits `changes`, the events `parked` in the batch and the new bookmark atomically.
    pub fn commit(&self, changes: &Changes, parked: &[Parked], bookmark: u64) -> Result<()> {
        let mut batch = sled::Batch::default();
        for p in parked {
            let mut key = PARKED.to_vec();
            key.extend_from_slice(&p.seq.to_be_bytes());
            batch.insert(key, serde_json::to_vec(p).expect("serializes"));
        }
        for (key, doc) in changes {
            match doc {
                Some(doc) => batch.insert(doc_key(key), serde_json::to_vec(doc).expect("JSON serializes")),
                None => batch.remove(doc_key(key)),
            }
        }
        batch.insert(BOOKMARK, &bookmark.to_be_bytes());
        self.db.apply_batch(batch)?;
        Ok(())
    }

    /// Documents in key order whose key starts with `prefix` and comes after `after`, until `visit` says stop.
    pub fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        mut visit: impl FnMut(String, Map<String, Json>) -> Result<bool>,
    ) -> Result<()> {
        let start = match after {
            Some(a) if a >= prefix => {
                let mut k = doc_key(a);
                k.push(0);
                k
            }
            _ => doc_key(prefix),
        };
        let bound = doc_key(prefix);
        for item in self.db.range(start..) {
            let (k, v) = item?;
            if !k.starts_with(&bound) {
                break;
            }
            let key = String::from_utf8_lossy(&k[DOCS.len()..]).into_owned();
            if !visit(key.clone(), decode(&key, &v)?)? {
                break;
            }
        }
        Ok(())
    }

    /// The events parked in this copy, oldest first, at most `limit`, and how many there are.
    pub fn parked(&self, limit: usize) -> (Vec<Parked>, usize) {
        let mut listed = Vec::new();
        let mut count = 0;
        for (_, v) in self.db.scan_prefix(PARKED).flatten() {
            count += 1;
            if listed.len() < limit {
                listed.extend(serde_json::from_slice(&v).ok());
            }
        }
        (listed, count)
    }

    /// How many documents the copy holds.
    pub fn count(&self) -> usize {
        self.db.scan_prefix(DOCS).count()
    }

    pub async fn flush(&self) -> Result<()> {
        self.db.flush_async().await?;
        Ok(())
    }
}

fn doc_key(key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(DOCS.len() + key.len());
    k.extend_from_slice(DOCS);
    k.extend_from_slice(key.as_bytes());
    k
}

fn decode(key: &str, bytes: &[u8]) -> Result<Map<String, Json>> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt { key: key.to_string(), message: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: Json) -> Option<Map<String, Json>> {
        v.as_object().cloned()
    }

    #[test]
    fn commits_docs_and_bookmark_and_scans_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = ViewStore::open(dir.path()).unwrap();
        let mut changes = Changes::new();
        for k in ["a1", "a2", "b1", "a3"] {
            changes.insert(k.to_string(), doc(json!({"k": k})));
        }
        store.commit(&changes, &[], 7).unwrap();
        assert_eq!(store.bookmark().unwrap(), 7);
        let mut seen = Vec::new();
        store
            .scan("a", Some("a1"), |k, _| {
                seen.push(k);
                Ok(true)
            })
            .unwrap();
        assert_eq!(seen, ["a2", "a3"]);
        let mut changes = Changes::new();
        changes.insert("a2".into(), None);
        store.commit(&changes, &[], 8).unwrap();
        assert_eq!(store.get("a2").unwrap(), None);
        assert_eq!(store.count(), 3);
    }
}
