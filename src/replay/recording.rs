//! The recording format `eddy record` writes and `eddy replay` reads: JSON Lines, one stream message per
//! line, in stream order. Reading checks the whole file before anything is replayed, so a bad recording is
//! reported with its line number and nothing half-runs.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

use chrono::{DateTime, Utc};
use eddy_engine::envelope::StoredEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// Why a recording cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One line: a stream message as it was stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recorded {
    /// The stream sequence.
    pub seq: u64,
    pub subject: String,
    /// When the stream stored it; the replay's virtual clock follows these times.
    pub time: DateTime<Utc>,
    /// Every header, as the stream holds them.
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderValue>,
    /// The payload, as JSON.
    pub data: Json,
    /// Where it is in the file (1-based); 0 for events not read from a file.
    #[serde(skip)]
    pub line: usize,
}

/// A header's value; a header given more than once keeps every value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum HeaderValue {
    One(String),
    Many(Vec<String>),
}

// By hand: serde's `untagged` buffers every value before it tries the variants, and headers are most of a
// recording's bytes.
impl<'de> Deserialize<'de> for HeaderValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = HeaderValue;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a header value: a string or a list of strings")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<HeaderValue, E> {
                Ok(HeaderValue::One(v.to_string()))
            }

            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<HeaderValue, E> {
                Ok(HeaderValue::One(v))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<HeaderValue, A::Error> {
                let mut values = Vec::new();
                while let Some(v) = seq.next_element::<String>()? {
                    values.push(v);
                }
                Ok(HeaderValue::Many(values))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl HeaderValue {
    /// The first value, which is what eddy reads.
    pub fn first(&self) -> Option<&str> {
        match self {
            HeaderValue::One(v) => Some(v),
            HeaderValue::Many(vs) => vs.first().map(String::as_str),
        }
    }
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(HeaderValue::first)
    }

    /// The eddy event it carries.
    pub fn event(&self) -> Result<StoredEvent, eddy_engine::envelope::Error> {
        StoredEvent::from_lookup(self.seq, &self.subject, |name| self.header(name), self.data.clone())
    }

    /// The line as `eddy record` writes it.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("a recorded event serializes")
    }
}

/// A checked recording.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    events: Vec<Recorded>,
    /// Each line's event, read once when the line is: the replay needs every one, and reading it is the
    /// costly part of a line. An error says why the line is not an eddy event.
    decoded: Vec<Result<StoredEvent, String>>,
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
        for (n, line) in reader.lines().enumerate() {
            let line_no = n + 1;
            let line = line.map_err(|source| Error::Io { path: format!("line {line_no}"), source })?;
            if line.trim().is_empty() {
                continue;
            }
            let mut event: Recorded = serde_json::from_str(&line).map_err(|e| Error::Line {
                line: line_no,
                message: if e.is_eof() {
                    format!("the line is truncated ({e}); was the recording cut off?")
                } else {
                    format!("not a recorded event: {e}")
                },
            })?;
            event.line = line_no;
            recording.push(event)?;
        }
        recording.count_gaps();
        Ok(recording)
    }

    fn count_gaps(&mut self) {
        if self.gaps > MAX_GAP_WARNINGS {
            self.warnings.push(format!("seq jumps {} more times in the recording", self.gaps - MAX_GAP_WARNINGS));
        }
    }

    /// Builds a recording from events in memory (a test's or a benchmark's), with the same checks.
    pub fn from_events(events: impl IntoIterator<Item = Recorded>) -> Result<Recording> {
        let mut recording = Recording::default();
        for (n, mut event) in events.into_iter().enumerate() {
            event.line = n + 1;
            recording.push(event)?;
        }
        recording.count_gaps();
        Ok(recording)
    }

    /// The lines, in stream order.
    pub fn events(&self) -> &[Recorded] {
        &self.events
    }

    /// The lines, to change and build a new recording from (a what-if in a test).
    pub fn into_events(self) -> Vec<Recorded> {
        self.events
    }

    /// Each line's eddy event, or why it is none; in the order of [`Self::events`].
    pub fn decoded(&self) -> &[Result<StoredEvent, String>] {
        &self.decoded
    }

    fn push(&mut self, event: Recorded) -> Result<()> {
        if let Some(prev) = self.events.last() {
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
        self.decoded.push(event.event().map_err(|e| e.to_string()));
        self.events.push(event);
        Ok(())
    }

    /// The recording as `eddy record` writes it.
    pub fn to_jsonl(&self) -> String {
        let mut out = String::new();
        for event in &self.events {
            out.push_str(&event.to_line());
            out.push('\n');
        }
        out
    }
}
