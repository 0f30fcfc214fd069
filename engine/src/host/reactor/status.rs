//! What operators see of a reactor (`eddy reactors`, the admin API, the console, the metrics): one status
//! per reactor, and for a partitioned one, each partition's holder, status, position and lag beside it.

use std::sync::atomic::Ordering;

use serde::Serialize;

use super::shared::{Shared, Status};
use super::state::Counters;

/// What operators see of a reactor.
#[derive(Debug, Clone, Serialize)]
pub struct ReactorStatus {
    pub name: String,
    pub kind: super::Kind,
    /// running | rebuilding | standby (another engine runs it) | stopped | failed (and starting, briefly).
    /// Partitioned: failed if a partition this engine holds failed, else running or rebuilding if it holds
    /// any, else standby.
    pub status: &'static str,
    /// Why it failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Partitioned: the lowest partition's position.
    pub position: u64,
    /// Partitioned: the partitions' lags added up.
    pub lag: u64,
    pub parked: usize,
    /// What it has done, as fields of the status (partitioned: added up over the partitions as this engine has them).
    #[serde(flatten)]
    pub counters: Counters,
    /// Each partition, when it has more than one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionStatus>,
}

/// One partition of a partitioned reactor, as this engine sees it.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionStatus {
    pub partition: u16,
    /// Its key in the lease and watermark buckets, `<reactor>.p<i>of<N>`.
    pub lease: String,
    /// The engine holding its lease (this engine's id when it runs here); `None` while unknown.
    pub holder: Option<String>,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub position: u64,
    pub lag: u64,
    pub parked: usize,
}

fn status_name(status: &Status) -> (&'static str, Option<String>) {
    match status {
        Status::Starting => ("starting", None),
        Status::Running => ("running", None),
        Status::Rebuilding => ("rebuilding", None),
        Status::Standby => ("standby", None),
        Status::Stopped => ("stopped", None),
        Status::Failed(e) => ("failed", Some(e.clone())),
    }
}

fn partition(shared: &Shared, engine: &str) -> PartitionStatus {
    let (status, error) = status_name(&shared.status.lock().expect("lock"));
    let holder = match status {
        "standby" | "stopped" => shared.holder.lock().expect("lock").clone(),
        _ => Some(engine.to_string()),
    };
    PartitionStatus {
        partition: shared.partition.index,
        lease: shared.key.clone(),
        holder,
        status,
        error,
        position: shared.position.load(Ordering::Relaxed),
        lag: shared.lag.load(Ordering::Relaxed),
        parked: shared.state.parked_count(),
    }
}

/// A reactor's status from its partitions' (one for a whole reactor: then exactly as before partitions).
pub(super) fn status_of(parts: &[&Shared], engine: &str) -> ReactorStatus {
    let first = parts[0];
    let each: Vec<PartitionStatus> = parts.iter().map(|s| partition(s, engine)).collect();
    let held = |st: &str| each.iter().any(|p| p.status == st);
    let (status, error) = if parts.len() == 1 {
        (each[0].status, each[0].error.clone())
    } else if let Some(failed) = each.iter().find(|p| p.status == "failed") {
        ("failed", failed.error.clone().map(|e| format!("partition {}: {e}", failed.partition)))
    } else {
        let status = ["rebuilding", "running", "starting", "standby"].into_iter().find(|s| held(s));
        (status.unwrap_or("stopped"), None)
    };
    let mut counters = Counters::default();
    for shared in parts {
        counters.add(&shared.counters.lock().expect("lock"));
    }
    ReactorStatus {
        name: first.logic.name().to_string(),
        kind: first.logic.kind(),
        status,
        error,
        position: each.iter().map(|p| p.position).min().unwrap_or(0),
        lag: each.iter().map(|p| p.lag).sum(),
        parked: each.iter().map(|p| p.parked).sum(),
        counters,
        partitions: if parts.len() > 1 { each } else { Vec::new() },
    }
}
