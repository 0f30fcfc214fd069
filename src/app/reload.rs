//! When to reload: a change to any TOML file under the config path (polled once a second: portable, and a
//! reload is rare), or SIGHUP.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The (path, modified, size) of every TOML file below `path`.
fn snapshot(path: &std::path::Path) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::metadata(&p) else { continue };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&p) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        } else if p.extension().is_some_and(|e| e == "toml") {
            out.push((p, meta.modified().ok(), meta.len()));
        }
    }
    out.sort();
    out
}

/// Sends `()` on every change of the config or SIGHUP, until `stop`.
pub fn watch(path: PathBuf, stop: CancellationToken) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut last = snapshot(&path);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            let hup_recv = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = hup_recv => {
                    tracing::info!("SIGHUP: reloading the config");
                    last = snapshot(&path);
                }
                _ = tick.tick() => {
                    let now = snapshot(&path);
                    if now == last {
                        continue;
                    }
                    last = now;
                }
            }
            // A full channel already holds a pending reload.
            let _pending = tx.try_send(());
        }
    });
    rx
}
