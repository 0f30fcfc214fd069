//! Folding a batch of events into a view copy: documents are read once, changed in memory, and committed
//! with the batch's bookmark in one sled batch.
//!
//! An update that fails leaves its document exactly as it was before the event (never deleted, never
//! half-changed), and the view's `on_error` decides what happens next: `stop` commits what came before
//! and holds the view at the event; `skip` logs it and goes on; `park` also records it in the copy, listed
//! by `eddy views`, so an operator knows which documents to look at (a rebuild applies it again).

use eddy_engine::cel::EventScope;
use eddy_engine::envelope::{subject, StoredEvent};
use eddy_engine::host::reactor::OnError;
use serde_json::{Map, Value as Json};

use crate::config::ViewDef;
use crate::store::{Changes, Parked, Result, ViewStore};

/// What folding a batch did.
#[derive(Debug, Default, PartialEq)]
pub struct Folded {
    /// Events whose update failed and were passed over (`skip`, `park`).
    pub failed: u64,
    /// The event the view stopped at (`stop`): nothing from it on was applied.
    pub stopped: Option<Parked>,
}

/// Applies `events` to `store` and sets its bookmark to `last_seq` (or to just before the event it stopped
/// at).
pub fn apply_batch(def: &ViewDef, store: &ViewStore, events: &[StoredEvent], last_seq: u64) -> Result<Folded> {
    let mut changes = Changes::new();
    let mut parked = Vec::new();
    let mut folded = Folded::default();
    let mut bookmark = last_seq;
    for event in events {
        let Err(error) = apply_event(def, store, event, &mut changes) else { continue };
        tracing::error!(view = %def.name, seq = event.seq, error = %error, policy = ?def.on_error, "view update failed");
        let failure = Parked { seq: event.seq, subject: subject(&event.aggregate, &event.id), error };
        match def.on_error {
            OnError::Stop => {
                bookmark = event.seq - 1;
                folded.stopped = Some(failure);
                break;
            }
            OnError::Skip => folded.failed += 1,
            OnError::Park => {
                folded.failed += 1;
                parked.push(failure);
            }
        }
    }
    store.commit(&changes, &parked, bookmark)?;
    Ok(folded)
}

/// Where documents not yet in a batch's changes are read from.
pub trait Documents {
    fn get(&self, key: &str) -> Result<Option<Map<String, Json>>>;
}

impl Documents for ViewStore {
    fn get(&self, key: &str) -> Result<Option<Map<String, Json>>> {
        ViewStore::get(self, key)
    }
}

/// No documents: every document lives in the changes (an offline replay keeps one set of changes
/// for the whole run).
pub struct NoDocuments;

impl Documents for NoDocuments {
    fn get(&self, _key: &str) -> Result<Option<Map<String, Json>>> {
        Ok(None)
    }
}

/// Applies one event to the in-memory changes of a batch. On error the changes are as they were.
pub fn apply_event(
    def: &ViewDef,
    store: &dyn Documents,
    event: &StoredEvent,
    changes: &mut Changes,
) -> Result<(), String> {
    let Some(handler) = def.on.find(&event.aggregate, &event.event_type) else { return Ok(()) };
    let scope = || EventScope::new(event).fields(handler.event_fields.as_deref(), handler.meta_fields.as_deref());
    let key = match handler.key.as_ref().or(def.key.as_ref()) {
        Some(expr) => scope().eval_string(expr).map_err(|e| e.to_string())?,
        None => event.id.clone(),
    };
    if key.is_empty() {
        return Ok(());
    }
    // Taken out of the changes (not cloned) for the update, and put back as it was if the update fails.
    let (before, doc) = match changes.remove(&key) {
        Some(Some(doc)) => (Before::Changed, doc),
        Some(None) => (Before::Deleted, def.initial.clone()),
        None => (Before::Stored, store.get(&key).map_err(|e| e.to_string())?.unwrap_or_else(|| def.initial.clone())),
    };
    let doc = Json::Object(doc);
    let update = scope().bind("doc", &doc, handler.doc_fields.as_deref()).eval_map_or_null(&handler.update);
    let Json::Object(doc) = doc else { unreachable!("documents are objects") };
    match update {
        Ok(update) => {
            changes.insert(key, update.map(|update| merge(doc, update)));
            Ok(())
        }
        Err(e) => {
            match before {
                Before::Changed => drop(changes.insert(key, Some(doc))),
                Before::Deleted => drop(changes.insert(key, None)),
                Before::Stored => {}
            }
            Err(e.to_string())
        }
    }
}

/// Where a document came from before an event's update.
enum Before {
    /// Changed earlier in the batch.
    Changed,
    /// Deleted earlier in the batch.
    Deleted,
    /// Read from the store (or new): the batch has no change to it.
    Stored,
}

fn merge(mut doc: Map<String, Json>, update: Map<String, Json>) -> Map<String, Json> {
    for (k, v) in update {
        doc.insert(k, v);
    }
    doc
}
