//! The web console at `/`: server-rendered pages (askama templates in `templates/console/`), kept live by
//! re-fetching every 2 s. It reads what the CLI reads, through the same NATS admin and query subjects (so a
//! standby engine's console shows the lease holder's answers), and the event store for histories.

mod pages;
mod timeline;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{self, Scope};
use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::overview))
        .route("/reactors", get(pages::reactors))
        .route("/reactors/{name}/{verb}", post(act))
        .route("/sagas/{saga}", get(pages::sagas))
        .route("/sagas/{saga}/{id}", get(timeline::instance))
        .route("/sagas/{saga}/{id}/steer", post(steer))
        .route("/aggregates", get(pages::aggregates))
        .route("/views", get(pages::views))
}

/// How long the console waits for an admin or query answer.
const ASK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A request to `<api_prefix>.<subject>`, its JSON answer, or the error to show.
async fn ask(state: &AppState, subject: &str, body: Value) -> Result<Value, String> {
    let subject = format!("{}.{subject}", state.config.engine.api_prefix);
    let request = state.client.request(subject.clone(), body.to_string().into());
    let reply = match tokio::time::timeout(ASK_TIMEOUT, request).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(e)) => return Err(format!("{subject}: {e}")),
        Err(_) => return Err(format!("{subject}: no answer within {ASK_TIMEOUT:?}")),
    };
    let value: Value = serde_json::from_slice(&reply.payload).map_err(|e| format!("{subject}: {e}"))?;
    if value["ok"] == false {
        return Err(value["error"]["message"].as_str().unwrap_or("failed").to_string());
    }
    Ok(value)
}

/// Renders a template, or answers 500 saying why.
fn render(page: impl askama::Template) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("rendering the page: {e}")).into_response(),
    }
}

/// The sagas for the navigation bar.
fn saga_names(state: &AppState) -> Vec<String> {
    state
        .reactors
        .status()
        .into_iter()
        .filter(|r| r.kind == eddy_engine::host::reactor::Kind::Saga)
        .map(|r| r.name)
        .collect()
}

#[derive(Deserialize)]
struct ActForm {
    #[serde(default)]
    token: String,
}

/// The buttons: `POST /reactors/<name>/retry` and `/rebuild`, through the admin subjects (so the lease
/// holder does it), with the operator token when `[http] token` is set.
async fn act(
    State(state): State<AppState>,
    Path((name, verb)): Path<(String, String)>,
    headers: HeaderMap,
    form: Result<Form<ActForm>, FormRejection>,
) -> Response {
    if !matches!(verb.as_str(), "retry" | "rebuild") {
        return (StatusCode::NOT_FOUND, "reactors answer retry and rebuild").into_response();
    }
    // A caller with `Authorization: Bearer` may send no form at all.
    let token = form.as_ref().ok().map(|f| f.token.as_str());
    if let Err(denied) = auth::check(&state.config.http, &headers, token, Scope::Admin) {
        let page = pages::reactors_page(&state, Some(denied.to_string()), true).await;
        return (StatusCode::UNAUTHORIZED, render(page)).into_response();
    }
    let answer = ask(&state, &format!("admin.reactors.{verb}"), json!({"name": name})).await;
    let (message, failed) = match answer {
        Ok(_) => (format!("{name}: {verb} requested"), false),
        Err(e) => (format!("{name}: {verb} failed: {e}"), true),
    };
    let status = if failed { StatusCode::BAD_GATEWAY } else { StatusCode::OK };
    (status, render(pages::reactors_page(&state, Some(message), failed).await)).into_response()
}

#[derive(Deserialize)]
struct SteerForm {
    /// `cancel` or `move`.
    action: String,
    /// The state to move to.
    #[serde(default)]
    to: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    token: String,
}

/// The instance page's buttons: cancel it, or move it to a state, through `admin.sagas.<action>` (recorded on
/// the instance's log as asked by `console`, with the reason given), with the operator token when one is set.
async fn steer(
    State(state): State<AppState>,
    Path((saga, id)): Path<(String, String)>,
    headers: HeaderMap,
    form: Result<Form<SteerForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return (StatusCode::BAD_REQUEST, "the form needs `action` (cancel or move)").into_response();
    };
    if let Err(denied) = auth::check(&state.config.http, &headers, Some(&form.token), Scope::Admin) {
        return (StatusCode::UNAUTHORIZED, denied.to_string()).into_response();
    }
    let to = match form.action.as_str() {
        "cancel" => None,
        "move" if !form.to.trim().is_empty() => Some(form.to.trim().to_string()),
        "move" => return (StatusCode::BAD_REQUEST, "move needs the state to move to").into_response(),
        _ => return (StatusCode::NOT_FOUND, "an instance answers cancel and move").into_response(),
    };
    let body = json!({"saga": saga, "id": id, "by": "console", "reason": form.reason, "state": to});
    match ask(&state, &format!("admin.sagas.{}", form.action), body).await {
        // Back to the instance page, where the saga's answer to the steer shows up in the timeline.
        Ok(_) => Redirect::to(&format!("/sagas/{saga}/{id}")).into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, format!("{}: {e}", form.action)).into_response(),
    }
}

/// Query parameters shared by the list pages.
#[derive(Deserialize, Default)]
pub struct ListParams {
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub stuck: String,
    #[serde(default)]
    pub view: String,
    #[serde(default, rename = "where")]
    pub filter: String,
    #[serde(default)]
    pub after: String,
    #[serde(default)]
    pub aggregate: String,
    #[serde(default)]
    pub id: String,
}

/// Pretty JSON for a `<pre>`.
fn pretty(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}
