//! The clock a lease's validity and the engine's stalls are measured with: CLOCK_BOOTTIME, which keeps counting while the machine
//! is suspended, where `Instant` (CLOCK_MONOTONIC) stops. A process frozen by SIGSTOP, or in a suspended
//! VM, must find its deadline passed when it wakes, however it was frozen.

use std::time::Duration;

/// A point on the boot-time clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BootInstant(Duration);

impl BootInstant {
    pub fn now() -> Self {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: a valid pointer to a timespec this function owns; CLOCK_BOOTTIME exists on Linux >= 2.6.39.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
        assert_eq!(rc, 0, "CLOCK_BOOTTIME is readable");
        BootInstant(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
    }
}

impl std::ops::Add<Duration> for BootInstant {
    type Output = BootInstant;
    fn add(self, d: Duration) -> BootInstant {
        BootInstant(self.0 + d)
    }
}

impl std::ops::Sub<BootInstant> for BootInstant {
    type Output = Duration;
    /// The time from `earlier` to `self`, zero if `earlier` is later.
    fn sub(self, earlier: BootInstant) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl std::ops::Sub<Duration> for BootInstant {
    type Output = BootInstant;
    fn sub(self, d: Duration) -> BootInstant {
        BootInstant(self.0.saturating_sub(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_moves_forward() {
        let a = BootInstant::now();
        std::thread::sleep(Duration::from_millis(2));
        let b = BootInstant::now();
        assert!(b > a && b >= a + Duration::from_millis(2));
        assert!(a + Duration::from_secs(1) > b);
    }
}
