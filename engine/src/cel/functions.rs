//! Functions eddy adds to CEL for changing nested state, which the language cannot do by itself (it has no
//! map update): `apply` and view updates merge only the top-level keys they return, so a nested map or
//! list is changed by returning its new value built with these.
//!
//! - `m.with(k, v)`: `m` with key `k` set to `v` (added or replaced);
//! - `m.without(k)`: `m` without key `k` (no error when absent); `m.without([k1, k2])` removes several;
//! - `xs.without(x)`: the list `xs` without any element equal to `x`;
//! - `m.merge(patch)`: RFC 7396 JSON merge patch: keys of `patch` set recursively into `m`, a `null`
//!   deletes the key; a patch that is not a map replaces the value.
//!
//! Each copies its receiver, so each call is charged to the evaluation's cost budget by the receiver's
//! size: a `with` inside a loop over a big map cannot run unbounded.

use std::collections::HashMap;
use std::sync::Arc;

use cel::extractors::{Arguments, This};
use cel::objects::{Key, Map};
use cel::{ExecutionError, FunctionContext, Value};

use super::budget;

/// Names of the functions, for registering and for the config's checks.
pub const NAMES: &[&str] = &["with", "without", "merge"];

/// Registers the functions on the root context.
pub fn register(root: &mut cel::Context<'static, 'static>) {
    root.add_function("with", with).expect("`with` is no stdlib overload");
    root.add_function("without", without).expect("`without` is no stdlib overload");
    root.add_function("merge", merge).expect("`merge` is no stdlib overload");
}

/// The arguments after the receiver: `m.f(a)` and `f(m, a)` both give `[a]`.
fn rest(ftx: &FunctionContext, args: &Arc<Vec<Value>>) -> Vec<Value> {
    let skip = usize::from(ftx.this.is_none());
    args.iter().skip(skip).cloned().collect()
}

fn key_of(ftx: &FunctionContext, value: &Value) -> Result<Key, ExecutionError> {
    Ok(match value {
        Value::String(s) => Key::String(s.clone()),
        Value::Int(i) => Key::Int(*i),
        Value::UInt(u) => Key::Uint(*u),
        Value::Bool(b) => Key::Bool(*b),
        other => return Err(ftx.error(format!("a map key cannot be a {}", other.type_of()))),
    })
}

/// Charges the budget with copying `n` entries.
fn charge(ftx: &FunctionContext, n: usize) -> Result<(), ExecutionError> {
    if budget::charge_steps(n.max(1) as u64) {
        Ok(())
    } else {
        Err(ftx.error(format!("cost budget of {} iterations exhausted", budget::MAX_STEPS)))
    }
}

fn map_of(map: HashMap<Key, Value>) -> Value {
    Value::Map(Map { map: Arc::new(map) })
}

/// `m.with(k, v)`.
pub fn with(
    ftx: &FunctionContext,
    This(this): This<Value>,
    Arguments(args): Arguments,
) -> Result<Value, ExecutionError> {
    let Value::Map(m) = this else {
        return Err(ftx.error(format!("`with` needs a map, got {}", this.type_of())));
    };
    let [k, v] = rest(ftx, &args).try_into().map_err(|_| ftx.error("`with` takes a key and a value"))?;
    charge(ftx, m.map.len())?;
    let mut out = (*m.map).clone();
    out.insert(key_of(ftx, &k)?, v);
    Ok(map_of(out))
}

/// `m.without(k)`, `m.without([k, ...])`, `xs.without(x)`.
pub fn without(
    ftx: &FunctionContext,
    This(this): This<Value>,
    Arguments(args): Arguments,
) -> Result<Value, ExecutionError> {
    let [what] = rest(ftx, &args).try_into().map_err(|_| ftx.error("`without` takes one argument"))?;
    match this {
        Value::Map(m) => {
            charge(ftx, m.map.len())?;
            let mut out = (*m.map).clone();
            let keys = match &what {
                Value::List(keys) => keys.to_vec(),
                one => vec![one.clone()],
            };
            for k in &keys {
                out.remove(&key_of(ftx, k)?);
            }
            Ok(map_of(out))
        }
        Value::List(xs) => {
            charge(ftx, xs.len())?;
            Ok(Value::List(Arc::new(xs.iter().filter(|x| **x != what).cloned().collect())))
        }
        other => Err(ftx.error(format!("`without` needs a map or a list, got {}", other.type_of()))),
    }
}

/// `m.merge(patch)`.
pub fn merge(
    ftx: &FunctionContext,
    This(this): This<Value>,
    Arguments(args): Arguments,
) -> Result<Value, ExecutionError> {
    let [patch] = rest(ftx, &args).try_into().map_err(|_| ftx.error("`merge` takes one map"))?;
    merge_patch(ftx, this, patch)
}

/// RFC 7396: a map patch merges key by key (null deletes), anything else replaces.
fn merge_patch(ftx: &FunctionContext, target: Value, patch: Value) -> Result<Value, ExecutionError> {
    let Value::Map(patch) = patch else {
        return Ok(patch);
    };
    let mut out = match target {
        Value::Map(m) => {
            charge(ftx, m.map.len() + patch.map.len())?;
            (*m.map).clone()
        }
        _ => HashMap::new(),
    };
    for (k, v) in patch.map.iter() {
        if matches!(v, Value::Null) {
            out.remove(k);
        } else {
            let current = out.remove(k).unwrap_or(Value::Null);
            out.insert(k.clone(), merge_patch(ftx, current, v.clone())?);
        }
    }
    Ok(map_of(out))
}
