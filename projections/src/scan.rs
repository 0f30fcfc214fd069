//! A `list` query's scan over a view copy: documents in key order, filtered by a `where` expression.
//!
//! Scans run on a few threads of their own at a lower CPU priority (nice 10), never on the workers that
//! decide commands: on a busy machine the kernel gives commands the CPU first, so heavy queries slow down
//! instead of slowing commands (measured by `eddy bench starve`). Scans queue for those threads, and one
//! that cannot start within [`MAX_TURN_WAIT`] is answered `unavailable`. A scan that has examined
//! documents for [`MAX_SCAN`] returns the page it has with `next` set to the last key it examined: the
//! client continues from there, and no query holds a thread for longer.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use eddy_engine::api::{ErrorCode, Failure};
use eddy_engine::cel::{map_to_cel, Expr, Vars};
use serde::Serialize;
use serde_json::{Map, Value as Json};

use crate::store::ViewStore;

/// How long one scan examines documents before it returns a partial page.
pub const MAX_SCAN: Duration = Duration::from_secs(2);

/// Threads that scan; more scans wait for one.
pub const SCAN_THREADS: usize = 2;

/// How long a scan waits to start before it is answered `unavailable`: under overload, queries fail fast
/// instead of piling up for clients that have given up.
pub const MAX_TURN_WAIT: Duration = Duration::from_secs(5);

/// Scans waiting for a thread; more are answered `unavailable` at once.
const QUEUE: usize = 64;

type Job = Box<dyn FnOnce() + Send>;

static POOL: LazyLock<std::sync::mpsc::SyncSender<Job>> = LazyLock::new(|| {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(QUEUE);
    let rx = Arc::new(std::sync::Mutex::new(rx));
    for i in 0..SCAN_THREADS {
        let rx = rx.clone();
        let spawned = std::thread::Builder::new().name(format!("eddy-scan-{i}")).spawn(move || {
            // SAFETY: on Linux, PRIO_PROCESS with 0 sets the nice value of the calling thread only.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
            loop {
                let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                match job {
                    // A panicking scan answers its query `internal` (its sender is dropped); the thread lives on.
                    Ok(job) => drop(std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))),
                    Err(_) => break,
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a scan thread");
        }
    }
    tx
});

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

/// Runs `scan` over `store` on a scan thread.
pub async fn run(store: ViewStore, scan: Scan) -> Result<Page, Failure> {
    let busy = || Failure::new(ErrorCode::Unavailable, "too many list queries are running; try again");
    let (tx, rx) = tokio::sync::oneshot::channel();
    let queued = Instant::now();
    let job: Job = Box::new(move || {
        // A scan whose client has surely given up by now is not started.
        let page = match queued.elapsed() > MAX_TURN_WAIT {
            true => Err(busy()),
            false => scan_blocking(&store, &scan, Instant::now() + MAX_SCAN),
        };
        let _gone = tx.send(page);
    });
    POOL.try_send(job).map_err(|_| busy())?;
    rx.await.map_err(|_| Failure::new(ErrorCode::Internal, "the scan failed"))?
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
