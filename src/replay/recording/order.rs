//! The stream-order check every reading of a recording makes, line by line: sequences rise, and a gap is
//! a warning (the first few one by one, the rest counted).

use super::{Error, Result};

/// Gaps reported one by one; the rest are counted. A stream with sagas has many (every timer's schedule
/// is outside `events.>`), so listing them all would bury every other warning.
const MAX_GAP_WARNINGS: usize = 5;

/// The check in progress: the last line seen, and what it found so far.
#[derive(Debug, Clone, Default)]
pub(crate) struct Order {
    /// The previous line's sequence and line number.
    prev: Option<(u64, usize)>,
    warnings: Vec<String>,
    gaps: usize,
}

impl Order {
    /// Checks that the line numbered `line_no`, at `seq`, comes after the previous one.
    pub fn check(&mut self, seq: u64, line_no: usize) -> Result<()> {
        if let Some((prev_seq, prev_line)) = self.prev {
            if seq <= prev_seq {
                return Err(Error::Line {
                    line: line_no,
                    message: format!(
                        "seq {} does not come after seq {prev_seq} (line {prev_line}): a recording must be in stream order",
                        seq
                    ),
                });
            }
            if seq > prev_seq + 1 {
                self.gaps += 1;
                if self.gaps <= MAX_GAP_WARNINGS {
                    self.warnings.push(format!(
                        "line {}: seq jumps from {prev_seq} to {}: {} message(s) not in the recording (outside its subjects, purged, or lost); replaying what is there",
                        line_no,
                        seq,
                        seq - prev_seq - 1
                    ));
                }
            }
        }
        self.prev = Some((seq, line_no));
        Ok(())
    }

    /// The warnings and the number of gaps.
    pub fn finish(mut self) -> (Vec<String>, usize) {
        if self.gaps > MAX_GAP_WARNINGS {
            self.warnings.push(format!("seq jumps {} more times in the recording", self.gaps - MAX_GAP_WARNINGS));
        }
        (self.warnings, self.gaps)
    }
}
