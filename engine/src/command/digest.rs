//! A command's digest: what a command id is bound to. A client that sends an id again with the same command
//! gets the first reply; one that reuses the id for another command or body has a bug that a silent first
//! reply would hide, so it gets a `conflict`.

use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};

/// 128 bits of SHA-256 over the aggregate, the command and the validated body, in hex. The body's keys are
/// sorted (serde_json's map is ordered), so key order and whitespace do not count; stable across builds and
/// engines, since it is stored with the events.
pub fn of(aggregate: &str, command: &str, body: &Map<String, Json>) -> String {
    let mut hash = Sha256::new();
    for part in [aggregate.as_bytes(), b"\0", command.as_bytes(), b"\0"] {
        hash.update(part);
    }
    hash.update(serde_json::to_vec(body).unwrap_or_default());
    hash.finalize()[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a command with digest `new` repeats the one first answered under the same id. An empty stored
/// digest (events stored before digests) cannot tell, so it is taken as a repeat, as before.
pub fn repeats(stored: &str, new: &str) -> bool {
    stored.is_empty() || stored == new
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Json) -> Map<String, Json> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn key_order_does_not_count_but_every_part_does() {
        let a = of("account", "deposit", &body(json!({"id": "a1", "amount": 5})));
        let parsed: Json = serde_json::from_str(r#"{ "amount": 5, "id": "a1" }"#).unwrap();
        assert_eq!(a, of("account", "deposit", &body(parsed)));
        assert_ne!(a, of("account", "deposit", &body(json!({"id": "a1", "amount": 6}))));
        assert_ne!(a, of("account", "withdraw", &body(json!({"id": "a1", "amount": 5}))));
        assert_ne!(a, of("accoun", "tdeposit", &body(json!({"id": "a1", "amount": 5}))));
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn an_unknown_digest_is_a_repeat() {
        assert!(repeats("", "abc"));
        assert!(repeats("abc", "abc"));
        assert!(!repeats("abd", "abc"));
    }
}
