//! Reading the event stream in order from a bookmark, with an ordered consumer. Errors are logged and
//! retried with backoff forever: a lost connection never silently ends a reader.
//!
//! A reader also resumes at once after an outage instead of waiting for the ordered consumer to notice: a
//! restarted server or a new stream leader loses the consumer, and the client only finds out after two
//! missed idle heartbeats (30 s by default), logging nothing meanwhile. So while it waits, the feed looks
//! every [`STALL_TICK`] whether the client reconnected since the consumer was made, or whether a message it
//! should read has been waiting for a whole tick; either way it makes a new consumer from where it is.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use futures::{Stream, StreamExt};

use super::filter::{self, subject_matches, Plan};
use crate::backoff::Backoff;
use crate::envelope::StoredEvent;
use crate::store::EventStore;
use crate::upcast::SharedSchemas;

type Messages = Pin<Box<dyn Stream<Item = Vec<Result<async_nats::jetstream::Message, String>>> + Send>>;

/// A batch read from the stream.
#[derive(Debug, Default)]
pub struct Batch {
    pub events: Vec<StoredEvent>,
    /// The stream sequence of the last message read (events may be fewer: unreadable ones are skipped).
    pub last_seq: u64,
    /// Messages matching the filters still waiting after this batch, as the server counted them.
    pub pending: u64,
}

/// Messages read but not yet parsed: parsing happens on the receiving side of [`Feed::spawn`], so that the
/// reading task, which is the bottleneck of a catch-up, does as little as possible.
struct RawBatch {
    messages: Vec<(u64, async_nats::jetstream::Message)>,
    last_seq: u64,
    pending: u64,
}

impl RawBatch {
    fn parse(self, reader: &str, schemas: &SharedSchemas) -> Batch {
        let mut events = Vec::with_capacity(self.messages.len());
        let schemas = schemas.current();
        for (seq, message) in self.messages {
            let (subject, headers) = (message.subject.as_str(), message.headers.as_ref());
            match schemas.read_or_as_stored(reader, seq, subject, headers, &message.payload) {
                Ok(event) => events.push(event),
                Err(e) => tracing::warn!(%reader, seq, error = %e, "skipping a message that is not an eddy event"),
            }
        }
        Batch { events, last_seq: self.last_seq, pending: self.pending }
    }
}

/// The receiving side of [`Feed::spawn`].
pub struct Batches {
    rx: tokio::sync::mpsc::Receiver<RawBatch>,
    name: String,
    schemas: SharedSchemas,
}

impl Batches {
    /// The next batch; `None` once the reading task has ended.
    pub async fn recv(&mut self) -> Option<Batch> {
        Some(self.rx.recv().await?.parse(&self.name, &self.schemas))
    }
}

/// An ordered reader of `events.>` (or narrower filters) from a sequence on.
pub struct Feed {
    store: EventStore,
    filters: Vec<String>,
    next_seq: u64,
    name: String,
    messages: Option<Messages>,
    /// The open consumer reads the whole stream and this feed drops what the filters do not match.
    local_filter: bool,
    backoff: Backoff,
    /// Whether the last open failed, so the next waits [`Feed::backoff`] first.
    failing: bool,
    /// The client's connection count when the open consumer was made.
    connects: u64,
    /// `next_seq`, and since when, while idle looks find a message waiting for this feed.
    waiting: Option<(u64, Instant)>,
    /// How long a message may wait undelivered before the consumer is replaced.
    patience: Duration,
    /// `next_seq` at the last replacement for a waiting message.
    stalled_at: Option<u64>,
}

/// How long a reader waits for messages before it looks whether it should have had some.
const STALL_TICK: Duration = Duration::from_millis(500);
/// The most [`Feed::patience`] grows to: when replacing the consumer does not help at the same place, the
/// server may just be slow to find the next match (a sparse filter over a long stream), not stalled.
const MAX_PATIENCE: Duration = Duration::from_secs(30);

impl Feed {
    /// A feed of the messages matching `filters` from `from_seq` on. `name` labels its log lines.
    pub fn new(store: EventStore, filters: Vec<String>, from_seq: u64, name: impl Into<String>) -> Self {
        Self {
            store,
            filters,
            next_seq: from_seq.max(1),
            name: name.into(),
            messages: None,
            local_filter: false,
            backoff: Backoff::reconnect(),
            failing: false,
            connects: 0,
            waiting: None,
            patience: STALL_TICK,
            stalled_at: None,
        }
    }

    fn connects(&self) -> u64 {
        self.store.client().statistics().connects.load(Ordering::Relaxed)
    }

    /// The next sequence it will read.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Waits for at least one message and returns every one already available, up to `max`.
    pub async fn next_batch(&mut self, max: usize) -> Batch {
        let raw = self.next_raw(max).await;
        raw.parse(&self.name, self.store.schemas())
    }

