//! The `meta` variable of command and event expressions.

use std::collections::HashMap;
use std::sync::Arc;

use cel::objects::{Key, Map};
use chrono::{DateTime, Datelike, FixedOffset, Utc};

/// `meta` while a command is decided.
#[derive(Debug, Clone)]
pub struct CommandMeta {
    pub aggregate: String,
    pub id: String,
    pub version: u64,
    pub command_id: String,
    pub correlation_id: String,
    pub time: DateTime<Utc>,
}

/// `meta` while an event is applied: where it sits in the stream and what caused it.
#[derive(Debug, Clone)]
pub struct EventMeta {
    pub aggregate: String,
    pub id: String,
    pub version: u64,
    pub seq: u64,
    pub event_type: String,
    pub command_id: String,
    pub correlation_id: String,
    pub causation_id: String,
    pub time: DateTime<Utc>,
}

fn s(v: &str) -> cel::Value {
    cel::Value::String(Arc::new(v.to_string()))
}

fn time_entries(entries: &mut HashMap<Key, cel::Value>, time: DateTime<Utc>) {
    let fixed: DateTime<FixedOffset> = time.fixed_offset();
    entries.insert(key("time"), cel::Value::Timestamp(fixed));
    entries.insert(key("date"), s(&date_of(time)));
}

/// `YYYY-MM-DD`, formatted by hand: chrono's strftime parses its pattern on every call, on the hot path of
/// every view.
pub fn date_of(time: DateTime<Utc>) -> String {
    format!("{:04}-{:02}-{:02}", time.year(), time.month(), time.day())
}

fn key(k: &str) -> Key {
    Key::String(Arc::new(k.to_string()))
}

impl CommandMeta {
    pub fn to_cel(&self) -> cel::Value {
        let mut m = HashMap::with_capacity(8);
        m.insert(key("aggregate"), s(&self.aggregate));
        m.insert(key("id"), s(&self.id));
        m.insert(key("version"), cel::Value::Int(self.version as i64));
        m.insert(key("command_id"), s(&self.command_id));
        m.insert(key("correlation_id"), s(&self.correlation_id));
        time_entries(&mut m, self.time);
        cel::Value::Map(Map { map: Arc::new(m) })
    }
}

impl EventMeta {
    /// The `meta` of a stored event.
    pub fn of(event: &crate::envelope::StoredEvent) -> Self {
        EventMeta {
            aggregate: event.aggregate.clone(),
            id: event.id.clone(),
            version: event.version,
            seq: event.seq,
            event_type: event.event_type.clone(),
            command_id: event.command_id.clone(),
            correlation_id: event.correlation_id.clone(),
            causation_id: event.causation_id.clone(),
            time: event.time,
        }
    }

    /// The `meta` of a stored event, built straight from it as CEL; with `fields`, only those entries (see
    /// `Expr::fields_of`).
    pub fn cel_of(event: &crate::envelope::StoredEvent, fields: Option<&[String]>) -> cel::Value {
        let want = |name: &str| fields.is_none_or(|f| f.iter().any(|x| x == name));
        let mut m = HashMap::with_capacity(fields.map_or(12, |f| f.len()));
        let entries: [(&str, &dyn Fn() -> cel::Value); 8] = [
            ("aggregate", &|| s(&event.aggregate)),
            ("id", &|| s(&event.id)),
            ("version", &|| cel::Value::Int(event.version as i64)),
            ("seq", &|| cel::Value::Int(event.seq as i64)),
            ("type", &|| s(&event.event_type)),
            ("command_id", &|| s(&event.command_id)),
            ("correlation_id", &|| s(&event.correlation_id)),
            ("causation_id", &|| s(&event.causation_id)),
        ];
        for (name, value) in entries {
            if want(name) {
                m.insert(key(name), value());
            }
        }
        if want("time") {
            m.insert(key("time"), cel::Value::Timestamp(event.time.fixed_offset()));
        }
        if want("date") {
            m.insert(key("date"), s(&date_of(event.time)));
        }
        cel::Value::Map(Map { map: Arc::new(m) })
    }

    pub fn to_cel(&self) -> cel::Value {
        let mut m = HashMap::with_capacity(12);
        m.insert(key("aggregate"), s(&self.aggregate));
        m.insert(key("id"), s(&self.id));
        m.insert(key("version"), cel::Value::Int(self.version as i64));
        m.insert(key("seq"), cel::Value::Int(self.seq as i64));
        m.insert(key("type"), s(&self.event_type));
        m.insert(key("command_id"), s(&self.command_id));
        m.insert(key("correlation_id"), s(&self.correlation_id));
        m.insert(key("causation_id"), s(&self.causation_id));
        time_entries(&mut m, self.time);
        cel::Value::Map(Map { map: Arc::new(m) })
    }
}
