//! What every benchmark needs: a server, a bounded-concurrency request driver with a latency histogram,
//! and the process's peak RSS.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::Client;
use bytes::Bytes;
use eddy_engine::config::SyncMode;
use eddy_engine::nats::{locate_binary, Embedded, NatsServer};
use hdrhistogram::Histogram;
use tempfile::TempDir;

/// Options every benchmark takes.
#[derive(clap::Args)]
pub struct CommonArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Run against this NATS server (a scratch one: the benchmark writes to `events.>`).
    #[arg(long)]
    pub server: Option<String>,
    /// How the benchmark's own server syncs writes to disk: `always` (eddy's embedded default) or
    /// `default` (nats-server's 2-minute interval). Ignored with --server.
    #[arg(long, value_enum, default_value_t = SyncArg::Always)]
    pub sync: SyncArg,
}

/// `nats.sync` as a flag.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum SyncArg {
    Always,
    Default,
}

impl SyncArg {
    pub fn mode(self) -> SyncMode {
        match self {
            SyncArg::Always => SyncMode::Always,
            SyncArg::Default => SyncMode::Default,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SyncArg::Always => "always",
            SyncArg::Default => "default",
        }
    }
}

/// The server a benchmark runs against: its own, or `--server`.
pub struct BenchServer {
    pub url: String,
    _own: Option<(NatsServer, TempDir)>,
}

impl BenchServer {
    pub async fn start(args: &CommonArgs) -> anyhow::Result<Self> {
        if let Some(url) = &args.server {
            return Ok(Self { url: url.clone(), _own: None });
        }
        let dir = tempfile::tempdir().context("temp dir")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let spec = Embedded { sync: args.sync.mode(), ..Embedded::scratch(port, &dir.path().join("nats")) };
        let server = NatsServer::start_with(&locate_binary()?, &spec).await?;
        Ok(Self { url: server.url(), _own: Some((server, dir)) })
    }
}

/// Writes `files` (name, TOML) into a temp dir and loads them as settings pointed at `server`, with their
/// state in the same temp dir: a benchmark's config, independent of the working directory.
pub fn bench_settings(server: &BenchServer, files: &[(&str, &str)]) -> anyhow::Result<(TempDir, eddy::Settings)> {
    let dir = tempfile::tempdir()?;
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text)?;
    }
    let mut settings = eddy::load(dir.path()).map_err(|e| anyhow::anyhow!("{e}"))?;
    settings.engine.nats.url = Some(server.url.as_str().into());
    settings.engine.engine.data_dir = dir.path().join("data");
    // Benchmarks measure the command path; a fixed port would also collide with an engine already running.
    settings.engine.http.listen = String::new();
    Ok((dir, settings))
}

/// Creates the config's stream, fills it with `seed` (not started until the stream exists) and returns
/// its last sequence.
pub async fn seeded<T>(
    client: &Client,
    settings: &eddy::Settings,
    seed: impl std::future::Future<Output = Result<T, async_nats::Error>>,
) -> anyhow::Result<u64> {
    let engine = &settings.engine.engine;
    eddy_engine::store::EventStore::open(client.clone(), engine).await?;
    seed.await.map_err(|e| anyhow::anyhow!("seeding: {e}"))?;
    Ok(eddy_engine::store::EventStore::attach(client.clone(), engine).last_seq().await?)
}

/// The outcome of driving requests.
pub struct Run {
    pub per_s: f64,
    pub latency: Histogram<u64>,
    pub errors: u64,
}

/// Sends `count` requests with `in_flight` outstanding at a time; `request(i)` gives the i-th subject and
/// body. A reply whose body does not start with `ok_prefix` counts as an error.
pub async fn drive(
    client: &Client,
    count: usize,
    in_flight: usize,
    ok_prefix: &'static [u8],
    request: impl Fn(usize) -> (String, Bytes) + Send + Sync + 'static,
) -> anyhow::Result<Run> {
    let request = Arc::new(request);
    let started = Instant::now();
    let workers: Vec<_> = (0..in_flight.max(1))
        .map(|w| {
            let client = client.clone();
            let request = request.clone();
            tokio::spawn(async move {
                let mut hist = Histogram::<u64>::new(3).expect("histogram");
                let mut errors = 0u64;
                let mut i = w;
                while i < count {
                    let (subject, body) = request(i);
                    let t = Instant::now();
                    let reply = tokio::time::timeout(Duration::from_secs(10), client.request(subject, body)).await;
                    hist.record(t.elapsed().as_micros() as u64).expect("in range");
                    match reply {
                        Ok(Ok(msg)) if msg.payload.starts_with(ok_prefix) => {}
                        _ => errors += 1,
                    }
                    i += in_flight;
                }
                (hist, errors)
            })
        })
        .collect();
    let mut latency = Histogram::<u64>::new(3).expect("histogram");
    let mut errors = 0;
    for w in workers {
        let (h, e) = w.await?;
        latency.add(h).expect("same bounds");
        errors += e;
    }
    let per_s = count as f64 / started.elapsed().as_secs_f64();
    Ok(Run { per_s, latency, errors })
}

/// The process's peak resident set, in MiB (Linux `VmHWM`).
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// The floor: an ordered consumer that only reads every event of the stream up to `end`.
pub async fn floor_read(client: &async_nats::Client, stream: &str, end: u64) -> anyhow::Result<f64> {
    use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
    use futures::StreamExt;
    let js = async_nats::jetstream::new(client.clone());
    let started = std::time::Instant::now();
    let config = OrderedConfig { deliver_policy: DeliverPolicy::All, ..Default::default() };
    let consumer = js.get_stream(stream).await?.create_consumer(config).await?;
    let mut messages = consumer.messages().await?;
    while let Some(message) = messages.next().await {
        if message?.info().map_err(|e| anyhow::anyhow!("{e}"))?.stream_sequence >= end {
            break;
        }
    }
    Ok(end as f64 / started.elapsed().as_secs_f64())
}
