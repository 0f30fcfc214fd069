//! The variables of an event expression (`event`, `meta` and the caller's own, such as `state` or `doc`),
//! held as JSON. An expression inside the fast subset is evaluated straight over them; the interpreter's
//! scope is built only when some expression needs it, and then once for all of them.

use std::cell::OnceCell;

use serde_json::{Map, Value as Json};

use super::fast::{self, Bindings, MetaField};
use super::{fields_to_cel, to_cel, Expr, Result, Vars};
use crate::aggregate::EventMeta;
use crate::envelope::StoredEvent;

/// A bound variable: its JSON value and, for the interpreter, the fields worth converting.
struct Bound<'a> {
    name: &'static str,
    value: &'a Json,
    fields: Option<&'a [String]>,
}

/// The variables of one evaluation of event expressions.
pub struct EventScope<'a> {
    event: &'a StoredEvent,
    event_fields: Option<&'a [String]>,
    meta_fields: Option<&'a [String]>,
    vars: Vec<Bound<'a>>,
    slow: OnceCell<Vars>,
}

impl<'a> EventScope<'a> {
    /// `event` and `meta` of `event`.
    pub fn new(event: &'a StoredEvent) -> Self {
        Self { event, event_fields: None, meta_fields: None, vars: Vec::new(), slow: OnceCell::new() }
    }

    /// Limits what the interpreter converts of `event` and `meta` (see `Expr::fields_of`).
    pub fn fields(mut self, event_fields: Option<&'a [String]>, meta_fields: Option<&'a [String]>) -> Self {
        self.event_fields = event_fields;
        self.meta_fields = meta_fields;
        self
    }

    /// Binds another variable; `fields` limits what the interpreter converts of it.
    pub fn bind(mut self, name: &'static str, value: &'a Json, fields: Option<&'a [String]>) -> Self {
        self.vars.push(Bound { name, value, fields });
        self
    }

    fn slow(&self) -> &Vars {
        self.slow.get_or_init(|| {
            let mut vars = Vars::new();
            let event = match &self.event.data {
                Json::Object(map) => fields_to_cel(map, self.event_fields),
                other => to_cel(other),
            };
            vars.set_value("event", event).set_value("meta", EventMeta::cel_of(self.event, self.meta_fields));
            for b in &self.vars {
                let value = match b.value {
                    Json::Object(map) => fields_to_cel(map, b.fields),
                    other => to_cel(other),
                };
                vars.set_value(b.name, value);
            }
            vars
        })
    }

    fn fast(&self, expr: &Expr) -> Option<Json> {
        let node = expr.fast.as_deref()?;
        fast::eval(node, self).map(std::borrow::Cow::into_owned)
    }

    /// Evaluates to JSON.
    pub fn eval(&self, expr: &Expr) -> Result<Json> {
        match self.fast(expr) {
            Some(v) => Ok(v),
            None => expr.eval(self.slow()),
        }
    }

    pub fn eval_bool(&self, expr: &Expr) -> Result<bool> {
        match self.fast(expr) {
            Some(Json::Bool(b)) => Ok(b),
            _ => expr.eval_bool(self.slow()),
        }
    }

    pub fn eval_string(&self, expr: &Expr) -> Result<String> {
        match self.fast(expr) {
            Some(Json::String(s)) => Ok(s),
            _ => expr.eval_string(self.slow()),
        }
    }

    /// A JSON object, or `None` where the expression yields null.
    pub fn eval_map_or_null(&self, expr: &Expr) -> Result<Option<Map<String, Json>>> {
        match self.fast(expr) {
            Some(Json::Object(map)) => Ok(Some(map)),
            Some(Json::Null) => Ok(None),
            _ => expr.eval_map_or_null(self.slow()),
        }
    }

    pub fn eval_map(&self, expr: &Expr) -> Result<Map<String, Json>> {
        match self.fast(expr) {
            Some(Json::Object(map)) => Ok(map),
            _ => expr.eval_map(self.slow()),
        }
    }
}

