//! `eddy bench cold`: the latency of a command on an aggregate with a long history that is not in the
//! cache, against a command on a fresh aggregate (no events) in the same run. With snapshots, a cold load
//! reads the snapshot and at most `snapshot_every` events, so the ratio stays small however long the
//! history; the same history with snapshots off (`ledger`, `snapshot_every = 0`) shows what it replaces.
//!
//! Every command is cold: the engine's cache holds one aggregate, and each command on a long aggregate is
//! followed by one on a fresh one.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::Client;
use chrono::Utc;
use eddy_engine::envelope::OutgoingEvent;
use eddy_engine::runtime::Engine;
use eddy_engine::store::EventStore;
use hdrhistogram::Histogram;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::load::{bench_settings, BenchServer, CommonArgs};

const ACCOUNT_TOML: &str = include_str!("../../config/examples/bank/account.toml");

/// The ratio of the long aggregate's cold p50 to the fresh one's that the run must stay within.
const MAX_RATIO: f64 = 2.0;

#[derive(clap::Args)]
pub struct Args {
    /// Events in each long aggregate's history.
    #[arg(long, default_value_t = 10_000)]
    events: usize,
    /// Rounds (one cold command on each long aggregate and on a fresh one per round).
    #[arg(long, default_value_t = 200)]
    rounds: usize,
    #[command(flatten)]
    common: CommonArgs,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let server = BenchServer::start(&args.common).await?;
    let ledger = ACCOUNT_TOML.replace("aggregates.account", "aggregates.ledger").replacen(
        "[aggregates.ledger]\n",
        "[aggregates.ledger]\nsnapshot_every = 0\n",
        1,
    );
    let (_dir, mut settings) = bench_settings(&server, &[("account.toml", ACCOUNT_TOML), ("ledger.toml", &ledger)])?;
    settings.engine.engine.cache_size = 1;
    let config = settings.engine;
    let engine = Engine::start(&config).await.context("starting eddy")?;
    let client = async_nats::connect(&server.url).await?;
    for aggregate in ["account", "ledger"] {
        seed(engine.store(), aggregate, args.events).await?;
    }
    // The first load of the long account folds every event and stores its snapshot.
    command(&client, "account.deposit", json!({"id": "long", "amount": 1})).await?;
    let mut long = Histogram::<u64>::new(3)?;
    let mut unsnapshotted = Histogram::<u64>::new(3)?;
    let mut fresh = Histogram::<u64>::new(3)?;
    for i in 0..args.rounds {
        long.record(command(&client, "account.deposit", json!({"id": "long", "amount": 1})).await?)?;
        fresh.record(command(&client, "account.open", json!({"id": format!("fresh-{i}"), "owner": "b"})).await?)?;
        unsnapshotted.record(command(&client, "ledger.deposit", json!({"id": "long", "amount": 1})).await?)?;
        fresh.record(command(&client, "account.open", json!({"id": format!("fresh-{i}-b"), "owner": "b"})).await?)?;
    }
    engine.stop(CancellationToken::new()).await;
    let p50 = |h: &Histogram<u64>| h.value_at_quantile(0.5);
    let ratio = p50(&long) as f64 / p50(&fresh).max(1) as f64;
    let without = p50(&unsnapshotted) as f64 / p50(&fresh).max(1) as f64;
    if args.common.json {
        println!(
            "{}",
            json!({
                "events": args.events,
                "fresh_p50_us": p50(&fresh),
                "cold_p50_us": p50(&long),
                "cold_without_snapshots_p50_us": p50(&unsnapshotted),
                "ratio": (ratio * 1000.0).round() / 1000.0,
                "ratio_without_snapshots": (without * 1000.0).round() / 1000.0,
                "max_ratio": MAX_RATIO,
            })
        );
    } else {
        println!(
            "bench cold: {} rounds, aggregates of {} events, every command a cache miss",
            args.rounds, args.events
        );
        println!("  fresh aggregate                p50 {:>7} us", p50(&fresh));
        println!(
            "  {} events, snapshots          p50 {:>7} us   ratio {ratio:.2} (at most {MAX_RATIO})",
            args.events,
            p50(&long)
        );
        println!("  {} events, no snapshots       p50 {:>7} us   ratio {without:.2}", args.events, p50(&unsnapshotted));
    }
    Ok(if ratio <= MAX_RATIO { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// An opened account with `events - 1` deposits, appended in atomic batches straight to the store.
async fn seed(store: &EventStore, aggregate: &str, events: usize) -> anyhow::Result<()> {
    let mut last_seq = 0;
    let mut version = 0u64;
    while (version as usize) < events {
        let batch: Vec<OutgoingEvent> = (0..100.min(events - version as usize))
            .map(|_| {
                version += 1;
                let (event_type, data) = match version {
                    1 => ("AccountOpened", json!({"owner": "bench"})),
                    _ => ("MoneyDeposited", json!({"amount": 1})),
                };
                let id = format!("seed-{aggregate}-{version}");
                OutgoingEvent {
                    event_type: event_type.into(),
                    version,
                    time: Utc::now(),
                    command_id: id.clone(),
                    command_digest: String::new(),
                    correlation_id: id.clone(),
                    causation_id: id.clone(),
                    msg_id: id,
                    traceparent: String::new(),
                    data,
                }
            })
            .collect();
        match store.append(aggregate, "long", last_seq, &batch).await? {
            eddy_engine::store::Appended::Stored { last_seq: seq } => last_seq = seq,
            other => anyhow::bail!("seeding {aggregate}: {other:?}"),
        }
    }
    Ok(())
}

/// One command; its latency in microseconds. A failure stops the benchmark.
async fn command(client: &Client, target: &str, body: serde_json::Value) -> anyhow::Result<u64> {
    let started = Instant::now();
    // A first load of a long history without a snapshot may take longer than the client's default.
    let request = async_nats::Request::new().payload(body.to_string().into()).timeout(Some(Duration::from_secs(120)));
    let reply = client.send_request(format!("eddy.cmd.{target}"), request).await?;
    let took = started.elapsed().as_micros() as u64;
    anyhow::ensure!(
        reply.payload.starts_with(b"{\"ok\":true"),
        "{target}: {}",
        String::from_utf8_lossy(&reply.payload)
    );
    Ok(took)
}
