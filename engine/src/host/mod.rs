//! What reactors and projections are built on: event patterns and an ordered, self-healing stream reader.

mod feed;
mod pattern;
pub mod reactor;

pub use feed::{subject_matches, Batch, Feed};
pub use pattern::{subject_filters, Catalog, Pattern, PatternMap};
