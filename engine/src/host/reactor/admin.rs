//! `<api_prefix>.admin.reactors` (statuses), `.retry` and `.rebuild`, and `<api_prefix>.admin.sagas`, `.get`
//! (see [`super::sagas`]), `.cancel` and `.move` (see [`super::steer`]), on the `eddy` micro service.

use std::sync::Arc;

use async_nats::service::{endpoint::Endpoint, Service};
use futures::StreamExt;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::set::Error;
use super::steer::SteerAction;
use super::Reactors;
use crate::api::{answer, ErrorCode, Failure, Reply};

/// The admin endpoints.
pub struct AdminEndpoints {
    list: Endpoint,
    retry: Endpoint,
    rebuild: Endpoint,
    sagas: Endpoint,
    saga: Endpoint,
    cancel: Endpoint,
    moves: Endpoint,
}

/// Adds the endpoints; requests wait in NATS until [`serve_admin`] reads them.
pub async fn admin_endpoints(service: &Service, api_prefix: &str) -> Result<AdminEndpoints, async_nats::Error> {
    let add = |name: &'static str, subject: String| service.endpoint_builder().name(name).add(subject);
    Ok(AdminEndpoints {
        list: add("admin-reactors", format!("{api_prefix}.admin.reactors")).await?,
        retry: add("admin-reactors-retry", format!("{api_prefix}.admin.reactors.retry")).await?,
        rebuild: add("admin-reactors-rebuild", format!("{api_prefix}.admin.reactors.rebuild")).await?,
        sagas: add("admin-sagas", format!("{api_prefix}.admin.sagas")).await?,
        saga: add("admin-sagas-get", format!("{api_prefix}.admin.sagas.get")).await?,
        cancel: add("admin-sagas-cancel", format!("{api_prefix}.admin.sagas.cancel")).await?,
        moves: add("admin-sagas-move", format!("{api_prefix}.admin.sagas.move")).await?,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameRequest {
    name: String,
}

enum Verb {
    List,
    Retry,
    Rebuild,
    Sagas,
    Saga,
    Steer(SteerAction),
}

/// Serves the admin endpoints until `shutdown`.
pub async fn serve_admin(endpoints: AdminEndpoints, reactors: Arc<Reactors>, shutdown: CancellationToken) {
    let AdminEndpoints { mut list, mut retry, mut rebuild, mut sagas, mut saga, mut cancel, mut moves } = endpoints;
    loop {
        let (request, verb) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = list.next() => match r { Some(r) => (r, Verb::List), None => break },
            r = retry.next() => match r { Some(r) => (r, Verb::Retry), None => break },
            r = rebuild.next() => match r { Some(r) => (r, Verb::Rebuild), None => break },
            r = sagas.next() => match r { Some(r) => (r, Verb::Sagas), None => break },
            r = saga.next() => match r { Some(r) => (r, Verb::Saga), None => break },
            r = cancel.next() => match r { Some(r) => (r, Verb::Steer(SteerAction::Cancel)), None => break },
            r = moves.next() => match r { Some(r) => (r, Verb::Steer(SteerAction::Move)), None => break },
        };
        let handler = async {
            match verb {
                Verb::List => Reply::ok_json(&serde_json::json!({"ok": true, "reactors": reactors.status()})),
                Verb::Sagas => super::sagas::list(&reactors, &request.message.payload),
                Verb::Saga => super::sagas::get(&reactors, &request.message.payload),
                Verb::Steer(action) => super::steer::steer(&reactors, &request.message.payload, action).await,
                Verb::Retry | Verb::Rebuild => match serde_json::from_slice::<NameRequest>(&request.message.payload) {
                    Err(e) => Reply::failure(Failure::new(
                        ErrorCode::Invalid,
                        format!("expected {{\"name\": \"<reactor>\"}}: {e}"),
                    )),
                    Ok(req) => {
                        let (done, status) = match verb {
                            Verb::Retry => (reactors.retry(&req.name), "retrying"),
                            _ => (reactors.rebuild(&req.name).await, "rebuilding"),
                        };
                        match done {
                            Ok(()) => {
                                Reply::ok_json(&serde_json::json!({"ok": true, "name": req.name, "status": status}))
                            }
                            Err(Error::Unknown(n)) => {
                                Reply::failure(Failure::new(ErrorCode::NotFound, format!("no reactor `{n}`")))
                            }
                            Err(e) => Reply::failure(Failure::new(ErrorCode::Internal, e.to_string())),
                        }
                    }
                },
            }
        };
        answer(&request, handler).await;
    }
}
