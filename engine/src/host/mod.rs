//! What reactors and projections are built on: event patterns and an ordered, self-healing stream reader.

mod feed;
mod filter;
mod pattern;
pub mod reactor;

pub use feed::{Batch, Feed};
pub use filter::{covers, plan as read_plan, subject_matches, Plan as ReadPlan};
pub use pattern::{subject_filters, Catalog, Pattern, PatternMap};
