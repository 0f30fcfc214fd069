//! `eddy record`: a stretch of the stream to a recording file or stdout, with progress on stderr.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use eddy::record::{self, Progress, Range};

/// Parses an RFC 3339 time for `--since` and `--until`.
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("`{s}` is not an RFC 3339 time like 2026-11-23T08:00:00Z: {e}"))
}

pub async fn record(
    config: &Path,
    server: &super::Conn,
    range: Range,
    out: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let config = super::load_or_default(config)?;
    let (client, _url) = server.connect(&config, "eddy-record").await?;
    let js = async_nats::jetstream::new(client);
    let report = |p: Progress| eprintln!("recorded {} events (at seq {} of {})", p.recorded, p.seq, p.end);
    let stream = &config.engine.stream;
    // `record` flushes what it wrote before it returns.
    let done = match &out {
        Some(path) => {
            let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
            record::record(&js, stream, &range, &mut std::io::BufWriter::new(file), report).await?
        }
        None => {
            record::record(&js, stream, &range, &mut std::io::BufWriter::new(std::io::stdout().lock()), report).await?
        }
    };
    if done.recorded == 0 {
        eprintln!("nothing in that range");
    }
    Ok(ExitCode::SUCCESS)
}
