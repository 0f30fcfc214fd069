//! `eddy bench sagas`: N small bank transfers (debit, credit, complete) among 1000 accounts with 64 in
//! flight, each timed from its request to its `TransferCompleted`. The floor is raw JetStream appends at the
//! same concurrency, divided by the 7 appends a small transfer makes (request, 3 commands, 3 transitions).

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use eddy::Running;
use eddy_engine::store::EventStore;
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::load::{bench_settings, peak_rss_mb, BenchServer, CommonArgs};

const ACCOUNT_TOML: &str = include_str!("../../config/examples/bank/account.toml");
const TRANSFER_TOML: &str = include_str!("../../config/examples/bank/transfer.toml");
const SAGA_TOML: &str = include_str!("../../config/examples/bank/sagas/transfer.toml");
/// Appends per small transfer: TransferRequested, SagaStarted, MoneyWithdrawn, StateEntered,
/// MoneyDeposited, StateEntered, TransferCompleted.
const APPENDS_PER_SAGA: usize = 7;
const ACCOUNTS: usize = 1000;

#[derive(clap::Args)]
pub struct Args {
    /// Transfers to run.
    #[arg(long, default_value_t = 5000)]
    count: usize,
    /// Transfers in flight.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    #[command(flatten)]
    common: CommonArgs,
}

type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<bool>>>>;

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let server = BenchServer::start(&args.common).await?;
    let files = [("account.toml", ACCOUNT_TOML), ("transfer.toml", TRANSFER_TOML), ("saga.toml", SAGA_TOML)];
    let (_dir, settings) = bench_settings(&server, &files)?;
    let client = async_nats::connect(&server.url).await?;
    EventStore::open(client.clone(), &settings.engine.engine).await?;
    // The floor first: the saga's position then ends on the seeded accounts it reads.
    let floor_appends = floor_appends(&client, args.count * APPENDS_PER_SAGA, args.in_flight).await?;
    let floor = floor_appends / APPENDS_PER_SAGA as f64;
    eprintln!("seeding {ACCOUNTS} accounts ...");
    eddy::seed::seed_funded_accounts(&client, ACCOUNTS, 1_000_000).await.map_err(|e| anyhow::anyhow!("{e}"))?;

    let end = EventStore::attach(client.clone(), &settings.engine.engine).last_seq().await?;
    let running = Running::start(settings).await.context("starting eddy")?;
    // The saga first reads the seeded history (without acting); the clock starts once it has.
    loop {
        let status = running.reactors.status();
        let saga = status.iter().find(|s| s.name == "transfer").context("the transfer saga")?;
        if saga.position >= end && saga.status == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let waiters: Waiters = Arc::default();
    let listener = tokio::spawn(listen(client.clone(), waiters.clone()));
    let started = Instant::now();
    let workers: Vec<_> = (0..args.in_flight.max(1))
        .map(|w| {
            let (client, waiters, count, step) = (client.clone(), waiters.clone(), args.count, args.in_flight.max(1));
            tokio::spawn(async move {
                let mut hist = Histogram::<u64>::new(3).expect("histogram");
                let mut failed = 0u64;
                let mut i = w;
                while i < count {
                    let id = format!("t{i}");
                    let (tx, rx) = oneshot::channel();
                    waiters.lock().expect("lock").insert(id.clone(), tx);
                    let body = json!({"id": id, "from": format!("acct-{}", i % ACCOUNTS),
                        "to": format!("acct-{}", (i * 7 + 1) % ACCOUNTS), "amount": 1});
                    let t = Instant::now();
                    let sent = client.request("eddy.cmd.transfer.request", body.to_string().into()).await;
                    let completed = match sent {
                        Ok(reply) if reply.payload.starts_with(b"{\"ok\":true") => {
                            matches!(tokio::time::timeout(Duration::from_secs(30), rx).await, Ok(Ok(true)))
                        }
                        _ => false,
                    };
                    if completed {
                        hist.record(t.elapsed().as_micros() as u64).expect("in range");
                    } else {
                        failed += 1;
                    }
                    i += step;
                }
                (hist, failed)
            })
        })
        .collect();
    let mut latency = Histogram::<u64>::new(3).expect("histogram");
    let mut failed = 0;
    for w in workers {
        let (h, f) = w.await?;
        latency.add(h).expect("same bounds");
        failed += f;
    }
    let per_s = latency.len() as f64 / started.elapsed().as_secs_f64();
    listener.abort();
    running.stop(CancellationToken::new()).await;

    let rss = peak_rss_mb();
    let (p50, p99) = (latency.value_at_quantile(0.5) as f64 / 1000.0, latency.value_at_quantile(0.99) as f64 / 1000.0);
    let ratio = per_s / floor;
    if args.common.json {
        let out = json!({
            "sagas_per_s": per_s.round(),
            "p50_ms": (p50 * 100.0).round() / 100.0,
            "p99_ms": (p99 * 100.0).round() / 100.0,
            "rss_mb": (rss * 10.0).round() / 10.0,
            "failed": failed,
            "floor_sagas_per_s": floor.round(),
            "ratio": (ratio * 1000.0).round() / 1000.0,
        });
        println!("{out}");
    } else {
        println!("bench sagas: {} small transfers among {ACCOUNTS} accounts, {} in flight", args.count, args.in_flight);
        println!("  floor (raw appends / {APPENDS_PER_SAGA})     {floor:>10.0} sagas/s");
        println!("  eddy  (request -> completed)   {per_s:>10.0} sagas/s   ratio {ratio:.3}");
        println!("  latency p50 {p50:.2} ms   p99 {p99:.2} ms   failed {failed}");
        println!("  peak RSS {rss:.1} MiB");
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Tells each waiting transfer how it ended, from the transfer aggregate's events.
async fn listen(client: async_nats::Client, waiters: Waiters) -> anyhow::Result<()> {
    let mut sub = client.subscribe("events.transfer.*").await?;
    while let Some(msg) = sub.next().await {
        let kind = msg.headers.as_ref().and_then(|h| h.get("Eddy-Event-Type")).map(|v| v.as_str().to_string());
        let ok = match kind.as_deref() {
            Some("TransferCompleted") => true,
            Some("TransferFailed") => false,
            _ => continue,
        };
        let id = msg.subject.rsplit('.').next().unwrap_or_default().to_string();
        if let Some(tx) = waiters.lock().expect("lock").remove(&id) {
            // Err: the worker gave up waiting, and counts it as failed.
            if tx.send(ok).is_err() {
                tracing::debug!(%id, "a transfer completed after its worker gave up");
            }
        }
    }
    Ok(())
}

/// Raw JetStream appends per second: `count` small publishes awaiting their acks, `in_flight` at a time.
async fn floor_appends(client: &async_nats::Client, count: usize, in_flight: usize) -> anyhow::Result<f64> {
    let js = async_nats::jetstream::new(client.clone());
    let started = Instant::now();
    let workers: Vec<_> = (0..in_flight.max(1))
        .map(|w| {
            let js = js.clone();
            let step = in_flight.max(1);
            tokio::spawn(async move {
                let mut i = w;
                while i < count {
                    let subject = format!("events.floor.f{}", i % ACCOUNTS);
                    js.publish(subject, "{\"amount\":1}".into()).await?.await?;
                    i += step;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for w in workers {
        w.await??;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}
