//! `<api_prefix>.query.<view>.get|list` and `<api_prefix>.admin.views[.rebuild]` on the `eddy` service.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::service::{endpoint::Endpoint, Service};
use eddy_engine::api::{answer, ErrorCode, Failure, Reply};
use eddy_engine::cel::Expr;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::scan::{Item, Page, Scan};
use crate::Views;

const DEFAULT_TIMEOUT_MS: u64 = 2000;
/// The longest a read-your-writes wait may ask for: a wait cannot tell that its client gave up, so it is
/// bounded instead.
pub const MAX_TIMEOUT_MS: u64 = 30_000;
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// Adds the query endpoint; requests wait in NATS until [`serve_queries`] reads them.
pub async fn query_endpoint(service: &Service, api_prefix: &str) -> Result<Endpoint, async_nats::Error> {
    service.endpoint_builder().name("query").add(format!("{api_prefix}.query.>")).await
}

/// Adds `<prefix>.admin.views` and `<prefix>.admin.views.rebuild`.
pub async fn admin_endpoints(service: &Service, api_prefix: &str) -> Result<(Endpoint, Endpoint), async_nats::Error> {
    let list = service.endpoint_builder().name("admin-views").add(format!("{api_prefix}.admin.views")).await?;
    let rebuild =
        service.endpoint_builder().name("admin-views-rebuild").add(format!("{api_prefix}.admin.views.rebuild")).await?;
    Ok((list, rebuild))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GetRequest {
    key: String,
    min_seq: Option<u64>,
    timeout_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct ListRequest {
    prefix: String,
    after: Option<String>,
    limit: Option<usize>,
    #[serde(rename = "where")]
    filter: Option<String>,
    min_seq: Option<u64>,
    timeout_ms: Option<u64>,
}

#[derive(Serialize)]
struct GetReply<'a> {
    ok: bool,
    key: &'a str,
    doc: Option<Map<String, Json>>,
    seq: u64,
}

#[derive(Serialize)]
struct ListReply {
    ok: bool,
    items: Vec<Item>,
    next: Option<String>,
    seq: u64,
}

/// Serves queries until `shutdown`.
pub async fn serve_queries(mut endpoint: Endpoint, api_prefix: String, views: Arc<Views>, shutdown: CancellationToken) {
    let filters = Arc::new(Mutex::new(lru::LruCache::new(NonZeroUsize::new(256).expect("non-zero"))));
    let tracker = TaskTracker::new();
    let prefix = format!("{api_prefix}.query.");
    loop {
        let request = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = endpoint.next() => match r { Some(r) => r, None => break },
        };
        let (views, filters, prefix) = (views.clone(), filters.clone(), prefix.clone());
        tracker.spawn(async move {
            let handler = async {
                match handle(&views, &filters, &prefix, &request.message).await {
                    Ok(reply) => reply,
                    Err(failure) => Reply::failure(failure),
                }
            };
            answer(&request, handler).await;
        });
    }
    tracker.close();
    tracker.wait().await;
}

type FilterCache = Mutex<lru::LruCache<String, Expr>>;

fn invalid(message: impl AsRef<str>) -> Failure {
    Failure::new(ErrorCode::Invalid, message)
}

fn parse<T: for<'de> Deserialize<'de> + Default>(payload: &[u8]) -> Result<T, Failure> {
    if payload.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(T::default());
    }
    serde_json::from_slice(payload).map_err(|e| invalid(format!("bad request body: {e}")))
}

