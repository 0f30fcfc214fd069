//! `partitions = N`: a reactor's keys (a saga's instances, a rule's entries) split into N parts, each run
//! by whichever engine holds its lease. Which part a key belongs to is a stable hash of its bytes, the same
//! on every engine, build and restart (FNV-1a 64: fixed, no per-process seed, unlike std's `RandomState`),
//! so every event of a key is decided by one partition, in stream order.
//!
//! A partition has its own lease, watermark and sled state, named after the reactor, the partition and the
//! count (`<reactor>.p<i>of<N>`): a reactor of one partition keeps the names it has always had (`<reactor>`),
//! and a layout of another count never mistakes another layout's records for its own.

use std::hash::Hasher;

use serde_json::{Map, Value as Json};

use super::state::Error as StateError;
use super::{Parked, ReactorState};

/// The most partitions a reactor may have: each is a lease, a watermark, a sled database and a task on
/// every engine that runs the reactor.
pub const MAX_PARTITIONS: u16 = 256;

/// One partition of a reactor, `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub index: u16,
    pub count: u16,
}

impl Partition {
    /// The whole reactor: one partition, today's names.
    pub const WHOLE: Partition = Partition { index: 0, count: 1 };

    /// Every partition of a reactor of `count` (at least one).
    pub fn all(count: u16) -> impl Iterator<Item = Partition> {
        let count = count.max(1);
        (0..count).map(move |index| Partition { index, count })
    }

    /// Its name in the lease and watermark buckets and under the data directory.
    pub fn key(&self, reactor: &str) -> String {
        if self.count <= 1 {
            reactor.to_string()
        } else {
            format!("{reactor}.p{}of{}", self.index, self.count)
        }
    }

    /// Whether `key` (an event's partition key; `None`: it has none) belongs here. Events without a key go
    /// to partition 0, which decides them as the whole reactor would (usually: nothing to do).
    pub fn owns(&self, key: Option<&str>) -> bool {
        self.count <= 1 || key.map_or(0, |k| of(k, self.count)) == self.index
    }
}

/// Whether `key` is some layout's name of `reactor`'s records: the reactor's own name or a partition's.
pub fn is_layout_of(reactor: &str, key: &str) -> bool {
    key == reactor || key.strip_prefix(reactor).and_then(|k| k.strip_prefix(".p")).is_some_and(|k| k.contains("of"))
}

/// The partition of `count` that `key` belongs to.
pub fn of(key: &str, count: u16) -> u16 {
    let mut hasher = fnv::FnvHasher::default();
    hasher.write(key.as_bytes());
    (hasher.finish() % u64::from(count.max(1))) as u16
}

/// One state entry.
type Entry = Map<String, Json>;

/// A reactor's state across its partitions, as the admin API and the console read it: each engine has every
/// partition, live where it holds the lease and warm where it stands by.
#[derive(Clone)]
pub struct States(pub(super) Vec<(Partition, ReactorState)>);

impl States {
    /// Every entry, in key order.
    pub fn entries(&self) -> Result<Vec<(String, Entry)>, StateError> {
        let mut all = Vec::new();
        for (_, state) in &self.0 {
            all.extend(state.entries()?);
        }
        if self.0.len() > 1 {
            all.sort_by(|a, b| a.0.cmp(&b.0));
        }
        Ok(all)
    }

    /// The entry `key`, from the partition it belongs to.
    pub fn get(&self, key: &str) -> Result<Option<Entry>, StateError> {
        match self.0.iter().find(|(p, _)| p.owns(Some(key))) {
            Some((_, state)) => state.get(key),
            None => Ok(None),
        }
    }

    /// What every partition parked, oldest first.
    pub fn parked(&self) -> Result<Vec<Parked>, StateError> {
        let mut all = Vec::new();
        for (_, state) in &self.0 {
            all.extend(state.parked()?);
        }
        all.sort_by_key(|p| (p.seq, p.action.as_ref().map_or(u32::MAX, |a| a.n)));
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_stable_across_builds() {
        // Pinned (FNV-1a 64, checked against an independent implementation): a change here moves keys
        // between partitions of running reactors.
        assert_eq!([of("t-1", 4), of("t-2", 4), of("t-3", 4), of("alice", 4), of("", 4)], [1, 0, 3, 3, 1]);
        assert_eq!(of("anything", 1), 0);
    }

    #[test]
    fn keys_spread_over_partitions() {
        let mut counts = [0u32; 4];
        for i in 0..4000 {
            counts[of(&format!("transfer-{i}"), 4) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (800..1200).contains(&c)), "{counts:?}");
    }

    #[test]
    fn one_partition_keeps_the_reactor_name_and_owns_everything() {
        assert_eq!(Partition::WHOLE.key("transfer"), "transfer");
        assert!(Partition::WHOLE.owns(Some("x")) && Partition::WHOLE.owns(None));
        let p = Partition { index: 2, count: 4 };
        assert_eq!(p.key("transfer"), "transfer.p2of4");
        assert!(!p.owns(None) && Partition { index: 0, count: 4 }.owns(None));
        assert_eq!(Partition::all(4).filter(|p| p.owns(Some("t-2"))).count(), 1);
    }

    #[test]
    fn layouts_of_a_reactor_are_told_from_other_reactors() {
        assert!(is_layout_of("t", "t") && is_layout_of("t", "t.p0of4") && is_layout_of("t", "t.p10of16"));
        assert!(!is_layout_of("t", "tx") && !is_layout_of("t", "tx.p0of4") && !is_layout_of("t", "t.engine.x"));
    }
}
