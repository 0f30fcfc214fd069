//! Saga timers under the virtual clock. A timer armed during the replay fires when the clock passes it,
//! unless the recording holds its firing, which then arrives as a recorded event in its turn.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

/// A timer armed by a reactor's `schedule` action.
#[derive(Debug, Clone)]
pub struct Timer {
    /// The timer's own subject (`timers.<log>.<instance>.<entry>`).
    pub subject: String,
    /// The time the event is for.
    pub at: DateTime<Utc>,
    /// When the server would fire it: `@at` takes whole seconds, rounded up.
    pub fires: DateTime<Utc>,
    pub aggregate: String,
    pub key: String,
    pub event_type: String,
    pub version: u64,
    pub data: Json,
    /// The schedule action's id, which the fired event carries as command and causation id.
    pub effect_id: String,
    pub correlation_id: String,
}

/// The armed timers, by subject and in firing order.
#[derive(Debug, Default)]
pub struct Timers {
    by_subject: BTreeMap<String, Timer>,
    order: BTreeSet<(DateTime<Utc>, String)>,
}

/// `at` rounded up to whole seconds, as the server's `@at` schedules fire.
pub fn firing_time(at: DateTime<Utc>) -> DateTime<Utc> {
    let whole = at.timestamp() + i64::from(at.timestamp_subsec_nanos() > 0);
    DateTime::from_timestamp(whole, 0).unwrap_or(at)
}

impl Timers {
    /// Arms `timer`, replacing one on the same subject (a subject holds one schedule).
    pub fn arm(&mut self, timer: Timer) {
        self.cancel(&timer.subject);
        self.order.insert((timer.fires, timer.subject.clone()));
        self.by_subject.insert(timer.subject.clone(), timer);
    }

    pub fn cancel(&mut self, subject: &str) {
        if let Some(old) = self.by_subject.remove(subject) {
            self.order.remove(&(old.fires, old.subject));
        }
    }

    /// Takes the earliest timer that fires before `now`.
    pub fn next_due(&mut self, now: DateTime<Utc>) -> Option<Timer> {
        let (fires, subject) = self.order.first()?.clone();
        if fires >= now {
            return None;
        }
        self.order.remove(&(fires, subject.clone()));
        self.by_subject.remove(&subject)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_subject.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.by_subject.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn timer(subject: &str, at: &str) -> Timer {
        Timer {
            subject: subject.into(),
            at: t(at),
            fires: firing_time(t(at)),
            aggregate: "saga-x".into(),
            key: "i".into(),
            event_type: "TimerFired".into(),
            version: 0,
            data: Json::Null,
            effect_id: "x:1:0".into(),
            correlation_id: "x:i".into(),
        }
    }

    #[test]
    fn fire_in_time_order_once_the_clock_passes_them() {
        let mut timers = Timers::default();
        timers.arm(timer("timers.b", "2026-01-01T00:00:10Z"));
        timers.arm(timer("timers.a", "2026-01-01T00:00:05.5Z"));
        assert!(timers.next_due(t("2026-01-01T00:00:06Z")).is_none(), "fires at :06, not before");
        assert_eq!(timers.next_due(t("2026-01-01T00:00:06.1Z")).unwrap().subject, "timers.a");
        assert!(timers.next_due(t("2026-01-01T00:00:06.1Z")).is_none());
        assert_eq!(timers.next_due(t("2026-01-02T00:00:00Z")).unwrap().subject, "timers.b");
        assert!(timers.is_empty());
    }

    #[test]
    fn a_cancelled_or_replaced_timer_does_not_fire() {
        let mut timers = Timers::default();
        timers.arm(timer("timers.a", "2026-01-01T00:00:05Z"));
        timers.arm(timer("timers.a", "2026-01-01T00:00:09Z"));
        assert_eq!(timers.len(), 1);
        assert!(timers.next_due(t("2026-01-01T00:00:06Z")).is_none());
        timers.cancel("timers.a");
        assert!(timers.next_due(t("2027-01-01T00:00:00Z")).is_none());
    }
}
