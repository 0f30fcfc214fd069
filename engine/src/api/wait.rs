//! Start and wait: a command sent with `Eddy-Wait: <secs>` (`?wait=` over HTTP) whose events start process
//! instances (sagas) is answered when those instances reach a final state, or when the wait runs out. The
//! reply is the command's, with `sagas`: each instance's saga, id, state, `final` and data.

use std::time::Duration;

use async_nats::HeaderMap;
use futures::future::BoxFuture;

use super::{ErrorCode, Failure, Reply};

/// The request header: seconds to wait.
pub const WAIT_HEADER: &str = "Eddy-Wait";
/// The longest wait: a waiting request holds a task and its client, so it is bounded.
pub const MAX_WAIT_SECS: u64 = 300;

/// What finishes a waiting command's reply (the reactor host, which knows the sagas).
pub trait StartWait: Send + Sync {
    /// `reply` (a success) with `sagas` added, once they are final or `wait` has passed.
    fn wait<'a>(&'a self, reply: &'a Reply, wait: Duration) -> BoxFuture<'a, Reply>;
}

/// The wait a request asks for: `Eddy-Wait` in whole seconds, 1 to [`MAX_WAIT_SECS`].
pub fn wait_of(h: Option<&HeaderMap>) -> Result<Option<Duration>, Failure> {
    let Some(value) = h.and_then(|h| h.get(WAIT_HEADER)).map(|v| v.as_str().trim().to_string()) else {
        return Ok(None);
    };
    parse_wait(&value).map(Some)
}

/// `secs` as a wait, or `invalid` naming the bounds.
pub fn parse_wait(secs: &str) -> Result<Duration, Failure> {
    match secs.parse::<u64>() {
        Ok(s) if (1..=MAX_WAIT_SECS).contains(&s) => Ok(Duration::from_secs(s)),
        _ => Err(Failure::new(ErrorCode::Invalid, format!("wait `{secs}`: whole seconds from 1 to {MAX_WAIT_SECS}"))),
    }
}
