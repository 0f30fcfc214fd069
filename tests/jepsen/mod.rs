//! A fault suite in the spirit of Jepsen: engines of the bank example as child processes of the `eddy`
//! binary, a nats-server the test kills and restarts, a mixed workload from several clients, seeded faults,
//! then the checker over the whole stream and the views. `scenario(secs)` is the short test and the soak.
#![allow(dead_code)]

pub mod checker;
pub mod faults;
pub mod nodes;
pub mod observe;
pub mod rng;
pub mod workload;

use std::time::{Duration, Instant};

use async_nats::Client;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::common::eventually;
use faults::Cluster;
use rng::Rng;
use workload::History;

/// How many engines serve the queue group.
pub const ENGINES: usize = 3;
/// How many clients send commands at once.
pub const CLIENTS: usize = 3;

/// Runs the workload for about `secs` seconds under faults, settles, and returns the checker's violations
/// (printed with the report). With `nodes`, NATS is a 3-node cluster and the stream has 3 replicas; the NATS fault is leader loss.
pub async fn scenario(secs: u64, nodes: bool) -> Vec<checker::Violation> {
    let seed = rng::seed();
    let backend = if nodes { "a 3-node cluster" } else { "one nats-server" };
    eprintln!("chaos: seed {seed} (CHAOS_SEED={seed} reproduces the choices), {secs} s, {ENGINES} engines, {CLIENTS} clients, {backend}");
    let mut rng = Rng::new(seed);
    let mut cluster = Cluster::start(ENGINES, nodes).await;
    let c = workload::connect(&cluster.url()).await;
    let history = History::default();
    workload::setup(&c, &history).await;

    let stop = CancellationToken::new();
    let clients = clients(&cluster.url(), &history, &mut rng, &stop);

    // Every kind of fault once in a seeded order, then seeded picks until the time is up.
    let until = Instant::now() + Duration::from_secs(secs);
    let kinds = cluster.faults();
    let mut plan = kinds.clone();
    for i in (1..plan.len()).rev() {
        plan.swap(i, rng.range(0, i as u64) as usize);
    }
    let mut applied = Vec::new();
    let mut round = 0;
    while Instant::now() < until || round < kinds.len() {
        let fault = plan.get(round).copied().unwrap_or_else(|| kinds[rng.range(0, kinds.len() as u64 - 1) as usize]);
        tokio::time::sleep(Duration::from_millis(rng.range(500, 2_000))).await;
        let what = cluster.apply(fault, &mut rng).await;
        eprintln!("chaos: fault {round}: {what}");
        applied.push(what);
        round += 1;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    for client in clients {
        client.await.expect("a client");
    }
    verdict(&c, cluster, &history, seed, &applied, ENGINES).await
}

/// [`CLIENTS`] clients sending the mixed workload until `stop`.
pub fn clients(url: &str, history: &History, rng: &mut Rng, stop: &CancellationToken) -> Vec<JoinHandle<()>> {
    (0..CLIENTS)
        .map(|n| {
            let (history, stop, seed, url) = (history.clone(), stop.clone(), rng.next(), url.to_string());
            tokio::spawn(async move { workload::client(workload::connect(&url).await, history, n, seed, stop).await })
        })
        .collect()
}

/// After the clients stopped: settles, runs the checker over the stream and the views as `engines` engines
/// answer them, prints the report and stops the cluster (keeping its files on a violation).
pub async fn verdict(
    c: &Client,
    cluster: Cluster,
    history: &History,
    seed: u64,
    applied: &[String],
    engines: usize,
) -> Vec<checker::Violation> {
    // Settle: every transfer final, the reactors and views at the end of the stream.
    let settled = eventually(90, || observe::transfers_settled(c)).await;
    if !settled {
        eprintln!("chaos: some transfers are still running after 90 s (the checker lists them)");
    }
    // A reactor's position is the last event it read of its own subjects: wait for the last withdrawal.
    let withdrawals = crate::common::events_on(c, "events.account.*").await;
    let last_withdrawal = withdrawals.iter().filter(|e| e.event_type == "MoneyWithdrawn").map(|e| e.seq).max();
    let at = eventually(60, || async {
        let s = crate::common::reactor_status(c, "large-withdrawals").await;
        s["position"].as_u64().unwrap_or(0) >= last_withdrawal.unwrap_or(0) && s["status"] == "running"
    });
    if !at.await {
        eprintln!("chaos: reactor large-withdrawals did not reach seq {last_withdrawal:?}");
    }
    let stream = observe::stream(c).await;
    let views = observe::views(c, crate::common::last_seq(c).await, engines).await;
    let ops = history.ops();
    let sent = ops.len();
    let (violations, summary) = checker::check(&ops, &stream, &views);

    eprintln!(
        "chaos: faults applied: {}; engines that exited on their own and were restarted: {}",
        applied.len(),
        cluster.restarts
    );
    for what in applied {
        eprintln!("  - {what}");
    }
    eprintln!(
        "chaos: {sent} client commands ({} ok, {} rejected, {} unknown), {} events, {} transfers completed, {} failed, {} DailyLimitExceeded, money {}",
        summary.ok, summary.rejected, summary.unknown, summary.events, summary.transfers_completed,
        summary.transfers_failed, summary.limit_events, summary.money
    );
    if violations.is_empty() {
        eprintln!("chaos: no violation");
    } else {
        eprintln!(
            "chaos: {} violations (seed {seed}); engine logs kept in {}",
            violations.len(),
            cluster.dir().display()
        );
        for v in &violations {
            eprintln!("  {v}");
        }
    }
    cluster.stop(!violations.is_empty()).await;
    violations
}
