//! The decision protocol, without I/O: what one decision of a reactor asks of whoever drives it. The live
//! host and the offline replay (`eddy replay`) both drive it, so they cannot drift apart; the I/O
//! (JetStream, sled, the replay's virtual clock) stays with them.
//!
//! For one event: the reactor decides it ([`Logic::handle`]) and [`Step::new`] turns the decision into
//! what to append first ([`Step::append`]), what state changes, and what actions to enqueue, each with its
//! deterministic id ([`Step::enqueue`]). The driver stores the append, then has the reactor decide the
//! stored event: that step ([`Step::after_append`]) causes actions under the stored event's sequence and
//! never appends again. A driver that takes an event as history (decided before) drops the append.
//!
//! [`Logic::handle`]: super::Logic::handle

use serde_json::{Map, Value as Json};

use super::{effect_id, Action, Append, Outcome, Pending};
use crate::envelope::StoredEvent;

/// One decision, ready to be carried out.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// State entries to write (`None` removes one).
    pub changes: Vec<(String, Option<Map<String, Json>>)>,
    /// The event to store before anything else; the driver stores it and decides it next.
    pub append: Option<Append>,
    /// The event named nothing the reactor does.
    pub ignored: bool,
    actions: Vec<Action>,
    /// The decision's correlation id, else the causing event's.
    correlation_id: String,
    seq: u64,
    traceparent: String,
}

impl Step {
    /// The step for `outcome`, a reactor's decision on `event`.
    pub fn new(event: &StoredEvent, outcome: Outcome) -> Step {
        let Outcome { changes, actions, correlation_id, append, ignored } = outcome;
        Step {
            changes,
            append,
            ignored,
            actions,
            correlation_id: correlation_id.unwrap_or_else(|| event.correlation_id.clone()),
            seq: event.seq,
            traceparent: event.traceparent.clone(),
        }
    }

    /// The step for the decision on `stored`, an event the reactor appended itself (a saga's transition):
    /// what it causes. The append it asks for, if any, is dropped and returned for the driver to report
    /// (one event appends once; asking again is a defect of the reactor, not a loop to follow).
    pub fn after_append(stored: &StoredEvent, outcome: Outcome) -> (Step, Option<Append>) {
        let mut step = Step::new(stored, outcome);
        let again = step.append.take();
        (step, again)
    }

    /// The sequence of the event decided.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The actions to enqueue, in order: `<reactor>:<seq>:<n>` is each one's id (its command id and
    /// message id, so a repeat is stored once), and each carries the step's correlation id and the causing
    /// event's trace. `redriven`: put back by an operator, so run even though older than the watermark.
    pub fn enqueue(&mut self, reactor: &str, redriven: bool) -> Vec<Pending> {
        let actions = std::mem::take(&mut self.actions);
        let seq = self.seq;
        (0u32..)
            .zip(actions)
            .map(|(n, action)| Pending {
                id: effect_id(reactor, seq, n),
                seq,
                n,
                correlation_id: self.correlation_id.clone(),
                action,
                redriven,
                traceparent: self.traceparent.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(seq: u64, correlation_id: &str) -> StoredEvent {
        StoredEvent {
            seq,
            aggregate: "account".into(),
            id: "a1".into(),
            event_type: "MoneyWithdrawn".into(),
            version: 3,
            time: chrono::DateTime::UNIX_EPOCH,
            command_id: "c1".into(),
            command_digest: String::new(),
            correlation_id: correlation_id.into(),
            causation_id: "c1".into(),
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            data: json!({"amount": 5}),
        }
    }

    fn publish(subject: &str) -> Action {
        Action::Publish { subject: subject.into(), data: json!({}) }
    }

    fn append() -> Append {
        Append {
            aggregate: "saga-transfer".into(),
            key: "t1".into(),
            expected_seq: Some(0),
            version: 1,
            event_type: "Started".into(),
            data: json!({"state": "debit"}),
            msg_id: "transfer:7:t".into(),
            correlation_id: "transfer:t1".into(),
            traceparent: String::new(),
        }
    }

    #[test]
    fn actions_get_ids_from_reactor_sequence_and_position() {
        let outcome = Outcome { actions: vec![publish("a"), publish("b")], ..Outcome::default() };
        let mut step = Step::new(&event(42, "corr-1"), outcome);
        let pending = step.enqueue("alerts", false);
        let ids: Vec<_> = pending.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["alerts:42:0", "alerts:42:1"]);
        assert!(pending.iter().all(|p| p.seq == 42 && !p.redriven));
        assert_eq!(pending[1].n, 1);
        assert_eq!(pending[0].traceparent, event(42, "").traceparent, "the action joins the event's trace");
        assert!(step.enqueue("alerts", false).is_empty(), "enqueued once");
    }

    #[test]
    fn the_correlation_id_is_the_decisions_else_the_events() {
        let plain = Outcome { actions: vec![publish("a")], ..Outcome::default() };
        let mut step = Step::new(&event(1, "from-event"), plain.clone());
        assert_eq!(step.enqueue("r", false)[0].correlation_id, "from-event");
        let own = Outcome { correlation_id: Some("transfer:t1".into()), ..plain };
        let mut step = Step::new(&event(1, "from-event"), own);
        assert_eq!(step.enqueue("r", true)[0].correlation_id, "transfer:t1");
    }

    #[test]
    fn the_append_comes_first_and_the_stored_event_never_appends_again() {
        let outcome = Outcome {
            changes: vec![("t1".into(), Some(Map::new()))],
            append: Some(append()),
            actions: vec![publish("before")],
            ..Outcome::default()
        };
        let step = Step::new(&event(7, "c"), outcome);
        assert_eq!(step.append, Some(append()), "the driver stores it before the next event");
        assert_eq!(step.changes.len(), 1);

        let stored = StoredEvent { seq: 8, ..event(8, "transfer:t1") };
        let next = Outcome { actions: vec![publish("debit")], append: Some(append()), ..Outcome::default() };
        let (mut step, again) = Step::after_append(&stored, next);
        assert_eq!(again, Some(append()), "returned for the driver to report, not followed");
        assert!(step.append.is_none());
        let pending = step.enqueue("transfer", false);
        assert_eq!(pending[0].id, "transfer:8:0", "what a transition causes runs under its own sequence");
    }

    #[test]
    fn an_ignored_event_says_so_and_enqueues_nothing() {
        let mut step = Step::new(&event(3, "c"), Outcome { ignored: true, ..Outcome::default() });
        assert!(step.ignored && step.append.is_none() && step.changes.is_empty());
        assert!(step.enqueue("r", false).is_empty());
    }
}
