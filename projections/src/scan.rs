//! A `list` query's scan over a view copy: documents in key order, filtered by a `where` expression.
//!
//! It runs on tokio's blocking pool, never on the workers that decide commands, and at most
//! [`MAX_CONCURRENT`] at a time, so heavy queries queue instead of starving the command path. A scan that
//! has examined documents for [`MAX_SCAN`] returns the page it has with `next` set to the last key it
//! examined: the client continues from there, and no query holds a thread for longer.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use eddy_engine::api::{ErrorCode, Failure};
use eddy_engine::cel::{map_to_cel, Expr, Vars};
use serde::Serialize;
use serde_json::{Map, Value as Json};
use tokio::sync::Semaphore;

use crate::store::ViewStore;

/// How long one scan examines documents before it returns a partial page.
pub const MAX_SCAN: Duration = Duration::from_secs(2);

/// Scans running at once; more wait for a turn.
pub const MAX_CONCURRENT: usize = 4;

/// How long a scan waits for its turn before it is answered `unavailable`: under overload, queries fail
/// fast instead of piling up for clients that have given up.
pub const MAX_TURN_WAIT: Duration = Duration::from_secs(5);

static TURNS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(MAX_CONCURRENT)));

/// One document of a page.
#[derive(Serialize)]
pub struct Item {
    pub key: String,
    pub doc: Map<String, Json>,
}

/// What a `list` asks for.
pub struct Scan {
    pub prefix: String,
    pub after: Option<String>,
    pub limit: usize,
    pub filter: Option<Expr>,
}

/// A page: the items, and where to continue (`None`: the end).
pub struct Page {
    pub items: Vec<Item>,
    pub next: Option<String>,
}

/// Runs `scan` over `store` on the blocking pool.
pub async fn run(store: ViewStore, scan: Scan) -> Result<Page, Failure> {
    let busy = || Failure::new(ErrorCode::Unavailable, "too many list queries are running; try again");
    let turn = tokio::time::timeout(MAX_TURN_WAIT, TURNS.clone().acquire_owned())
        .await
        .map_err(|_| busy())?
        .map_err(|_| busy())?;
    let page = tokio::task::spawn_blocking(move || {
        let page = scan_blocking(&store, &scan, Instant::now() + MAX_SCAN);
        drop(turn);
        page
    })
    .await
    .map_err(|e| Failure::new(ErrorCode::Internal, format!("the scan failed: {e}")))?;
    page
}

fn scan_blocking(store: &ViewStore, scan: &Scan, deadline: Instant) -> Result<Page, Failure> {
    let mut items = Vec::new();
    let mut next = None;
    let mut failure = None;
    store
        .scan(&scan.prefix, scan.after.as_deref(), |key, doc| {
            if let Some(filter) = &scan.filter {
                let mut vars = Vars::new();
                vars.set("key", &Json::String(key.clone())).set_value("doc", map_to_cel(&doc));
                match filter.eval_bool(&vars) {
                    Ok(true) => {}
                    Ok(false) if Instant::now() >= deadline => {
                        next = Some(key);
                        return Ok(false);
                    }
                    Ok(false) => return Ok(true),
                    Err(e) => {
                        failure = Some(Failure::new(ErrorCode::Invalid, format!("where: at key `{key}`: {e}")));
                        return Ok(false);
                    }
                }
            }
            if items.len() == scan.limit {
                next = items.last().map(|i: &Item| i.key.clone());
                return Ok(false);
            }
            items.push(Item { key, doc });
            if Instant::now() >= deadline {
                next = items.last().map(|i| i.key.clone());
                return Ok(false);
            }
            Ok(true)
        })
        .map_err(|e| Failure::new(ErrorCode::Internal, e.to_string()))?;
    match failure {
        Some(f) => Err(f),
        None => Ok(Page { items, next }),
    }
}
