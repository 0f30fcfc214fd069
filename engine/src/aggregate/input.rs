//! Validation of a command's body against its declared `input`.

use serde_json::{Map, Value as Json};

use crate::cel::json_type_name;

/// The type of an input field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    String,
    Int,
    Double,
    Bool,
    List,
    Map,
    Any,
}

/// One declared input field.
#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    pub ty: FieldType,
    pub optional: bool,
}

impl FieldType {
    fn name(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Int => "int",
            FieldType::Double => "double",
            FieldType::Bool => "bool",
            FieldType::List => "list",
            FieldType::Map => "map",
            FieldType::Any => "any",
        }
    }

    fn accepts(self, value: &Json) -> bool {
        match self {
            FieldType::String => value.is_string(),
            FieldType::Int => value.is_i64(),
            FieldType::Double => value.is_number(),
            FieldType::Bool => value.is_boolean(),
            FieldType::List => value.is_array(),
            FieldType::Map => value.is_object(),
            FieldType::Any => !value.is_null(),
        }
    }
}

/// The documented limits of a command's input. They keep every accepted command storable, replayable
/// from a recording (serde_json reads at most 128 levels, and the envelope adds some) and cheap to decide.
pub mod limits {
    /// The largest body, in bytes.
    pub const MAX_BODY: usize = 1024 * 1024;
    /// How deep lists and maps may nest inside an input value.
    pub const MAX_DEPTH: usize = 32;
    /// The longest string, in bytes.
    pub const MAX_STRING: usize = 64 * 1024;
    /// The most elements of a list, or entries of a map.
    pub const MAX_ITEMS: usize = 10_000;
}

/// Checks `value` (the input field `name`) against [`limits`].
fn within_limits(name: &str, value: &Json, depth: usize) -> Result<(), String> {
    let too = |what: String| Err(format!("field `{name}`: {what}"));
    match value {
        Json::String(s) if s.len() > limits::MAX_STRING => {
            too(format!("a string of {} bytes; the limit is {}", s.len(), limits::MAX_STRING))
        }
        Json::Array(_) | Json::Object(_) if depth >= limits::MAX_DEPTH => {
            too(format!("nested deeper than {} levels", limits::MAX_DEPTH))
        }
        Json::Array(items) if items.len() > limits::MAX_ITEMS => {
            too(format!("a list of {} elements; the limit is {}", items.len(), limits::MAX_ITEMS))
        }
        Json::Object(map) if map.len() > limits::MAX_ITEMS => {
            too(format!("a map of {} entries; the limit is {}", map.len(), limits::MAX_ITEMS))
        }
        Json::Array(items) => items.iter().try_for_each(|v| within_limits(name, v, depth + 1)),
        Json::Object(map) => map.iter().try_for_each(|(k, v)| {
            if k.len() > limits::MAX_STRING {
                return too(format!("a key of {} bytes; the limit is {}", k.len(), limits::MAX_STRING));
            }
            within_limits(name, v, depth + 1)
        }),
        _ => Ok(()),
    }
}

/// Whether `id` is a valid aggregate id: `^[A-Za-z0-9_-]{1,128}$`.
pub fn valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks `body` against `fields`: `id` plus the declared fields, each of its type; nothing else.
/// Returns the aggregate id. Optional fields given as `null` are removed, so `has()` sees them as absent.
pub fn validate(fields: &[Field], body: &mut Map<String, Json>) -> Result<String, String> {
    let id = match body.get("id") {
        Some(Json::String(id)) if valid_id(id) => id.clone(),
        Some(Json::String(id)) => {
            return Err(format!("field `id`: `{id}` is not a valid id (1 to 128 of A-Z a-z 0-9 _ -)"))
        }
        Some(other) => return Err(format!("field `id`: expected string, got {}", json_type_name(other))),
        None => return Err("field `id` is required".into()),
    };
    if let Some(unknown) = body.keys().find(|k| *k != "id" && !fields.iter().any(|f| &f.name == *k)) {
        return Err(format!("field `{unknown}` is not an input of this command"));
    }
    for field in fields {
        match body.get(&field.name) {
            None | Some(Json::Null) if field.optional => {
                body.remove(&field.name);
            }
            None | Some(Json::Null) => return Err(format!("field `{}` is required", field.name)),
            Some(value) if !field.ty.accepts(value) => {
                return Err(format!(
                    "field `{}`: expected {}, got {}",
                    field.name,
                    field.ty.name(),
                    json_type_name(value)
                ))
            }
            Some(value) => within_limits(&field.name, value, 0)?,
        }
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields() -> Vec<Field> {
        vec![
            Field { name: "amount".into(), ty: FieldType::Int, optional: false },
            Field { name: "note".into(), ty: FieldType::String, optional: true },
            Field { name: "extra".into(), ty: FieldType::Any, optional: true },
        ]
    }

    #[test]
    fn inputs_beyond_the_limits_are_refused_naming_the_field() {
        let mut nested = json!(1);
        for _ in 0..limits::MAX_DEPTH + 1 {
            nested = json!([nested]);
        }
        let long = "x".repeat(limits::MAX_STRING + 1);
        let many: Vec<u8> = vec![0; limits::MAX_ITEMS + 1];
        for (extra, expected) in [
            (nested, format!("nested deeper than {} levels", limits::MAX_DEPTH)),
            (json!({"k": long}), format!("a string of {} bytes", limits::MAX_STRING + 1)),
            (json!([1, many]), format!("a list of {} elements", limits::MAX_ITEMS + 1)),
        ] {
            let err = check(json!({"id": "a1", "amount": 5, "extra": extra})).unwrap_err();
            assert!(err.starts_with("field `extra`: ") && err.contains(&expected), "{err}");
        }
        let err = check(json!({"id": "a1", "amount": 5, "note": "y".repeat(limits::MAX_STRING + 1)})).unwrap_err();
        assert!(err.starts_with("field `note`: a string of"), "{err}");
        let mut ok = json!(1);
        for _ in 0..limits::MAX_DEPTH {
            ok = json!([ok]);
        }
        assert_eq!(check(json!({"id": "a1", "amount": 5, "extra": ok})).unwrap(), "a1");
    }

    fn check(body: Json) -> Result<String, String> {
        let Json::Object(mut map) = body else { panic!() };
        validate(&fields(), &mut map)
    }

    #[test]
    fn accepts_valid_input() {
        assert_eq!(check(json!({"id": "a1", "amount": 5})).unwrap(), "a1");
        assert_eq!(check(json!({"id": "a1", "amount": 5, "note": null})).unwrap(), "a1");
    }

    #[test]
    fn names_the_offending_field() {
        assert_eq!(check(json!({"amount": 5})).unwrap_err(), "field `id` is required");
        assert!(check(json!({"id": "a 1", "amount": 5})).unwrap_err().contains("not a valid id"));
        assert_eq!(check(json!({"id": "a1"})).unwrap_err(), "field `amount` is required");
        assert_eq!(check(json!({"id": "a1", "amount": "5"})).unwrap_err(), "field `amount`: expected int, got string");
        assert_eq!(check(json!({"id": "a1", "amount": 1.5})).unwrap_err(), "field `amount`: expected int, got double");
        assert_eq!(
            check(json!({"id": "a1", "amount": 5, "x": 1})).unwrap_err(),
            "field `x` is not an input of this command"
        );
    }
}
