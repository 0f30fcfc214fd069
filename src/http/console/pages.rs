//! The console's pages: overview, reactors, a saga's instances, an aggregate's history, a view's documents.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use serde_json::{json, Value};

use super::{ask, pretty, render, saga_names, ListParams};
use crate::http::AppState;

#[derive(Template)]
#[template(path = "console/overview.html")]
struct Overview {
    nav_sagas: Vec<String>,
    stream: String,
    last_seq: String,
    connected: bool,
    nats: String,
    engine_id: String,
    /// (id, version, aggregates)
    engines: Vec<(String, String, String)>,
    reactors: Vec<Lease>,
}

struct Lease {
    name: String,
    kind: String,
    holder: String,
    status: String,
}

pub async fn overview(State(state): State<AppState>) -> Response {
    let js = async_nats::jetstream::new(state.client.clone());
    let last_seq = match js.get_stream(&state.config.engine.stream).await {
        Ok(mut stream) => match stream.info().await {
            Ok(info) => info.state.last_sequence.to_string(),
            Err(e) => format!("unknown: {e}"),
        },
        Err(e) => format!("unknown: {e}"),
    };
    let connected = state.client.connection_state() == async_nats::connection::State::Connected;
    let server = state.client.server_info();
    let nats = format!(
        "{} ({} {}, {})",
        if connected { "connected" } else { "disconnected" },
        server.server_name,
        server.version,
        server.cluster.as_deref().unwrap_or("no cluster")
    );
    let reactors = state
        .reactors
        .status()
        .into_iter()
        .map(|r| Lease {
            holder: match r.status {
                "standby" => "another engine".into(),
                "stopped" => "nobody".into(),
                _ => "this engine".into(),
            },
            name: r.name,
            kind: r.kind.to_string(),
            status: r.status.to_string(),
        })
        .collect();
    render(Overview {
        nav_sagas: saga_names(&state),
        stream: state.config.engine.stream.clone(),
        last_seq,
        connected,
        nats,
        engine_id: state.service_id.clone(),
        engines: engines(&state).await,
        reactors,
    })
}

/// Every live engine, from `$SRV.INFO.eddy` (each answers once; collected for half a second).
async fn engines(state: &AppState) -> Vec<(String, String, String)> {
    use futures::StreamExt;
    let inbox = state.client.new_inbox();
    let Ok(mut replies) = state.client.subscribe(inbox.clone()).await else { return Vec::new() };
    let subject = format!("$SRV.INFO.{}", eddy_engine::runtime::SERVICE_NAME);
    if state.client.publish_with_reply(subject, inbox, "".into()).await.is_err() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let deadline = tokio::time::sleep(std::time::Duration::from_millis(500));
    tokio::pin!(deadline);
    while out.len() < 64 {
        tokio::select! {
            _ = &mut deadline => break,
            Some(msg) = replies.next() => {
                if let Ok(info) = serde_json::from_slice::<async_nats::service::Info>(&msg.payload) {
                    let aggregates = info.metadata.get("aggregates").cloned().unwrap_or_default();
                    out.push((info.id, info.version, aggregates));
                }
            }
        }
    }
    out.sort();
    out
}

#[derive(Template)]
#[template(path = "console/reactors.html")]
pub struct Reactors {
    nav_sagas: Vec<String>,
    message: Option<String>,
    failed: bool,
    token_needed: bool,
    reactors: Vec<ReactorRow>,
}

pub struct ReactorRow {
    name: String,
    kind: String,
    status: String,
    error: String,
    position: u64,
    lag: u64,
    parked: u64,
    /// (seq, action, error)
    parked_events: Vec<(u64, String, String)>,
}

pub async fn reactors(State(state): State<AppState>) -> Response {
    render(reactors_page(&state, None, false).await)
}

/// The reactors page, with the outcome of a button press when there was one.
pub async fn reactors_page(state: &AppState, message: Option<String>, failed: bool) -> Reactors {
    let answer = ask(state, "admin.reactors", json!({})).await;
    let (message, failed) = match (&answer, message) {
        (_, Some(m)) => (Some(m), failed),
        (Err(e), None) => (Some(e.clone()), true),
        (Ok(_), None) => (None, false),
    };
    let listed = answer.ok().and_then(|v| v["reactors"].as_array().cloned()).unwrap_or_default();
    let reactors = listed.iter().map(|r| reactor_row(state, r)).collect();
    let token_needed = state.config.http.token.as_deref().is_some_and(|t| !t.is_empty());
    Reactors { nav_sagas: saga_names(state), message, failed, token_needed, reactors }
}

fn reactor_row(state: &AppState, r: &Value) -> ReactorRow {
    let name = r["name"].as_str().unwrap_or_default().to_string();
    // What is parked, with its error, from this engine's copy of the reactor's state.
    let parked_events = state
        .reactors
        .inspect(&name)
        .ok()
        .and_then(|(_, st)| st.parked().ok())
        .unwrap_or_default()
        .into_iter()
        .take(100)
        .map(|p| (p.seq, p.action.map(|a| a.action.kind().to_string()).unwrap_or_else(|| "decide".into()), p.error))
        .collect();
    ReactorRow {
        kind: r["kind"].as_str().unwrap_or_default().to_string(),
        status: r["status"].as_str().unwrap_or_default().to_string(),
        error: r["error"].as_str().unwrap_or_default().to_string(),
        position: r["position"].as_u64().unwrap_or(0),
        lag: r["lag"].as_u64().unwrap_or(0),
        parked: r["parked"].as_u64().unwrap_or(0),
        parked_events,
        name,
    }
}

