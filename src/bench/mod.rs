//! `eddy bench ...`: throughput and latency against the raw JetStream floor measured in the same run, on
//! a nats-server of its own (temp store, free port) unless `--server` names one.

mod cold;
mod commands;
mod load;
mod reactors;
mod replay;
mod sagas;
mod starve;
mod telemetry;
mod views;

use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum BenchVerb {
    /// A command on a long aggregate that is not cached (snapshots) against one on a fresh aggregate.
    Cold(cold::Args),
    /// Command throughput: bank deposits against a raw request -> direct get -> publish -> reply floor.
    Commands(commands::Args),
    /// Reactor catch-up (`low-stock`) against a raw ordered-consumer read of the same events.
    Reactors(reactors::Args),
    /// Offline replay of a generated bank recording through every bank component, against reading it.
    Replay(replay::Args),
    /// Small bank transfers through the `transfer` saga, against raw JetStream appends.
    Sagas(sagas::Args),
    /// Command latency while heavy view queries run, against the same commands alone.
    Starve(starve::Args),
    /// View catch-up against a raw ordered-consumer read, and get latency against an echo responder.
    Views(views::Args),
}

impl BenchVerb {
    /// Whether the benchmark installs its own log subscriber (one per process): `commands --telemetry`.
    pub fn sets_up_tracing(&self) -> bool {
        matches!(self, BenchVerb::Commands(args) if args.telemetry)
    }
}

pub async fn run(verb: BenchVerb) -> anyhow::Result<ExitCode> {
    match verb {
        BenchVerb::Cold(args) => cold::run(args).await,
        BenchVerb::Commands(args) => commands::run(args).await,
        BenchVerb::Reactors(args) => reactors::run(args).await,
        BenchVerb::Views(args) => views::run(args).await,
        BenchVerb::Sagas(args) => sagas::run(args).await,
        BenchVerb::Replay(args) => replay::run(args).await,
        BenchVerb::Starve(args) => starve::run(args).await,
    }
}
