//! The replay's first pass: what it must know of the whole recording before it starts, kept small (a
//! busy week is millions of lines). It holds only what reactors wrote live, the recorded sequences as
//! runs, and the summary; every other event is read again, one at a time, by the second pass.

use std::collections::{HashMap, HashSet};

use eddy_engine::envelope::{format_time, StoredEvent};

use super::recording::{Order, Peeked, Result, Source};
use super::transcript::Summary;

/// The first pass's findings.
#[derive(Debug, Default)]
pub(super) struct Index {
    /// Recorded events of reactors' own subjects, by message id: what the live reactors stored. Per
    /// message id, the first event of each subject: within its duplicate window the stream stores a
    /// message id once.
    transitions: HashMap<Box<str>, Vec<StoredEvent>>,
    /// Command ids of recorded events on reactors' own subjects: timer firings carry their schedule's id.
    own_command_ids: HashSet<String>,
    /// The recorded sequences as runs of consecutive ones, `(first, last)`: a recording has few gaps.
    runs: Vec<(u64, u64)>,
    pub summary: Summary,
    /// The recording's own warnings (gaps in the sequence).
    pub warnings: Vec<String>,
}

impl Index {
    /// Reads `source` once, checking every line; `owned` says whether an aggregate is a subject part
    /// some reactor writes.
    pub fn build(source: &Source, owned: impl Fn(&str) -> bool + Copy) -> Result<Index> {
        let mut index = Index::default();
        let mut order = Order::default();
        for peeked in source.skim(owned)? {
            let peeked = peeked?;
            let (seq, line_no, time) = peeked.position();
            order.check(seq, line_no)?;
            index.note_seq(seq);
            index.summary.events += 1;
            index.summary.first_seq.get_or_insert(seq);
            index.summary.last_seq = Some(seq);
            index.summary.clock = Some(format_time(time));
            let Peeked::Line(line) = peeked else { continue };
            let Ok(event) = line.event() else { continue };
            if !owned(&event.aggregate) {
                continue;
            }
            if !event.command_id.is_empty() {
                index.own_command_ids.insert(event.command_id.clone());
            }
            if let Some(msg_id) = &line.msg_id {
                let same = index.transitions.entry(msg_id.clone()).or_default();
                if !same.iter().any(|e| e.aggregate == event.aggregate && e.id == event.id) {
                    same.push(event.clone());
                }
            }
        }
        (index.warnings, _) = order.finish();
        Ok(index)
    }

    fn note_seq(&mut self, seq: u64) {
        match self.runs.last_mut() {
            Some((_, last)) if *last + 1 == seq => *last = seq,
            _ => self.runs.push((seq, seq)),
        }
    }

    /// Whether the recording holds the message at `seq`.
    pub fn holds(&self, seq: u64) -> bool {
        let at = self.runs.partition_point(|(_, last)| *last < seq);
        self.runs.get(at).is_some_and(|(first, _)| *first <= seq)
    }

    /// The event the live reactor stored with this message id on `aggregate`.`key`.
    pub fn recorded(&self, msg_id: &str, aggregate: &str, key: &str) -> Option<&StoredEvent> {
        self.transitions.get(msg_id)?.iter().find(|e| e.aggregate == aggregate && e.id == key)
    }

    /// Whether the recording holds the firing of the timer scheduled with `effect_id`.
    pub fn holds_firing(&self, effect_id: &str) -> bool {
        self.own_command_ids.contains(effect_id)
    }

    /// The first sequence after the recording's: where made-up events start.
    pub fn next_seq(&self) -> u64 {
        self.summary.last_seq.map_or(1, |s| s + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_answer_which_sequences_the_recording_holds() {
        let mut index = Index::default();
        for seq in [3, 4, 5, 9, 11, 12] {
            index.note_seq(seq);
        }
        assert_eq!(index.runs, [(3, 5), (9, 9), (11, 12)]);
        let held: Vec<u64> = (0..15).filter(|s| index.holds(*s)).collect();
        assert_eq!(held, [3, 4, 5, 9, 11, 12]);
        assert!(!Index::default().holds(1));
    }
}
