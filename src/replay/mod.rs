//! Record and replay: a recording is a stretch of the event stream in JSON Lines ([`Recording`]); a
//! replay feeds it, offline and deterministically, through a config's aggregates, views and reactors and
//! returns what they would decide ([`Transcript`]).
//!
//! ```no_run
//! let settings = eddy::load(std::path::Path::new("config/examples/bank/eddy.toml")).unwrap();
//! let recording = eddy::replay::Recording::read("tests/streams/bank.jsonl").unwrap();
//! let transcript = eddy::replay::replay(&settings, &recording);
//! ```
//!
//! A long recording is replayed from its file with [`replay_to`], which holds neither the recording nor
//! the transcript: it reads the file twice and writes each decision as it is made.

mod finished;
mod index;
mod recording;
mod run;
mod stream;
mod timers;
mod transcript;

pub use finished::SagaEnd;
pub use recording::{Error, HeaderValue, Recorded, Recording, Result, Source};
pub use stream::Writer;
pub use transcript::{
    diff, Acted, Decision, End, Format, Reaction, Reactions, Sink, Summary, Tail, Transcript, Transition,
};

use crate::app::Settings;

/// Replays `recording` through every component of `settings`. Nothing is executed and nothing is read but
/// the recording: the same inputs always give the same transcript. Events the replay cannot use (an
/// unknown type, a message that is not an eddy event) are skipped and listed in its warnings.
pub fn replay(settings: &Settings, recording: &Recording) -> Transcript {
    let mut decisions = Vec::new();
    let tail = run::Run::new(settings, Source::Memory(recording), &mut decisions)
        .and_then(run::Run::run)
        .expect("a recording in memory is read without I/O, and its decisions are kept in memory");
    tail.with(decisions)
}

/// Replays `source` as [`replay`] does, writing the transcript to `out` in `format` as it goes; the
/// bytes are [`Transcript::render`]'s. Returns the end state and how many decisions were written. A
/// file is read twice: the first pass checks every line before anything is replayed.
pub fn replay_to(
    settings: &Settings,
    source: Source,
    format: Format,
    out: impl std::io::Write,
) -> Result<(Tail, usize)> {
    let mut writer = Writer::new(format, out);
    let tail = replay_into(settings, source, &mut writer)?;
    let decisions = writer.decisions();
    writer.finish(&tail).map_err(Error::Write)?;
    Ok((tail, decisions))
}

/// Replays `source`, handing each decision to `sink` as it is made (a sink's error stops the replay);
/// returns the end state.
pub fn replay_into(settings: &Settings, source: Source, sink: &mut dyn Sink) -> Result<Tail> {
    run::Run::new(settings, source, sink)?.run()
}
