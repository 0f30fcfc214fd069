//! Event patterns: `<aggregate>.<EventType>`, where `*` matches a whole part. An exact pattern beats a
//! wildcard one when several match.

use std::collections::BTreeSet;

/// One compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pattern {
    /// `None`: any aggregate.
    pub aggregate: Option<String>,
    /// `None`: any event type.
    pub event_type: Option<String>,
}

impl Pattern {
    /// Parses `<aggregate>.<EventType>`.
    pub fn parse(s: &str) -> Result<Pattern, String> {
        let (aggregate, event_type) =
            s.split_once('.').ok_or_else(|| format!("`{s}` is not <aggregate>.<EventType>"))?;
        let part = |p: &str| -> Result<Option<String>, String> {
            match p {
                "*" => Ok(None),
                p if crate::config::is_token(p) => Ok(Some(p.to_string())),
                _ => Err(format!("`{s}` is not <aggregate>.<EventType> (each part a name or `*`)")),
            }
        };
        Ok(Pattern { aggregate: part(aggregate)?, event_type: part(event_type)? })
    }

    pub fn matches(&self, aggregate: &str, event_type: &str) -> bool {
        self.aggregate.as_deref().is_none_or(|a| a == aggregate)
            && self.event_type.as_deref().is_none_or(|t| t == event_type)
    }

    /// How specific: exact parts count; a higher value wins.
    pub fn specificity(&self) -> u8 {
        u8::from(self.aggregate.is_some()) * 2 + u8::from(self.event_type.is_some())
    }

    /// The stream subject filter that covers this pattern (event types are not in the subject).
    pub fn subject_filter(&self) -> String {
        match &self.aggregate {
            Some(a) => format!("events.{a}.*"),
            None => "events.>".to_string(),
        }
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.aggregate.as_deref().unwrap_or("*"), self.event_type.as_deref().unwrap_or("*"))
    }
}

/// Patterns mapped to values; `find` picks the most specific match.
#[derive(Debug, Clone)]
pub struct PatternMap<T> {
    entries: Vec<(Pattern, T)>,
}

impl<T> Default for PatternMap<T> {
    fn default() -> Self {
        Self { entries: Vec::new() }
    }
}

impl<T> PatternMap<T> {
    pub fn insert(&mut self, pattern: Pattern, value: T) {
        self.entries.push((pattern, value));
        // Most specific first, so `find` can stop at the first match.
        self.entries.sort_by_key(|(p, _)| std::cmp::Reverse(p.specificity()));
    }

    pub fn find(&self, aggregate: &str, event_type: &str) -> Option<&T> {
        self.entries.iter().find(|(p, _)| p.matches(aggregate, event_type)).map(|(_, v)| v)
    }

    pub fn patterns(&self) -> impl Iterator<Item = &Pattern> {
        self.entries.iter().map(|(p, _)| p)
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().map(|(_, v)| v)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Every `<aggregate>.<EventType>` a config can put in the stream: its aggregates' event types, and what its
/// reactors emit and its sagas log. A pattern that names neither could never match: a typo.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    types: std::collections::BTreeMap<String, BTreeSet<String>>,
}

impl Catalog {
    /// Records that events of `event_type` may appear on `events.<aggregate>.*`.
    pub fn add(&mut self, aggregate: &str, event_type: &str) {
        self.types.entry(aggregate.to_string()).or_default().insert(event_type.to_string());
    }

    /// Records an aggregate whose event types are not known (one whose definition has errors of its own):
    /// patterns naming it are not checked further.
    pub fn add_unchecked(&mut self, aggregate: &str) {
        self.add(aggregate, "*");
    }

