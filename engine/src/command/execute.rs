//! Executing one command: validate, load, decide, append optimistically, retry on conflict.

use std::sync::Arc;

use chrono::Utc;
use serde_json::Value as Json;
use tracing::Instrument;

use super::cache::{Answer, Entry};
use super::digest;
use super::CommandService;
use crate::aggregate::{input, Aggregate, CommandMeta, DecideError, EventMeta};
use crate::api::{ErrorCode, Failure, Reply, ReplyEvent, Success};
use crate::envelope::OutgoingEvent;
use crate::store::{self, Appended};
use crate::telemetry::{self, TraceParent};

/// How often a command is decided again after its append lost a race, before giving up.
const MAX_ATTEMPTS: usize = 16;

/// What travels with a command besides its body (the optional request headers).
#[derive(Debug, Clone, Default)]
pub struct CommandContext {
    /// Idempotency key; a fresh id when absent.
    pub command_id: Option<String>,
    /// The version the caller expects the aggregate to be at.
    pub expected_version: Option<u64>,
    /// The business process this command belongs to; defaults to the command id.
    pub correlation_id: Option<String>,
    /// What caused this command (an event, another command); defaults to the command id.
    pub causation_id: Option<String>,
    /// The reactor lease it is sent under: appended only while that still holds (see `fence.rs`).
    pub fence: Option<super::Fence>,
    /// The caller's W3C trace context; the command's span is its child (a new trace without one).
    pub traceparent: Option<TraceParent>,
}

fn fail(code: ErrorCode, message: impl AsRef<str>) -> Failure {
    Failure::new(code, message)
}

fn store_failure(e: store::Error) -> Failure {
    match e {
        store::Error::Unavailable(m) => fail(ErrorCode::Unavailable, m),
        e @ store::Error::TooLarge { .. } => fail(ErrorCode::Invalid, e.to_string()),
        other => fail(ErrorCode::Internal, other.to_string()),
    }
}

impl CommandService {
    /// Executes `<aggregate>.<command>` with a JSON `body` and returns the reply.
    /// Records `eddy_commands_total` and `eddy_command_duration_seconds`, and runs the command in a span
    /// whose trace its events carry.
    pub async fn execute(&self, aggregate: &str, command: &str, body: &[u8], ctx: CommandContext) -> Arc<Reply> {
        let started = std::time::Instant::now();
        let span = tracing::info_span!("command", otel.name = %format!("{aggregate}.{command}"), aggregate, command);
        let trace = telemetry::trace::adopt(&span, ctx.traceparent);
        let reply = match self.try_execute(aggregate, command, body, ctx, trace).instrument(span).await {
            Ok(reply) => reply,
            Err(failure) => Arc::new(Reply::failure(failure)),
        };
        // Labels only for configured names: a request cannot mint label values.
        let known = self.aggregate(aggregate).is_some_and(|a| a.commands.contains_key(command));
        let (a, c) =
            if known { (aggregate, command) } else { (telemetry::metrics::UNKNOWN, telemetry::metrics::UNKNOWN) };
        let outcome = reply.error.as_ref().map_or("ok", |f| f.code.as_str());
        telemetry::metrics::command(a, c, outcome, started.elapsed());
        reply
    }

