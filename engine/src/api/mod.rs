//! The wire types every endpoint shares (commands, queries, admin): the contract's error codes, replies
//! with their micro-service error headers, and [`answer`], which makes sure every request gets one.

mod http;
mod reply;
mod text;
mod wait;

use std::future::Future;
use std::panic::AssertUnwindSafe;

use async_nats::service::Request;
use futures::FutureExt;

pub use http::{status_of, Refusal};
pub use reply::{ErrorCode, Failure, Reply, ReplyEvent, Success};
pub use text::{clip, MAX_MESSAGE_LEN};
pub use wait::{parse_wait, wait_of, StartWait, MAX_WAIT_SECS, WAIT_HEADER};

/// Runs `handler` for `request` and sends its reply. A handler that panics is answered `internal` and
/// logged, so no request goes unanswered and the endpoint's loop lives on.
pub async fn answer<R: AsRef<Reply>>(request: &Request, handler: impl Future<Output = R>) {
    match AssertUnwindSafe(handler).catch_unwind().await {
        Ok(reply) => send(request, reply.as_ref()).await,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(subject = %request.message.subject, panic = %clip(&what), "a request handler panicked");
            send(request, &Reply::failure(Failure::new(ErrorCode::Internal, "the request failed inside eddy"))).await;
        }
    }
}

async fn send(request: &Request, reply: &Reply) {
    if let Err(e) = request.respond_with_headers(Ok(reply.body.clone()), reply.headers()).await {
        tracing::warn!(error = %e, subject = %request.message.subject, "could not send a reply");
    }
}
