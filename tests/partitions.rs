//! `partitions = 4` on the bank's transfer saga and its `large-withdrawals` rule, two engines as separate
//! processes under the fault suite's mixed workload: the partitions spread two and two over the engines;
//! when one engine is killed, the other takes its partitions once their leases expire and finishes the
//! transfers requested meanwhile; the fault checker (every command stored once, money conserved, every
//! transfer final, views equal to the fold, the rule's effects) passes over the whole run.

mod common;
mod jepsen;

use std::collections::BTreeMap;
use std::path::Path;

use async_nats::Client;
use common::{eventually, reactor_status};
use jepsen::faults::Cluster;
use jepsen::rng::{self, Rng};
use jepsen::workload::{self, History};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const PARTITIONS: usize = 4;
const REACTORS: [(&str, &str); 2] =
    [("transfer", "sagas/transfer.toml"), ("large-withdrawals", "reactors/large-withdrawals.toml")];

/// Sets `partitions` on both reactors of the bank example.
fn partitioned(config: &Path) {
    for (name, file) in REACTORS {
        let path = config.join(file);
        let table = format!("[reactors.{name}]\n");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(&table), "{file} declares {table}");
        let text = text.replacen(&table, &format!("{table}partitions = {PARTITIONS}\n"), 1);
        std::fs::write(&path, text).unwrap();
    }
}

/// How many partitions of `reactor` each engine holds, as the answering engine sees them (`None`: a
/// partition without a known holder, or not yet running).
async fn held(c: &Client, reactor: &str) -> Option<BTreeMap<String, usize>> {
    let status = reactor_status(c, reactor).await;
    let parts = status["partitions"].as_array()?;
    if parts.len() != PARTITIONS {
        return None;
    }
    let mut by_engine = BTreeMap::new();
    for p in parts {
        let holder = p["holder"].as_str()?;
        if !matches!(p["status"].as_str(), Some("running" | "standby")) {
            return None;
        }
        *by_engine.entry(holder.to_string()).or_default() += 1;
    }
    Some(by_engine)
}

/// Waits until every engine's answer says `want` holds `reactor`'s partitions.
async fn spread_is(c: &Client, reactor: &str, want: &BTreeMap<String, usize>) -> bool {
    // Any engine may answer: a few answers in a row must all agree.
    eventually(60, || async {
        for _ in 0..4 {
            if held(c, reactor).await.as_ref() != Some(want) {
                return false;
            }
        }
        true
    })
    .await
}

/// Whether transfer `id` ended (completed, or failed when the workload emptied an account).
async fn finished(c: &Client, id: &str) -> bool {
    let events = common::events_on(c, &format!("events.transfer.{id}")).await;
    events.iter().any(|e| matches!(e.event_type.as_str(), "TransferCompleted" | "TransferFailed"))
}

#[tokio::test]
async fn partitions_spread_over_engines_and_move_when_one_dies() {
    let seed = rng::seed();
    eprintln!("partitions: seed {seed} (CHAOS_SEED={seed} reproduces the workload)");
    let mut rng = Rng::new(seed);
    let mut cluster = Cluster::start_with(2, false, partitioned).await;
    let c = workload::connect(&cluster.url()).await;
    let history = History::default();
    workload::setup(&c, &history).await;
    let stop = CancellationToken::new();
    let clients = jepsen::clients(&cluster.url(), &history, &mut rng, &stop);

    // The first engine took every partition before the second was up; it handed two back.
    let (a, b) = (cluster.engine_id(0), cluster.engine_id(1));
    assert!(!a.is_empty() && !b.is_empty() && a != b, "two engine ids: {a} {b}");
    let even = BTreeMap::from([(a.clone(), PARTITIONS / 2), (b.clone(), PARTITIONS / 2)]);
    for (reactor, _) in REACTORS {
        let spread = spread_is(&c, reactor, &even).await;
        assert!(spread, "{reactor}: two partitions on each engine: {}", reactor_status(&c, reactor).await);
    }

    // Engine a dies with transfers in flight; more are requested before its leases expire.
    cluster.kill(0);
    let mut meanwhile = Vec::new();
    for n in 0..6 {
        let id = format!("t-meanwhile-{n}");
        let body = json!({"id": id, "from": workload::shared(n), "to": workload::shared(n + 1), "amount": 1 + n});
        let outcome = workload::send(&c, &history, "transfer.request", body, &format!("meanwhile-{n}")).await;
        assert!(matches!(outcome, jepsen::checker::Outcome::Ok { .. }), "{id} is accepted: {outcome:?}");
        meanwhile.push(id);
    }
    let alone = BTreeMap::from([(b.clone(), PARTITIONS)]);
    for (reactor, _) in REACTORS {
        let moved = spread_is(&c, reactor, &alone).await;
        assert!(moved, "{reactor}: the survivor holds every partition: {}", reactor_status(&c, reactor).await);
    }
    for id in &meanwhile {
        assert!(eventually(60, || finished(&c, id)).await, "{id}, requested while the engine was dead, finishes");
    }

    stop.cancel();
    for client in clients {
        client.await.expect("a client");
    }
    let applied = vec![format!("SIGKILL engine 0 ({a}); engine 1 ({b}) took its partitions")];
    let violations = jepsen::verdict(&c, cluster, &history, seed, &applied, 1).await;
    assert!(violations.is_empty(), "{} violations, see the report above", violations.len());
}
