//! What a replay decided, as a value that serializes the same way on every run: every struct's fields are
//! declared in alphabetical order and every map is sorted, and nothing in it comes from the wall clock or
//! a random source.

use std::collections::BTreeMap;
use std::io::Write;

use eddy_engine::host::reactor::Action;
use serde::Serialize;
use serde_json::{Map, Value as Json};

use super::finished::SagaEnd;

/// The transcript of one replay.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Transcript {
    /// Every event that caused something, in the order the replay took them.
    pub decisions: Vec<Decision>,
    /// Every component's state after the last event.
    pub end: End,
    pub recording: Summary,
    /// What the replay passed over, with line numbers.
    pub warnings: Vec<String>,
}

/// A transcript without its decisions: what a streamed replay writes after them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tail {
    pub end: End,
    pub recording: Summary,
    pub warnings: Vec<String>,
}

impl Tail {
    /// The whole transcript, with the decisions kept in memory.
    pub fn with(self, decisions: Vec<Decision>) -> Transcript {
        Transcript { decisions, end: self.end, recording: self.recording, warnings: self.warnings }
    }
}

/// Where a replay puts each decision as it makes it.
pub trait Sink {
    fn decision(&mut self, decision: Decision) -> std::io::Result<()>;
}

/// Kept in memory, for a [`Transcript`].
impl Sink for Vec<Decision> {
    fn decision(&mut self, decision: Decision) -> std::io::Result<()> {
        self.push(decision);
        Ok(())
    }
}

/// What one event caused.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// `<aggregate>.<EventType>`.
    pub event: String,
    /// The aggregate (or instance) id.
    pub id: String,
    /// What each reactor decided, by reactor name.
    pub reactors: Reactions,
    /// The stream sequence; for an event the replay made up (a timer firing, a transition not in the
    /// recording), a sequence after the recording's last.
    pub seq: u64,
    /// The event's time.
    pub time: String,
    /// The event is not in the recording: the replay made it.
    #[serde(rename = "virtual", skip_serializing_if = "std::ops::Not::not")]
    pub made_up: bool,
}

/// The reactors' decisions on one event, in name order; serialized as a map. A vector, because most
/// events concern one reactor and a map node per event is most of a long replay's memory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reactions(pub Vec<(String, Reaction)>);

impl Reactions {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, reactor: &str) -> Option<&Reaction> {
        self.0.iter().find(|(name, _)| name == reactor).map(|(_, r)| r)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Reaction)> {
        self.0.iter().map(|(name, r)| (name.as_str(), r))
    }

    pub fn values(&self) -> impl Iterator<Item = &Reaction> {
        self.0.iter().map(|(_, r)| r)
    }
}

impl std::ops::Index<&str> for Reactions {
    type Output = Reaction;

    fn index(&self, reactor: &str) -> &Reaction {
        self.get(reactor).unwrap_or_else(|| panic!("no decision of reactor `{reactor}`"))
    }
}

impl Serialize for Reactions {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut sorted: Vec<_> = self.0.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let mut map = serializer.serialize_map(Some(sorted.len()))?;
        for (name, reaction) in sorted {
            map.serialize_entry(name, reaction)?;
        }
        map.end()
    }
}

/// One reactor's decision on one event.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Reaction {
    /// The actions it takes, with the ids the live host gives them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Acted>,
    /// Deciding failed: the live host would retry and then follow the reactor's `on_error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The saga transitions it made.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub transitions: Vec<Transition>,
}

impl Reaction {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty() && self.error.is_none() && self.transitions.is_empty()
    }
}

/// An action and its id. Kept typed until the transcript is written: a long replay lists hundreds of
/// thousands of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Acted {
    pub id: String,
    pub action: Action,
}

/// As the transcript shows it: the action's fields and its id, in key order.
impl Serialize for Acted {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = match serde_json::to_value(&self.action) {
            Ok(Json::Object(map)) => map,
            Ok(_) => Map::new(),
            Err(e) => return Err(serde::ser::Error::custom(e)),
        };
        map.insert("id".into(), Json::String(self.id.clone()));
        map.serialize(serializer)
    }
}

/// A saga transition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub instance: String,
    /// The transition is the recording's own event (at `seq`); otherwise the replay made it up, because
    /// the recording does not hold it or holds a different decision.
    pub recorded: bool,
    pub seq: u64,
    pub to: String,
    pub trigger: String,
}

/// State after the last event.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct End {
    /// Aggregate -> id -> state.
    pub aggregates: BTreeMap<String, BTreeMap<String, Map<String, Json>>>,
    /// Rule reactor -> key -> entry.
    pub reactors: BTreeMap<String, BTreeMap<String, Map<String, Json>>>,
    /// Saga -> its instances by id.
    pub sagas: BTreeMap<String, SagaEnd>,
    /// Saga timers armed and not fired when the recording ends: timer subject -> when it fires.
    pub timers: BTreeMap<String, String>,
    /// View -> key -> document.
    pub views: BTreeMap<String, BTreeMap<String, Map<String, Json>>>,
}

/// What was replayed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// The virtual clock at the end: the last event's time.
    pub clock: Option<String>,
    /// Events in the recording.
    pub events: usize,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Timers the replay fired because the recording does not hold their firing.
    pub timers_fired: usize,
}

/// Output formats of `eddy replay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Yaml,
    Json,
}

impl Transcript {
    /// The transcript as text; the same transcript always gives the same bytes.
    pub fn render(&self, format: Format) -> String {
        let mut out = Vec::new();
        self.write(format, &mut out).expect("a transcript serializes into memory");
        String::from_utf8(out).expect("serializers write UTF-8")
    }

    /// Writes the transcript as it goes, so a long one is never held as text. Same bytes as
    /// [`Self::render`].
    pub fn write(&self, format: Format, out: impl std::io::Write) -> std::io::Result<()> {
        let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
        match format {
            Format::Yaml => serde_yaml_ng::to_writer(&mut out, self).map_err(std::io::Error::other)?,
            Format::Json => {
                serde_json::to_writer_pretty(&mut out, self)?;
                out.write_all(b"\n")?;
            }
        }
        out.flush()
    }

    /// Every action, in order, as `(reactor, action)`.
    pub fn actions(&self) -> impl Iterator<Item = (&str, &Acted)> {
        self.decisions
            .iter()
            .flat_map(|d| d.reactors.iter().flat_map(|(name, r)| r.actions.iter().map(move |a| (name, a))))
    }
}

/// A readable difference between a stored transcript and a new one; `None` when they are the same.
pub fn diff(stored: &str, new: &str, stored_name: &str) -> Option<String> {
    if stored == new {
        return None;
    }
    let diff = similar::TextDiff::from_lines(stored, new);
    Some(diff.unified_diff().context_radius(3).header(stored_name, "replay").to_string())
}
