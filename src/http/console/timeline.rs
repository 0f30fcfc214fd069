//! A saga instance's page: its timeline (`crate::timeline`), as the CLI's `eddy sagas <saga> <id>` prints it.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;

use super::{render, saga_names};
use crate::http::AppState;
use crate::timeline::{self, Step};

#[derive(Template)]
#[template(path = "console/instance.html")]
struct Instance {
    nav_sagas: Vec<String>,
    saga: String,
    id: String,
    state: String,
    done: bool,
    steps: Vec<Step>,
}

pub async fn instance(State(state): State<AppState>, Path((saga, id)): Path<(String, String)>) -> Response {
    let steps = match timeline::load(&state.store, &saga, &id).await {
        Ok(steps) => steps,
        Err(e) => vec![timeline::note(0, format!("reading the log: {e}"))],
    };
    let last = steps.iter().rev().find(|s| !s.state.is_empty());
    let current = last.map(|s| s.state.clone()).unwrap_or_default();
    let done = last.is_some_and(|s| s.trigger.ends_with("(final)"));
    render(Instance { nav_sagas: saga_names(&state), saga, id, state: current, done, steps })
}
