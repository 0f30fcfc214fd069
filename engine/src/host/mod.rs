//! What reactors and projections are built on: event patterns and an ordered, self-healing stream reader.

mod feed;
mod pattern;

pub use feed::{Batch, Feed};
pub use pattern::{subject_filters, Pattern, PatternMap};
