//! What a parsed expression is checked for before eddy accepts it: its depth (the interpreter and the
//! direct evaluator recurse once per level, so a deep expression would overflow a worker's stack), the
//! variables it reads from outside (comprehension macros bind their own), and the regular expressions
//! it spells as literals (compiled at load, so a bad one is a config error, not a runtime one).
//!
//! It also rewrites the program for the cost budget: the range of every comprehension goes through
//! [`RANGE_FN`], which charges the budget with the range's size before the loop runs.

use std::collections::BTreeSet;

use cel::common::ast::{CallExpr, EntryExpr, Expr as Ast, IdedExpr, LiteralValue};

/// The deepest expression eddy accepts. Deep enough for hand-written rules (`a + b + ...` with thirty
/// terms, or ten levels of nested maps), shallow enough that the interpreter, which takes ~20 KiB of stack
/// per level in a debug build, stays inside half of a 2 MiB worker stack.
pub const MAX_DEPTH: usize = 40;

/// The longest expression source eddy accepts, in bytes. Bounds the parser's own recursion and time,
/// before the depth of the result can be checked.
pub const MAX_SOURCE_LEN: usize = 16 * 1024;

/// The function every comprehension's range is wrapped in (see [`super::budget`]). Not writable in
/// CEL source: identifiers cannot start with `@`.
pub const RANGE_FN: &str = "@eddy_range";

/// The depth of `expr`: 1 for a leaf. Walks with its own stack, so any depth is measured safely.
pub fn depth(expr: &IdedExpr) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(expr, 1usize)];
    while let Some((e, d)) = stack.pop() {
        deepest = deepest.max(d);
        for child in children(e) {
            stack.push((child, d + 1));
        }
    }
    deepest
}

/// The direct sub-expressions of `expr`.
fn children(expr: &IdedExpr) -> Vec<&IdedExpr> {
    match &expr.expr {
        Ast::Call(call) => call.target.as_deref().into_iter().chain(&call.args).collect(),
        Ast::Comprehension(c) => vec![&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result],
        Ast::List(list) => list.elements.iter().collect(),
        Ast::Map(map) => map.entries.iter().flat_map(|e| entry_children(&e.expr)).collect(),
        Ast::Struct(s) => s.entries.iter().flat_map(|e| entry_children(&e.expr)).collect(),
        Ast::Select(select) => vec![&select.operand],
        Ast::Ident(_) | Ast::Literal(_) | Ast::Unspecified => Vec::new(),
    }
}

fn entry_children(entry: &EntryExpr) -> Vec<&IdedExpr> {
    match entry {
        EntryExpr::StructField(f) => vec![&f.value],
        EntryExpr::MapEntry(m) => vec![&m.key, &m.value],
    }
}

/// The variables `expr` reads that it does not bind itself. A comprehension (`all`, `exists`,
/// `exists_one`, `map`, `filter`) binds its iteration variables and accumulator in its condition, step
/// and result, not in its range or initial value. Call only on an expression within [`MAX_DEPTH`].
pub fn free_variables(expr: &IdedExpr) -> BTreeSet<String> {
    let mut free = BTreeSet::new();
    collect_free(expr, &mut Vec::new(), &mut free);
    free
}

fn collect_free<'a>(expr: &'a IdedExpr, bound: &mut Vec<&'a str>, free: &mut BTreeSet<String>) {
    match &expr.expr {
        Ast::Ident(name) => {
            if !bound.contains(&name.as_str()) {
                free.insert(name.clone());
            }
        }
        Ast::Comprehension(c) => {
            collect_free(&c.iter_range, bound, free);
            collect_free(&c.accu_init, bound, free);
            let before = bound.len();
            bound.push(&c.iter_var);
            bound.extend(c.iter_var2.as_deref());
            bound.push(&c.accu_var);
            for e in [&c.loop_cond, &c.loop_step, &c.result] {
                collect_free(e, bound, free);
            }
            bound.truncate(before);
        }
        _ => {
            for child in children(expr) {
                collect_free(child, bound, free);
            }
        }
    }
}

