//! JSON <-> CEL value conversion.
//!
//! Written by hand rather than through serde because JSON integers must become CEL `int` (i64): serde would
//! turn non-negative numbers into `uint`, and CEL refuses `int + uint`.

use std::collections::HashMap;
use std::sync::Arc;

use cel::objects::{Key, Map};
use cel::Value;
use serde_json::Value as Json;

/// Converts JSON to a CEL value.
pub fn to_cel(value: &Json) -> Value {
    match value {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => match n.as_u64() {
                Some(u) => Value::UInt(u),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
        },
        Json::String(s) => Value::String(Arc::new(s.clone())),
        Json::Array(items) => Value::List(Arc::new(items.iter().map(to_cel).collect())),
        Json::Object(map) => {
            let entries: HashMap<Key, Value> =
                map.iter().map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v))).collect();
            Value::Map(Map { map: Arc::new(entries) })
        }
    }
}

/// Converts a JSON object to a CEL map without cloning it first.
pub fn map_to_cel(map: &serde_json::Map<String, Json>) -> Value {
    let entries: HashMap<Key, Value> = map.iter().map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v))).collect();
    Value::Map(Map { map: Arc::new(entries) })
}

/// Converts the `fields` of a JSON object to a CEL map (all of them when `fields` is `None`): an expression
/// that reads two fields of a large document need not pay for converting the rest.
pub fn fields_to_cel(map: &serde_json::Map<String, Json>, fields: Option<&[String]>) -> Value {
    let Some(fields) = fields else { return map_to_cel(map) };
    let entries: HashMap<Key, Value> = fields
        .iter()
        .filter_map(|f| map.get_key_value(f))
        .map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v)))
        .collect();
    Value::Map(Map { map: Arc::new(entries) })
}

/// Converts a CEL value to JSON. Timestamps become RFC 3339 strings. Fails with the type name for values
/// that have no JSON form (functions, NaN).
pub fn from_cel(value: &Value) -> Result<Json, String> {
    Ok(match value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::UInt(u) => Json::from(*u),
        Value::Float(f) => {
            serde_json::Number::from_f64(*f).map(Json::Number).ok_or_else(|| format!("non-finite double {f}"))?
        }
        Value::String(s) => Json::String(s.to_string()),
        Value::List(items) => Json::Array(items.iter().map(from_cel).collect::<Result<_, _>>()?),
        Value::Map(map) => {
            let mut out = serde_json::Map::with_capacity(map.map.len());
            for (k, v) in map.map.iter() {
                let key = match k {
                    Key::String(s) => s.to_string(),
                    Key::Int(i) => i.to_string(),
                    Key::Uint(u) => u.to_string(),
                    Key::Bool(b) => b.to_string(),
                };
                out.insert(key, from_cel(v)?);
            }
            Json::Object(out)
        }
        Value::Timestamp(ts) => Json::String(ts.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        other => other.json().map_err(|_| other.type_of().to_string())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_json() {
        let value = json!({"a": 1, "b": [true, null, "x"], "c": {"d": 2.5}, "e": -3});
        assert_eq!(from_cel(&to_cel(&value)).unwrap(), value);
    }

    #[test]
    fn non_negative_integers_are_ints() {
        assert!(matches!(to_cel(&json!(5)), Value::Int(5)));
    }
}
