//! Property tests: no source text, however hostile, makes compiling or evaluating panic or overflow the
//! stack, and the direct evaluator never disagrees with the interpreter.

use proptest::prelude::*;
use serde_json::json;

use super::{EventScope, Expr, Vars};
use crate::envelope::StoredEvent;

/// Expressions from a small CEL grammar, with macros, deep nesting and names that are not bound.
fn expr() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("state".to_string()),
        Just("event".to_string()),
        Just("x".to_string()),
        Just("nope".to_string()),
        any::<i64>().prop_map(|i| i.to_string()),
        Just("9223372036854775807".to_string()),
        Just("1.5".to_string()),
        Just("'héllo\\n'".to_string()),
        Just("null".to_string()),
        Just("[1, 2, 3]".to_string()),
        Just("{'a': 1}".to_string()),
        Just("state.items".to_string()),
        Just("event.amount".to_string()),
    ];
    leaf.prop_recursive(6, 64, 4, |inner| {
        prop_oneof![
            (
                inner.clone(),
                prop::sample::select(vec!["+", "-", "*", "/", "%", "==", "<", "&&", "||", " in "]),
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
            inner.clone().prop_map(|a| format!("({a})")),
            inner.clone().prop_map(|a| format!("!{a}")),
            inner.clone().prop_map(|a| format!("-{a}")),
            (inner.clone(), prop::sample::select(vec!["a", "items", "amount", "size()"]))
                .prop_map(|(a, f)| format!("{a}.{f}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a}[{b}]")),
            (inner.clone(), prop::sample::select(vec!["all", "exists", "exists_one", "map", "filter"]), inner.clone())
                .prop_map(|(a, m, b)| format!("{a}.{m}(x, {b})")),
            (inner.clone(), inner.clone(), inner.clone()).prop_map(|(a, b, c)| format!("{a} ? {b} : {c}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{{'k': {a}, 'j': {b}}}")),
            (inner.clone(), inner).prop_map(|(a, b)| format!("matches({a}, {b})")),
        ]
    })
}

fn event() -> StoredEvent {
    StoredEvent {
        seq: 7,
        aggregate: "cart".into(),
        id: "c1".into(),
        event_type: "Added".into(),
        version: 2,
        time: chrono::DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z").unwrap().into(),
        command_id: "c".into(),
        command_digest: String::new(),
        correlation_id: "k".into(),
        causation_id: "c".into(),
        traceparent: String::new(),
        data: json!({"amount": 3, "items": [1, 2], "a": "x"}),
    }
}

fn check(source: &str) {
    let Ok(expr) = Expr::compile(source, &["state", "event", "meta"]) else { return };
    let state = json!({"items": [1, 2, 3], "a": {"b": 1}, "amount": i64::MAX});
    let e = event();
    let scope = EventScope::new(&e).bind("state", &state, None);
    let through_scope = scope.eval(&expr).map_err(|e| e.to_string());
    let mut vars = Vars::new();
    vars.set("state", &state).set("event", &e.data).set_value("meta", crate::aggregate::EventMeta::cel_of(&e, None));
    let interpreted = expr.eval(&vars).map_err(|e| e.to_string());
    // Messages may print maps in hash order, so errors are compared by being errors; and a list built from a
    // map's keys (`list + map`) comes in the interpreter's hash order, so lists are compared as multisets.
    assert_eq!(through_scope.ok().map(unordered), interpreted.ok().map(unordered), "{source}");
}

/// `value` with every list sorted by the elements' JSON text.
fn unordered(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Array(items) => {
            let mut items: Vec<serde_json::Value> = items.into_iter().map(unordered).collect();
            items.sort_by_key(|v| v.to_string());
            serde_json::Value::Array(items)
        }
        serde_json::Value::Object(map) => map.into_iter().map(|(k, v)| (k, unordered(v))).collect(),
        other => other,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn generated_expressions_compile_and_evaluate_without_panicking(source in expr()) {
        check(&source);
    }

    #[test]
    fn arbitrary_text_never_panics_the_compiler(source in "[ -~\\n]{0,200}") {
        check(&source);
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn deep_nesting_of_any_kind_is_refused_cleanly(
        depth in 1usize..3000,
        shape in prop::sample::select(vec!["(", "[", "!", "-", "{'a': "]),
    ) {
        let close = match shape { "(" => ")", "[" => "]", "{'a': " => "}", _ => "" };
        let source = format!("{}1{}", shape.repeat(depth), close.repeat(depth));
        check(&source);
    }
}
