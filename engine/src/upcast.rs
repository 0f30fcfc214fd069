//! Event upcasting: stored events are never rewritten; every reader sees them as the config's current
//! version of their type, converted on the fly, through one hook ([`Schemas::read`], and
//! [`Schemas::upcast`] for events that do not come from NATS, such as a recording's).
//!
//! An event type declares its `version` (default 1), a CEL map per older version that reads the data of
//! that version as the next (`upcast.1` turns v1 data into v2, `upcast.2` v2 into v3, ...), and the names
//! it had before (`renamed_from`). New events carry their version in the `Eddy-Event-Version` header
//! (absent: 1, so events from before versioning read as v1). The store stamps it when it appends, so every
//! writer (commands, reactor emits) agrees with every reader.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use async_nats::HeaderMap;
use serde_json::Value as Json;

use crate::aggregate::{Aggregate, EventMeta};
use crate::cel::Vars;
use crate::envelope::{self, StoredEvent};

/// The header holding the version of an event's data.
pub const EVENT_VERSION: &str = "Eddy-Event-Version";

/// Why a stored event cannot be read as the current version of its type.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// Its version is newer than this config knows (written by a newer config).
    #[error("{event_type} is version {found}, newer than this config's version {known}")]
    Newer { event_type: String, found: u32, known: u32 },
    /// An upcast expression failed on it.
    #[error("{event_type} version {from} cannot be read as version {to}: {message}")]
    Failed { event_type: String, from: u32, to: u32, message: String },
    /// The version header is not a positive integer.
    #[error("header {EVENT_VERSION} `{0}` is not a version")]
    Header(String),
}

/// What the config knows of every aggregate's event types, for reading and writing events.
#[derive(Debug, Default)]
pub struct Schemas {
    aggregates: BTreeMap<String, Arc<Aggregate>>,
    /// (aggregate, older name) -> current name.
    renamed: HashMap<(String, String), String>,
}

impl Schemas {
    pub fn new(aggregates: &BTreeMap<String, Arc<Aggregate>>) -> Self {
        let mut renamed = HashMap::new();
        for (name, aggregate) in aggregates {
            for (current, def) in &aggregate.events {
                for old in &def.renamed_from {
                    renamed.insert((name.clone(), old.clone()), current.clone());
                }
            }
        }
        Self { aggregates: aggregates.clone(), renamed }
    }

    /// The current version of `aggregate`'s `event_type` (1 for types the config does not declare).
    pub fn version(&self, aggregate: &str, event_type: &str) -> u32 {
        self.aggregates.get(aggregate).and_then(|a| a.events.get(event_type)).map_or(1, |d| d.version)
    }

    /// Adds the version header to an event about to be appended, when its type is past version 1.
    pub fn stamp(&self, aggregate: &str, event_type: &str, headers: &mut HeaderMap) {
        let version = self.version(aggregate, event_type);
        if version > 1 {
            headers.insert(EVENT_VERSION, version.to_string().as_str());
        }
    }

    /// An event as the current config reads it, from a stream message.
    pub fn read(
        &self,
        seq: u64,
        subject: &str,
        headers: Option<&HeaderMap>,
        payload: &[u8],
    ) -> envelope::Result<StoredEvent> {
        let (event, upcast) = self.decode(seq, subject, headers, payload)?;
        upcast.map_err(|e| envelope::Error::Upcast { seq, message: e.to_string() })?;
        Ok(event)
    }

    /// The event of a stream message, upcast if it can be; as stored, with the reason, if not.
    fn decode(
        &self,
        seq: u64,
        subject: &str,
        headers: Option<&HeaderMap>,
        payload: &[u8],
    ) -> envelope::Result<(StoredEvent, Result<(), Error>)> {
        let mut event = StoredEvent::from_parts(seq, subject, headers, payload)?;
        let version = headers.and_then(|h| h.get(EVENT_VERSION)).map(|v| v.as_str());
        let upcast = self.upcast(&mut event, version);
        Ok((event, upcast))
    }

    /// [`read`](Self::read) for a stream reader (a view, a reactor): an event that cannot be upcast is
    /// logged at error and passed on as stored, never dropped; the command path refuses it instead (see
    /// `eddy validate --recording`, which finds such events before a config is deployed).
    pub fn read_or_as_stored(
        &self,
        reader: &str,
        seq: u64,
        subject: &str,
        headers: Option<&HeaderMap>,
        payload: &[u8],
    ) -> envelope::Result<StoredEvent> {
        let (event, upcast) = self.decode(seq, subject, headers, payload)?;
        if let Err(e) = upcast {
            tracing::error!(%reader, seq, %subject, error = %e, "an event cannot be upcast; this reader sees it as stored");
        }
        Ok(event)
    }

    /// Converts `event`, stored with the version header `stored` (absent: 1), to the current version and
    /// name of its type. On failure the event is left exactly as stored.
    pub fn upcast(&self, event: &mut StoredEvent, stored: Option<&str>) -> Result<(), Error> {
        if let Cow::Owned(upcast) = self.upcast_ref(event, stored)? {
            *event = upcast;
        }
        Ok(())
    }

    /// `event` as the current config reads it: borrowed when it already is (the common case, at no cost),
    /// else an upcast copy.
    pub fn upcast_ref<'e>(&self, event: &'e StoredEvent, stored: Option<&str>) -> Result<Cow<'e, StoredEvent>, Error> {
        let stored = match stored {
            None => 1,
            Some(v) => v.trim().parse::<u32>().ok().filter(|v| *v >= 1).ok_or_else(|| Error::Header(v.to_string()))?,
        };
        let Some(aggregate) = self.aggregates.get(&event.aggregate) else { return Ok(Cow::Borrowed(event)) };
        let current = match aggregate.events.contains_key(&event.event_type) {
            true => &event.event_type,
            false => match self.renamed.get(&(event.aggregate.clone(), event.event_type.clone())) {
                Some(name) => name,
                None => return Ok(Cow::Borrowed(event)),
            },
        };
        let def = &aggregate.events[current];
        if stored > def.version {
            return Err(Error::Newer { event_type: event.event_type.clone(), found: stored, known: def.version });
        }
        if stored == def.version && *current == event.event_type {
            return Ok(Cow::Borrowed(event));
        }
        let mut vars = Vars::new();
        vars.set_value("meta", EventMeta::cel_of(event, None));
        let mut data = event.data.clone();
        for from in stored..def.version {
            vars.set("event", &data);
            let step = &def.upcasts[(from - 1) as usize];
            data = Json::Object(step.eval_map(&vars).map_err(|e| Error::Failed {
                event_type: event.event_type.clone(),
                from,
                to: from + 1,
                message: e.to_string(),
            })?);
        }
        Ok(Cow::Owned(StoredEvent { event_type: current.clone(), data, ..event.clone() }))
    }
}

/// The schemas in force, shared by every reader and writer of one store and replaced on a config reload.
#[derive(Debug, Clone, Default)]
pub struct SharedSchemas(Arc<RwLock<Arc<Schemas>>>);

impl SharedSchemas {
    /// The schemas now in force.
    pub fn current(&self) -> Arc<Schemas> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts `schemas` in force for every later read and write.
    pub fn set(&self, schemas: Schemas) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(schemas);
    }
}
