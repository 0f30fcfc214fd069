//! `eddy bench starve`: command latency while heavy `list` queries run, against the same commands with no
//! queries in the same run. Queries scan on the blocking pool, a few at a time, so the ratio of the two
//! p99s should stay near 1 however many clients query.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::load::{bench_settings, drive, BenchServer, CommonArgs, Run};

const ACCOUNT_TOML: &str = include_str!("../../config/examples/bank/account.toml");
const BALANCES_TOML: &str = include_str!("../../config/examples/bank/projections/balances.toml");

/// A query that reads every document and does real work on each, within the cost budget.
const HEAVY_WHERE: &str = "doc.owner.matches('^b.*h$') || [1, 2, 3, 4, 5, 6, 7, 8].map(x, x * doc.balance)\
    .filter(y, y % 7 == 3).exists(z, z > 1000000000)";

#[derive(clap::Args)]
pub struct Args {
    /// Deposits per phase.
    #[arg(long, default_value_t = 5_000)]
    count: usize,
    /// Deposits outstanding at a time.
    #[arg(long, default_value_t = 16)]
    in_flight: usize,
    /// Accounts (view documents every query scans).
    #[arg(long, default_value_t = 5_000)]
    accounts: usize,
    /// Clients running heavy queries back to back in the second phase.
    #[arg(long, default_value_t = 32)]
    queriers: usize,
    #[command(flatten)]
    common: CommonArgs,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let server = BenchServer::start(&args.common).await?;
    let (_dir, settings) =
        bench_settings(&server, &[("account.toml", ACCOUNT_TOML), ("balances.toml", BALANCES_TOML)])?;
    let running = eddy::Running::start(settings).await.context("starting eddy")?;
    let client = async_nats::connect(&server.url).await?;
    let k = args.accounts.max(1);
    drive(&client, k, 64, b"{\"ok\":true", |i| {
        ("eddy.cmd.account.open".into(), json!({"id": format!("acct-{i}"), "owner": "bench"}).to_string().into())
    })
    .await?;
    let deposits = |client: &async_nats::Client| {
        let client = client.clone();
        let (count, in_flight) = (args.count, args.in_flight);
        async move {
            drive(&client, count, in_flight, b"{\"ok\":true", move |i| {
                let body = json!({"id": format!("acct-{}", i % k), "amount": 1});
                ("eddy.cmd.account.deposit".into(), body.to_string().into())
            })
            .await
        }
    };
    let alone = deposits(&client).await?;
    let stop = CancellationToken::new();
    let queries = Arc::new(AtomicU64::new(0));
    let queriers: Vec<_> =
        (0..args.queriers).map(|_| tokio::spawn(query_loop(client.clone(), stop.clone(), queries.clone()))).collect();
    let loaded = deposits(&client).await?;
    stop.cancel();
    for q in queriers {
        q.await?;
    }
    running.stop(CancellationToken::new()).await;
    report(&args, &alone, &loaded, queries.load(Ordering::Relaxed))
}

/// Runs the heavy query back to back, paging through the whole view, until `stop`.
async fn query_loop(client: async_nats::Client, stop: CancellationToken, done: Arc<AtomicU64>) {
    let mut after = serde_json::Value::Null;
    while !stop.is_cancelled() {
        let body = json!({"where": HEAVY_WHERE, "limit": 1000, "after": after}).to_string();
        let reply = tokio::select! {
            _ = stop.cancelled() => break,
            r = client.request("eddy.query.balances.list", body.into()) => r,
        };
        let Ok(msg) = reply else { continue };
        let page: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap_or_default();
        after = page["next"].clone();
        done.fetch_add(1, Ordering::Relaxed);
    }
}

fn report(args: &Args, alone: &Run, loaded: &Run, queries: u64) -> anyhow::Result<ExitCode> {
    let p99 = |r: &Run| r.latency.value_at_quantile(0.99);
    let ratio = p99(loaded) as f64 / p99(alone).max(1) as f64;
    if args.common.json {
        let out = json!({
            "alone_per_s": alone.per_s.round(), "alone_p99_us": p99(alone),
            "loaded_per_s": loaded.per_s.round(), "loaded_p99_us": p99(loaded),
            "p99_ratio": (ratio * 100.0).round() / 100.0, "queries": queries,
        });
        println!("{out}");
    } else {
        println!(
            "bench starve: {} deposits, {} in flight, {} accounts, {} heavy queriers",
            args.count, args.in_flight, args.accounts, args.queriers
        );
        println!("  alone    {:>8.0}/s   p99 {:>7} us", alone.per_s, p99(alone));
        println!(
            "  queried  {:>8.0}/s   p99 {:>7} us   ({queries} heavy list pages meanwhile)",
            loaded.per_s,
            p99(loaded)
        );
        println!("  p99 ratio (queried / alone) {ratio:.2}");
    }
    if alone.errors + loaded.errors > 0 {
        eprintln!("errors: alone {}, queried {}", alone.errors, loaded.errors);
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
