//! Requests read across a stall of the engine are refused. An engine paused for seconds (SIGSTOP, a frozen
//! VM, a swap storm) wakes up with requests buffered in its socket that their clients have long given up on
//! and sent again to another engine. Deciding them now could apply a command that the other engine has
//! meanwhile rejected (a rejection stores nothing that the command id could be matched against), or answer
//! an inbox nobody reads. The request does not say when it was sent, so the engine watches itself: a thread
//! notes the boot-time clock every [`TICK`]; a gap longer than [`STALL`] means the whole process stood
//! still. Then every request is answered `unavailable`, without being decided, until the backlog is read: a
//! request to the server sent after the stall has been answered (everything the server sent before its
//! answer is in the subscription's queue by then) and that queue is empty. Clients send again with the same command id,
//! which is safe.
//!
//! A thread rather than a task: a busy runtime delays its timers, and that must not count as a stall.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_nats::Client;
use tokio::sync::oneshot;

use crate::api::{ErrorCode, Failure};
use crate::clock::BootInstant;

/// How often the watch thread notes the clock.
const TICK: Duration = Duration::from_millis(100);
/// A gap between two notes longer than this is a stall: longer than any scheduling hiccup, shorter than a
/// client's usual timeout.
pub const STALL: Duration = Duration::from_secs(2);

struct Clock {
    last_tick: BootInstant,
    /// A stall noted and not taken yet: how long it was.
    stall: Option<Duration>,
}

/// Watches the process for stalls; its thread ends when this is dropped.
struct Watchdog {
    clock: Arc<Mutex<Clock>>,
}

impl Watchdog {
    fn start() -> Self {
        let clock = Arc::new(Mutex::new(Clock { last_tick: BootInstant::now(), stall: None }));
        let weak = Arc::downgrade(&clock);
        let spawned = std::thread::Builder::new().name("eddy-stall-watch".into()).spawn(move || watch(weak));
        if let Err(e) = spawned {
            // Without it, only the check at each request remains, which still sees a stall nobody noted.
            tracing::warn!(error = %e, "cannot start the stall watch thread");
        }
        Self { clock }
    }

    /// The stall noted since the last call, if any. It looks at the clock too: after a wake, a request may
    /// be read before the thread has run.
    fn take_stall(&self) -> Option<Duration> {
        let mut clock = self.clock.lock().unwrap_or_else(|p| p.into_inner());
        note(&mut clock, BootInstant::now());
        clock.stall.take()
    }
}

fn watch(clock: Weak<Mutex<Clock>>) {
    loop {
        std::thread::sleep(TICK);
        let Some(clock) = clock.upgrade() else { return };
        let mut clock = clock.lock().unwrap_or_else(|p| p.into_inner());
        note(&mut clock, BootInstant::now());
    }
}

/// Moves the clock to `now`, noting a stall if the gap since the last note is one.
fn note(clock: &mut Clock, now: BootInstant) {
    let gap = now - clock.last_tick;
    if gap > STALL {
        clock.stall = Some(clock.stall.map_or(gap, |s| s.max(gap)));
    }
    clock.last_tick = clock.last_tick.max(now);
}

/// Where the command loop stands after a stall.
enum Drain {
    /// Waiting for the round trip sent after the stall to come back.
    Barrier(oneshot::Receiver<()>),
    /// The round trip is back: refusing what is still queued.
    Backlog,
}

/// Admits the requests the command loop reads, refusing those that may have waited across a stall.
pub(super) struct Gate {
    watchdog: Watchdog,
    client: Client,
    draining: Option<Drain>,
    stalled_for: Duration,
}

impl Gate {
    pub fn new(client: Client) -> Self {
        Self { watchdog: Watchdog::start(), client, draining: None, stalled_for: Duration::ZERO }
    }

    /// Whether requests are being refused; the loop then calls [`Gate::settle`] whenever its queue is empty.
    pub fn draining(&self) -> bool {
        self.draining.is_some()
    }

    /// Judges a request just read.
    pub fn admit(&mut self) -> Result<(), Failure> {
        if let Some(stall) = self.watchdog.take_stall() {
            tracing::warn!(stalled_for = ?stall, "the engine stood still (paused or frozen); refusing the requests that waited through it");
            self.stalled_for = stall;
            self.draining = Some(Drain::Barrier(self.barrier()));
        }
        match self.draining {
            None => Ok(()),
            Some(_) => Err(Failure::new(
                ErrorCode::Unavailable,
                format!(
                    "the engine stood still for {:.1} s (paused?) and this request may have waited through it; \
                     nothing was decided: send it again",
                    self.stalled_for.as_secs_f64()
                ),
            )),
        }
    }

    /// Called when the queue is empty: ends the drain once the barrier is in, or waits for it.
    pub async fn settle(&mut self) {
        match &mut self.draining {
            Some(Drain::Barrier(pong)) => {
                if pong.await.is_err() {
                    tracing::debug!("the barrier's task ended without an answer");
                }
                self.draining = Some(Drain::Backlog);
            }
            Some(Drain::Backlog) => {
                tracing::info!("the requests that waited through the stall are answered; deciding again");
                self.draining = None;
            }
            None => {}
        }
    }

    fn barrier(&self) -> oneshot::Receiver<()> {
        let (done, pong) = oneshot::channel();
        let client = self.client.clone();
        tokio::spawn(async move {
            // A request answered by the server on this connection: everything it wrote to us before the answer
            // has been read by then (`Client::flush` only empties our own send buffer, so it proves nothing).
            // An error means the connection was lost, and what it had buffered with it: nothing to wait for.
            if let Err(e) = crate::runtime::round_trip(&client).await {
                tracing::debug!(error = %e, "the barrier after a stall did not come back");
            }
            if done.send(()).is_err() {
                tracing::debug!("the command loop ended before the barrier came back");
            }
        });
        pong
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_gap_longer_than_a_stall_is_noted_and_it_is_taken_once() {
        let start = BootInstant::now();
        let mut c = Clock { last_tick: start, stall: None };
        note(&mut c, start + STALL / 2);
        assert_eq!(c.stall, None, "a short gap is no stall");
        let gap = STALL + Duration::from_millis(1);
        note(&mut c, start + STALL / 2 + gap);
        assert_eq!(c.stall.take(), Some(gap));
        note(&mut c, start + STALL / 2 + gap + TICK);
        assert_eq!(c.stall, None);
    }

    #[test]
    fn a_fresh_watchdog_notes_no_stall() {
        assert_eq!(Watchdog::start().take_stall(), None);
    }
}
