//! The `meta` variable of command and event expressions.

use std::collections::HashMap;
use std::sync::Arc;

use cel::objects::{Key, Map};
use chrono::{DateTime, FixedOffset, Utc};

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
    entries.insert(key("date"), s(&time.format("%Y-%m-%d").to_string()));
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
