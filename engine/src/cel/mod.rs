//! CEL expressions: compiled once at config load, evaluated in a child scope of one shared root context.
//!
//! `Context::default()` builds the whole standard library (~33 us), so every evaluation borrows one root
//! context built at first use and binds its variables in `new_inner_scope()`.

mod convert;
mod fast;
mod scope;

use std::sync::{Arc, LazyLock};

pub use convert::{fields_to_cel, from_cel, map_to_cel, to_cel};
pub use scope::EventScope;
use serde_json::Value as Json;

static ROOT: LazyLock<cel::Context<'static, 'static>> = LazyLock::new(cel::Context::default);

/// Errors of compiling or evaluating an expression.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum Error {
    /// The source does not parse.
    #[error("syntax error at {line}:{column}: {message}")]
    Syntax { line: usize, column: usize, message: String },
    /// The expression names a variable that is not available where it is used.
    #[error("unknown variable `{name}` (available: {available})")]
    UnknownVariable { name: String, available: String },
    /// Evaluation failed at run time.
    #[error("`{source_text}`: {message}")]
    Runtime { source_text: String, message: String },
    /// The expression evaluated to a value of the wrong type.
    #[error("`{source_text}`: expected {expected}, got {got}")]
    Type { source_text: String, expected: &'static str, got: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A compiled expression together with its source, for error messages.
#[derive(Clone)]
pub struct Expr {
    source: Arc<str>,
    program: Arc<cel::Program>,
    /// The same expression for the direct evaluator, when it is inside its subset.
    fast: Option<Arc<fast::Node>>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Expr({:?})", self.source)
    }
}

impl Expr {
    /// Compiles `source`, allowing only the variables in `allowed`.
    pub fn compile(source: &str, allowed: &[&str]) -> Result<Self> {
        let program = cel::Program::compile(source).map_err(|errors| {
            let first = errors.errors.first();
            let (line, column) =
                first.map(|e| position(source, e.pos.0.max(0) as usize, e.pos.1.max(0) as usize)).unwrap_or((1, 1));
            Error::Syntax { line, column, message: first.map(|e| e.msg.clone()).unwrap_or_else(|| errors.to_string()) }
        })?;
        let references = program.references();
        let mut unknown: Vec<&str> = references.variables().into_iter().filter(|v| !allowed.contains(v)).collect();
        unknown.sort_unstable();
        if let Some(name) = unknown.first() {
            return Err(Error::UnknownVariable { name: (*name).to_string(), available: allowed.join(", ") });
        }
        let fast = fast::compile(program.expression()).map(Arc::new);
        Ok(Self { source: source.into(), program: Arc::new(program), fast })
    }

    /// The fields of variable `var` the expression reads, when it only ever reads `var.<field>`; `None` when it
    /// uses `var` as a whole (or in a way this scan does not follow). Lets callers bind a map with just those
    /// fields: building and converting unused ones is a large part of evaluating a small expression.
    pub fn fields_of(&self, var: &str) -> Option<Vec<String>> {
        let src = self.source.as_bytes();
        let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        let mut fields = Vec::new();
        let mut i = 0;
        while let Some(pos) = self.source[i..].find(var).map(|p| p + i) {
            i = pos + var.len();
            let before = src[..pos].iter().rev().find(|b| !b.is_ascii_whitespace());
            let standalone = (pos == 0 || !ident(src[pos - 1])) && src.get(i).is_none_or(|b| !ident(*b));
            if !standalone || before == Some(&b'.') {
                continue;
            }
            let rest = self.source[i..].trim_start();
            let after_dot = rest.strip_prefix('.')?;
            let field: String = after_dot.trim_start().bytes().take_while(|b| ident(*b)).map(char::from).collect();
            if field.is_empty() {
                return None;
            }
            fields.push(field);
        }
        fields.sort();
        fields.dedup();
        Some(fields)
    }

    /// Whether the expression reads the variable `name`.
    pub fn uses(&self, name: &str) -> bool {
        self.program.references().has_variable(name)
    }

    /// The source text as written in the config.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates with the given variables bound, returning the raw CEL value.
    pub fn eval_raw(&self, vars: &Vars) -> Result<cel::Value> {
        self.program
            .execute(&vars.scope)
            .map_err(|e| Error::Runtime { source_text: self.source.to_string(), message: e.to_string() })
    }

    /// Evaluates to JSON.
    pub fn eval(&self, vars: &Vars) -> Result<Json> {
        let value = self.eval_raw(vars)?;
        from_cel(&value).map_err(|got| self.type_error("a JSON value", got))
    }

    /// Evaluates to a bool (rules, `when`).
    pub fn eval_bool(&self, vars: &Vars) -> Result<bool> {
        match self.eval_raw(vars)? {
            cel::Value::Bool(b) => Ok(b),
            other => Err(self.type_error("bool", type_name(&other))),
        }
    }

