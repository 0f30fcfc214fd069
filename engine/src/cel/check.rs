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

/// The fields `expr` selects of the variable `var` where it is not rebound by a macro (`cmd.qty`, and
/// `has(cmd.qty)`), each once, in order of appearance.
pub fn selected_fields(expr: &IdedExpr, var: &str) -> Vec<String> {
    let mut fields = Vec::new();
    collect_selects(expr, var, &mut fields);
    fields
}

fn collect_selects(expr: &IdedExpr, var: &str, out: &mut Vec<String>) {
    match &expr.expr {
        Ast::Select(select) if matches!(&select.operand.expr, Ast::Ident(name) if name == var) => {
            if !out.contains(&select.field) {
                out.push(select.field.clone());
            }
        }
        Ast::Comprehension(c) => {
            collect_selects(&c.iter_range, var, out);
            collect_selects(&c.accu_init, var, out);
            if c.iter_var != var && c.iter_var2.as_deref() != Some(var) && c.accu_var != var {
                for e in [&c.loop_cond, &c.loop_step, &c.result] {
                    collect_selects(e, var, out);
                }
            }
        }
        _ => children(expr).into_iter().for_each(|child| collect_selects(child, var, out)),
    }
}

/// The fields of `var` that `expr` reads, when it reads `var` only as `var.<field>` (or `has(var.<field>)`);
/// `None` when it uses `var` whole: as a value, a call's target (`var.exists(k, ...)`, `var.size()`), or a
/// comprehension's range. A macro that rebinds `var` hides the outer one inside it.
pub fn field_reads(expr: &IdedExpr, var: &str) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    reads(expr, var, &mut fields).then_some(fields)
}

fn reads(expr: &IdedExpr, var: &str, out: &mut Vec<String>) -> bool {
    match &expr.expr {
        Ast::Ident(name) => name != var,
        Ast::Select(select) if matches!(&select.operand.expr, Ast::Ident(name) if name == var) => {
            out.push(select.field.clone());
            true
        }
        Ast::Comprehension(c) => {
            let shadowed = c.iter_var == var || c.iter_var2.as_deref() == Some(var) || c.accu_var == var;
            reads(&c.iter_range, var, out)
                && reads(&c.accu_init, var, out)
                && (shadowed || [&c.loop_cond, &c.loop_step, &c.result].into_iter().all(|e| reads(e, var, out)))
        }
        _ => children(expr).into_iter().all(|child| reads(child, var, out)),
    }
}

/// The keys of `expr` when it is a map literal whose keys are all string literals (an `apply` that
/// always sets the same keys), or a conditional between such maps (the union of their keys); `None`
/// otherwise.
pub fn literal_map_keys(expr: &IdedExpr) -> Option<Vec<String>> {
    if let Ast::Call(CallExpr { func_name, args, target: None }) = &expr.expr {
        if func_name == "_?_:_" && args.len() == 3 {
            let mut keys = literal_map_keys(&args[1])?;
            keys.extend(literal_map_keys(&args[2])?);
            return Some(keys);
        }
    }
    let Ast::Map(map) = &expr.expr else { return None };
    map.entries
        .iter()
        .map(|entry| match &entry.expr {
            EntryExpr::MapEntry(m) => match &m.key.expr {
                Ast::Literal(LiteralValue::String(s)) => Some(s.inner().to_string()),
                _ => None,
            },
            EntryExpr::StructField(_) => None,
        })
        .collect()
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
    fn selected_fields_skip_macro_variables_of_the_same_name() {
        let e = parse("cmd.qty > 0 && has(cmd.note) && cmd.items.all(cmd, cmd.x > 0) && cmd.qty < 9");
        assert_eq!(selected_fields(&e, "cmd"), ["qty", "note", "items"]);
        assert_eq!(literal_map_keys(&parse("{'a': 1, 'b': state.b}")), Some(vec!["a".into(), "b".into()]));
        assert_eq!(literal_map_keys(&parse("x ? {'a': 1} : {'b': 2}")), Some(vec!["a".into(), "b".into()]));
        assert_eq!(literal_map_keys(&parse("x ? {'a': 1} : y")), None);
    }

    #[test]
    fn field_reads_see_whole_uses_through_macros_and_calls() {
        let reads = |s: &str| field_reads(&parse(s), "doc");
        assert_eq!(reads("doc.a + doc.b > has(doc.c)"), Some(vec!["a".into(), "b".into(), "c".into()]));
        assert_eq!(reads("doc.exists(k, k == 'balance')"), None);
        assert_eq!(reads("doc.size() > 0"), None);
        assert_eq!(reads("size(doc)"), None);
        assert_eq!(reads("doc.items.map(x, x * doc.k)"), Some(vec!["items".into(), "k".into()]));
        assert_eq!(reads("[1].all(doc, doc > 0) && doc.a > 0"), Some(vec!["a".into()]));
    }

    #[test]
    fn literal_patterns_are_found() {
        let p = parse("doc.name.matches('^a+$') || matches(doc.x, '[')");
        let mut found = literal_patterns(&p);
        found.sort();
        assert_eq!(found, ["[", "^a+$"]);
    }
}