    /// Why `pattern` can never match anything this config produces, with the closest name; `Ok` when it can
    /// (wildcard parts match anything).
    pub fn check(&self, pattern: &Pattern) -> Result<(), String> {
        let names = |set: &mut dyn Iterator<Item = &String>| set.filter(|t| *t != "*").cloned().collect::<Vec<_>>();
        let hint = |name: &str, known: &[String]| {
            crate::config::did_you_mean(name, known).map(|k| format!("; did you mean `{k}`?")).unwrap_or_default()
        };
        let types: Vec<&BTreeSet<String>> = match &pattern.aggregate {
            Some(a) => match self.types.get(a) {
                Some(types) => vec![types],
                None => {
                    let known = names(&mut self.types.keys());
                    let hint = hint(a, &known);
                    return Err(format!(
                        "`{pattern}`: no aggregate, reactor or saga puts events on `events.{a}.*` (known: {}){hint}",
                        known.join(", ")
                    ));
                }
            },
            None => self.types.values().collect(),
        };
        let Some(event_type) = &pattern.event_type else { return Ok(()) };
        if types.iter().any(|t| t.contains(event_type) || t.contains("*")) {
            return Ok(());
        }
        let known = names(&mut types.iter().flat_map(|t| t.iter()));
        let whose = match &pattern.aggregate {
            Some(a) => format!("`{a}` has no event type"),
            None => "no aggregate has an event type".to_string(),
        };
        Err(format!("`{pattern}`: {whose} `{event_type}` (known: {}){}", known.join(", "), hint(event_type, &known)))
    }
}

/// The fewest subject filters covering `patterns`: `events.>` if any pattern has a wildcard aggregate.
pub fn subject_filters<'a>(patterns: impl IntoIterator<Item = &'a Pattern>) -> Vec<String> {
    let filters: BTreeSet<String> = patterns.into_iter().map(Pattern::subject_filter).collect();
    if filters.contains("events.>") {
        return vec!["events.>".to_string()];
    }
    filters.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_beats_wildcard() {
        let mut map = PatternMap::default();
        map.insert(Pattern::parse("*.*").unwrap(), "any");
        map.insert(Pattern::parse("product.*").unwrap(), "product");
        map.insert(Pattern::parse("product.StockAdded").unwrap(), "exact");
        assert_eq!(map.find("product", "StockAdded"), Some(&"exact"));
        assert_eq!(map.find("product", "StockReduced"), Some(&"product"));
        assert_eq!(map.find("account", "Opened"), Some(&"any"));
    }

    #[test]
    fn filters_cover_the_patterns() {
        let ps = [Pattern::parse("product.A").unwrap(), Pattern::parse("product.B").unwrap()];
        assert_eq!(subject_filters(&ps), ["events.product.*"]);
        let ps = [Pattern::parse("product.A").unwrap(), Pattern::parse("*.B").unwrap()];
        assert_eq!(subject_filters(&ps), ["events.>"]);
        assert!(Pattern::parse("product").is_err());
        assert!(Pattern::parse("pro duct.A").is_err());
    }

    #[test]
    fn the_catalog_refuses_patterns_that_cannot_match_with_a_suggestion() {
        let mut catalog = Catalog::default();
        catalog.add("cart", "Added");
        catalog.add("cart", "Removed");
        catalog.add_unchecked("broken");
        let check = |p: &str| catalog.check(&Pattern::parse(p).unwrap());
        for ok in ["cart.Added", "cart.*", "*.Removed", "*.*", "broken.Anything"] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            check("cart.Addedd").unwrap_err(),
            "`cart.Addedd`: `cart` has no event type `Addedd` (known: Added, Removed); did you mean `Added`?"
        );
        assert!(check("kart.Added").unwrap_err().ends_with("did you mean `cart`?"), "{:?}", check("kart.Added"));
        // An aggregate whose types are unknown may have any type; without it, `*.Nope` matches nothing.
        assert_eq!(check("*.Nope"), Ok(()));
        let mut known = Catalog::default();
        known.add("cart", "Added");
        let err = known.check(&Pattern::parse("*.Nope").unwrap()).unwrap_err();
        assert!(err.contains("no aggregate has an event type `Nope`"), "{err}");
    }
}
