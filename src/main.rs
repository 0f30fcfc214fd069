//! The `eddy` binary: command-line parsing and wiring. The work happens in the library crates.

mod bench;
mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// The command path allocates many small short-lived values (JSON, CEL maps); mimalloc serves them with
// less contention and fragmentation than glibc malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// eddy: a workflow and saga engine on NATS JetStream.
#[derive(Parser)]
#[command(name = "eddy", version, about)]
struct Args {
    #[command(subcommand)]
    verb: Verb,
}

/// Where the config is: a TOML file or a directory of them.
#[derive(clap::Args, Clone)]
struct ConfigArg {
    /// A TOML file, or a directory whose *.toml files are merged. Accepted anywhere on the line
    /// (`eddy views rebuild NAME -c X`).
    #[arg(short = 'c', long, env = "EDDY_CONFIG", default_value = "eddy.toml", global = true)]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Verb {
    /// Run the engine (with an embedded nats-server unless nats.url is set).
    Run(ConfigArg),
    /// Check a config and print every error; with --recording, also that it reads every recorded event.
    Validate {
        #[command(flatten)]
        config: ConfigArg,
        /// A recording (`eddy record`) of the stream the config will run on: every event's type must be
        /// known and every upcast must evaluate.
        #[arg(long)]
        recording: Option<PathBuf>,
        /// Where the stream is, to check that no running saga instance loses its version.
        #[command(flatten)]
        server: cli::Conn,
    },
    /// Send a command and print the reply: eddy send account.deposit '{"id":"a1","amount":5}'
    Send {
        /// <aggregate>.<command>
        target: String,
        /// The JSON body.
        body: String,
        /// Idempotency key (Eddy-Command-Id).
        #[arg(long)]
        command_id: Option<String>,
        /// Eddy-Expected-Version.
        #[arg(long)]
        expected_version: Option<String>,
        /// Eddy-Correlation-Id.
        #[arg(long)]
        correlation_id: Option<String>,
        /// Wait for the sagas the command starts to reach a final state, at most SECS (default 30, at most 300).
        #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "30")]
        wait: Option<u64>,
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        server: cli::Conn,
    },
    /// Show an aggregate's events, each with the state after it.
    History {
        /// The aggregate's name in the config, e.g. account.
        aggregate: String,
        /// The aggregate id, e.g. a1.
        id: String,
        /// Show the state as it was at this version.
        #[arg(long)]
        at_version: Option<u64>,
        /// Print JSON: each event with the state after it.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        server: cli::Conn,
    },
    /// Show every view (status, position, lag, documents), or rebuild one: eddy views rebuild balances
    Views {
        #[command(subcommand)]
        action: Option<ViewsAction>,
        /// Print the statuses as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        server: cli::Conn,
    },
    /// Show every reactor (status, position, lag, parked, counts), or retry or rebuild one.
    Reactors {
        #[command(subcommand)]
        action: Option<cli::ReactorsAction>,
        /// Print the statuses as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        server: cli::Conn,
    },
    /// A saga's instances (state, age, last transition), or one instance's history: eddy sagas transfer t1
    Sagas {
        /// The saga's name in the config, e.g. transfer.
        saga: String,
        /// One instance's id (its timeline); without it, the instances are listed.
        id: Option<String>,
        /// Steer the instance: `cancel`, or `move <state>`.
        #[arg(value_parser = ["cancel", "move"])]
        steer: Option<String>,
        /// The state to move to.
        to: Option<String>,
        /// Who asks (recorded on the instance's log); default $USER.
        #[arg(long)]
        by: Option<String>,
        /// Why (recorded on the instance's log).
        #[arg(long, default_value = "")]
        reason: String,
        /// Only instances in this state.
        #[arg(long)]
        state: Option<String>,
        /// Only instances stuck: in a non-final state for at least this many seconds.
        #[arg(long)]
        stuck: Option<u64>,
        /// Only instances not yet in a final state.
        #[arg(long)]
        active: bool,
        /// At most this many instances (default 100).
        #[arg(long)]
        limit: Option<usize>,
        /// Print the reply as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        server: cli::Conn,
    },
    /// Query a view: eddy query balances a1, or eddy query balances --list --where 'doc.balance > 100'
    Query {
        /// The view's name in the config, e.g. balances.
        view: String,
        /// The document's key (omit with --list).
        key: Option<String>,
        /// List documents in key order instead of getting one.
        #[arg(long)]
        list: bool,
        /// With --list: a CEL bool over `key` and `doc`.
        #[arg(long = "where")]
        filter: Option<String>,
        /// With --list: only keys starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// With --list: at most this many documents.
        #[arg(long)]
        limit: Option<usize>,
        /// Wait until the view has applied every event up to this stream sequence.
        #[arg(long)]
        min_seq: Option<u64>,
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        server: cli::Conn,
    },
    /// Write a stretch of the event stream as a recording (JSON Lines): eddy record > rec.jsonl
    Record {
        /// Subject filters (repeatable); default events.>
        #[arg(long = "subjects", value_name = "FILTER")]
        subjects: Vec<String>,
        /// From this stream sequence.
        #[arg(long)]
        from_seq: Option<u64>,
        /// Up to this stream sequence.
        #[arg(long)]
        to_seq: Option<u64>,
        /// Messages stored at or after this time (RFC 3339).
        #[arg(long, value_parser = cli::parse_time)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Messages stored at or before this time (RFC 3339).
        #[arg(long, value_parser = cli::parse_time)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        /// Write here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        server: cli::Conn,
    },
    /// Replay a recording offline through the config and print what it decides: eddy replay rec.jsonl
    Replay {
        /// The recording (from eddy record).
        recording: PathBuf,
        /// yaml (default) or json.
        #[arg(long, value_enum)]
        format: Option<cli::FormatArg>,
        /// Write the transcript here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Compare with this stored transcript; exit 1 with a diff when they differ.
        #[arg(long, conflicts_with_all = ["update", "out"])]
        check: Option<PathBuf>,
        /// Rewrite this stored transcript.
        #[arg(long, conflicts_with = "out")]
        update: Option<PathBuf>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Follow the stream live: events, saga transitions, and publishes on other --subjects: eddy tail
    Tail {
        /// Subject filters (repeatable): under `events.` they filter the stream (default events.>); others
        /// are followed as core NATS (a rule's publishes).
        #[arg(long = "subjects", value_name = "SUBJECT")]
        subjects: Vec<String>,
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        server: cli::Conn,
    },
    /// Benchmarks against the raw JetStream floor measured in the same run.
    #[command(subcommand)]
    Bench(bench::BenchVerb),
}

#[derive(Subcommand)]
enum ViewsAction {
    /// Build a new copy beside the old one; queries switch once it has caught up.
    Rebuild {
        /// The view's name in the config.
        name: String,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    // `eddy run` sets up logging from its config ([log], [telemetry]).
    if !matches!(&args.verb, Verb::Run(_)) && !matches!(&args.verb, Verb::Bench(b) if b.sets_up_tracing()) {
        cli::init_tracing();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(async move {
        match args.verb {
            Verb::Run(c) => cli::run(&c.config).await,
            Verb::Validate { config, recording, server } => {
                cli::validate(&config.config, recording.as_deref(), &server).await
            }
            Verb::Send { target, body, command_id, expected_version, correlation_id, wait, config, server } => {
                let headers = cli::SendHeaders { command_id, expected_version, correlation_id, wait };
                cli::send(&config.config, &server, &target, &body, headers).await
            }
            Verb::History { aggregate, id, at_version, json, config, server } => {
                cli::history(&config.config, &server, &aggregate, &id, at_version, json).await
            }
            Verb::Views { action, json, config, server } => {
                let rebuild = action.map(|ViewsAction::Rebuild { name }| name);
                cli::views(&config.config, &server, rebuild, json).await
            }
            Verb::Reactors { action, json, config, server } => {
                cli::reactors(&config.config, &server, action, json).await
            }
            Verb::Sagas { saga, id, steer, to, by, reason, state, stuck, active, limit, json, config, server } => {
                match (steer, id) {
                    (Some(action), Some(id)) => {
                        let by = by.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "operator".into());
                        let steer = cli::SteerArgs { saga, id, action, to, by, reason };
                        cli::steer(&config.config, &server, steer).await
                    }
                    (_, id) => {
                        let args = cli::SagasArgs { saga, id, state, stuck_secs: stuck, active, limit, json };
                        cli::sagas(&config.config, &server, args).await
                    }
                }
            }
            Verb::Query { view, key, list, filter, prefix, limit, min_seq, config, server } => {
                let args = cli::QueryArgs { view, key, list, filter, prefix, limit, min_seq };
                cli::query(&config.config, &server, args).await
            }
            Verb::Record { subjects, from_seq, to_seq, since, until, out, config, server } => {
                let mut range = eddy::record::Range { from_seq, to_seq, since, until, ..Default::default() };
                if !subjects.is_empty() {
                    range.subjects = subjects;
                }
                cli::record(&config.config, &server, range, out).await
            }
            Verb::Replay { recording, format, out, check, update, config } => {
                cli::replay(&config.config, cli::ReplayArgs { recording, format, out, check, update })
            }
            Verb::Tail { subjects, config, server } => cli::tail(&config.config, &server, subjects).await,
            Verb::Bench(verb) => bench::run(verb).await,
        }
    });
    // Outside the runtime: the span exporter's client blocks while it flushes.
    eddy::telemetry::shutdown();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
