//! `/metrics` in the Prometheus text format. Counters and histograms are recorded where the work happens
//! (`eddy_engine::telemetry::metrics`); gauges of state (lag, parked, documents, saga instances, leases,
//! the NATS connection) are read from the engine when scraped, so they are never stale.

use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use eddy_engine::telemetry::metrics::{self as m, set};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::AppState;

/// Bucket bounds of the duration histograms, in seconds: 0.5 ms to 30 s.
const BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The process's recorder: `metrics` allows one per process, so engines started in one process share it.
static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder, once per process. `None` when another recorder was installed first
/// (logged): the engine runs on, without `/metrics`.
pub fn install() -> Option<&'static PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            let built = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
                .and_then(PrometheusBuilder::install_recorder);
            match built {
                Ok(handle) => {
                    m::describe();
                    spawn_upkeep(handle.clone());
                    Some(handle)
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot install the metrics recorder; /metrics is off");
                    None
                }
            }
        })
        .as_ref()
}

/// Histogram samples wait in buckets until upkeep folds them in: without it an engine nobody scrapes would
/// grow. One thread for the process, like the recorder.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_secs(5));
        handle.run_upkeep();
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the metrics upkeep thread; histograms fold in at each scrape only");
    }
}

/// The recorder, if metrics are on in this process.
pub fn recorder() -> Option<&'static PrometheusHandle> {
    RECORDER.get().and_then(Option::as_ref)
}

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(state): State<AppState>) -> Response {
    let Some(handle) = recorder().filter(|_| state.config.telemetry.metrics) else {
        return (StatusCode::NOT_FOUND, "metrics are off ([telemetry] metrics = false)\n").into_response();
    };
    refresh(&state).await;
    handle.run_upkeep();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], handle.render()).into_response()
}

/// Saga states given a gauge so far: a state no instance is in any more is set to 0, not left at its old
/// count.
static SAGA_STATES: Mutex<BTreeSet<(String, String)>> = Mutex::new(BTreeSet::new());

/// Sets the state gauges from the engine as it is now.
async fn refresh(state: &AppState) {
    let stats = state.client.statistics();
    let connected = state.client.connection_state() == async_nats::connection::State::Connected;
    m::nats(connected, stats.connects.load(std::sync::atomic::Ordering::Relaxed));
    for view in state.views.status().await {
        set(m::VIEW_LAG, "view", &view.name, view.lag as f64);
        set(m::VIEW_DOCUMENTS, "view", &view.name, view.documents as f64);
    }
    let mut sagas = Vec::new();
    for reactor in state.reactors.status() {
        set(m::REACTOR_LAG, "reactor", &reactor.name, reactor.lag as f64);
        set(m::REACTOR_PARKED, "reactor", &reactor.name, reactor.parked as f64);
        let held = !matches!(reactor.status, "standby" | "stopped");
        set(m::LEASE_HELD, "reactor", &reactor.name, if held { 1.0 } else { 0.0 });
        if reactor.kind == eddy_engine::host::reactor::Kind::Saga {
            sagas.push(reactor.name);
        }
    }
    // Counting instances reads every saga's state from disk: off the async threads.
    let reactors = state.reactors.clone();
    let counted = tokio::task::spawn_blocking(move || {
        sagas
            .into_iter()
            .filter_map(|name| Some((eddy_engine::host::reactor::census(&reactors, &name)?, name)))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let mut seen = SAGA_STATES.lock().expect("lock");
    let mut now = BTreeSet::new();
    for (census, saga) in counted {
        set(m::SAGA_TIMERS_PENDING, "saga", &saga, census.timers as f64);
        for (st, count) in census.by_state {
            m::saga_instances(&saga, &st, count);
            now.insert((saga.clone(), st));
        }
    }
    for (saga, st) in seen.difference(&now) {
        m::saga_instances(saga, st, 0);
    }
    seen.extend(now);
}
