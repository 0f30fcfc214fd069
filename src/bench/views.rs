//! `eddy bench views`: catch-up of the `balances` view against a raw ordered-consumer read of the same
//! events, and `get` latency against a trivial NATS echo responder, all in one run.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use eddy::Running;
use futures::StreamExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::load::{bench_settings, drive, floor_read, peak_rss_mb, seeded, BenchServer, CommonArgs, Run};

const ACCOUNT_TOML: &str = include_str!("../../config/examples/bank/account.toml");
const BALANCES_TOML: &str = include_str!("../../config/examples/bank/projections/balances.toml");

#[derive(clap::Args)]
pub struct Args {
    /// Bank events to catch up on.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Accounts they are spread over.
    #[arg(long, default_value_t = 1000)]
    accounts: usize,
    /// `get` requests per latency measurement.
    #[arg(long, default_value_t = 20_000)]
    gets: usize,
    #[command(flatten)]
    common: CommonArgs,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let server = BenchServer::start(&args.common).await?;
    let (_dir, settings) =
        bench_settings(&server, &[("account.toml", ACCOUNT_TOML), ("balances.toml", BALANCES_TOML)])?;
    let client = async_nats::connect(&server.url).await?;
    let accounts = args.accounts.max(1);
    eprintln!("seeding {} events ...", args.events);
    let seed = eddy::seed::seed_bank(&client, accounts, args.events.saturating_sub(accounts));
    let end = seeded(&client, &settings, seed).await?;

    let floor_per_s = floor_read(&client, &settings.engine.engine.stream, end).await?;

    let started = Instant::now();
    let running = Running::start(settings).await.context("starting eddy")?;
    let view = running.views.get("balances").context("the balances view")?;
    let mut positions = view.active().subscribe();
    while *positions.borrow_and_update() < end {
        positions.changed().await?;
    }
    let eddy_per_s = end as f64 / started.elapsed().as_secs_f64();

    let echo = echo_responder(&server.url).await?;
    let get = move |i: usize| {
        (
            "eddy.query.balances.get".to_string(),
            Bytes::from(json!({"key": format!("acct-{}", i % accounts)}).to_string()),
        )
    };
    let echo_req = |_: usize| ("bench.echo".to_string(), Bytes::from_static(b"{\"ok\":true}"));
    let echo_1 = drive(&client, args.gets, 1, b"{\"ok\":true", echo_req).await?;
    let get_1 = drive(&client, args.gets, 1, b"{\"ok\":true", get).await?;
    let echo_64 = drive(&client, args.gets, 64, b"{\"ok\":true", echo_req).await?;
    let get_64 = drive(&client, args.gets, 64, b"{\"ok\":true", get).await?;
    echo.cancel();
    running.stop(CancellationToken::new()).await;
    report(&args, floor_per_s, eddy_per_s, [&echo_1, &get_1, &echo_64, &get_64])
}

/// A responder that replies with a fixed body: the least a NATS request-reply can cost.
async fn echo_responder(url: &str) -> anyhow::Result<CancellationToken> {
    let client = async_nats::connect(url).await?;
    let mut requests = client.subscribe("bench.echo").await?;
    client.flush().await?;
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                _ = token.cancelled() => break,
                m = requests.next() => match m { Some(m) => m, None => break },
            };
            if let Some(reply) = msg.reply {
                let _sent = client.publish(reply, msg.payload).await;
            }
        }
    });
    Ok(stop)
}

fn report(args: &Args, floor: f64, eddy: f64, runs: [&Run; 4]) -> anyhow::Result<ExitCode> {
    let [echo_1, get_1, echo_64, get_64] = runs;
    let q = |r: &Run, p: f64| r.latency.value_at_quantile(p);
    let rss = peak_rss_mb();
    let ratio = eddy / floor;
    if args.common.json {
        let out = json!({
            "floor_per_s": floor.round(),
            "eddy_per_s": eddy.round(),
            "ratio": (ratio * 1000.0).round() / 1000.0,
            "get_p50_us": q(get_1, 0.5),
            "get_p99_us": q(get_1, 0.99),
            "echo_p50_us": q(echo_1, 0.5),
            "echo_p99_us": q(echo_1, 0.99),
            "get64_p50_us": q(get_64, 0.5),
            "get64_p99_us": q(get_64, 0.99),
            "echo64_p50_us": q(echo_64, 0.5),
            "echo64_p99_us": q(echo_64, 0.99),
            "rss_mb": (rss * 10.0).round() / 10.0,
        });
        println!("{out}");
    } else {
        println!("bench views: catch-up of `balances` over {} events", args.events);
        println!("  floor (ordered consumer read)  {floor:>10.0} events/s");
        println!("  eddy  (balances catch-up)      {eddy:>10.0} events/s   ratio {ratio:.3}");
        for (label, echo, get) in [("1 in flight ", echo_1, get_1), ("64 in flight", echo_64, get_64)] {
            println!(
                "  {label}: get p50 {:>5} us p99 {:>5} us | echo p50 {:>5} us p99 {:>5} us | p50 ratio {:.2}",
                q(get, 0.5),
                q(get, 0.99),
                q(echo, 0.5),
                q(echo, 0.99),
                q(get, 0.5) as f64 / q(echo, 0.5).max(1) as f64
            );
        }
        println!("  peak RSS {rss:.1} MiB");
    }
    let errors: u64 = runs.iter().map(|r| r.errors).sum();
    if errors > 0 {
        eprintln!("errors: {errors}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
