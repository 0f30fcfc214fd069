//! The recording format `eddy record` writes and `eddy replay` reads: JSON Lines, one stream message per
//! line, in stream order. Reading checks the whole file before anything is replayed, so a bad recording is
//! reported with its line number and nothing half-runs.

mod line;
mod order;
mod source;

use std::io::BufRead;
use std::path::Path;

use eddy_engine::envelope::StoredEvent;

pub use line::{HeaderValue, Recorded};
pub(crate) use line::{Line, Peeked};
pub(crate) use order::Order;
pub use source::Source;

/// Why a recording cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
    /// The file was changed between the replay's two passes over it.
    #[error("{path} changed while it was replayed ({first} lines, then {second}); replay a copy that stays put")]
    Changed { path: String, first: usize, second: usize },
    /// The transcript could not be written.
    #[error("writing the transcript: {0}")]
    Write(#[source] std::io::Error),
    /// The temporary file that holds finished saga instances failed.
    #[error("keeping finished saga instances on disk: {0}")]
    Spill(#[source] std::io::Error),
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
    order: Order,
}

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
        for line in read_lines(reader) {
            let line = line?;
            recording.order.check(line.seq, line.line)?;
            recording.lines.push(line);
        }
        recording.finish_checks();
        Ok(recording)
    }

    fn finish_checks(&mut self) {
        let order = std::mem::take(&mut self.order);
        (self.warnings, self.gaps) = order.finish();
    }

    /// Builds a recording from lines in memory (a test's or a benchmark's), with the same checks.
    pub fn from_lines(lines: impl IntoIterator<Item = Recorded>) -> Result<Recording> {
        let mut recording = Recording::default();
        for (n, mut line) in lines.into_iter().enumerate() {
            line.line = n + 1;
            let line = Line::from_recorded(line);
            recording.order.check(line.seq, line.line)?;
            recording.lines.push(line);
        }
        recording.finish_checks();
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

/// The lines of JSON Lines text, each read and checked on its own; blank lines are skipped.
pub(crate) fn read_lines(reader: impl BufRead) -> impl Iterator<Item = Result<Line>> {
    read_lines_with(reader, Line::parse)
}

/// [`read_lines`], each line read by `parse`.
pub(crate) fn read_lines_with<T>(
    reader: impl BufRead,
    parse: impl Fn(&str, usize) -> serde_json::Result<T>,
) -> impl Iterator<Item = Result<T>> {
    reader.split(b'\n').enumerate().filter_map(move |(n, line)| read_line(n + 1, line, &parse).transpose())
}

fn read_line<T>(
    line_no: usize,
    line: std::io::Result<Vec<u8>>,
    parse: impl Fn(&str, usize) -> serde_json::Result<T>,
) -> Result<Option<T>> {
    let line = line.map_err(|source| Error::Io { path: format!("line {line_no}"), source })?;
    let line = String::from_utf8(line).map_err(|e| Error::Line {
        line: line_no,
        message: format!("not UTF-8 text (invalid byte at column {})", e.utf8_error().valid_up_to() + 1),
    })?;
    let line = line.strip_suffix('\r').unwrap_or(&line);
    if line.trim().is_empty() {
        return Ok(None);
    }
    let line = parse(line, line_no).map_err(|e| Error::Line {
        line: line_no,
        message: if e.is_eof() {
            format!("the line is truncated ({e}); was the recording cut off?")
        } else {
            format!("not a recorded event: {e}")
        },
    })?;
    Ok(Some(line))
}
