//! Durable timers as JetStream message schedules (ADR-51). A schedule is a message on its own subject under
//! `timers.>` (in the same stream, outside `events.>`, so readers of events never see it) whose headers say
//! when and where the server appends its body. The server strips `Nats-Msg-Id` from what it appends and
//! keeps the other headers, so the appended message is a complete eddy event.

use chrono::{DateTime, SecondsFormat, Utc};

use super::{Error, EventStore, Result};
use crate::envelope::{subject, OutgoingEvent};

/// Where schedules live in the stream.
pub const TIMER_SUBJECTS: &str = "timers.>";

const SCHEDULE: &str = "Nats-Schedule";
const SCHEDULE_TARGET: &str = "Nats-Schedule-Target";

/// The subject holding timer `n` of `events.<aggregate>.<key>`. A subject holds one schedule (ADR-51), so
/// each timer gets its own, and cancelling one never touches another.
pub fn timer_subject(aggregate: &str, key: &str, n: u64) -> String {
    format!("timers.{aggregate}.{key}.{n}")
}

/// `@at` takes whole seconds; rounding up means a timer never fires early.
fn at_header(at: DateTime<Utc>) -> String {
    let whole = at.timestamp() + i64::from(at.timestamp_subsec_nanos() > 0);
    let at = DateTime::from_timestamp(whole, 0).unwrap_or(at);
    format!("@at {}", at.to_rfc3339_opts(SecondsFormat::Secs, true))
}

impl EventStore {
    /// Holds `event` on `timer` until `at`, when the server appends it to `events.<aggregate>.<key>`;
    /// `event.msg_id` makes a repeat a no-op.
    pub async fn schedule(
        &self,
        timer: &str,
        at: DateTime<Utc>,
        aggregate: &str,
        key: &str,
        event: &OutgoingEvent,
    ) -> Result<()> {
        let mut h = event.headers();
        h.insert(SCHEDULE, at_header(at).as_str());
        h.insert(SCHEDULE_TARGET, subject(aggregate, key).as_str());
        let payload = serde_json::to_vec(&event.data).expect("JSON values serialize");
        let ack = self
            .js
            .publish_with_headers(timer.to_string(), h, payload.into())
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        ack.await.map_err(|e| Error::JetStream(format!("scheduling on {timer}: {e}")))?;
        Ok(())
    }

    /// Removes the timer on `timer`, if it has not fired yet.
    pub async fn cancel_schedule(&self, timer: &str) -> Result<()> {
        let stream = self.js.get_stream_no_info(&self.stream).await.map_err(|e| Error::Unavailable(e.to_string()))?;
        stream.purge().filter(timer).await.map_err(|e| Error::Unavailable(format!("purging {timer}: {e}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_never_fire_early() {
        let t = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.2Z").unwrap().with_timezone(&Utc);
        assert_eq!(at_header(t), "@at 2026-01-02T03:04:06Z");
        let t = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z").unwrap().with_timezone(&Utc);
        assert_eq!(at_header(t), "@at 2026-01-02T03:04:05Z");
    }
}