    async fn try_execute(
        &self,
        aggregate_name: &str,
        command_name: &str,
        body: &[u8],
        ctx: CommandContext,
        trace: TraceParent,
    ) -> Result<Arc<Reply>, Failure> {
        let aggregate = self
            .aggregate(aggregate_name)
            .ok_or_else(|| fail(ErrorCode::NotFound, format!("no aggregate `{aggregate_name}`")))?;
        let aggregate = &*aggregate;
        let command = aggregate.commands.get(command_name).ok_or_else(|| {
            fail(ErrorCode::NotFound, format!("aggregate `{aggregate_name}` has no command `{command_name}`"))
        })?;
        if body.len() > input::limits::MAX_BODY {
            return Err(fail(
                ErrorCode::Invalid,
                format!("the body is {} bytes; the limit is {}", body.len(), input::limits::MAX_BODY),
            ));
        }
        let body: Json =
            serde_json::from_slice(body).map_err(|e| fail(ErrorCode::Invalid, format!("the body is not JSON: {e}")))?;
        let Json::Object(mut body) = body else {
            return Err(fail(ErrorCode::Invalid, "the body must be a JSON object"));
        };
        let id = input::validate(&command.input, &mut body).map_err(|m| fail(ErrorCode::Invalid, m))?;
        let digest = digest::of(aggregate_name, command_name, &body);
        let answer = |reply: &Arc<Reply>| Answer { reply: reply.clone(), digest: digest.clone() };
        let command_id = ctx.command_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let correlation_id = ctx.correlation_id.clone().unwrap_or_else(|| command_id.clone());
        let causation_id = ctx.causation_id.clone().unwrap_or_else(|| command_id.clone());

        let slot = self.cache.entry(aggregate, &id);
        let mut entry = slot.lock().await;
        if !entry.loaded {
            self.catch_up(aggregate, &id, &mut entry).await?;
        }
        // Every pass starts after a load or a catch-up (a conflict, a duplicate, a stale rejection), so the
        // id is looked up in everything this engine knows of the aggregate before anything is decided.
        for _ in 0..MAX_ATTEMPTS {
            if let Some(answer) = entry.reply_for(&command_id) {
                return repeat(answer, &command_id, &digest);
            }
            if let Some(answer) = self.stored_reply(aggregate, &id, &command_id, &mut entry).await? {
                return repeat(&answer, &command_id, &digest);
            }
            if let Some(expected) = ctx.expected_version {
                if expected != entry.version {
                    return Err(fail(
                        ErrorCode::Conflict,
                        format!(
                            "expected version {expected}, but {aggregate_name} {id} is at version {}",
                            entry.version
                        ),
                    ));
                }
            }
            let now = Utc::now();
            let meta = CommandMeta {
                aggregate: aggregate.name.clone(),
                id: id.clone(),
                version: entry.version,
                command_id: command_id.clone(),
                correlation_id: correlation_id.clone(),
                time: now,
            };
            let decided = match aggregate.decide(command, &entry.state, &body, &meta) {
                Ok(events) => events,
                Err(DecideError::Rejected(message)) => {
                    // A rejection appends nothing, so no expected sequence guards it: make sure it was
                    // decided on the latest state (another engine may have appended since this one cached it).
                    let last = self.store.last_event(aggregate_name, &id).await.map_err(store_failure)?;
                    if last.is_some_and(|e| e.seq != entry.last_seq) {
                        self.catch_up(aggregate, &id, &mut entry).await?;
                        continue;
                    }
                    let reply = Arc::new(Reply::failure(fail(ErrorCode::Rejected, message)));
                    entry.remember(&command_id, now, answer(&reply), self.window);
                    return Ok(reply);
                }
                // The contract's `internal`: a CEL runtime error, naming the expression. Nothing is stored, so
                // the aggregate's later commands are not affected.
                Err(DecideError::Eval(e)) => return Err(fail(ErrorCode::Internal, e.to_string())),
            };
            if decided.is_empty() {
                let success = Success {
                    ok: true,
                    aggregate: aggregate.name.clone(),
                    id: id.clone(),
                    version: entry.version,
                    seq: entry.last_seq,
                    events: Vec::new(),
                };
                let reply = Arc::new(Reply::success(&success));
                entry.remember(&command_id, now, answer(&reply), self.window);
                return Ok(reply);
            }
            let outgoing: Vec<OutgoingEvent> = decided
                .into_iter()
                .enumerate()
                .map(|(i, e)| OutgoingEvent {
                    event_type: e.event_type,
                    version: entry.version + i as u64 + 1,
                    time: now,
                    command_id: command_id.clone(),
                    command_digest: digest.clone(),
                    correlation_id: correlation_id.clone(),
                    causation_id: causation_id.clone(),
                    msg_id: format!("{aggregate_name}:{id}:{command_id}:{i}"),
                    traceparent: trace.to_string(),
                    data: e.data,
                })
                .collect();
            // Apply before appending, so an `apply` that fails rejects the command instead of storing an
            // event the aggregate cannot fold.
            let provisional = next_state(aggregate, &entry, &id, &outgoing, entry.last_seq + 1)?;
            if let Some(fence) = &ctx.fence {
                self.fences.check(fence, &self.store).await?;
            }
            match self.store.append(aggregate_name, &id, entry.last_seq, &outgoing).await {
                Ok(Appended::Stored { last_seq }) => {
                    let first_seq = last_seq + 1 - outgoing.len() as u64;
                    let state = if outgoing.iter().any(|e| aggregate.apply_uses_meta(&e.event_type)) {
                        next_state(aggregate, &entry, &id, &outgoing, first_seq)?
                    } else {
                        provisional
                    };
                    entry.state = state;
                    entry.version += outgoing.len() as u64;
                    entry.last_seq = last_seq;
                    entry.note_stored(&command_id, first_seq);
                    self.maybe_snapshot(aggregate, &id, &mut entry);
                    let success = Success {
                        ok: true,
                        aggregate: aggregate.name.clone(),
                        id: id.clone(),
                        version: entry.version,
                        seq: last_seq,
                        events: outgoing
                            .into_iter()
                            .enumerate()
                            .map(|(i, e)| ReplyEvent {
                                event_type: e.event_type,
                                seq: first_seq + i as u64,
                                data: e.data,
                            })
                            .collect(),
                    };
                    let reply = Arc::new(Reply::success(&success));
                    entry.remember(&command_id, now, answer(&reply), self.window);
                    return Ok(reply);
                }
                Ok(Appended::Conflict | Appended::Duplicate) => {
                    self.catch_up(aggregate, &id, &mut entry).await?;
                }
                // Refused before anything was sent: what the entry knows still holds.
                Err(e @ store::Error::TooLarge { .. }) => return Err(store_failure(e)),
                Err(e) => {
                    // The append may or may not have been stored: forget what we know and reload next time.
                    entry.reset(&aggregate.initial);
                    return Err(store_failure(e));
                }
            }
        }
        Err(fail(
            ErrorCode::Unavailable,
            format!("{aggregate_name} {id} changed under {MAX_ATTEMPTS} attempts in a row; try again"),
        ))
    }

