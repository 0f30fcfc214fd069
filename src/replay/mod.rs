//! Record and replay: a recording is a stretch of the event stream in JSON Lines ([`Recording`]); a
//! replay feeds it, offline and deterministically, through a config's aggregates, views and reactors and
//! returns what they would decide ([`Transcript`]).
//!
//! ```no_run
//! let settings = eddy::load(std::path::Path::new("config/examples/bank/eddy.toml")).unwrap();
//! let recording = eddy::replay::Recording::read("tests/streams/bank.jsonl").unwrap();
//! let transcript = eddy::replay::replay(&settings, &recording);
//! ```

mod recording;
mod run;
mod timers;
mod transcript;

pub use recording::{Error, HeaderValue, Recorded, Recording, Result};
pub use transcript::{diff, Acted, Decision, End, Format, Reaction, Reactions, Summary, Transcript, Transition};

use crate::app::Settings;

/// Replays `recording` through every component of `settings`. Nothing is executed and nothing is read but
/// the recording: the same inputs always give the same transcript. Events the replay cannot use (an
/// unknown type, a message that is not an eddy event) are skipped and listed in its warnings.
pub fn replay(settings: &Settings, recording: &Recording) -> Transcript {
    run::Run::new(settings, recording).run()
}
