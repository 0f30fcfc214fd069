//! CEL expressions: compiled once at config load, evaluated in a child scope of one shared root context.
//!
//! `Context::default()` builds the whole standard library (~33 us), so every evaluation borrows one root
//! context built at first use and binds its variables in `new_inner_scope()`.

pub mod budget;
pub mod check;
mod convert;
mod fast;
pub mod functions;
mod scope;
mod syntax;

#[cfg(test)]
mod prop_tests;

use std::sync::{Arc, LazyLock};

pub use convert::{fields_to_cel, from_cel, map_to_cel, to_cel};
pub use scope::EventScope;
use serde_json::Value as Json;

static ROOT: LazyLock<cel::Context<'static, 'static>> = LazyLock::new(|| {
    let mut root = cel::Context::default();
    // The stdlib's `matches` is left out (the crate's `regex` feature is off): eddy's compiles a pattern once.
    root.add_function("matches", budget::matches).expect("`matches` is not declared without the regex feature");
    let range: budget::Function = Box::new(budget::range);
    root.add_function(check::RANGE_FN, range).expect("a name CEL source cannot spell");
    functions::register(&mut root);
    root
});

/// The stack the parser runs on. It recurses per level of the source before the depth of the result can
/// be checked (several hundred KiB per bracket in a debug build); `check::MAX_SOURCE_LEN` and
/// [`MAX_NESTING`] bound the levels, and this makes room for them on any thread. Only touched pages are
/// committed.
const PARSER_STACK: usize = 256 * 1024 * 1024;

/// Brackets, parentheses and braces the parser follows inside one another (its default, 96, needs more
/// than 16 MiB of stack in a debug build).
const MAX_NESTING: u16 = 32;
/// CEL's type names, which `type(x)` is compared with.
const TYPE_NAMES: &[&str] = &["bool", "int", "uint", "double", "string", "bytes", "list", "map", "null_type", "type"];