#[derive(Template)]
#[template(path = "console/sagas.html")]
struct Sagas {
    nav_sagas: Vec<String>,
    saga: String,
    state: String,
    stuck: String,
    states: Vec<(String, u64)>,
    items: Vec<InstanceRow>,
}

struct InstanceRow {
    /// The saga version it runs on.
    version: u64,
    id: String,
    state: String,
    done: bool,
    age: String,
    in_state: String,
    timer: String,
}

pub async fn sagas(
    State(state): State<AppState>,
    axum::extract::Path(saga): axum::extract::Path<String>,
    Query(params): Query<ListParams>,
) -> Response {
    let mut body = json!({"saga": saga, "limit": 200});
    if !params.state.is_empty() {
        body["state"] = json!(params.state);
    }
    if let Ok(secs) = params.stuck.trim().parse::<u64>() {
        body["stuck_secs"] = json!(secs);
    }
    let listed = ask(&state, "admin.sagas", body).await.unwrap_or_default();
    let states = listed["states"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0))).collect())
        .unwrap_or_default();
    let secs = |v: &Value| v.as_f64().map(|s| format!("{s:.1}")).unwrap_or_default();
    let items = listed["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| InstanceRow {
            id: i["id"].as_str().unwrap_or_default().to_string(),
            state: i["state"].as_str().unwrap_or_default().to_string(),
            version: i["version"].as_u64().unwrap_or(1),
            done: i["final"] == true,
            age: secs(&i["age_secs"]),
            in_state: secs(&i["in_state_secs"]),
            timer: i["timer_at"].as_str().unwrap_or_default().to_string(),
        })
        .collect();
    render(Sagas { nav_sagas: saga_names(&state), saga, state: params.state, stuck: params.stuck, states, items })
}

#[derive(Template)]
#[template(path = "console/aggregate.html")]
struct Aggregate {
    nav_sagas: Vec<String>,
    aggregates: Vec<String>,
    aggregate: String,
    id: String,
    message: Option<String>,
    events: Vec<EventRow>,
}

struct EventRow {
    seq: u64,
    version: u64,
    time: String,
    event_type: String,
    data: String,
    command: String,
    state: String,
}

/// An aggregate's events, each with the state after it (what `eddy history` prints) and its command.
pub async fn aggregates(State(state): State<AppState>, Query(params): Query<ListParams>) -> Response {
    let aggregates: Vec<String> = state.config.aggregates.keys().cloned().collect();
    let mut page = Aggregate {
        nav_sagas: saga_names(&state),
        aggregates,
        aggregate: params.aggregate.clone(),
        id: params.id.clone(),
        message: None,
        events: Vec::new(),
    };
    let Some(def) = state.config.aggregates.get(&params.aggregate).filter(|_| !params.id.is_empty()) else {
        return render(page);
    };
    match state.store.load(&params.aggregate, &params.id, 1).await {
        Ok(events) if events.is_empty() => {
            page.message = Some(format!("{} {} has no events", params.aggregate, params.id))
        }
        Ok(events) => {
            let mut folded = def.initial.clone();
            for e in events.iter().take(1000) {
                let after = match def.apply_stored(&mut folded, e) {
                    Ok(()) => pretty(&folded),
                    Err(err) => format!("CANNOT BE APPLIED: {err}"),
                };
                page.events.push(EventRow {
                    seq: e.seq,
                    version: e.version,
                    time: eddy_engine::envelope::format_time(e.time),
                    event_type: e.event_type.clone(),
                    data: pretty(&e.data),
                    command: e.command_id.clone(),
                    state: after,
                });
            }
        }
        Err(e) => page.message = Some(format!("reading {} {}: {e}", params.aggregate, params.id)),
    }
    render(page)
}

#[derive(Template)]
#[template(path = "console/view.html")]
struct View {
    nav_sagas: Vec<String>,
    views: Vec<String>,
    view: String,
    filter: String,
    message: Option<String>,
    documents: Vec<(String, String)>,
    next: String,
}

/// A view's documents, 50 a page, with a `where` filter.
pub async fn views(State(state): State<AppState>, Query(params): Query<ListParams>) -> Response {
    let views = state.views.status().await.into_iter().map(|v| v.name).collect();
    let mut page = View {
        nav_sagas: saga_names(&state),
        views,
        view: params.view.clone(),
        filter: params.filter.clone(),
        message: None,
        documents: Vec::new(),
        next: String::new(),
    };
    if params.view.is_empty() {
        return render(page);
    }
    let mut body = json!({"limit": 50});
    if !params.filter.trim().is_empty() {
        body["where"] = json!(params.filter);
    }
    if !params.after.is_empty() {
        body["after"] = json!(params.after);
    }
    match ask(&state, &format!("query.{}.list", params.view), body).await {
        Ok(listed) => {
            for item in listed["items"].as_array().into_iter().flatten() {
                page.documents.push((item["key"].as_str().unwrap_or_default().to_string(), pretty(&item["doc"])));
            }
            page.next = listed["next"].as_str().unwrap_or_default().to_string();
        }
        Err(e) => page.message = Some(e),
    }
    render(page)
}
