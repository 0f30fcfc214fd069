//! `eddy bench replay`: offline replay of a generated bank recording through every bank component (two
//! aggregates, two views, the `large-withdrawals` rule and the `transfer` saga). No NATS is involved, so the
//! floor measured in the same run is reading the recording: parsing each line and its envelope.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use eddy::replay::{self, Source};
use eddy_engine::envelope::format_time;
use serde_json::{json, Value};

use super::load::peak_rss_mb;

const BANK: &[(&str, &str)] = &[
    ("account.toml", include_str!("../../config/examples/bank/account.toml")),
    ("transfer.toml", include_str!("../../config/examples/bank/transfer.toml")),
    ("balances.toml", include_str!("../../config/examples/bank/projections/balances.toml")),
    ("daily-totals.toml", include_str!("../../config/examples/bank/projections/daily-totals.toml")),
    ("large-withdrawals.toml", include_str!("../../config/examples/bank/reactors/large-withdrawals.toml")),
    ("saga-transfer.toml", include_str!("../../config/examples/bank/sagas/transfer.toml")),
];

#[derive(clap::Args)]
pub struct Args {
    /// Bank events in the generated recording.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Accounts they are spread over.
    #[arg(long, default_value_t = 1000)]
    accounts: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let dir = tempfile::tempdir()?;
    for (name, text) in BANK {
        std::fs::write(dir.path().join(name), text)?;
    }
    let settings = eddy::load(dir.path()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let path = dir.path().join("bank.jsonl");
    generate(&path, args.events, args.accounts.max(2))?;
    let source = Source::File(&path);

    // The floor: reading the recording once, with every line's envelope (which the replay then uses).
    let started = Instant::now();
    let (lines, readable) = source.count()?;
    let floor_s = started.elapsed().as_secs_f64();
    anyhow::ensure!(readable == lines, "the generated recording reads back");

    // The replay itself (two passes over the file, every decision made), its decisions only counted.
    let started = Instant::now();
    let mut made = Made(0);
    replay::replay_into(&settings, source, &mut made)?;
    let decide_s = started.elapsed().as_secs_f64();

    // What `eddy replay --format json` does with a file: two passes over it, and the transcript written
    // as it goes (here only counted).
    let started = Instant::now();
    let mut rendered = Counted(0);
    let (tail, decisions) = replay::replay_to(&settings, source, replay::Format::Json, &mut rendered)?;
    let replay_s = started.elapsed().as_secs_f64();
    anyhow::ensure!(tail.warnings.is_empty(), "the generated recording replays cleanly: {:?}", tail.warnings);

    let n = lines as f64;
    let floor_per_s = n / floor_s;
    let events_per_s = n / replay_s;
    let decide_per_s = n / decide_s;
    let rss = peak_rss_mb();
    let sagas = tail.end.sagas.get("transfer").map_or(0, |s| s.len());
    let transcript_mb = rendered.0 as f64 / 1048576.0;
    if args.json {
        let out = json!({
            "events": lines,
            "events_per_s": events_per_s.round(),
            "replay_only_per_s": decide_per_s.round(),
            "floor_per_s": floor_per_s.round(),
            "ratio": ((events_per_s / floor_per_s) * 1000.0).round() / 1000.0,
            "decisions": decisions,
            "transcript_mb": (transcript_mb * 10.0).round() / 10.0,
            "rss_mb": (rss * 10.0).round() / 10.0,
        });
        println!("{out}");
    } else {
        println!(
            "bench replay: {lines} bank events, {} accounts, {sagas} transfer sagas, {decisions} events caused something",
            args.accounts
        );
        println!("  floor (read + parse the file once)          {floor_per_s:>10.0} events/s");
        println!(
            "  eddy  (two passes and every decision)       {decide_per_s:>10.0} events/s   ratio {:.3}",
            decide_per_s / floor_per_s
        );
        println!(
            "  eddy  (two passes, replay, JSON transcript) {events_per_s:>10.0} events/s   ratio {:.3}",
            events_per_s / floor_per_s
        );
        println!("  transcript {transcript_mb:.1} MiB, written as it goes");
        println!("  peak RSS {rss:.1} MiB (the recording and the transcript are streamed; the end state is held)");
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes a deterministic bank recording of about `events` events to `path`: accounts opened and funded,
/// then deposits, withdrawals (some over the daily limit) and transfers. A transfer's debit and credit
/// carry the saga's correlation id, as the live saga's commands would, so the replayed saga runs every
/// instance to the end. Written line by line: a long recording is never held.
fn generate(path: &std::path::Path, events: usize, accounts: usize) -> std::io::Result<()> {
    let mut g = Gen { out: std::io::BufWriter::new(std::fs::File::create(path)?), seq: 0, versions: HashMap::new() };
    for a in 0..accounts {
        g.push("account", &format!("a{a}"), "AccountOpened", json!({"owner": format!("owner {a}")}), None)?;
        g.push("account", &format!("a{a}"), "MoneyDeposited", json!({"amount": 1_000_000}), None)?;
    }
    let mut i = 0usize;
    while (g.seq as usize) < events {
        let a = format!("a{}", i % accounts);
        let b = format!("a{}", (i * 7 + 1) % accounts);
        match i % 10 {
            0..=3 => g.push("account", &a, "MoneyDeposited", json!({"amount": 10 + i % 90}), None)?,
            4..=5 => g.push("account", &a, "MoneyWithdrawn", json!({"amount": 5 + i % 50}), None)?,
            6 => g.push("account", &a, "MoneyWithdrawn", json!({"amount": 6_000}), None)?,
            _ if a == b => g.push("account", &a, "MoneyDeposited", json!({"amount": 1}), None)?,
            _ => {
                let t = format!("t{i}");
                let corr = format!("transfer:{t}");
                let amount = 10 + i % 500;
                g.push("transfer", &t, "TransferRequested", json!({"from": a, "to": b, "amount": amount}), None)?;
                g.push("account", &a, "MoneyWithdrawn", json!({"amount": amount}), Some(&corr))?;
                g.push("account", &b, "MoneyDeposited", json!({"amount": amount}), Some(&corr))?;
                g.push("transfer", &t, "TransferCompleted", json!({}), Some(&corr))?;
            }
        }
        i += 1;
    }
    g.out.flush()
}

struct Gen {
    out: std::io::BufWriter<std::fs::File>,
    seq: u64,
    versions: HashMap<String, u64>,
}

impl Gen {
    fn push(
        &mut self,
        aggregate: &str,
        id: &str,
        event_type: &str,
        data: Value,
        correlation: Option<&str>,
    ) -> std::io::Result<()> {
        self.seq += 1;
        let seq = self.seq;
        let subject = format!("events.{aggregate}.{id}");
        let version = self.versions.entry(subject.clone()).or_default();
        *version += 1;
        let start: DateTime<Utc> = DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default();
        let time = format_time(start + Duration::milliseconds(seq as i64 * 10));
        let command = format!("c{seq}");
        let line = json!({
            "seq": seq,
            "subject": subject,
            "time": time,
            "headers": {
                "Eddy-Event-Type": event_type,
                "Eddy-Version": version.to_string(),
                "Eddy-Time": time,
                "Eddy-Command-Id": command,
                "Eddy-Correlation-Id": correlation.unwrap_or(&command),
                "Eddy-Causation-Id": command,
                "Nats-Msg-Id": format!("{aggregate}:{id}:{command}:0"),
            },
            "data": data,
        });
        serde_json::to_writer(&mut self.out, &line)?;
        self.out.write_all(b"\n")
    }
}
/// A sink that only counts decisions: the replay measured without its transcript.
struct Made(usize);

impl replay::Sink for Made {
    fn decision(&mut self, _: replay::Decision) -> std::io::Result<()> {
        self.0 += 1;
        Ok(())
    }
}

/// A writer that only counts bytes: the transcript's rendering measured without holding it.
struct Counted(usize);

impl std::io::Write for Counted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