    /// The reply to a command id stored in the aggregate's history before the dedup window (or by another
    /// engine while this one was paused): the original outcome, rebuilt from its events, never a second
    /// append. Remembered in the window, so a burst of repeats reads the stream once.
    async fn stored_reply(
        &self,
        aggregate: &Aggregate,
        id: &str,
        command_id: &str,
        entry: &mut Entry,
    ) -> Result<Option<Answer>, Failure> {
        let Some(first_seq) = entry.stored_seq(command_id) else { return Ok(None) };
        let events = self.store.load(&aggregate.name, id, first_seq).await.map_err(store_failure)?;
        let Some(reply) = super::cache::stored_reply(aggregate, command_id, &events) else {
            // Another id with the same hash: this command is new.
            return Ok(None);
        };
        tracing::info!(aggregate = %aggregate.name, %id, %command_id, seq = first_seq, "a stored command was sent again; answered with its original outcome");
        let answer = Answer { reply: Arc::new(reply), digest: events[0].command_digest.clone() };
        entry.remember(command_id, Utc::now(), answer.clone(), self.window);
        Ok(Some(answer))
    }

    /// Reads the events after the entry's last sequence and folds them in. An event that cannot be read or
    /// folded (published around eddy, or of an older `apply`) holds the aggregate: every command is
    /// answered `internal` naming its seq, and it is logged, until an operator removes or fixes it.
    async fn catch_up(&self, aggregate: &Aggregate, id: &str, entry: &mut Entry) -> Result<(), Failure> {
        let subject = crate::envelope::subject(&aggregate.name, id);
        self.restore_snapshot(aggregate, id, entry).await;
        let events = match self.store.load(&aggregate.name, id, entry.last_seq + 1).await {
            Ok(events) => events,
            Err(store::Error::Envelope(e)) => return Err(self.held(&subject, &aggregate.name, id, &e.to_string())),
            Err(e) => return Err(store_failure(e)),
        };
        if let Err(e) = entry.fold(aggregate, &events, self.window) {
            let failing = events.iter().find(|ev| ev.seq > entry.last_seq);
            let why = match failing {
                Some(ev) => format!("seq {} ({}) cannot be applied: {e}", ev.seq, ev.event_type),
                None => e.to_string(),
            };
            entry.reset(&aggregate.initial);
            return Err(self.held(&subject, &aggregate.name, id, &why));
        }
        self.maybe_snapshot(aggregate, id, entry);
        Ok(())
    }

    fn held(&self, subject: &str, aggregate: &str, id: &str, why: &str) -> Failure {
        tracing::error!(%subject, error = %why, "an event of this aggregate cannot be folded; its commands fail until it is removed or its apply fixed (see `eddy history`)");
        fail(
            ErrorCode::Internal,
            format!("{aggregate} {id} cannot be loaded: {why}; see `eddy history {aggregate} {id}`"),
        )
    }
}

/// The first answer to `command_id`, when this command repeats the one it answered; a `conflict` when the
/// id was used for another command or body.
fn repeat(answer: &Answer, command_id: &str, digest: &str) -> Result<Arc<Reply>, Failure> {
    if digest::repeats(&answer.digest, digest) {
        return Ok(answer.reply.clone());
    }
    Err(fail(
        ErrorCode::Conflict,
        format!(
            "command id `{command_id}` was already used for another command or body; use a new id for a new command"
        ),
    ))
}

/// The state after `events`, numbered from `first_seq`.
fn next_state(
    aggregate: &Aggregate,
    entry: &Entry,
    id: &str,
    events: &[OutgoingEvent],
    first_seq: u64,
) -> Result<serde_json::Map<String, Json>, Failure> {
    let mut state = entry.state.clone();
    for (i, e) in events.iter().enumerate() {
        let meta = EventMeta {
            aggregate: aggregate.name.clone(),
            id: id.to_string(),
            version: e.version,
            seq: first_seq + i as u64,
            event_type: e.event_type.clone(),
            command_id: e.command_id.clone(),
            correlation_id: e.correlation_id.clone(),
            causation_id: e.causation_id.clone(),
            time: e.time,
        };
        aggregate.apply(&mut state, &e.data, &meta).map_err(|err| {
            fail(
                ErrorCode::Internal,
                format!("the {} event this command decided cannot be applied: {err}", e.event_type),
            )
        })?;
    }
    Ok(state)
}
