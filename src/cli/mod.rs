//! The verbs of the command line.

mod conn;
mod history;
mod reactors;
mod record;
mod replay;
mod running;
mod sagas;
mod send;
mod tail;
mod validate;
mod views;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use eddy::Settings;
use eddy_engine::config::{Config, TelemetryConfig};
use eddy_engine::runtime::Shutdown;

pub use conn::Conn;
pub use history::history;
pub use reactors::{reactors, ReactorsAction};
pub use record::{parse_time, record};
pub use replay::{replay, FormatArg, ReplayArgs};
pub use sagas::{sagas, steer, SagasArgs, SteerArgs};
pub use send::{send, SendHeaders};
pub use tail::tail;
pub use validate::validate;
pub use views::{query, views, QueryArgs};

/// Logs of the client verbs: text to stderr, `RUST_LOG` filters (default `info`); `eddy run` sets up its
/// own from the config (`[log]`, `[telemetry]`).
pub fn init_tracing() {
    let defaults = (Default::default(), TelemetryConfig { otlp_endpoint: None, ..Default::default() });
    eddy::telemetry::init(&defaults.0, &defaults.1).expect("no exporter to build");
}

/// Loads a config, or explains every error.
pub fn load(path: &Path) -> anyhow::Result<Settings> {
    eddy::load(path)
        .map_err(|errors| anyhow::anyhow!("{} has {} config error(s):\n{errors}", path.display(), errors.len()))
}

/// `eddy run`: until SIGINT/SIGTERM (graceful), or a second one (immediate).
pub async fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let settings = load(path)?;
    eddy::telemetry::init(&settings.engine.log, &settings.engine.telemetry)?;
    let shutdown = Shutdown::new();
    tokio::spawn(signals(shutdown.clone()));
    eddy::run(path.to_path_buf(), settings, shutdown).await.context("eddy stopped with an error")?;
    Ok(ExitCode::SUCCESS)
}

async fn signals(shutdown: Shutdown) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        tracing::error!("cannot listen for signals");
        return;
    };
    for stage in [&shutdown.graceful, &shutdown.immediate] {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        stage.cancel();
    }
    // The second signal means now, whatever is still waiting (a NATS server that is gone answers nothing).
    // Everything eddy stores is crash-safe, so leaving without the last flushes loses nothing.
    tokio::time::sleep(IMMEDIATE_GRACE).await;
    tracing::warn!("still stopping {IMMEDIATE_GRACE:?} after the second signal; exiting now");
    eddy_engine::nats::stop_all_now();
    std::process::exit(1);
}

/// How long the second signal waits for an orderly immediate stop before the process exits anyway.
const IMMEDIATE_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// The connection settings of the config when the file exists; defaults and `EDDY_` env otherwise (client
/// verbs work without one). Errors outside `[nats]` and `[engine]` are a warning: the running engine may be
/// fine, and its operator needs the client most while the file on disk is being fixed.
pub fn load_or_default(path: &Path) -> anyhow::Result<Config> {
    if path.exists() {
        let config = Config::connection(path).map_err(|errors| {
            anyhow::anyhow!("{} has {} connection error(s):\n{errors}", path.display(), errors.len())
        })?;
        if let Err(errors) = eddy::load(path) {
            tracing::warn!(config = %path.display(), errors = errors.len(), "the config on disk has errors (see `eddy validate`); using its [nats] and [engine] sections");
        }
        Ok(config)
    } else {
        Config::from_env(path)
            .map_err(|errors| anyhow::anyhow!("{} config error(s) in EDDY_ env:\n{errors}", errors.len()))
    }
}