impl Bindings for EventScope<'_> {
    fn event(&self) -> &Json {
        &self.event.data
    }

    fn meta(&self, field: MetaField) -> Json {
        let e = self.event;
        match field {
            MetaField::Aggregate => Json::String(e.aggregate.clone()),
            MetaField::Id => Json::String(e.id.clone()),
            MetaField::Version => Json::from(e.version as i64),
            MetaField::Seq => Json::from(e.seq as i64),
            MetaField::Type => Json::String(e.event_type.clone()),
            MetaField::CommandId => Json::String(e.command_id.clone()),
            MetaField::CorrelationId => Json::String(e.correlation_id.clone()),
            MetaField::CausationId => Json::String(e.causation_id.clone()),
            MetaField::Date => Json::String(crate::aggregate::date_of(e.time)),
        }
    }

    fn var(&self, name: &str) -> Option<&Json> {
        self.vars.iter().find(|b| b.name == name).map(|b| b.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The fast path must agree with the interpreter wherever it answers, and answer the common cases.
    #[test]
    fn the_fast_path_agrees_with_the_interpreter() {
        let event = StoredEvent {
            seq: 42,
            aggregate: "account".into(),
            id: "a1".into(),
            event_type: "MoneyWithdrawn".into(),
            version: 3,
            time: chrono::DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z").unwrap().into(),
            command_id: "c1".into(),
            command_digest: String::new(),
            correlation_id: "k1".into(),
            causation_id: "c0".into(),
            traceparent: String::new(),
            data: json!({"amount": 7, "price": 1.5, "name": "héllo", "flag": true, "nested": {"x": 1}, "list": [1, 2],
                         "big": 18446744073709551615u64}),
        };
        let state = json!({"on_hand": 20, "low_mark": 10, "total": 9000, "label": "x"});
        let prev = json!({"on_hand": 12, "low_mark": 10, "total": 0, "label": "y"});
        let scope = EventScope::new(&event).bind("state", &state, None).bind("prev", &prev, None);
        let fast_cases = [
            "{'on_hand': state.on_hand - event.amount}",
            "prev.on_hand >= state.low_mark && state.on_hand < state.low_mark",
            "meta.id + '-' + meta.date",
            "{'total': state.total + event.amount, 'n': meta.seq + meta.version}",
            "event.amount > 10 ? 'big' : 'small'",
            "has(event.order) ? event.order : ''",
            "has(event.name) && size(event.name) == 5",
            "event.price * 2.5 + 0.25",
            "[1, 2, event.amount, null, 'x', true]",
            "-event.amount",
            "!event.flag || event.amount != 7",
            "event.amount == 7 && event.name == 'héllo' && null == null",
            "7 % 3 + -7 / 2 + -7 % 2",
            "'a' < 'b' && state.label >= prev.label == false",
            "event.nested.x",
            "{'a': 1, 'b': [true, null], 'c': {'d': meta.type}}",
            "state.on_hand <= 20 && state.on_hand > prev.on_hand",
            "meta.aggregate + meta.command_id + meta.correlation_id + meta.causation_id",
            "size([1, 2]) + size({'a': 1}) + size('ab')",
        ];
        let slow_cases = [
            "event.amount / 0",
            "event.amount % 0",
            "event.amount + 1.5",
            "event.amount == 7.0",
            "event.missing",
            "9223372036854775807 + event.amount",
            "meta.time",
            "event.list[0]",
            "event.amount in [1, 7]",
            "event.big + 1",
            "size(event.amount)",
            "state.on_hand < 'x'",
            "event.price % 2.0",
            "{'a': 1, 'a': 2}",
            "meta",
            // Comprehension macros, including variables that shadow the scope's own.
            "event.list.all(x, x > 0)",
            "event.list.map(x, x * event.amount)",
            "event.list.exists(x, x == prev.on_hand - 10)",
            "event.list.filter(x, x > 1)",
            "event.list.exists_one(x, x == 1)",
            "event.list.map(x, x > 1, {'v': x, 'l': state.label})",
            "[event.amount].all(meta, meta > 0) && meta.id == 'a1'",
            "event.list.all(event, event < 3)",
            "{'on_hand': state.on_hand, 'big': event.list.filter(x, x > state.low_mark)}",
        ];
        for source in fast_cases.iter().chain(&slow_cases) {
            let expr = Expr::compile(source, &["event", "meta", "state", "prev"]).unwrap();
            let slow = expr.eval(scope.slow()).map_err(|e| e.to_string());
            match scope.fast(&expr) {
                Some(fast) => assert_eq!(Ok(fast), slow, "{source}"),
                None => assert!(!fast_cases.contains(source), "{source} should take the fast path; slow: {slow:?}"),
            }
            assert_eq!(scope.eval(&expr).map_err(|e| e.to_string()), slow, "{source}");
        }
    }
}
