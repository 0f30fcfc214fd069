//! `eddy bench commands`: bank deposits through eddy against the raw floor of the same work done by hand
//! (request -> direct get of the subject's last sequence -> publish with the expected sequence -> reply).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use eddy_engine::runtime::Engine;
use futures::StreamExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::load::{bench_settings, drive, peak_rss_mb, BenchServer, CommonArgs, Run};

/// The bank aggregate, built in so the benchmark runs from any directory.
const ACCOUNT_TOML: &str = include_str!("../../config/examples/bank/account.toml");

#[derive(clap::Args)]
pub struct Args {
    /// Requests outstanding at a time.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Commands to send (and floor requests).
    #[arg(long, default_value_t = 20_000)]
    count: usize,
    /// Accounts the deposits are spread over.
    #[arg(long, default_value_t = 1000)]
    aggregates: usize,
    /// Record metrics (the Prometheus recorder) and export every span over OTLP to a local receiver, as an
    /// operator would run it; compare with a run without it.
    #[arg(long)]
    pub telemetry: bool,
    #[command(flatten)]
    common: CommonArgs,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let sink = if args.telemetry { Some(super::telemetry::Sink::install().await?) } else { None };
    let server = BenchServer::start(&args.common).await?;
    let (_dir, settings) = bench_settings(&server, &[("account.toml", ACCOUNT_TOML)])?;
    let config = settings.engine;
    let engine = Engine::start(&config).await.context("starting eddy")?;
    let client = async_nats::connect(&server.url).await?;
    let k = args.aggregates.max(1);

    let floor = floor(&client, &server.url, &config.engine.stream, &args, k).await?;

    // Open every account first, so the timed run measures deposits on warm aggregates.
    drive(&client, k, args.in_flight, b"{\"ok\":true", |i| {
        ("eddy.cmd.account.open".into(), json!({"id": format!("acct-{i}"), "owner": "bench"}).to_string().into())
    })
    .await?;
    let eddy = drive(&client, args.count, args.in_flight, b"{\"ok\":true", move |i| {
        ("eddy.cmd.account.deposit".into(), json!({"id": format!("acct-{}", i % k), "amount": 1}).to_string().into())
    })
    .await?;
    engine.stop(CancellationToken::new()).await;
    if let Some(sink) = sink {
        let (requests, bytes) = sink.finish().await;
        println!("telemetry on: metrics recorded; {requests} OTLP export requests ({} KiB) received", bytes / 1024);
        anyhow::ensure!(requests > 0, "telemetry on, but no span reached the OTLP receiver");
    }
    report(&args, &floor, &eddy)
}

/// The floor: a responder doing the least a correct command handler must do, measured the same way.
async fn floor(client: &Client, url: &str, stream: &str, args: &Args, k: usize) -> anyhow::Result<Run> {
    // Its own connection, as eddy has.
    let server_client = async_nats::connect(url).await?;
    let mut requests = server_client.queue_subscribe("bench.floor.*", "floor".into()).await?;
    let api = Arc::new(format!("$JS.API.DIRECT.GET.{stream}"));
    let stop = CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                _ = token.cancelled() => break,
                msg = requests.next() => match msg { Some(m) => m, None => break },
            };
            let client = server_client.clone();
            let api = api.clone();
            tokio::spawn(async move {
                let key = msg.subject.as_str().rsplit('.').next().unwrap_or("0").to_string();
                let subject = format!("events.floor.{key}");
                let last = match client.request(format!("{api}.{subject}"), Bytes::new()).await {
                    Ok(reply) => reply
                        .headers
                        .as_ref()
                        .and_then(|h| h.get("Nats-Sequence"))
                        .and_then(|v| v.as_str().parse::<u64>().ok())
                        .unwrap_or(0),
                    Err(_) => 0,
                };
                let mut h = HeaderMap::new();
                h.insert("Nats-Expected-Last-Subject-Sequence", last.to_string().as_str());
                let ack = client.request_with_headers(subject, h, msg.payload.clone()).await;
                let body: &'static [u8] = if ack.is_ok() { b"{\"ok\":true}" } else { b"{\"ok\":false}" };
                if let Some(reply) = msg.reply {
                    let _sent = client.publish(reply, Bytes::from_static(body)).await;
                }
            });
        }
    });
    let run = drive(client, args.count, args.in_flight, b"{\"ok\"", move |i| {
        (format!("bench.floor.{}", i % k), Bytes::from_static(b"{\"amount\":1}"))
    })
    .await?;
    stop.cancel();
    task.await?;
    Ok(run)
}

fn report(args: &Args, floor: &Run, eddy: &Run) -> anyhow::Result<ExitCode> {
    let ratio = eddy.per_s / floor.per_s;
    let (p50, p99) = (eddy.latency.value_at_quantile(0.5), eddy.latency.value_at_quantile(0.99));
    let rss = peak_rss_mb();
    if args.common.json {
        let out = json!({
            "floor_per_s": floor.per_s.round(),
            "eddy_per_s": eddy.per_s.round(),
            "ratio": (ratio * 1000.0).round() / 1000.0,
            "p50_us": p50,
            "p99_us": p99,
            "rss_mb": (rss * 10.0).round() / 10.0,
            "telemetry": args.telemetry,
            "sync": if args.common.server.is_some() { "server's own" } else { args.common.sync.name() },
        });
        println!("{out}");
    } else {
        let sync = if args.common.server.is_some() { "the server's own" } else { args.common.sync.name() };
        println!(
            "bench commands: {} deposits over {} accounts, {} in flight, sync {sync}, telemetry {}",
            args.count,
            args.aggregates,
            args.in_flight,
            if args.telemetry { "on" } else { "off" }
        );
        println!(
            "  floor  {:>9.0}/s   p50 {:>6} us   p99 {:>6} us",
            floor.per_s,
            floor.latency.value_at_quantile(0.5),
            floor.latency.value_at_quantile(0.99)
        );
        println!("  eddy   {:>9.0}/s   p50 {:>6} us   p99 {:>6} us", eddy.per_s, p50, p99);
        println!("  ratio  {ratio:.3}   peak RSS {rss:.1} MiB");
    }
    if eddy.errors > 0 || floor.errors > 0 {
        eprintln!("errors: eddy {}, floor {}", eddy.errors, floor.errors);
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