/// The regular expressions `expr` passes as literals to `matches`, for checking at load.
pub fn literal_patterns(expr: &IdedExpr) -> Vec<String> {
    let mut patterns = Vec::new();
    let mut stack = vec![expr];
    while let Some(e) = stack.pop() {
        if let Ast::Call(CallExpr { func_name, args, .. }) = &e.expr {
            if func_name == "matches" {
                if let Some(Ast::Literal(LiteralValue::String(s))) = args.last().map(|a| &a.expr) {
                    patterns.push(s.inner().to_string());
                }
            }
        }
        stack.extend(children(e));
    }
    patterns
}

/// `expr` with the range of every comprehension wrapped in [`RANGE_FN`]. Only the range changes, so the
/// interpreter still recognises the shapes of `map`, `filter`, `all` and `exists` it optimises.
pub fn meter(expr: &IdedExpr) -> IdedExpr {
    let mut out = expr.clone();
    meter_in_place(&mut out);
    out
}

fn meter_in_place(expr: &mut IdedExpr) {
    match &mut expr.expr {
        Ast::Comprehension(c) => {
            let range = std::mem::take(&mut c.iter_range);
            c.iter_range = IdedExpr {
                id: range.id,
                expr: Ast::Call(CallExpr { func_name: RANGE_FN.to_string(), target: None, args: vec![range] }),
            };
            let CallExpr { args, .. } = match &mut c.iter_range.expr {
                Ast::Call(call) => call,
                _ => unreachable!("just built"),
            };
            for e in args.iter_mut().chain([&mut c.accu_init, &mut c.loop_cond, &mut c.loop_step, &mut c.result]) {
                meter_in_place(e);
            }
        }
        Ast::Call(call) => {
            for e in call.target.iter_mut().map(|t| &mut **t).chain(call.args.iter_mut()) {
                meter_in_place(e);
            }
        }
        Ast::List(list) => list.elements.iter_mut().for_each(meter_in_place),
        Ast::Map(map) => map.entries.iter_mut().for_each(|e| entry_in_place(&mut e.expr)),
        Ast::Struct(s) => s.entries.iter_mut().for_each(|e| entry_in_place(&mut e.expr)),
        Ast::Select(select) => meter_in_place(&mut select.operand),
        Ast::Ident(_) | Ast::Literal(_) | Ast::Unspecified => {}
    }
}

fn entry_in_place(entry: &mut EntryExpr) {
    match entry {
        EntryExpr::StructField(f) => meter_in_place(&mut f.value),
        EntryExpr::MapEntry(m) => {
            meter_in_place(&mut m.key);
            meter_in_place(&mut m.value);
        }
    }
}

/// Whether `expr` contains a comprehension (only those need metering).
pub fn has_comprehension(expr: &IdedExpr) -> bool {
    let mut stack = vec![expr];
    while let Some(e) = stack.pop() {
        if matches!(e.expr, Ast::Comprehension(_)) {
            return true;
        }
        stack.extend(children(e));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(source: &str) -> IdedExpr {
        cel::parser::Parser::new().parse(source).unwrap()
    }

    #[test]
    fn comprehension_variables_are_bound_only_inside_their_macro() {
        let free = |s: &str| free_variables(&parse(s)).into_iter().collect::<Vec<_>>();
        assert_eq!(free("state.holds.filter(h, h != event.member)"), ["event", "state"]);
        assert_eq!(free("cmd.items.all(i, i > 0)"), ["cmd"]);
        assert_eq!(free("xs.all(x, y > 0)"), ["xs", "y"]);
        assert_eq!(free("xs.map(x, x * 2) + [x]"), ["x", "xs"]);
        assert_eq!(free("xs.exists(x, ys.exists_one(y, x == y))"), ["xs", "ys"]);
        assert_eq!(free("m.map(k, m[k])"), ["m"]);
    }

    #[test]
    fn depth_counts_nesting_of_any_kind() {
        assert_eq!(depth(&parse("a")), 1);
        assert_eq!(depth(&parse("a.b.c")), 3);
        let chain = format!("a{}", " + 1".repeat(500));
        assert_eq!(depth(&parse(&chain)), 501);
        assert_eq!(depth(&parse("xs.all(x, x > 0)")), 4);
    }

    #[test]
    fn literal_patterns_are_found() {
        let p = parse("doc.name.matches('^a+$') || matches(doc.x, '[')");
        let mut found = literal_patterns(&p);
        found.sort();
        assert_eq!(found, ["[", "^a+$"]);
    }
}
