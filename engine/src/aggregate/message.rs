//! A rule's rejection message: text with `{{ expr }}` holes, CEL over the rule's variables, so a message can
//! say which account is not open. A message without holes is its text, as before.

use serde_json::Value as Json;

use crate::cel::{Expr, Vars};

/// A compiled message.
#[derive(Debug, Clone)]
pub struct Message {
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Hole(Expr),
}

impl Message {
    /// Compiles `source`; each hole with `compile` (which reports its errors). `Err` names an unclosed hole.
    pub fn parse(source: &str, mut compile: impl FnMut(&str) -> Option<Expr>) -> Result<Option<Self>, String> {
        let mut parts = Vec::new();
        let mut ok = true;
        let mut rest = source;
        while let Some(open) = rest.find("{{") {
            let at = source.len() - rest.len() + open + 1;
            let close =
                rest[open..].find("}}").ok_or_else(|| format!("`{{{{` at position {at} is never closed by `}}}}`"))?;
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            match compile(rest[open + 2..open + close].trim()) {
                Some(expr) => parts.push(Part::Hole(expr)),
                None => ok = false,
            }
            rest = &rest[open + close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(ok.then_some(Message { parts }))
    }

    /// The message for `vars`. A hole that fails to evaluate shows its source and is logged: the rejection
    /// still reads, and stands.
    pub fn render(&self, vars: &Vars) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Hole(expr) => match expr.eval(vars) {
                    Ok(Json::String(s)) => out.push_str(&s),
                    Ok(other) => out.push_str(&other.to_string()),
                    Err(e) => {
                        tracing::warn!(expr = expr.source(), error = %e, "a rejection message's hole failed");
                        out.push_str(&format!("{{{{{}}}}}", expr.source()));
                    }
                },
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(source: &str) -> Message {
        Message::parse(source, |s| Expr::compile(s, &["cmd", "state"]).ok()).unwrap().unwrap()
    }

    #[test]
    fn holes_are_filled_and_text_is_kept() {
        let mut vars = Vars::new();
        vars.set("cmd", &json!({"id": "acc-9", "amount": 5})).set("state", &json!({"balance": 3}));
        assert_eq!(message("account is not open").render(&vars), "account is not open");
        assert_eq!(message("account {{ cmd.id }} is not open").render(&vars), "account acc-9 is not open");
        assert_eq!(message("{{state.balance}} < {{cmd.amount}}!").render(&vars), "3 < 5!");
        assert_eq!(message("no {{ cmd.nope }}").render(&vars), "no {{cmd.nope}}", "a failing hole shows its source");
    }

    #[test]
    fn bad_holes_are_errors() {
        assert!(Message::parse("open {{ cmd.id", |_| None).is_err());
        let bad = Message::parse("a {{ cmd.( }}", |s| Expr::compile(s, &["cmd"]).ok()).unwrap();
        assert!(bad.is_none(), "a hole that does not compile makes no message");
    }
}
