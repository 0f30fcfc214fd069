//! The bounded in-memory cache of aggregate states, the replies of recent command ids, and every command id
//! of each cached aggregate's stored history.
//!
//! Each aggregate has one entry behind an async mutex, so commands on one aggregate are decided one at a
//! time in this engine (no self-inflicted conflicts), while other engines are kept honest by the expected
//! sequence on every append.
//!
//! The command ids of stored events are kept for the aggregate's whole history, not only the dedup window:
//! an engine paused for longer than the window (SIGSTOP, a stalled VM) must still recognise a command that
//! another engine stored meanwhile, once its append conflicts and it catches up. They are hashed to 64 bits
//! (16 bytes per command with the seq), and an entry that is evicted or reset rebuilds them when its events
//! are loaded again, so they are exactly the ids of the stored events whatever the cache did.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value as Json};

use crate::aggregate::Aggregate;
use crate::api::{Reply, ReplyEvent, Success};
use crate::envelope::StoredEvent;
use crate::store::snapshots::Snapshot;

/// What the engine knows of one aggregate instance.
pub struct Entry {
    /// False until loaded from the stream, and again after an append whose outcome is unknown.
    pub loaded: bool,
    pub state: Map<String, Json>,
    pub version: u64,
    /// Stream sequence of the last event (0: none).
    pub last_seq: u64,
    recent: VecDeque<(DateTime<Utc>, String)>,
    replies: HashMap<String, Answer>,
    /// Hash of every stored command id of this aggregate -> the seq of its first event.
    stored: HashMap<u64, u64>,
    /// The version of the last snapshot stored or restored (see `super::snapshot`).
    pub snapshot_version: u64,
}

/// The reply first given to a command id, and the digest of the command it answered (empty: unknown, as for
/// events stored before digests).
#[derive(Clone)]
pub struct Answer {
    pub reply: Arc<Reply>,
    pub digest: String,
}

/// Hashed into every snapshot's fingerprint, so a build that hashes ids differently ignores the snapshot.
const HASH_PROBE: &str = "eddy-command-id-probe";

/// A command id's 64-bit hash. SipHash with fixed keys: stable within the process, which is all it needs.
fn id_hash(command_id: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    command_id.hash(&mut h);
    h.finish()
}

impl Entry {
    fn new(initial: &Map<String, Json>) -> Self {
        Entry {
            loaded: false,
            state: initial.clone(),
            version: 0,
            last_seq: 0,
            recent: VecDeque::new(),
            replies: HashMap::new(),
            stored: HashMap::new(),
            snapshot_version: 0,
        }
    }

    /// Its state, position and stored command ids, stamped `fingerprint`.
    pub fn snapshot(&self, fingerprint: &str) -> Snapshot {
        Snapshot {
            fingerprint: Self::snapshot_fingerprint(fingerprint),
            seq: self.last_seq,
            version: self.version,
            state: self.state.clone(),
            commands: self.stored.iter().map(|(h, s)| (*h, *s)).collect(),
        }
    }

    /// The fingerprint a snapshot of rules `fingerprint` carries in this build: the command ids' hashes are
    /// only comparable between builds that hash alike.
    pub fn snapshot_fingerprint(fingerprint: &str) -> String {
        format!("{fingerprint}-{:016x}", id_hash(HASH_PROBE))
    }

    /// Starts from `snapshot` (of a fresh entry): the events after it are folded by the next catch-up.
    pub fn restore(&mut self, snapshot: Snapshot) {
        self.state = snapshot.state;
        self.version = snapshot.version;
        self.last_seq = snapshot.seq;
        self.stored = snapshot.commands.into_iter().collect();
        self.snapshot_version = snapshot.version;
    }

    /// The seq of the first event stored by `command_id` in this aggregate's history, if any (by hash: the
    /// caller confirms against the events).
    pub fn stored_seq(&self, command_id: &str) -> Option<u64> {
        self.stored.get(&id_hash(command_id)).copied()
    }

    /// Records that `command_id` stored events from `first_seq` on.
    pub fn note_stored(&mut self, command_id: &str, first_seq: u64) {
        self.stored.entry(id_hash(command_id)).or_insert(first_seq);
    }

    /// The reply first given to `command_id`, if within the window.
    pub fn reply_for(&self, command_id: &str) -> Option<&Answer> {
        self.replies.get(command_id)
    }

    /// Remembers the answer to `command_id`, forgetting answers older than `window`.
    pub fn remember(&mut self, command_id: &str, at: DateTime<Utc>, answer: Answer, window: Duration) {
        while let Some((t, id)) = self.recent.front() {
            if at - *t <= window {
                break;
            }
            self.replies.remove(id);
            self.recent.pop_front();
        }
        if self.replies.insert(command_id.to_string(), answer).is_none() {
            self.recent.push_back((at, command_id.to_string()));
        }
    }

