//! `eddy bench ...`: throughput and latency against the raw JetStream floor measured in the same run.

use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum BenchVerb {}

pub async fn run(verb: BenchVerb) -> anyhow::Result<ExitCode> {
    match verb {}
}
