//! Reading the event stream in order from a bookmark, with an ordered consumer. Errors are logged and
//! retried with backoff forever: a lost connection never silently ends a reader.

use std::pin::Pin;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use futures::{Stream, StreamExt};

use crate::envelope::StoredEvent;
use crate::store::EventStore;

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

/// An ordered reader of `events.>` (or narrower filters) from a sequence on.
pub struct Feed {
    store: EventStore,
    filters: Vec<String>,
    next_seq: u64,
    name: String,
    messages: Option<Messages>,
    backoff: Duration,
}

impl Feed {
    /// A feed of the messages matching `filters` from `from_seq` on. `name` labels its log lines.
    pub fn new(store: EventStore, filters: Vec<String>, from_seq: u64, name: impl Into<String>) -> Self {
        Self { store, filters, next_seq: from_seq.max(1), name: name.into(), messages: None, backoff: Duration::ZERO }
    }

    /// The next sequence it will read.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Waits for at least one message and returns every one already available, up to `max`.
    pub async fn next_batch(&mut self, max: usize) -> Batch {
        loop {
            let messages = match &mut self.messages {
                Some(messages) => messages,
                None => {
                    if !self.backoff.is_zero() {
                        tokio::time::sleep(self.backoff).await;
                    }
                    match open(self.store.clone(), self.filters.clone(), self.next_seq, max).await {
                        Ok(messages) => self.messages.insert(messages),
                        Err(e) => {
                            self.fail(&e);
                            continue;
                        }
                    }
                }
            };
            match messages.next().await {
                Some(chunk) => {
                    let (batch, error) = self.take(chunk);
                    if let Some(e) = error {
                        // Reopen from after the last message taken; what was read is still returned.
                        self.fail(&e);
                    }
                    if batch.last_seq > 0 {
                        return batch;
                    }
                }
                None => self.fail("the consumer ended"),
            }
        }
    }

    fn fail(&mut self, error: &str) {
        self.messages = None;
        self.backoff = (self.backoff * 2).clamp(Duration::from_millis(100), Duration::from_secs(10));
        tracing::warn!(reader = %self.name, next_seq = self.next_seq, retry_in = ?self.backoff, %error, "stream read failed; retrying");
    }

    fn take(&mut self, chunk: Vec<Result<async_nats::jetstream::Message, String>>) -> (Batch, Option<String>) {
        let mut batch = Batch::default();
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
            match StoredEvent::from_parts(seq, message.subject.as_str(), message.headers.as_ref(), &message.payload) {
                Ok(event) => batch.events.push(event),
                Err(e) => {
                    tracing::warn!(reader = %self.name, seq, error = %e, "skipping a message that is not an eddy event")
                }
            }
        }
        self.backoff = Duration::ZERO;
        (batch, None)
    }
}

/// Creates an ordered consumer from `next_seq`. A free function so the feed is not borrowed across the
/// await (the message stream is `Send` but not `Sync`).
async fn open(store: EventStore, filters: Vec<String>, next_seq: u64, max: usize) -> Result<Messages, String> {
    let stream = store.jetstream().get_stream(store.stream()).await.map_err(|e| e.to_string())?;
    let config = OrderedConfig {
        filter_subjects: filters,
        deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: next_seq },
        ..Default::default()
    };
    let consumer = stream.create_consumer(config).await.map_err(|e| e.to_string())?;
    let messages = consumer.messages().await.map_err(|e| e.to_string())?;
    Ok(Box::pin(messages.map(|m| m.map_err(|e| e.to_string())).ready_chunks(max.max(1))))
}
