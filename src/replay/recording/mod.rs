//! The recording format `eddy record` writes and `eddy replay` reads: JSON Lines, one stream message per
//! line, in stream order. Reading checks the whole file before anything is replayed, so a bad recording is
//! reported with its line number and nothing half-runs.

mod line;

use std::io::BufRead;
use std::path::Path;

use eddy_engine::envelope::StoredEvent;

pub(crate) use line::Line;
pub use line::{HeaderValue, Recorded};

/// Why a recording cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A checked recording.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    lines: Vec<Line>,
    /// What the replay can go on after: gaps in the sequence (a filtered or partial recording).
    pub warnings: Vec<String>,
    /// Gaps in the sequence: messages outside the recorded subjects, or purged from the stream (a
    /// cancelled timer's schedule), or a recording put together by hand.
    pub gaps: usize,
}

/// Gaps reported one by one; the rest are counted. A stream with sagas has many (every timer's schedule
/// is outside `events.>`), so listing them all would bury every other warning.
const MAX_GAP_WARNINGS: usize = 5;

impl Recording {
    /// Reads and checks the recording at `path`.
    pub fn read(path: impl AsRef<Path>) -> Result<Recording> {
        let path = path.as_ref();
        let io = |source| Error::Io { path: path.display().to_string(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        Self::from_reader(std::io::BufReader::new(file)).map_err(|e| match e {
            Error::Io { source, .. } => io(source),
            other => other,
        })
    }

    /// Reads and checks a recording from JSON Lines text.
    pub fn parse(text: &str) -> Result<Recording> {
        Self::from_reader(text.as_bytes())
    }

    pub fn from_reader(reader: impl BufRead) -> Result<Recording> {
        let mut recording = Recording::default();
        for (n, line) in reader.split(b'\n').enumerate() {
            let line_no = n + 1;
            let line = line.map_err(|source| Error::Io { path: format!("line {line_no}"), source })?;
            let line = String::from_utf8(line).map_err(|e| Error::Line {
                line: line_no,
                message: format!("not UTF-8 text (invalid byte at column {})", e.utf8_error().valid_up_to() + 1),
            })?;
            let line = line.strip_suffix('\r').unwrap_or(&line);
            if line.trim().is_empty() {
                continue;
            }
            let line = Line::parse(line, line_no).map_err(|e| Error::Line {
                line: line_no,
                message: if e.is_eof() {
                    format!("the line is truncated ({e}); was the recording cut off?")
                } else {
                    format!("not a recorded event: {e}")
                },
            })?;
            recording.push(line)?;
        }
        recording.count_gaps();
        Ok(recording)
    }

    fn count_gaps(&mut self) {
        if self.gaps > MAX_GAP_WARNINGS {
            self.warnings.push(format!("seq jumps {} more times in the recording", self.gaps - MAX_GAP_WARNINGS));
        }
    }

    /// Builds a recording from lines in memory (a test's or a benchmark's), with the same checks.
    pub fn from_lines(lines: impl IntoIterator<Item = Recorded>) -> Result<Recording> {
        let mut recording = Recording::default();
        for (n, mut line) in lines.into_iter().enumerate() {
            line.line = n + 1;
            recording.push(Line::from_recorded(line))?;
        }
        recording.count_gaps();
        Ok(recording)
    }

    /// How many lines it has.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The lines as the file has them, in stream order (each is put together again when asked for).
    pub fn lines(&self) -> impl ExactSizeIterator<Item = Recorded> + '_ {
        self.lines.iter().map(Line::recorded)
    }

    /// Each line's eddy event, or why it is none.
    pub fn events(&self) -> impl ExactSizeIterator<Item = Result<&StoredEvent, &str>> + '_ {
        self.lines.iter().map(Line::event)
    }

    /// Each eddy event as the schemas of a config read it (upcast), with its line number; an event that
    /// cannot be upcast gives why.
    pub fn upcast_events<'r>(
        &'r self,
        schemas: &'r eddy_engine::upcast::Schemas,
    ) -> impl Iterator<Item = (usize, Result<std::borrow::Cow<'r, StoredEvent>, eddy_engine::upcast::Error>)> + 'r {
        self.lines.iter().filter_map(|l| {
            let event = l.event().ok()?;
            Some((l.line, schemas.upcast_ref(event, l.event_version.as_deref())))
        })
    }

    /// The lines as the replay reads them.
    pub(crate) fn kept(&self) -> &[Line] {
        &self.lines
    }

    fn push(&mut self, event: Line) -> Result<()> {
        if let Some(prev) = self.lines.last() {
            if event.seq <= prev.seq {
                return Err(Error::Line {
                    line: event.line,
                    message: format!(
                        "seq {} does not come after seq {} (line {}): a recording must be in stream order",
                        event.seq, prev.seq, prev.line
                    ),
                });
            }
            if event.seq > prev.seq + 1 {
                self.gaps += 1;
            }
            if event.seq > prev.seq + 1 && self.gaps <= MAX_GAP_WARNINGS {
                self.warnings.push(format!(
                    "line {}: seq jumps from {} to {}: {} message(s) not in the recording (outside its subjects, purged, or lost); replaying what is there",
                    event.line,
                    prev.seq,
                    event.seq,
                    event.seq - prev.seq - 1
                ));
            }
        }
        self.lines.push(event);
        Ok(())
    }

    /// The recording as `eddy record` writes it.
    pub fn to_jsonl(&self) -> String {
        let mut out = String::new();
        for line in self.lines() {
            out.push_str(&line.to_line());
            out.push('\n');
        }
        out
    }
}