    async fn next_raw(&mut self, max: usize) -> RawBatch {
        loop {
            let messages = match &mut self.messages {
                Some(messages) => messages,
                None => {
                    if self.failing {
                        self.backoff.sleep().await;
                    }
                    // Read before opening, so a reconnect while opening counts as one after it.
                    let connects = self.connects();
                    match open(self.store.clone(), self.filters.clone(), self.next_seq, max).await {
                        Ok((messages, local_filter)) => {
                            self.local_filter = local_filter;
                            self.connects = connects;
                            self.waiting = None;
                            self.messages.insert(messages)
                        }
                        Err(e) => {
                            self.fail(&e);
                            continue;
                        }
                    }
                }
            };
            let next = tokio::time::timeout(STALL_TICK, messages.next()).await;
            match next {
                Err(_idle) => {
                    if let Some(reason) = self.stalled().await {
                        tracing::warn!(reader = %self.name, next_seq = self.next_seq, %reason, "stream reader stalled; reading on with a new consumer");
                        self.messages = None;
                    }
                }
                Ok(Some(chunk)) => {
                    let (batch, error) = self.take(chunk);
                    if let Some(e) = error {
                        // Reopen from after the last message taken; what was read is still returned.
                        self.fail(&e);
                    }
                    if self.local_filter && batch.pending == 0 {
                        // Caught up: from here on the server's filter is the cheaper way to wait.
                        self.messages = None;
                    }
                    if batch.last_seq > 0 {
                        return batch;
                    }
                }
                Ok(None) => self.fail("the consumer ended"),
            }
        }
    }

    /// Why the open consumer should be replaced, after a tick without messages: the client reconnected
    /// since it was made (the server restarted, or the client moved to another one), or a message this
    /// feed reads waited a whole tick without being delivered (the consumer or its stream leader is gone).
    async fn stalled(&mut self) -> Option<String> {
        if self.connects() != self.connects {
            return Some("the connection to NATS was re-established; the consumer may be gone".into());
        }
        match self.store.next_matching_seq(&self.filters, self.next_seq).await {
            Ok(Some(seq)) => match self.waiting {
                Some((at, since)) if at == self.next_seq => {
                    if since.elapsed() >= self.patience {
                        let waited = since.elapsed();
                        // Stuck at the same place again: wait longer next time.
                        self.patience = if self.stalled_at == Some(self.next_seq) {
                            (self.patience * 2).min(MAX_PATIENCE)
                        } else {
                            STALL_TICK
                        };
                        self.stalled_at = Some(self.next_seq);
                        return Some(format!("seq {seq} has waited {waited:?} but the consumer delivers nothing"));
                    }
                }
                _ => self.waiting = Some((self.next_seq, Instant::now())),
            },
            Ok(None) => self.waiting = None,
            // The server is unreachable: the client reconnects, and the next tick sees it.
            Err(e) => tracing::debug!(reader = %self.name, error = %e, "cannot look for waiting messages"),
        }
        None
    }

    /// Reads on in a task of its own, so the next batch arrives while the caller works on this one. The
    /// task ends when `cancel` is cancelled or the receiver is dropped.
    /// Parsing is left to the receiver.
    pub fn spawn(mut self, max: usize, cancel: tokio_util::sync::CancellationToken) -> Batches {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let name = self.name.clone();
        let schemas = self.store.schemas().clone();
        tokio::spawn(async move {
            loop {
                let batch = tokio::select! {
                    _ = cancel.cancelled() => return,
                    batch = self.next_raw(max) => batch,
                };
                if tx.send(batch).await.is_err() {
                    return;
                }
            }
        });
        Batches { rx, name, schemas }
    }

    fn fail(&mut self, error: &str) {
        self.messages = None;
        self.failing = true;
        tracing::warn!(reader = %self.name, next_seq = self.next_seq, retry_in = ?self.backoff.peek(), %error, "stream read failed; retrying");
    }

    fn take(&mut self, chunk: Vec<Result<async_nats::jetstream::Message, String>>) -> (RawBatch, Option<String>) {
        let mut batch = RawBatch { messages: Vec::with_capacity(chunk.len()), last_seq: 0, pending: 0 };
        for message in chunk {
            let message = match message {
                Ok(m) => m,
                Err(e) => return (batch, Some(e)),
            };
            let info = match message.info() {
                Ok(info) => info,
                Err(e) => return (batch, Some(e.to_string())),
            };
            let (seq, pending) = (info.stream_sequence, info.pending);
            batch.last_seq = seq;
            batch.pending = pending;
            self.next_seq = seq + 1;
            if self.local_filter && !self.filters.iter().any(|f| subject_matches(f, message.subject.as_str())) {
                continue;
            }
            batch.messages.push((seq, message));
        }
        self.failing = false;
        self.backoff.reset();
        (batch, None)
    }
}

/// Creates an ordered consumer from `next_seq`; true when it reads unfiltered for the feed to filter (see
/// [`filter::plan`]). A free function so the feed is not borrowed across the await (the message stream is
/// not `Sync`).
async fn open(store: EventStore, filters: Vec<String>, next_seq: u64, max: usize) -> Result<(Messages, bool), String> {
    let stream = store.jetstream().get_stream(store.stream()).await.map_err(|e| e.to_string())?;
    let info = stream.cached_info();
    let behind = info.state.last_sequence.saturating_sub(next_seq.saturating_sub(1));
    let config = |filter_subjects: Vec<String>| OrderedConfig {
        filter_subjects,
        deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: next_seq },
        ..Default::default()
    };
    let (plan, consumer) = if filter::covers(&filters, &info.config.subjects) {
        (Plan::Everything, None)
    } else {
        let consumer = stream.create_consumer(config(filters.clone())).await.map_err(|e| e.to_string())?;
        (filter::plan(&filters, &info.config.subjects, consumer.cached_info().num_pending, behind), Some(consumer))
    };
    let consumer = match (consumer, &plan) {
        (Some(filtered), Plan::Server(_)) => filtered,
        _ => stream.create_consumer(config(plan.server_filters())).await.map_err(|e| e.to_string())?,
    };
    let messages = consumer.messages().await.map_err(|e| e.to_string())?;
    Ok((Box::pin(messages.map(|m| m.map_err(|e| e.to_string())).ready_chunks(max.max(1))), plan == Plan::FilterHere))
}
