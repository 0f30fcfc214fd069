//! The fault suite (`tests/jepsen/`): engines killed, the lease holder frozen past the dedup window, the
//! nats-server killed, under a mixed bank workload; then the checker over the whole stream and the views.
//! `scripts/chaos.sh [SECS] [SEED]` runs the soak (the ignored test, `CHAOS_SECS`).

mod common;
mod jepsen;

use eddy_engine::envelope::StoredEvent;
use jepsen::checker::{check, Op, Outcome, Stored, Views};
use serde_json::json;

#[tokio::test]
async fn under_faults_every_promise_holds() {
    let violations = jepsen::scenario(25, false).await;
    assert!(violations.is_empty(), "{} violations, see the report above", violations.len());
}

#[tokio::test]
async fn under_faults_in_a_cluster_every_promise_holds() {
    let violations = jepsen::scenario(25, true).await;
    assert!(violations.is_empty(), "{} violations, see the report above", violations.len());
}

#[tokio::test]
#[ignore = "the soak: scripts/chaos.sh [SECS] [SEED]"]
async fn soak() {
    let secs = std::env::var("CHAOS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    let cluster = std::env::var("CHAOS_CLUSTER").is_ok_and(|v| v == "1");
    let violations = jepsen::scenario(secs, cluster).await;
    assert!(violations.is_empty(), "{} violations, see the report above", violations.len());
}

// The checker must be able to fail: fabricated histories and streams with one planted violation each.

fn event(seq: u64, aggregate: &str, id: &str, event_type: &str, command_id: &str, data: serde_json::Value) -> Stored {
    Stored {
        msg_id: format!("m{seq}"),
        event: StoredEvent {
            seq,
            aggregate: aggregate.into(),
            id: id.into(),
            event_type: event_type.into(),
            version: 1,
            time: chrono::Utc::now(),
            command_id: command_id.into(),
            command_digest: String::new(),
            correlation_id: String::new(),
            causation_id: String::new(),
            traceparent: String::new(),
            data,
        },
    }
}

fn op(command_id: &str, target: &str, outcome: Outcome) -> Op {
    Op { command_id: command_id.into(), target: target.into(), body: json!({}), outcome }
}

/// One open and one deposit of 100, acked, with views that agree.
fn healthy() -> (Vec<Op>, Vec<Stored>, Vec<Views>) {
    let history =
        vec![op("open", "account.open", Outcome::Ok { seq: 1 }), op("dep", "account.deposit", Outcome::Ok { seq: 2 })];
    let stream = vec![
        event(1, "account", "a1", "AccountOpened", "open", json!({"owner": "o"})),
        event(2, "account", "a1", "MoneyDeposited", "dep", json!({"amount": 100})),
    ];
    let mut views = Views::default();
    views.balances.insert("a1".into(), 100);
    views.daily = (100, 0, 1);
    (history, stream, vec![views])
}

fn rules(history: &[Op], stream: &[Stored], views: &[Views]) -> Vec<&'static str> {
    let (violations, _) = check(history, stream, views);
    for v in &violations {
        eprintln!("{v}");
    }
    violations.iter().map(|v| v.rule).collect()
}

#[test]
fn the_checker_passes_a_healthy_run() {
    let (h, s, v) = healthy();
    assert_eq!(rules(&h, &s, &v), Vec::<&str>::new());
}

#[test]
fn the_checker_finds_a_command_stored_twice() {
    let (h, mut s, mut v) = healthy();
    s.push(event(3, "account", "a1", "MoneyDeposited", "dep", json!({"amount": 100})));
    v[0].balances.insert("a1".into(), 200);
    v[0].daily = (200, 0, 2);
    let found = rules(&h, &s, &v);
    assert!(found.contains(&"command-twice"), "{found:?}");
}

#[test]
fn the_checker_finds_a_lost_acked_command() {
    let (mut h, s, v) = healthy();
    h.push(op("lost", "account.deposit", Outcome::Ok { seq: 3 }));
    assert!(rules(&h, &s, &v).contains(&"acked-lost"));
}

#[test]
fn the_checker_finds_a_repeated_msg_id_and_a_stale_view() {
    let (h, mut s, mut v) = healthy();
    s[1].msg_id = "m1".into();
    v[0].balances.insert("a1".into(), 90);
    let found = rules(&h, &s, &v);
    assert!(found.contains(&"msg-id-twice") && found.contains(&"view-balances"), "{found:?}");
}

#[test]
fn the_checker_finds_an_unfinished_transfer_and_a_missing_reactor_effect() {
    let (h, mut s, v) = healthy();
    s.push(event(3, "transfer", "t1", "TransferRequested", "", json!({"from": "a1", "to": "a2", "amount": 5})));
    let found = rules(&h, &s, &v);
    assert!(found.contains(&"transfer-final"), "{found:?}");

    let (mut h, mut s, mut v) = healthy();
    h.push(op("big", "account.withdraw", Outcome::Ok { seq: 3 }));
    s[1].event.data = json!({"amount": 20_000});
    s.push(event(3, "account", "a1", "MoneyWithdrawn", "big", json!({"amount": 11_000})));
    v[0].balances.insert("a1".into(), 9_000);
    v[0].daily = (20_000, 11_000, 2);
    let found = rules(&h, &s, &v);
    assert_eq!(found, vec!["reactor-once"], "the crossing at seq 3 emitted nothing");
}
