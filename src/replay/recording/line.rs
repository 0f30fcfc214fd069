//! One line of a recording: [`Recorded`] as the file holds it, and [`Line`] as a [`super::Recording`] keeps
//! it in memory. A recording of a busy week is millions of lines, so a kept line holds its event read once
//! (the replay needs every one) and its headers as the JSON text they came in (one allocation, written back
//! as they were), instead of the line's map of header strings next to a copy of its data.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use eddy_engine::envelope::{headers, StoredEvent};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value as Json;

/// One line: a stream message as it was stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recorded {
    /// The stream sequence.
    pub seq: u64,
    pub subject: String,
    /// When the stream stored it; the replay's virtual clock follows these times.
    pub time: DateTime<Utc>,
    /// Every header, as the stream holds them.
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderValue>,
    /// The payload, as JSON.
    pub data: Json,
    /// Where it is in the file (1-based); 0 for events not read from a file.
    #[serde(skip)]
    pub line: usize,
}

/// A header's value; a header given more than once keeps every value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum HeaderValue {
    One(String),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for HeaderValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Header::deserialize(deserializer)? {
            Header::One(v) => HeaderValue::One(v.into_owned()),
            Header::Many(vs) => HeaderValue::Many(vs),
        })
    }
}

impl HeaderValue {
    /// The first value, which is what eddy reads.
    pub fn first(&self) -> Option<&str> {
        match self {
            HeaderValue::One(v) => Some(v),
            HeaderValue::Many(vs) => vs.first().map(String::as_str),
        }
    }
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(HeaderValue::first)
    }

    /// The eddy event it carries.
    pub fn event(&self) -> Result<StoredEvent, eddy_engine::envelope::Error> {
        StoredEvent::from_lookup(self.seq, &self.subject, |name| self.header(name), self.data.clone())
    }

    /// The line as `eddy record` writes it.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("a recorded event serializes")
    }
}

/// A line as a recording keeps it.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    /// Where it is in the file (1-based).
    pub line: usize,
    pub seq: u64,
    pub time: DateTime<Utc>,
    /// The headers' JSON object, as read.
    headers: Box<str>,
    /// `Nats-Msg-Id`: how the replay recognizes what a reactor appended.
    pub msg_id: Option<Box<str>>,
    /// `Eddy-Event-Version`: the version of the event's data, for upcasting (absent: 1).
    pub event_version: Option<Box<str>>,
    pub body: Body,
}

#[derive(Debug, Clone)]
pub(crate) enum Body {
    Event(StoredEvent),
    /// Not an eddy event: why, and the message as it was.
    Other {
        subject: String,
        data: Json,
        why: String,
    },
}

/// A line as the file has it, borrowing what it can. The replay's first pass reads the data as
/// [`serde::de::IgnoredAny`]: checked to be JSON, nothing built.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input<'a, D = Json> {
    seq: u64,
    #[serde(borrow)]
    subject: Cow<'a, str>,
    time: DateTime<Utc>,
    #[serde(default, borrow)]
    headers: Option<&'a RawValue>,
    data: D,
}

/// A line of the replay's first pass: read whole, or only where it is.
pub(crate) enum Peeked<'a> {
    /// Boxed: most lines of a long recording are brief.
    Line(Box<Cow<'a, Line>>),
    Brief {
        line: usize,
        seq: u64,
        time: DateTime<Utc>,
    },
}

impl Peeked<'_> {
    /// The line's sequence, number and time.
    pub fn position(&self) -> (u64, usize, DateTime<Utc>) {
        match self {
            Peeked::Line(l) => (l.seq, l.line, l.time),
            Peeked::Brief { line, seq, time } => (*seq, *line, *time),
        }
    }
}

/// A header value borrowed from the line where it has no escapes. Written by hand: serde's `untagged`
/// buffers every value before it tries the variants, and headers are most of a recording's bytes.
enum Header<'a> {
    One(Cow<'a, str>),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for Header<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Header<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a header value: a string or a list of strings")
            }

            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Header<'de>, E> {
                Ok(Header::One(Cow::Borrowed(v)))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Header<'de>, E> {
                Ok(Header::One(Cow::Owned(v.to_string())))
            }

            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Header<'de>, E> {
                Ok(Header::One(Cow::Owned(v)))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Header<'de>, A::Error> {
                let mut values = Vec::new();
                while let Some(v) = seq.next_element::<String>()? {
                    values.push(v);
                }
                Ok(Header::Many(values))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl Header<'_> {
    fn first(&self) -> Option<&str> {
        match self {
            Header::One(v) => Some(v),
            Header::Many(vs) => vs.first().map(String::as_str),
        }
    }
}