    /// Evaluates to a string (keys, ids).
    pub fn eval_string(&self, vars: &Vars) -> Result<String> {
        match self.eval_raw(vars)? {
            cel::Value::String(s) => Ok(s.to_string()),
            other => Err(self.type_error("string", type_name(&other))),
        }
    }

    /// Evaluates to a JSON object, or `None` where the expression yields null.
    pub fn eval_map_or_null(&self, vars: &Vars) -> Result<Option<serde_json::Map<String, Json>>> {
        match self.eval(vars)? {
            Json::Object(map) => Ok(Some(map)),
            Json::Null => Ok(None),
            other => Err(self.type_error("map", json_type_name(&other).to_string())),
        }
    }

    /// Evaluates to a JSON object.
    pub fn eval_map(&self, vars: &Vars) -> Result<serde_json::Map<String, Json>> {
        self.eval_map_or_null(vars)?.ok_or_else(|| self.type_error("map", "null".to_string()))
    }

    fn type_error(&self, expected: &'static str, got: String) -> Error {
        Error::Type { source_text: self.source.to_string(), expected, got }
    }
}

/// Variables bound for evaluations: a child scope of the shared root context. Each value is converted once
/// when bound, however many expressions then read it.
pub struct Vars {
    scope: cel::Context<'static, 'static>,
}

impl Default for Vars {
    fn default() -> Self {
        Self { scope: ROOT.new_inner_scope() }
    }
}

impl Vars {
    pub fn new() -> Self {
        Self::default()
    }

    /// Binds (or rebinds) a variable from JSON.
    pub fn set(&mut self, name: &'static str, value: &Json) -> &mut Self {
        self.set_value(name, to_cel(value))
    }

    /// Binds (or rebinds) a variable from a CEL value.
    pub fn set_value(&mut self, name: &'static str, value: cel::Value) -> &mut Self {
        self.scope.add_variable_from_value(name, value);
        self
    }
}

fn type_name(value: &cel::Value) -> String {
    value.type_of().to_string()
}

/// The JSON type's name, as used in error messages.
pub fn json_type_name(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "bool",
        Json::Number(n) if n.is_f64() => "double",
        Json::Number(_) => "int",
        Json::String(_) => "string",
        Json::Array(_) => "list",
        Json::Object(_) => "map",
    }
}

/// Converts the parser's position to a 1-based line and column. The parser reports `(line, column)`
/// with a 1-based line and a 0-based column.
fn position(source: &str, line: usize, column: usize) -> (usize, usize) {
    let line = line.clamp(1, source.lines().count().max(1));
    (line, column + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn evaluates_maps_with_state_and_event() {
        let expr = Expr::compile("{'balance': state.balance + event.amount}", &["state", "event"]).unwrap();
        let mut vars = Vars::new();
        vars.set("state", &json!({"balance": 10})).set("event", &json!({"amount": 5}));
        assert_eq!(expr.eval(&vars).unwrap(), json!({"balance": 15}));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = Expr::compile("state.balance >", &["state"]).unwrap_err();
        assert!(matches!(err, Error::Syntax { line: 1, .. }), "{err}");
    }

    #[test]
    fn unknown_variables_are_rejected_at_compile_time() {
        let err = Expr::compile("stat.balance > 0", &["state", "cmd"]).unwrap_err();
        assert_eq!(err.to_string(), "unknown variable `stat` (available: state, cmd)");
    }

    #[test]
    fn finds_the_fields_read_of_a_variable() {
        let e = Expr::compile("meta.id + '-' + meta.date + event.meta", &["meta", "event"]).unwrap();
        assert_eq!(e.fields_of("meta"), Some(vec!["date".to_string(), "id".to_string()]));
        let whole = Expr::compile("size(meta) > 0", &["meta"]).unwrap();
        assert_eq!(whole.fields_of("meta"), None);
        let none = Expr::compile("{'a': 1}", &["meta"]).unwrap();
        assert_eq!(none.fields_of("meta"), Some(vec![]));
    }

    #[test]
    fn has_works_on_optional_fields() {
        let expr = Expr::compile("has(cmd.low) ? cmd.low : 10", &["cmd"]).unwrap();
        let mut vars = Vars::new();
        vars.set("cmd", &json!({"name": "x"}));
        assert_eq!(expr.eval(&vars).unwrap(), json!(10));
        vars.set("cmd", &json!({"low": 3}));
        assert_eq!(expr.eval(&vars).unwrap(), json!(3));
    }

    #[test]
    fn runtime_errors_name_the_expression() {
        let expr = Expr::compile("state.missing + 1", &["state"]).unwrap();
        let mut vars = Vars::new();
        vars.set("state", &json!({}));
        let err = expr.eval(&vars).unwrap_err();
        assert!(err.to_string().starts_with("`state.missing + 1`:"), "{err}");
    }
}
