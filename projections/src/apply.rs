//! Folding a batch of events into a view copy: documents are read once, changed in memory, and committed
//! with the batch's bookmark in one sled batch.

use eddy_engine::cel::EventScope;
use eddy_engine::envelope::StoredEvent;
use serde_json::{Map, Value as Json};

use crate::config::ViewDef;
use crate::store::{Changes, Result, ViewStore};

/// Applies `events` to `store` and sets its bookmark to `last_seq`. Returns how many events failed to
/// evaluate (each is logged with its seq and skipped).
pub fn apply_batch(def: &ViewDef, store: &ViewStore, events: &[StoredEvent], last_seq: u64) -> Result<u64> {
    let mut changes = Changes::new();
    let mut failed = 0;
    for event in events {
        if let Err(e) = apply_event(def, store, event, &mut changes) {
            failed += 1;
            tracing::error!(view = %def.name, seq = event.seq, error = %e, "view update failed; event skipped");
        }
    }
    store.commit(&changes, last_seq)?;
    Ok(failed)
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

/// Applies one event to the in-memory changes of a batch.
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
    let doc = match changes.remove(&key) {
        Some(Some(doc)) => doc,
        Some(None) => def.initial.clone(),
        None => store.get(&key).map_err(|e| e.to_string())?.unwrap_or_else(|| def.initial.clone()),
    };
    let doc = Json::Object(doc);
    let update = scope().bind("doc", &doc, handler.doc_fields.as_deref()).eval_map_or_null(&handler.update);
    let Json::Object(doc) = doc else { unreachable!("documents are objects") };
    let change = update.map_err(|e| e.to_string())?.map(|update| merge(doc, update));
    changes.insert(key, change);
    Ok(())
}

fn merge(mut doc: Map<String, Json>, update: Map<String, Json>) -> Map<String, Json> {
    for (k, v) in update {
        doc.insert(k, v);
    }
    doc
}
