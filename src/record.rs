//! `eddy record`: writes a stretch of the event stream as a recording (JSON Lines, see
//! [`crate::replay::Recording`]), read with an ordered consumer. The range ends where the stream ended when
//! the recording started, so a busy stream still gives a recording that finishes.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use async_nats::HeaderMap;
use chrono::{DateTime, Utc};
use eddy_engine::host::{read_plan, subject_matches, ReadPlan};
use futures::StreamExt;
use serde_json::Value as Json;

use crate::replay::{HeaderValue, Recorded};

/// How long the server may stay silent with messages still due before the recording gives up.
const STALL: Duration = Duration::from_secs(30);

/// Why a recording failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("stream {stream}: {message}")]
    Stream { stream: String, message: String },
    #[error("the server sent nothing for {secs} s with messages still due (at seq {seq})", secs = STALL.as_secs())]
    Stalled { seq: u64 },
    #[error("writing the recording: {0}")]
    Io(#[from] std::io::Error),
    #[error("--since {0} is outside the times the server takes")]
    Since(DateTime<Utc>),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What to record.
#[derive(Debug, Clone)]
pub struct Range {
    /// Subject filters; default `events.>` (timer schedules under `timers.>` are not events).
    pub subjects: Vec<String>,
    pub from_seq: Option<u64>,
    pub to_seq: Option<u64>,
    /// Messages stored at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Messages stored at or before this time.
    pub until: Option<DateTime<Utc>>,
}

impl Default for Range {
    fn default() -> Self {
        Range { subjects: vec!["events.>".to_string()], from_seq: None, to_seq: None, since: None, until: None }
    }
}

/// Where a recording is, for progress reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub recorded: u64,
    pub seq: u64,
    /// The last sequence the recording can reach.
    pub end: u64,
}

/// Records `range` of `stream` into `out`, one line per message; `progress` is called about once a second
/// and at the end.
pub async fn record(
    js: &jetstream::Context,
    stream_name: &str,
    range: &Range,
    out: &mut impl Write,
    mut progress: impl FnMut(Progress),
) -> Result<Progress> {
    let failed = |message: String| Error::Stream { stream: stream_name.to_string(), message };
    let mut stream = js.get_stream(stream_name).await.map_err(|e| failed(e.to_string()))?;
    let info = stream.info().await.map_err(|e| failed(e.to_string()))?;
    let (last, stream_subjects) = (info.state.last_sequence, info.config.subjects.clone());
    let end = range.to_seq.map_or(last, |to| to.min(last));
    let mut done = Progress { recorded: 0, seq: 0, end };
    let start = range.from_seq.unwrap_or(1).max(1);
    if end < start {
        progress(done);
        return Ok(done);
    }
    let config = |filter_subjects: Vec<String>| -> Result<OrderedConfig> {
        Ok(OrderedConfig { filter_subjects, deliver_policy: deliver_policy(range)?, ..Default::default() })
    };
    let consumer = stream.create_consumer(config(range.subjects.clone())?).await.map_err(|e| failed(e.to_string()))?;
    let matching = consumer.cached_info().num_pending;
    if matching == 0 {
        progress(done);
        return Ok(done);
    }
    // A wide filter is read faster unfiltered, dropping here what it does not match (see `ReadPlan`).
    let plan = read_plan(&range.subjects, &stream_subjects, matching, end.saturating_sub(start) + 1);
    let filter_here = plan == ReadPlan::FilterHere;
    let consumer = match plan {
        ReadPlan::Server(_) => consumer,
        _ => stream.create_consumer(config(Vec::new())?).await.map_err(|e| failed(e.to_string()))?,
    };
    let mut messages = consumer.messages().await.map_err(|e| failed(e.to_string()))?;
    let mut reported = Instant::now();
    loop {
        let next = tokio::time::timeout(STALL, messages.next()).await.map_err(|_| Error::Stalled { seq: done.seq })?;
        let message = match next {
            Some(Ok(message)) => message,
            Some(Err(e)) => return Err(failed(e.to_string())),
            None => break,
        };
        let info = message.info().map_err(|e| failed(format!("a message without JetStream info: {e}")))?;
        let (seq, pending) = (info.stream_sequence, info.pending);
        let time = chrono_time(info.published);
        if seq > end || range.until.is_some_and(|until| time > until) {
            break;
        }
        let wanted = !filter_here || range.subjects.iter().any(|f| subject_matches(f, message.subject.as_str()));
        if wanted && range.since.is_none_or(|since| time >= since) && seq >= start {
            let line = Recorded {
                seq,
                subject: message.subject.to_string(),
                time,
                headers: header_map(message.headers.as_ref()),
                data: payload(&message.payload, seq),
                line: 0,
            };
            writeln!(out, "{}", line.to_line())?;
            done.recorded += 1;
        }
        done.seq = seq;
        if seq >= end || pending == 0 {
            break;
        }
        if reported.elapsed() >= Duration::from_secs(1) {
            progress(done);
            reported = Instant::now();
        }
    }
    out.flush()?;
    progress(done);
    Ok(done)
}

fn deliver_policy(range: &Range) -> Result<DeliverPolicy> {
    Ok(match (range.from_seq, range.since) {
        (Some(start_sequence), _) => DeliverPolicy::ByStartSequence { start_sequence: start_sequence.max(1) },
        (None, Some(since)) => {
            let nanos = since.timestamp_nanos_opt().ok_or(Error::Since(since))? as i128;
            let start_time = time::OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| Error::Since(since))?;
            DeliverPolicy::ByStartTime { start_time }
        }
        (None, None) => DeliverPolicy::All,
    })
}

fn chrono_time(t: time::OffsetDateTime) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(t.unix_timestamp_nanos() as i64)
}

/// Every header, in name order.
fn header_map(headers: Option<&HeaderMap>) -> BTreeMap<String, HeaderValue> {
    let mut out = BTreeMap::new();
    for (name, values) in headers.into_iter().flat_map(HeaderMap::iter) {
        let mut values: Vec<String> = values.iter().map(|v| v.as_str().to_string()).collect();
        let value = match values.len() {
            1 => HeaderValue::One(values.remove(0)),
            _ => HeaderValue::Many(values),
        };
        out.insert(name.to_string(), value);
    }
    out
}

/// The payload as JSON. A payload that is not JSON is kept as a string, so nothing is lost; the replay
/// reports it.
fn payload(bytes: &[u8], seq: u64) -> Json {
    if bytes.is_empty() {
        return Json::Object(Default::default());
    }
    serde_json::from_slice(bytes).unwrap_or_else(|e| {
        tracing::warn!(seq, error = %e, "the payload is not JSON; recorded as a string");
        Json::String(String::from_utf8_lossy(bytes).into_owned())
    })
}
