//! The one retry delay of eddy: exponential, doubling from a first delay up to a cap, reset after a
//! success. Each loop that waits out a failure uses it with the pair of delays that suits what fails: NATS
//! coming back ([`Backoff::reconnect`]) should be followed within a second; a failing disk or a definition
//! that keeps erring is retried less eagerly ([`Backoff::failure`]).
//!
//! A small type rather than a crate (`backon`, `backoff`): eddy's loops all wait under a cancellation token
//! and decide themselves what to log and when to give up, so what they share is just the delay sequence,
//! and the crates' retry drivers would wrap each loop's own control flow instead of replacing it.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Delays doubling from `first` up to `cap`.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    next: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, cap: Duration) -> Self {
        Self { first, cap, next: first }
    }

    /// For reaching NATS: 100 ms doubling to 1 s.
    pub const fn reconnect() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(1))
    }

    /// For a failure that is not the connection (a disk, an action, a decision): 100 ms doubling to 5 s.
    pub const fn failure() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(5))
    }

    /// The delay to wait now; the one after it is twice as long, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.cap);
        delay
    }

    /// The delay [`Backoff::next_delay`] gives next, without moving on.
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// Back to the first delay, after a success.
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// Sleeps the next delay; false if `cancel` came first.
    pub async fn wait(&mut self, cancel: &CancellationToken) -> bool {
        sleep(cancel, self.next_delay()).await
    }

    /// Sleeps the next delay.
    pub async fn sleep(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }
}

/// Sleeps `duration` unless `cancel` comes first; false if it did.
pub async fn sleep(cancel: &CancellationToken, duration: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(duration) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let delays: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 350, 350, 350]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
        assert_eq!(b.peek(), Duration::from_millis(200));
    }

    #[tokio::test]
    async fn a_cancelled_wait_says_so() {
        let cancel = CancellationToken::new();
        let mut b = Backoff::new(Duration::from_millis(1), Duration::from_millis(2));
        assert!(b.wait(&cancel).await);
        cancel.cancel();
        assert!(!b.wait(&cancel).await);
    }
}
