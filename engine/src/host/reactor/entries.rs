//! What a reactor reads while deciding a batch: the batch's own changes over a cache of committed entries
//! over sled. Shared by the holder's runner and a standby's warm copy.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{Map, Value as Json};

use super::state::Changes;
use super::{Entries, ReactorState};

/// Committed entries kept in memory, so that a catch-up over many keys does not read each from sled again
/// in every batch. Cleared when it grows past this many.
const CACHE_MAX: usize = 100_000;

/// Committed entries by key (`None`: known to be absent). Holds only what is committed.
#[derive(Default)]
pub(super) struct Cache(Mutex<HashMap<String, Option<Map<String, Json>>>>);

impl Cache {
    fn put(cache: &mut HashMap<String, Option<Map<String, Json>>>, key: &str, entry: Option<Map<String, Json>>) {
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(key.to_string(), entry);
    }

    /// Takes in a batch that was just committed.
    pub(super) fn committed(&self, changes: &Changes) {
        let mut cache = self.0.lock().expect("lock");
        for (key, entry) in changes {
            Self::put(&mut cache, key, entry.clone());
        }
    }
}

/// The entries of a batch in progress over the committed ones.
pub(super) struct Overlay<'a> {
    pub(super) changes: &'a Changes,
    pub(super) cache: &'a Cache,
    pub(super) state: &'a ReactorState,
}

impl Entries for Overlay<'_> {
    fn get(&self, key: &str) -> Result<Option<Map<String, Json>>, String> {
        if let Some(entry) = self.changes.get(key) {
            return Ok(entry.clone());
        }
        let mut cache = self.cache.0.lock().expect("lock");
        if let Some(entry) = cache.get(key) {
            return Ok(entry.clone());
        }
        let entry = self.state.get(key).map_err(|e| e.to_string())?;
        Cache::put(&mut cache, key, entry.clone());
        Ok(entry)
    }
}
