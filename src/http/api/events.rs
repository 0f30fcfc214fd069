//! `GET /v1/events?subjects=events.account.>,events.transfer.*`: a live tail of the stream as server-sent
//! events, from now on (or after `Last-Event-ID`, the last seq a client saw, so a reconnect resumes). It
//! reads with the engine's resilient ordered reader and ends when the client leaves or the engine stops.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use eddy_engine::api::ErrorCode;
use eddy_engine::envelope::StoredEvent;
use eddy_engine::host::Feed;
use serde::Deserialize;

use super::aggregates::event_json;
use super::{failure, refused};
use crate::http::auth::Scope;
use crate::http::AppState;

/// Filters one tail may name.
const MAX_SUBJECTS: usize = 16;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TailQuery {
    subjects: Option<String>,
}

pub(super) async fn tail(
    State(state): State<AppState>,
    peer: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<TailQuery>, QueryRejection>,
) -> Response {
    if let Some(refused) = refused(&state, &headers, &peer, Scope::Queries) {
        return refused;
    }
    let Ok(Query(q)) = query else { return failure(ErrorCode::Invalid, "query: only `subjects` is known") };
    let subjects: Vec<String> = match q.subjects.as_deref() {
        None | Some("") => vec!["events.>".into()],
        Some(list) => list.split(',').map(|s| s.trim().to_string()).collect(),
    };
    if let Err(message) = check(&subjects) {
        return failure(ErrorCode::Invalid, message);
    }
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    let from = match resume {
        Some(seq) => seq + 1,
        None => match state.store.last_seq().await {
            Ok(last) => last + 1,
            Err(e) => return failure(ErrorCode::Unavailable, e.to_string()),
        },
    };
    let reading = state.stop.child_token();
    let batches = Feed::new(state.store.clone(), subjects, from, "an HTTP event tail").spawn(256, reading.clone());
    // Dropping the stream (the client left) stops the reader.
    let start = (batches, VecDeque::<StoredEvent>::new(), reading.drop_guard());
    let stream = futures::stream::unfold(start, |(mut batches, mut queue, guard)| async move {
        while queue.is_empty() {
            queue.extend(batches.recv().await?.events);
        }
        let event = queue.pop_front()?;
        let sse =
            Event::default().id(event.seq.to_string()).event(&event.event_type).data(event_json(&event).to_string());
        Some((Ok::<_, Infallible>(sse), (batches, queue, guard)))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
}

/// Filters of `events.>`: subjects of tokens, `*` and a final `>`.
fn check(subjects: &[String]) -> Result<(), String> {
    if subjects.len() > MAX_SUBJECTS {
        return Err(format!("at most {MAX_SUBJECTS} subjects"));
    }
    for s in subjects {
        let tokens: Vec<&str> = s.split('.').collect();
        let ok = tokens.first() == Some(&"events")
            && tokens.len() >= 2
            && tokens.iter().enumerate().all(|(i, t)| {
                !t.is_empty()
                    && !t.contains(char::is_whitespace)
                    && (*t == "*" || (*t == ">" && i == tokens.len() - 1) || !t.contains(['*', '>']))
            });
        if !ok {
            return Err(format!("`{s}` is not a subject filter under events. (e.g. events.account.>)"));
        }
    }
    Ok(())
}