    /// Resets to the initial state, to be loaded again from the stream.
    pub fn reset(&mut self, initial: &Map<String, Json>) {
        *self = Entry::new(initial);
    }

    /// Folds events read from the stream into the state, and rebuilds the replies of the commands that
    /// appended them within `window`, so a repeated command id is answered even after a restart or by
    /// another engine.
    pub fn fold(
        &mut self,
        aggregate: &Aggregate,
        events: &[StoredEvent],
        window: Duration,
    ) -> Result<(), crate::cel::Error> {
        let now = Utc::now();
        let mut pending: Option<Pending> = None;
        for event in events {
            if event.seq <= self.last_seq {
                continue;
            }
            aggregate.apply_stored(&mut self.state, event)?;
            self.version = event.version;
            self.last_seq = event.seq;
            if !event.command_id.is_empty() {
                self.note_stored(&event.command_id, event.seq);
            }
            if now - event.time > window || event.command_id.is_empty() {
                continue;
            }
            let reply_event =
                ReplyEvent { event_type: event.event_type.clone(), seq: event.seq, data: event.data.clone() };
            match &mut pending {
                Some(p) if p.command_id == event.command_id => {
                    p.events.push(reply_event);
                    p.version = event.version;
                }
                _ => {
                    self.finish_pending(aggregate, &event.id, pending.take(), window);
                    pending = Some(Pending {
                        command_id: event.command_id.clone(),
                        digest: event.command_digest.clone(),
                        at: event.time,
                        version: event.version,
                        events: vec![reply_event],
                    });
                }
            }
        }
        let id = events.last().map(|e| e.id.clone()).unwrap_or_default();
        self.finish_pending(aggregate, &id, pending, window);
        self.loaded = true;
        Ok(())
    }

    fn finish_pending(&mut self, aggregate: &Aggregate, id: &str, pending: Option<Pending>, window: Duration) {
        let Some(p) = pending else { return };
        let seq = p.events.last().map(|e| e.seq).unwrap_or(self.last_seq);
        let success = Success {
            ok: true,
            aggregate: aggregate.name.clone(),
            id: id.to_string(),
            version: p.version,
            seq,
            events: p.events,
        };
        let answer = Answer { reply: Arc::new(Reply::success(&success)), digest: p.digest };
        self.remember(&p.command_id, p.at, answer, window);
    }
}

/// The success reply of `command_id` rebuilt from `events` (read from the seq of its first event on): its
/// events are stored together (one atomic batch), so they are the run that starts with the first one.
/// `None` if the first event is not that command's (the hash matched another id).
pub fn stored_reply(aggregate: &Aggregate, command_id: &str, events: &[StoredEvent]) -> Option<Reply> {
    let run: Vec<&StoredEvent> = events.iter().take_while(|e| e.command_id == command_id).collect();
    let last = run.last()?;
    let success = Success {
        ok: true,
        aggregate: aggregate.name.clone(),
        id: last.id.clone(),
        version: last.version,
        seq: last.seq,
        events: run
            .iter()
            .map(|e| ReplyEvent { event_type: e.event_type.clone(), seq: e.seq, data: e.data.clone() })
            .collect(),
    };
    Some(Reply::success(&success))
}

/// The events of one command met while folding, to rebuild its reply.
struct Pending {
    command_id: String,
    digest: String,
    at: DateTime<Utc>,
    version: u64,
    events: Vec<ReplyEvent>,
}

/// One aggregate instance's entry, locked while a command on it is decided.
pub type Slot = Arc<tokio::sync::Mutex<Entry>>;

/// A bounded map from (aggregate, id) to its entry.
pub struct Cache {
    entries: Mutex<lru::LruCache<(String, String), Slot>>,
}

impl Cache {
    pub fn new(capacity: usize) -> Self {
        let cap = NonZeroUsize::new(capacity.max(1)).expect("non-zero");
        Self { entries: Mutex::new(lru::LruCache::new(cap)) }
    }

    /// Drops every entry of `aggregate`.
    pub fn forget(&self, aggregate: &str) {
        let mut entries = self.entries.lock().expect("cache lock");
        let keys: Vec<(String, String)> =
            entries.iter().filter(|((a, _), _)| a == aggregate).map(|(k, _)| k.clone()).collect();
        for key in keys {
            entries.pop(&key);
        }
    }

    /// The entry of an aggregate instance, created (unloaded) if absent.
    pub fn entry(&self, aggregate: &Aggregate, id: &str) -> Slot {
        let mut entries = self.entries.lock().expect("cache lock");
        let key = (aggregate.name.clone(), id.to_string());
        if let Some(entry) = entries.get(&key) {
            return entry.clone();
        }
        let entry = Arc::new(tokio::sync::Mutex::new(Entry::new(&aggregate.initial)));
        entries.put(key, entry.clone());
        entry
    }
}
