//! `eddy bench replay`: offline replay of a generated bank recording through every bank component (two
//! aggregates, two views, the `large-withdrawals` rule and the `transfer` saga). No NATS is involved, so the
//! floor measured in the same run is reading the recording: parsing each line and its envelope.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use eddy::replay::{self, Recording};
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
    let text = generate(args.events, args.accounts.max(2));

    // The floor: reading the recording, with every line's envelope (which the replay then uses).
    let started = Instant::now();
    let recording = Recording::parse(&text)?;
    drop(text);
    let readable = recording.events().filter(Result::is_ok).count();
    let floor_s = started.elapsed().as_secs_f64();
    anyhow::ensure!(readable == recording.len(), "the generated recording reads back");

    let started = Instant::now();
    let transcript = replay::replay(&settings, &recording);
    let replay_s = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        transcript.warnings.is_empty(),
        "the generated recording replays cleanly: {:?}",
        transcript.warnings
    );

    // Writing the transcript is not part of the replay, but `eddy replay` does it: measured on its own.
    let started = Instant::now();
    let mut rendered = Counted(0);
    transcript.write(replay::Format::Json, &mut rendered)?;
    let rendered = rendered.0;
    let render_s = started.elapsed().as_secs_f64();

    let n = recording.len() as f64;
    let floor_per_s = n / floor_s;
    // What `eddy replay` does with a file: read it, then replay it.
    let events_per_s = n / (floor_s + replay_s);
    let replay_only = n / replay_s;
    let rss = peak_rss_mb();
    let sagas = transcript.end.sagas.get("transfer").map_or(0, |s| s.len());
    let actions = transcript.actions().count();
    if args.json {
        let out = json!({
            "events": recording.len(),
            "events_per_s": events_per_s.round(),
            "replay_only_per_s": replay_only.round(),
            "floor_per_s": floor_per_s.round(),
            "ratio": ((events_per_s / floor_per_s) * 1000.0).round() / 1000.0,
            "render_json_per_s": (n / render_s).round(),
            "transcript_mb": (rendered as f64 / 1048576.0 * 10.0).round() / 10.0,
            "rss_mb": (rss * 10.0).round() / 10.0,
        });
        println!("{out}");
    } else {
        println!(
            "bench replay: {} bank events, {} accounts, {sagas} transfer sagas, {actions} actions decided",
            recording.len(),
            args.accounts
        );
        println!("  floor (read + parse the recording) {floor_per_s:>10.0} events/s");
        println!(
            "  eddy  (read + replay)              {events_per_s:>10.0} events/s   ratio {:.3}",
            events_per_s / floor_per_s
        );
        println!("  eddy  (replay alone)               {replay_only:>10.0} events/s");
        println!(
            "  transcript as JSON                 {:>10.0} events/s   ({:.1} MiB)",
            n / render_s,
            rendered as f64 / 1048576.0
        );
        println!("  peak RSS {rss:.1} MiB (recording, transcript and all state in memory)");
    }
    Ok(ExitCode::SUCCESS)
}

/// A deterministic bank recording of about `events` events: accounts opened and funded, then deposits,
/// withdrawals (some over the daily limit) and transfers. A transfer's debit and credit carry the saga's
/// correlation id, as the live saga's commands would, so the replayed saga runs every instance to the end.
fn generate(events: usize, accounts: usize) -> String {
    let mut g = Gen::default();
    for a in 0..accounts {
        g.push("account", &format!("a{a}"), "AccountOpened", json!({"owner": format!("owner {a}")}), None);
        g.push("account", &format!("a{a}"), "MoneyDeposited", json!({"amount": 1_000_000}), None);
    }
    let mut i = 0usize;
    while g.lines.len() < events {
        let a = format!("a{}", i % accounts);
        let b = format!("a{}", (i * 7 + 1) % accounts);
        match i % 10 {
            0..=3 => g.push("account", &a, "MoneyDeposited", json!({"amount": 10 + i % 90}), None),
            4..=5 => g.push("account", &a, "MoneyWithdrawn", json!({"amount": 5 + i % 50}), None),
            6 => g.push("account", &a, "MoneyWithdrawn", json!({"amount": 6_000}), None),
            _ if a == b => g.push("account", &a, "MoneyDeposited", json!({"amount": 1}), None),
            _ => {
                let t = format!("t{i}");
                let corr = format!("transfer:{t}");
                let amount = 10 + i % 500;
                g.push("transfer", &t, "TransferRequested", json!({"from": a, "to": b, "amount": amount}), None);
                g.push("account", &a, "MoneyWithdrawn", json!({"amount": amount}), Some(&corr));
                g.push("account", &b, "MoneyDeposited", json!({"amount": amount}), Some(&corr));
                g.push("transfer", &t, "TransferCompleted", json!({}), Some(&corr));
            }
        }
        i += 1;
    }
    g.lines.join("\n")
}

#[derive(Default)]
struct Gen {
    lines: Vec<String>,
    versions: HashMap<String, u64>,
}

impl Gen {
    fn push(&mut self, aggregate: &str, id: &str, event_type: &str, data: Value, correlation: Option<&str>) {
        let seq = self.lines.len() as u64 + 1;
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
        self.lines.push(line.to_string());
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