/// Errors of compiling or evaluating an expression.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum Error {
    /// The source does not parse.
    #[error("syntax error at {line}:{column}: {message}")]
    Syntax { line: usize, column: usize, message: String },
    /// The expression names a variable that is not available where it is used.
    #[error("unknown variable `{name}` (available: {available}){}", suggest(name, available))]
    UnknownVariable { name: String, available: String },
    /// The source is longer than eddy accepts.
    #[error("the expression is {len} bytes long; the limit is {limit}")]
    TooLong { len: usize, limit: usize },
    /// The expression nests deeper than eddy evaluates safely.
    #[error("the expression nests {depth} levels deep; the limit is {limit}")]
    TooDeep { depth: usize, limit: usize },
    /// A literal pattern given to `matches` is not a valid regex.
    #[error("{0}")]
    Regex(String),
    /// Evaluation failed at run time.
    #[error("`{source_text}`: {message}")]
    Runtime { source_text: String, message: String },
    /// Evaluation ran more comprehension iterations than one evaluation may.
    #[error("`{source_text}`: cost budget of {limit} iterations exhausted")]
    Budget { source_text: String, limit: u64 },
    /// The expression evaluated to a value of the wrong type.
    #[error("`{source_text}`: expected {expected}, got {got}")]
    Type { source_text: String, expected: &'static str, got: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A compiled expression together with its source, for error messages.
#[derive(Clone)]
pub struct Expr {
    source: Arc<str>,
    /// The parsed program, with its comprehensions metered (see `check::meter`).
    program: Arc<cel::IdedExpr>,
    /// The variables it reads from outside.
    free: Arc<[String]>,
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
        if source.len() > check::MAX_SOURCE_LEN {
            return Err(Error::TooLong { len: source.len(), limit: check::MAX_SOURCE_LEN });
        }
        // A deep program is dropped on the big stack too: dropping it recurses as deeply as parsing.
        stacker::grow(PARSER_STACK, || Self::parse_and_check(source, allowed))
    }

    fn parse_and_check(source: &str, allowed: &[&str]) -> Result<Self> {
        let program = cel::parser::Parser::new().max_recursion_depth(MAX_NESTING).parse(source).map_err(|errors| {
            let first = errors.errors.first();
            let (line, column) =
                first.map(|e| position(source, e.pos.0.max(0) as usize, e.pos.1.max(0) as usize)).unwrap_or((1, 1));
            let message = first.map(|e| e.msg.clone()).unwrap_or_else(|| errors.to_string());
            Error::Syntax { line, column, message: syntax::plain(&message) }
        })?;
        let depth = check::depth(&program);
        if depth > check::MAX_DEPTH {
            return Err(Error::TooDeep { depth, limit: check::MAX_DEPTH });
        }
        // Type names (`type(x) == map`) are identifiers of the language, not variables.
        let free: Vec<String> =
            check::free_variables(&program).into_iter().filter(|v| !TYPE_NAMES.contains(&v.as_str())).collect();
        if let Some(name) = free.iter().find(|v| !allowed.contains(&v.as_str())) {
            return Err(Error::UnknownVariable { name: name.clone(), available: allowed.join(", ") });
        }
        for pattern in check::literal_patterns(&program) {
            budget::regex(&pattern).map_err(Error::Regex)?;
        }
        let fast = fast::compile(&program).map(Arc::new);
        let program = if check::has_comprehension(&program) { check::meter(&program) } else { program };
        Ok(Self { source: source.into(), program: Arc::new(program), free: free.into(), fast })
    }

    /// The fields of variable `var` the expression reads, when it only ever reads `var.<field>`; `None` when it
    /// uses `var` as a whole (or in a way this scan does not follow). Lets callers bind a map with just those
    /// fields: building and converting unused ones is a large part of evaluating a small expression.
    pub fn fields_of(&self, var: &str) -> Option<Vec<String>> {
        let mut fields = check::field_reads(&self.program, var)?;
        fields.sort();
        fields.dedup();
        Some(fields)
    }

    /// The fields it selects of the variable `var` (`cmd.qty` -> `qty`), for the config's static checks.
    pub fn selected_fields(&self, var: &str) -> Vec<String> {
        check::selected_fields(&self.program, var)
    }

    /// Its keys, when it is a map literal with string keys only.
    pub fn literal_map_keys(&self) -> Option<Vec<String>> {
        check::literal_map_keys(&self.program)
    }

    /// Whether the expression reads the variable `name`.
    pub fn uses(&self, name: &str) -> bool {
        self.free.iter().any(|v| v == name)
    }

    /// The source text as written in the config.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates with the given variables bound, returning the raw CEL value.
    pub fn eval_raw(&self, vars: &Vars) -> Result<cel::Value> {
        budget::reset();
        let result = vars.scope.resolve(&self.program);
        if budget::exhausted() {
            return Err(Error::Budget { source_text: self.source.to_string(), limit: budget::MAX_STEPS });
        }
        result.map_err(|e| Error::Runtime { source_text: self.source.to_string(), message: e.to_string() })
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

/// "; did you mean `x`?" for a misspelt variable, from the comma-separated `available`.
fn suggest(name: &str, available: &str) -> String {
    let known: Vec<String> = available.split(", ").map(str::to_string).collect();
    crate::config::did_you_mean(name, &known).map(|k| format!("; did you mean `{k}`?")).unwrap_or_default()
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
        assert_eq!(err.to_string(), "unknown variable `stat` (available: state, cmd); did you mean `state`?");
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

    fn eval_with(source: &str, vars: &[(&'static str, Json)]) -> Result<Json> {
        let names: Vec<&str> = vars.iter().map(|(n, _)| *n).collect();
        let expr = Expr::compile(source, &names)?;
        let mut bound = Vars::new();
        for (name, value) in vars {
            bound.set(name, value);
        }
        expr.eval(&bound)
    }

    #[test]
    fn comprehension_macros_are_accepted_and_evaluated() {
        let state = json!({"holds": ["a", "b", "c"], "items": [1, 2, 3]});
        let event = json!({"member": "b"});
        let vars = [("state", state), ("event", event)];
        let cases = [
            ("state.holds.filter(h, h != event.member)", json!(["a", "c"])),
            ("state.items.all(i, i > 0)", json!(true)),
            ("state.items.exists(i, i > 2)", json!(true)),
            ("state.items.exists_one(i, i > 1)", json!(false)),
            ("state.items.map(i, i * 10)", json!([10, 20, 30])),
            ("state.items.map(i, i > 1, i)", json!([2, 3])),
            (
                "{'holds': state.holds.filter(h, h != event.member), 'n': size(state.items)}",
                json!({"holds": ["a", "c"], "n": 3}),
            ),
            ("state.items.all(i, state.holds.exists(h, size(h) == 1))", json!(true)),
        ];
        for (source, expected) in cases {
            assert_eq!(eval_with(source, &vars).unwrap(), expected, "{source}");
        }
    }

    #[test]
    fn type_names_are_not_variables() {
        let e = Expr::compile("type(x) == map && type(x.a) == int", &["x"]).unwrap();
        let eval = |v: Json| {
            let mut vars = Vars::new();
            vars.set("x", &v);
            e.eval_bool(&vars).unwrap()
        };
        assert!(eval(json!({"a": 1})));
        assert!(!eval(json!("text")));
    }

    #[test]
    fn an_unknown_variable_inside_a_macro_is_still_rejected() {
        let err = Expr::compile("cmd.items.all(x, y > 0)", &["cmd"]).unwrap_err();
        assert_eq!(err, Error::UnknownVariable { name: "y".into(), available: "cmd".into() });
        // The macro's variable is bound only inside it.
        let err = Expr::compile("cmd.items.map(x, x + 1) + [x]", &["cmd"]).unwrap_err();
        assert!(matches!(err, Error::UnknownVariable { ref name, .. } if name == "x"), "{err}");
    }

    #[test]
    fn deep_expressions_are_rejected_at_compile_time_naming_the_limit() {
        let chains = [
            format!("doc.balance{}", " + 1".repeat(1406)),
            format!("doc{}", ".a".repeat(5000)),
            format!("doc{}", "[0]".repeat(3000)),
            format!("doc{}", ".size()".repeat(2000)),
            format!("doc{}", " + 1".repeat((check::MAX_SOURCE_LEN - 3) / 4)),
            format!("{}1{}", "[".repeat(120), "]".repeat(120)),
        ];
        // On a worker-sized stack (tokio's 2 MiB): parsing runs on its own, bigger one.
        let compiled = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || chains.iter().map(|s| Expr::compile(s, &["doc"]).map(|_| ())).collect::<Vec<_>>())
            .unwrap()
            .join()
            .unwrap();
        for result in compiled {
            match result {
                Err(Error::TooDeep { limit, .. }) => assert_eq!(limit, check::MAX_DEPTH),
                Err(Error::Syntax { message, .. }) => assert!(message.contains("ecursion"), "{message}"),
                other => panic!("{other:?}"),
            }
        }
        let err = Expr::compile(&"1 + ".repeat(10_000), &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("the expression is 40000 bytes long; the limit is {}", check::MAX_SOURCE_LEN)
        );
        // The deepest expression accepted evaluates on half a worker's stack (tokio's are 2 MiB), even in a
        // debug build, where the interpreter takes ~20 KiB a level: `(doc.balance + 1) + 1 ...`, each
        // level a call, and a comprehension as deep as the rest allows.
        let deepest = format!("[1].all(x, x + doc.balance{} > 0)", " + 1".repeat(check::MAX_DEPTH - 6));
        assert_eq!(check::depth(&cel::parser::Parser::new().parse(&deepest).unwrap()), check::MAX_DEPTH);
        let value = std::thread::Builder::new()
            .stack_size(1024 * 1024)
            .spawn(move || eval_with(&deepest, &[("doc", json!({"balance": 1}))]))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(value.unwrap(), json!(true));
    }

    #[test]
    fn matches_compiles_its_pattern_once_and_reports_bad_ones_at_load() {
        let vars = [("doc", json!({"name": "alice"}))];
        assert_eq!(eval_with("doc.name.matches('^a.*e$')", &vars).unwrap(), json!(true));
        assert_eq!(eval_with("matches(doc.name, '^b')", &vars).unwrap(), json!(false));
        let err = Expr::compile("doc.name.matches('(foo')", &["doc"]).unwrap_err();
        assert!(matches!(err, Error::Regex(_)), "{err}");
        assert!(!err.to_string().contains('\n'), "{err}");
        // A pattern that only exists at run time fails that evaluation, on one line.
        let err = eval_with("doc.name.matches(doc.name + '(')", &vars).unwrap_err();
        assert!(err.to_string().contains("not a valid regex") && !err.to_string().contains('\n'), "{err}");
        let a = budget::regex("^x+$").unwrap();
        let b = budget::regex("^x+$").unwrap();
        assert!(Arc::ptr_eq(&a, &b), "the second use shares the first compilation");
    }

    #[test]
    fn an_evaluation_over_its_cost_budget_fails_with_its_own_error() {
        let items: Vec<i64> = (0..8000).collect();
        let vars = [("state", json!({"items": items}))];
        let err = eval_with("state.items.all(i, state.items.exists(j, j == i))", &vars).unwrap_err();
        assert_eq!(
            err,
            Error::Budget {
                source_text: "state.items.all(i, state.items.exists(j, j == i))".into(),
                limit: budget::MAX_STEPS
            }
        );
        // A linear pass over the same list is well within it, and the budget starts afresh per evaluation.
        for _ in 0..3 {
            assert_eq!(eval_with("state.items.filter(i, i % 1000 == 0).size()", &vars).unwrap(), json!(8));
        }
    }

    #[test]
    fn nested_maps_and_lists_change_with_eddys_functions() {
        let state = json!({"items": {"milk": 1, "bread": 2}, "tags": ["a", "b", "a"], "cfg": {"x": {"y": 1, "z": 2}}});
        let vars = [("state", state)];
        let cases = [
            ("state.items.with('eggs', 12)", json!({"milk": 1, "bread": 2, "eggs": 12})),
            ("state.items.with('milk', state.items.milk + 1)", json!({"milk": 2, "bread": 2})),
            ("state.items.without('milk')", json!({"bread": 2})),
            ("state.items.without('absent')", json!({"milk": 1, "bread": 2})),
            ("state.items.without(['milk', 'bread'])", json!({})),
            ("state.tags.without('a')", json!(["b"])),
            ("with(state.items, 'eggs', 1).without('bread')", json!({"milk": 1, "eggs": 1})),
            ("state.cfg.merge({'x': {'y': null, 'w': 3}, 'v': [1]})", json!({"x": {"z": 2, "w": 3}, "v": [1]})),
            ("state.cfg.merge({'x': 5})", json!({"x": 5})),
            ("{'items': state.items.with('eggs', 12)}", json!({"items": {"milk": 1, "bread": 2, "eggs": 12}})),
        ];
        for (source, expected) in cases {
            assert_eq!(eval_with(source, &vars).unwrap(), expected, "{source}");
        }
        for (source, expected) in [
            ("state.tags.with('a', 1)", "`with` needs a map, got list"),
            ("state.items.with('a')", "`with` takes a key and a value"),
            ("state.items.with([1], 1)", "a map key cannot be a list"),
            ("'s'.without('a')", "`without` needs a map or a list, got string"),
        ] {
            let err = eval_with(source, &vars).unwrap_err().to_string();
            assert!(err.contains(expected), "{source}: {err}");
        }
    }

    #[test]
    fn copying_maps_in_a_loop_is_charged_to_the_budget() {
        // 1,200 copies of 1,200 entries overdraw the 1,000,000 steps; `map` stops at the first error.
        let big: serde_json::Map<String, Json> = (0..1200).map(|i| (format!("k{i}"), json!(i))).collect();
        let vars = [("state", json!({ "big": big }))];
        let err = eval_with("state.big.map(k, state.big.with(k, 0))", &vars).unwrap_err();
        assert!(matches!(err, Error::Budget { .. } | Error::Runtime { .. }), "{err}");
        assert!(err.to_string().contains("cost budget"), "{err}");
    }

    #[test]
    fn integer_overflow_is_an_error_naming_the_expression() {
        let err = eval_with("cmd.amount + 1", &[("cmd", json!({"amount": i64::MAX}))]).unwrap_err();
        assert!(err.to_string().starts_with("`cmd.amount + 1`:"), "{err}");
    }
}
