//! Which messages a stream reader asks the server to filter, and which it filters itself.
//!
//! JetStream delivers an unfiltered consumer far faster than a wildcard-filtered one over many interleaved
//! subjects: ~130-200k msgs/s against ~25-35k/s on the same server (2.15.1). A filter is free only when it
//! covers every subject of the stream, which the server then treats as no filter at all. So `events.>` cost
//! nothing while the stream held only `events.>`, and became a real filter the day timers moved into the
//! same stream under `timers.>`: view catch-up fell from 0.58 to 0.15 of an unfiltered read
//! (`eddy bench views`). [`plan`] decides from the stream's actual subjects, never from the filter's text.

/// How a consumer reads for a set of filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The filters cover the whole stream: read it unfiltered, everything matches.
    Everything,
    /// Read unfiltered and drop here what the filters do not match: a long catch-up over most of the stream.
    FilterHere,
    /// Let the server filter: a short catch-up, a sparse filter, or a live reader.
    Server(Vec<String>),
}

impl Plan {
    /// The filter subjects of the consumer.
    pub fn server_filters(&self) -> Vec<String> {
        match self {
            Plan::Server(filters) => filters.clone(),
            Plan::Everything | Plan::FilterHere => Vec::new(),
        }
    }
}

/// A catch-up of at least this many matching events may read unfiltered.
pub const FILTER_HERE_MIN: u64 = 10_000;

/// Whether a reader of `filters` can read the stream unfiltered: no filters, or every subject the stream
/// holds lies inside one of them.
pub fn covers(filters: &[String], stream_subjects: &[String]) -> bool {
    filters.is_empty() || stream_subjects.iter().all(|s| filters.iter().any(|f| subsumes(f, s)))
}

/// The plan for reading `filters` when `behind` messages of the stream are left and `matching` of them
/// match (as a consumer with the filters counted them).
pub fn plan(filters: &[String], stream_subjects: &[String], matching: u64, behind: u64) -> Plan {
    if covers(filters, stream_subjects) {
        Plan::Everything
    } else if matching >= FILTER_HERE_MIN && matching.saturating_mul(4) >= behind {
        Plan::FilterHere
    } else {
        Plan::Server(filters.to_vec())
    }
}

/// NATS subject matching: `*` matches one token, a trailing `>` the rest.
pub fn subject_matches(filter: &str, subject: &str) -> bool {
    subsumes(filter, subject)
}

/// Whether every subject matching `pattern` (itself a subject or a filter) matches `filter`.
fn subsumes(filter: &str, pattern: &str) -> bool {
    let mut tokens = pattern.split('.');
    for f in filter.split('.') {
        match (f, tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(t)) if t != ">" => {}
            (f, Some(t)) if f == t => {}
            _ => return false,
        }
    }
    tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn subjects_match_like_nats() {
        assert!(subject_matches("events.>", "events.product.p1"));
        assert!(subject_matches("events.product.*", "events.product.p1"));
        assert!(!subject_matches("events.product.*", "events.account.p1"));
        assert!(!subject_matches("events.product.*", "events.product"));
        assert!(!subject_matches("events.product.*", "events.product.p1.x"));
        assert!(!subject_matches("events.>", "events"));
    }

    #[test]
    fn a_filter_covers_the_stream_only_if_it_holds_every_stream_subject() {
        let events_only = strings(&["events.>"]);
        let with_timers = strings(&["events.>", "timers.>"]);
        assert!(covers(&strings(&["events.>"]), &events_only));
        assert!(covers(&[], &with_timers));
        assert!(covers(&strings(&[">"]), &with_timers));
        assert!(covers(&strings(&["events.>", "timers.>"]), &with_timers));
        assert!(!covers(&strings(&["events.>"]), &with_timers));
        assert!(!covers(&strings(&["events.account.*"]), &events_only));
        // A `*` filter does not hold a `>` subject, which may have more tokens.
        assert!(!covers(&strings(&["events.*"]), &events_only));
        assert!(!covers(&strings(&["events.*.*"]), &strings(&["events.*.>"])));
    }

    /// The guard for the view regression: `events.>` over a stream that also holds timers is a real filter,
    /// so a long catch-up reads unfiltered and filters here, as a view's catch-up did before timers.
    #[test]
    fn a_long_catch_up_of_events_over_a_stream_with_timers_reads_unfiltered() {
        let with_timers = strings(&["events.>", "timers.>"]);
        let events = strings(&["events.>"]);
        assert_eq!(plan(&events, &with_timers, 200_000, 200_010), Plan::FilterHere);
        assert!(plan(&events, &with_timers, 200_000, 200_010).server_filters().is_empty());
        assert_eq!(plan(&events, &strings(&["events.>"]), 200_000, 200_000), Plan::Everything);
        // Live, or nearly so: the server's filter is the cheaper way to wait.
        assert_eq!(plan(&events, &with_timers, 3, 3), Plan::Server(events.clone()));
        // A sparse filter: most of the stream would be read for nothing.
        let sparse = strings(&["events.order.*"]);
        assert_eq!(plan(&sparse, &with_timers, 20_000, 200_000), Plan::Server(sparse.clone()));
        assert_eq!(plan(&sparse, &with_timers, 60_000, 200_000), Plan::FilterHere);
    }
}
