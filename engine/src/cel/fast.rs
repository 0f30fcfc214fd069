//! A direct evaluator over JSON for the common subset of event expressions: literals, field selects,
//! `has()`, `size()`, arithmetic, comparisons, `&&`, `||`, `!`, `?:`, and list and map literals.
//!
//! Why: the `cel` interpreter converts every bound variable to its own value type and every result back,
//! which is most of the cost of folding an event (~4 us per small expression against ~0.3 us here), and
//! reactors and views evaluate several expressions per event during catch-up.
//!
//! It only ever handles the success path. Anything outside the subset (at compile time), and any error or
//! type mix at run time, returns `None`, and the caller runs the real `cel` program, which gives the
//! canonical result or error message. So the fast path can be incomplete, but never different; a
//! differential test pins that.

use std::borrow::Cow;

use cel::common::ast::{EntryExpr, Expr as Ast, IdedExpr, LiteralValue};
use serde_json::{Map, Number, Value as Json};

/// A compiled expression of the subset.
#[derive(Debug)]
pub enum Node {
    Lit(Json),
    Event,
    /// A field of `meta` (the event's envelope); `meta` as a whole is outside the subset.
    Meta(MetaField),
    /// Any other variable (`state`, `prev`, `doc`), bound as a JSON object.
    Var(String),
    Select(Box<Node>, String),
    Has(Box<Node>, String),
    Size(Box<Node>),
    List(Vec<Node>),
    Map(Vec<(String, Node)>),
    Not(Box<Node>),
    Neg(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Cond(Box<Node>, Box<Node>, Box<Node>),
    Bin(Op, Box<Node>, Box<Node>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaField {
    Aggregate,
    Id,
    Version,
    Seq,
    Type,
    CommandId,
    CorrelationId,
    CausationId,
    Date,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// What the evaluator reads variables from.
pub trait Bindings {
    fn event(&self) -> &Json;
    fn meta(&self, field: MetaField) -> Json;
    /// A variable bound as JSON (an object, in practice).
    fn var(&self, name: &str) -> Option<&Json>;
}

/// Compiles `expr` if it is inside the subset.
pub fn compile(expr: &IdedExpr) -> Option<Node> {
    Some(match &expr.expr {
        Ast::Literal(lit) => Node::Lit(match lit {
            LiteralValue::Boolean(b) => Json::Bool(*b.inner()),
            LiteralValue::Int(i) => Json::from(*i.inner()),
            LiteralValue::Double(d) => Json::Number(Number::from_f64(*d.inner())?),
            LiteralValue::String(s) => Json::String(s.inner().to_string()),
            LiteralValue::Null => Json::Null,
            LiteralValue::Bytes(_) | LiteralValue::UInt(_) => return None,
        }),
        Ast::Ident(name) => match name.as_str() {
            "event" => Node::Event,
            "meta" => return None,
            other => Node::Var(other.to_string()),
        },
        Ast::Select(select) => {
            if let Ast::Ident(name) = &select.operand.expr {
                if name == "meta" {
                    return if select.test { None } else { meta_field(&select.field).map(Node::Meta) };
                }
            }
            let operand = Box::new(compile(&select.operand)?);
            if select.test {
                Node::Has(operand, select.field.clone())
            } else {
                Node::Select(operand, select.field.clone())
            }
        }
        Ast::List(list) if list.optional_indices.is_empty() => {
            Node::List(list.elements.iter().map(compile).collect::<Option<_>>()?)
        }
        Ast::Map(map) => {
            let mut entries = Vec::with_capacity(map.entries.len());
            for entry in &map.entries {
                let EntryExpr::MapEntry(e) = &entry.expr else { return None };
                let Ast::Literal(LiteralValue::String(key)) = &e.key.expr else { return None };
                let key = key.inner().to_string();
                // A repeated key is an error for the interpreter to report.
                if e.optional || entries.iter().any(|(k, _)| *k == key) {
                    return None;
                }
                entries.push((key, compile(&e.value)?));
            }
            Node::Map(entries)
        }
        Ast::Call(call) => {
            let arg = |i: usize| compile(call.args.get(i)?).map(Box::new);
            match (call.func_name.as_str(), &call.target, call.args.len()) {
                ("size", None, 1) => Node::Size(arg(0)?),
                ("size", Some(target), 0) => Node::Size(Box::new(compile(target)?)),
                ("!_", None, 1) => Node::Not(arg(0)?),
                ("-_", None, 1) => Node::Neg(arg(0)?),
                ("_&&_", None, 2) => Node::And(arg(0)?, arg(1)?),
                ("_||_", None, 2) => Node::Or(arg(0)?, arg(1)?),
                ("_?_:_", None, 3) => Node::Cond(arg(0)?, arg(1)?, arg(2)?),
                (name, None, 2) => Node::Bin(binary(name)?, arg(0)?, arg(1)?),
                _ => return None,
            }
        }
        _ => return None,
    })
}

fn meta_field(name: &str) -> Option<MetaField> {
    Some(match name {
        "aggregate" => MetaField::Aggregate,
        "id" => MetaField::Id,
        "version" => MetaField::Version,
        "seq" => MetaField::Seq,
        "type" => MetaField::Type,
        "command_id" => MetaField::CommandId,
        "correlation_id" => MetaField::CorrelationId,
        "causation_id" => MetaField::CausationId,
        "date" => MetaField::Date,
        _ => return None,
    })
}

fn binary(name: &str) -> Option<Op> {
    Some(match name {
        "_+_" => Op::Add,
        "_-_" => Op::Sub,
        "_*_" => Op::Mul,
        "_/_" => Op::Div,
        "_%_" => Op::Rem,
        "_==_" => Op::Eq,
        "_!=_" => Op::Ne,
        "_<_" => Op::Lt,
        "_<=_" => Op::Le,
        "_>_" => Op::Gt,
        "_>=_" => Op::Ge,
        _ => return None,
    })
}

/// Evaluates `node`; `None` hands the expression to the interpreter.
pub fn eval<'a>(node: &'a Node, b: &'a dyn Bindings) -> Option<Cow<'a, Json>> {
    Some(match node {
        Node::Lit(v) => Cow::Borrowed(v),
        Node::Event => Cow::Borrowed(b.event()),
        Node::Meta(field) => Cow::Owned(b.meta(*field)),
        Node::Var(name) => Cow::Borrowed(b.var(name)?),
        Node::Select(operand, field) => select(eval(operand, b)?, field)?,
        Node::Has(operand, field) => match &*eval(operand, b)? {
            Json::Object(map) => Cow::Owned(Json::Bool(map.contains_key(field))),
            _ => return None,
        },
        Node::Size(operand) => Cow::Owned(Json::from(match &*eval(operand, b)? {
            Json::String(s) => s.chars().count() as i64,
            Json::Array(items) => items.len() as i64,
            Json::Object(map) => map.len() as i64,
            _ => return None,
        })),
        Node::List(items) => {
            Cow::Owned(Json::Array(items.iter().map(|i| eval(i, b).map(Cow::into_owned)).collect::<Option<_>>()?))
        }
        Node::Map(entries) => {
            let mut map = Map::new();
            for (k, v) in entries {
                map.insert(k.clone(), eval(v, b)?.into_owned());
            }
            Cow::Owned(Json::Object(map))
        }
        Node::Not(operand) => Cow::Owned(Json::Bool(!eval(operand, b)?.as_bool()?)),
        Node::Neg(operand) => Cow::Owned(match &*eval(operand, b)? {
            Json::Number(n) => match int(n) {
                Some(i) => Json::from(i.checked_neg()?),
                None => Json::Number(Number::from_f64(-double(n)?)?),
            },
            _ => return None,
        }),
        // An error on one side is settled by the interpreter (CEL's `&&` and `||` absorb some errors).
        Node::And(l, r) => Cow::Owned(Json::Bool(eval(l, b)?.as_bool()? && eval(r, b)?.as_bool()?)),
        Node::Or(l, r) => Cow::Owned(Json::Bool(eval(l, b)?.as_bool()? || eval(r, b)?.as_bool()?)),
        Node::Cond(c, t, e) => {
            if eval(c, b)?.as_bool()? {
                eval(t, b)?
            } else {
                eval(e, b)?
            }
        }
        Node::Bin(op, l, r) => {
            let (l, r) = (eval(l, b)?, eval(r, b)?);
            Cow::Owned(binary_op(*op, &l, &r)?)
        }
    })
}

fn select<'a>(value: Cow<'a, Json>, field: &str) -> Option<Cow<'a, Json>> {
    match value {
        Cow::Borrowed(Json::Object(map)) => map.get(field).map(Cow::Borrowed),
        Cow::Owned(Json::Object(mut map)) => map.remove(field).map(Cow::Owned),
        _ => None,
    }
}

fn int(n: &Number) -> Option<i64> {
    n.as_i64()
}

/// A JSON number the interpreter sees as a double (not an int, not a uint).
fn double(n: &Number) -> Option<f64> {
    if n.is_f64() {
        n.as_f64()
    } else {
        None
    }
}

fn binary_op(op: Op, l: &Json, r: &Json) -> Option<Json> {
    use Json::{Bool, Null, Number as N, String as S};
    Some(match (l, r) {
        (N(a), N(b)) => match (int(a), int(b)) {
            (Some(a), Some(b)) => match op {
                Op::Add => Json::from(a.checked_add(b)?),
                Op::Sub => Json::from(a.checked_sub(b)?),
                Op::Mul => Json::from(a.checked_mul(b)?),
                Op::Div => Json::from(a.checked_div(b)?),
                Op::Rem => Json::from(a.checked_rem(b)?),
                cmp => Bool(compare(cmp, a.cmp(&b))),
            },
            _ => {
                let (a, b) = (double(a)?, double(b)?);
                match op {
                    Op::Add => N(Number::from_f64(a + b)?),
                    Op::Sub => N(Number::from_f64(a - b)?),
                    Op::Mul => N(Number::from_f64(a * b)?),
                    Op::Div => N(Number::from_f64(a / b)?),
                    Op::Rem => return None,
                    cmp => Bool(compare(cmp, a.partial_cmp(&b)?)),
                }
            }
        },
        (S(a), S(b)) => match op {
            Op::Add => S(format!("{a}{b}")),
            Op::Sub | Op::Mul | Op::Div | Op::Rem => return None,
            cmp => Bool(compare(cmp, a.cmp(b))),
        },
        (Bool(a), Bool(b)) => match op {
            Op::Eq => Bool(a == b),
            Op::Ne => Bool(a != b),
            _ => return None,
        },
        (Null, Null) => match op {
            Op::Eq => Bool(true),
            Op::Ne => Bool(false),
            _ => return None,
        },
        _ => return None,
    })
}

fn compare(op: Op, ordering: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    match op {
        Op::Eq => ordering == Equal,
        Op::Ne => ordering != Equal,
        Op::Lt => ordering == Less,
        Op::Le => ordering != Greater,
        Op::Gt => ordering == Greater,
        Op::Ge => ordering != Less,
        _ => false,
    }
}