/// A header name borrowed from the line where it has no escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Header::deserialize(deserializer)? {
            Header::One(name) => Ok(Name(name)),
            Header::Many(_) => Err(serde::de::Error::custom("a header name is a string")),
        }
    }
}

/// The headers of a line, in file order; a name given twice keeps its last value, as a map would.
fn header_list(raw: &str) -> serde_json::Result<Vec<(Name<'_>, Header<'_>)>> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Vec<(Name<'de>, Header<'de>)>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map of headers")
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(entry) = map.next_entry()? {
                out.push(entry);
            }
            Ok(out)
        }
    }
    serde::Deserializer::deserialize_map(&mut serde_json::Deserializer::from_str(raw), Visitor)
}

impl Line {
    /// Reads one line of a file; the error is the reason, without the line number.
    pub fn parse(text: &str, line: usize) -> serde_json::Result<Line> {
        let input: Input = serde_json::from_str(text)?;
        let raw = input.headers.map_or("{}", RawValue::get);
        let headers = header_list(raw)?;
        Ok(Line::new(line, input.seq, &input.subject, input.time, raw, &headers, input.data))
    }

    /// Reads one line as [`Line::parse`] does, with the same errors, building it only when the
    /// aggregate of its subject (`events.<aggregate>.<id>`) is `wanted`.
    pub fn skim(text: &str, line: usize, wanted: impl Fn(&str) -> bool) -> serde_json::Result<Peeked<'static>> {
        let input: Input<serde::de::IgnoredAny> = serde_json::from_str(text)?;
        header_list(input.headers.map_or("{}", RawValue::get))?;
        let aggregate = input.subject.strip_prefix("events.").and_then(|rest| rest.split('.').next());
        if aggregate.is_some_and(wanted) {
            return Line::parse(text, line).map(|l| Peeked::Line(Box::new(Cow::Owned(l))));
        }
        Ok(Peeked::Brief { line, seq: input.seq, time: input.time })
    }

    /// A line built in memory.
    pub fn from_recorded(rec: Recorded) -> Line {
        let raw = serde_json::to_string(&rec.headers).expect("headers serialize");
        let headers = header_list(&raw).expect("serialized headers read back");
        Line::new(rec.line, rec.seq, &rec.subject, rec.time, &raw, &headers, rec.data)
    }

    fn new(
        line: usize,
        seq: u64,
        subject: &str,
        time: DateTime<Utc>,
        raw: &str,
        headers: &[(Name, Header)],
        data: Json,
    ) -> Line {
        let get = |name: &str| headers.iter().rev().find(|(n, _)| n.0 == name).and_then(|(_, v)| v.first());
        let body = match StoredEvent::from_lookup(seq, subject, get, Json::Null) {
            Ok(event) => Body::Event(StoredEvent { data, ..event }),
            Err(e) => Body::Other { subject: subject.to_string(), data, why: e.to_string() },
        };
        let event_version = get(eddy_engine::upcast::EVENT_VERSION).map(Into::into);
        Line { line, seq, time, headers: raw.into(), msg_id: get(headers::MSG_ID).map(Into::into), event_version, body }
    }

    pub fn subject(&self) -> Cow<'_, str> {
        match &self.body {
            Body::Event(e) => Cow::Owned(eddy_engine::envelope::subject(&e.aggregate, &e.id)),
            Body::Other { subject, .. } => Cow::Borrowed(subject),
        }
    }

    /// The line as the file had it.
    pub fn recorded(&self) -> Recorded {
        let data = match &self.body {
            Body::Event(e) => e.data.clone(),
            Body::Other { data, .. } => data.clone(),
        };
        Recorded {
            seq: self.seq,
            subject: self.subject().into_owned(),
            time: self.time,
            headers: serde_json::from_str(&self.headers).expect("headers kept as read are a map"),
            data,
            line: self.line,
        }
    }

    pub fn event(&self) -> Result<&StoredEvent, &str> {
        match &self.body {
            Body::Event(e) => Ok(e),
            Body::Other { why, .. } => Err(why),
        }
    }
}