async fn handle(
    views: &Views,
    filters: &FilterCache,
    prefix: &str,
    msg: &async_nats::Message,
) -> Result<Reply, Failure> {
    let target = msg.subject.as_str().strip_prefix(prefix).unwrap_or_default();
    let (name, op) = target.rsplit_once('.').ok_or_else(|| {
        Failure::new(ErrorCode::NotFound, format!("`{}` is not {prefix}<view>.get|list", msg.subject))
    })?;
    let view = views.get(name).ok_or_else(|| Failure::new(ErrorCode::NotFound, format!("no view `{name}`")))?;
    let wait = |min_seq: Option<u64>, timeout_ms: Option<u64>| {
        let view = view.clone();
        async move {
            match min_seq {
                None => Ok(view.active().position()),
                Some(_) if timeout_ms.is_some_and(|t| t > MAX_TIMEOUT_MS) => {
                    Err(invalid(format!("`timeout_ms` is at most {MAX_TIMEOUT_MS}")))
                }
                Some(min) => {
                    let timeout = Duration::from_millis(timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS));
                    view.wait_for(min, timeout).await.ok_or_else(|| {
                        Failure::new(ErrorCode::Unavailable, format!("view `{name}` had not reached seq {min} in time"))
                    })
                }
            }
        }
    };
    let store_error = |e: crate::store::Error| Failure::new(ErrorCode::Internal, e.to_string());
    match op {
        "get" => {
            let req: GetRequest = parse(&msg.payload)?;
            if req.key.is_empty() {
                return Err(invalid("`key` is required"));
            }
            let seq = wait(req.min_seq, req.timeout_ms).await?;
            let doc = view.active().store.get(&req.key).map_err(store_error)?;
            Ok(Reply::ok_json(&GetReply { ok: true, key: &req.key, doc, seq }))
        }
        "list" => {
            let req: ListRequest = parse(&msg.payload)?;
            let filter = match &req.filter {
                Some(src) if !src.trim().is_empty() => Some(compile_filter(filters, src)?),
                _ => None,
            };
            let limit = req.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
            let seq = wait(req.min_seq, req.timeout_ms).await?;
            let scan = Scan { prefix: req.prefix, after: req.after, limit, filter };
            let Page { items, next } = crate::scan::run(view.active().store.clone(), scan).await?;
            Ok(Reply::ok_json(&ListReply { ok: true, items, next, seq }))
        }
        other => Err(Failure::new(ErrorCode::NotFound, format!("views answer get and list, not `{other}`"))),
    }
}

fn compile_filter(cache: &FilterCache, src: &str) -> Result<Expr, Failure> {
    if let Some(expr) = cache.lock().expect("lock").get(src) {
        return Ok(expr.clone());
    }
    let expr = Expr::compile(src, &["key", "doc"]).map_err(|e| invalid(format!("where: {e}")))?;
    cache.lock().expect("lock").put(src.to_string(), expr.clone());
    Ok(expr)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RebuildRequest {
    name: String,
}

/// Serves `admin.views` (statuses) and `admin.views.rebuild` until `shutdown`.
pub async fn serve_admin(endpoints: (Endpoint, Endpoint), views: Arc<Views>, shutdown: CancellationToken) {
    let (mut list, mut rebuild) = endpoints;
    loop {
        let (request, is_rebuild) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = list.next() => match r { Some(r) => (r, false), None => break },
            r = rebuild.next() => match r { Some(r) => (r, true), None => break },
        };
        let handler = async {
            if is_rebuild {
                match serde_json::from_slice::<RebuildRequest>(&request.message.payload) {
                    Ok(req) => match views.rebuild(&req.name) {
                        Ok(()) => {
                            Reply::ok_json(&serde_json::json!({"ok": true, "name": req.name, "status": "rebuilding"}))
                        }
                        Err(crate::Error::UnknownView(n)) => {
                            Reply::failure(Failure::new(ErrorCode::NotFound, format!("no view `{n}`")))
                        }
                        Err(e) => Reply::failure(Failure::new(ErrorCode::Internal, e.to_string())),
                    },
                    Err(e) => Reply::failure(invalid(format!("expected {{\"name\": \"<view>\"}}: {e}"))),
                }
            } else {
                Reply::ok_json(&serde_json::json!({"ok": true, "views": views.status().await}))
            }
        };
        answer(&request, handler).await;
    }
}
