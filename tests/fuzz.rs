//! Bounded fuzzing of everything eddy reads from outside: command bodies (against a real engine),
//! config files and recordings. None may panic, and each bad input gets a contract error.

mod common;

use common::*;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};

/// JSON values of any shape, with the troublesome ones over-represented.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        Just(json!(i64::MAX)),
        Just(json!(u64::MAX)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "[a-z\\n\\r\\u{0}-\\u{1f} é]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z\\n]{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A command body: mostly the right fields with wrong or odd values, sometimes anything at all.
fn body() -> impl Strategy<Value = String> {
    let fields = prop::collection::btree_map(
        prop::sample::select(vec!["id", "owner", "amount", "from", "to", "x\ny", ""]).prop_map(str::to_string),
        json_value(),
        0..5,
    )
    .prop_map(|m| Value::Object(m.into_iter().collect()).to_string());
    prop_oneof![4 => fields, 1 => json_value().prop_map(|v| v.to_string()), 1 => "[ -~]{0,40}"]
}

#[tokio::test]
async fn fuzzed_command_bodies_get_contract_replies() {
    let nats = TestServer::start().await;
    let eddy = engine(&example("bank", &nats.url(), nats.dir.path())).await;
    let c = nats.client().await;
    let mut runner = TestRunner::new(Config { cases: 300, failure_persistence: None, ..Config::default() });
    let targets = ["account.open", "account.deposit", "account.withdraw", "transfer.request", "account.nope"];
    for i in 0..300 {
        let body = body().new_tree(&mut runner).unwrap().current();
        let target = targets[i % targets.len()];
        let msg = c.request(format!("eddy.cmd.{target}"), body.clone().into()).await;
        let msg = msg.unwrap_or_else(|e| panic!("{target} {body}: no reply: {e}"));
        let reply: Value = serde_json::from_slice(&msg.payload).unwrap_or_else(|e| panic!("{body}: {e}"));
        let code = reply["error"]["code"].as_str().unwrap_or("ok");
        assert!(["ok", "invalid", "not_found", "rejected", "conflict"].contains(&code), "{target} {body}: {reply}");
    }
    ok(&c, "account.open", json!({"id": "still-serving", "owner": "x"})).await;
    stop(eddy).await;
}

/// Mutations of text: a byte changed, a span cut out or repeated, a line duplicated.
fn mutate(text: &str, runner: &mut TestRunner) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    let n = bytes.len().max(1);
    let (kind, at, len, byte) = (0u8..4, 0..n, 0usize..40, any::<u8>()).new_tree(runner).unwrap().current();
    let end = (at + len).min(bytes.len());
    match kind {
        0 if at < bytes.len() => bytes[at] = byte,
        1 => drop(bytes.drain(at.min(bytes.len())..end)),
        2 => {
            let span = bytes[at.min(bytes.len())..end].to_vec();
            bytes.splice(end..end, span);
        }
        _ => bytes.insert(at.min(bytes.len()), byte),
    }
    bytes
}

#[test]
fn mutated_configs_load_or_report_errors() {
    let mut runner = TestRunner::new(Config { cases: 200, failure_persistence: None, ..Config::default() });
    let originals: Vec<(String, String)> =
        ["account.toml", "transfer.toml", "projections/balances.toml", "sagas/transfer.toml"]
            .iter()
            .map(|f| (f.to_string(), std::fs::read_to_string(root().join("config/examples/bank").join(f)).unwrap()))
            .collect();
    for i in 0..200 {
        let dir = tempfile::tempdir().unwrap();
        copy_example("bank", dir.path());
        let (file, text) = &originals[i % originals.len()];
        std::fs::write(dir.path().join(file), mutate(text, &mut runner)).unwrap();
        // Ok or a list of errors; a panic fails the test.
        if let Err(errors) = eddy::load(dir.path()) {
            assert!(!errors.to_string().is_empty());
        }
    }
}

#[test]
fn mutated_recordings_replay_or_report_their_line() {
    let mut runner = TestRunner::new(Config { cases: 200, failure_persistence: None, ..Config::default() });
    let text = std::fs::read_to_string(root().join("tests/streams/bank.jsonl")).unwrap();
    let settings = eddy::load(&root().join("config/examples/bank")).unwrap();
    for _ in 0..200 {
        let bytes = mutate(&text, &mut runner);
        match eddy::replay::Recording::from_reader(&bytes[..]) {
            Ok(recording) => drop(eddy::replay::replay(&settings, &recording)),
            Err(e) => assert!(e.to_string().starts_with("line "), "{e}"),
        }
    }
}
