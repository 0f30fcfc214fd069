//! `eddy bench reactors`: catch-up of the `low-stock` reactor over N inventory events against a raw
//! ordered-consumer read of the same events, in one run.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use eddy::Running;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::load::{bench_settings, floor_read, peak_rss_mb, seeded, BenchServer, CommonArgs};

const PRODUCT_TOML: &str = include_str!("../../config/examples/inventory/product.toml");
const LOW_STOCK_TOML: &str = include_str!("../../config/examples/inventory/reactors/low-stock.toml");

#[derive(clap::Args)]
pub struct Args {
    /// Inventory events to catch up on.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Products they are spread over.
    #[arg(long, default_value_t = 1000)]
    products: usize,
    #[command(flatten)]
    common: CommonArgs,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let server = BenchServer::start(&args.common).await?;
    let (_dir, settings) =
        bench_settings(&server, &[("product.toml", PRODUCT_TOML), ("low-stock.toml", LOW_STOCK_TOML)])?;
    let client = async_nats::connect(&server.url).await?;
    let products = args.products.max(1);
    eprintln!("seeding {} events ...", args.events);
    let seed = eddy::seed::seed_inventory(&client, products, args.events.saturating_sub(products));
    let end = seeded(&client, &settings, seed).await?;

    let floor_per_s = floor_read(&client, &settings.engine.engine.stream, end).await?;

    let started = Instant::now();
    let running = Running::start(settings).await.context("starting eddy")?;
    loop {
        let status = running.reactors.status();
        let low = status.iter().find(|s| s.name == "low-stock").context("the low-stock reactor")?;
        if low.position >= end {
            break;
        }
        if low.status == "failed" {
            anyhow::bail!("low-stock failed: {:?}", low.error);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let eddy_per_s = end as f64 / started.elapsed().as_secs_f64();
    running.stop(CancellationToken::new()).await;

    let rss = peak_rss_mb();
    let ratio = eddy_per_s / floor_per_s;
    if args.common.json {
        let out = json!({
            "floor_per_s": floor_per_s.round(),
            "eddy_per_s": eddy_per_s.round(),
            "ratio": (ratio * 1000.0).round() / 1000.0,
            "rss_mb": (rss * 10.0).round() / 10.0,
        });
        println!("{out}");
    } else {
        println!("bench reactors: catch-up of `low-stock` over {end} inventory events");
        println!("  floor (ordered consumer read)  {floor_per_s:>10.0} events/s");
        println!("  eddy  (low-stock catch-up)     {eddy_per_s:>10.0} events/s   ratio {ratio:.3}");
        println!("  peak RSS {rss:.1} MiB");
    }
    Ok(ExitCode::SUCCESS)
}
