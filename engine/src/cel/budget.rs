//! The cost budget of an evaluation, and eddy's own `matches`.
//!
//! CEL without loops is linear in its input, so the only way one expression can take long is a
//! comprehension (`all`, `exists`, `map`, `filter`, nested: `xs.all(x, ys.exists(y, ...))`). Every
//! comprehension's range passes through [`range`] (see `check::meter`), which charges the budget with the
//! range's size before the loop runs: the charge is an upper bound of the iterations, and nested loops
//! are charged once per outer iteration, so the total is the work done. An evaluation that overdraws it
//! fails with [`super::Error::Budget`].
//!
//! `matches` is the stdlib's, except that a pattern is compiled once (a small process-wide cache keyed
//! by the pattern) and with a size limit, instead of once per call.

use std::cell::Cell;
use std::num::NonZeroUsize;
use std::sync::{Arc, LazyLock, Mutex};

use cel::common::value::CowVal;
use cel::{ExecutionError, FunctionContext};

/// Iterations one evaluation may run. An `all` over a 10,000-element list fits many times; an O(n^2)
/// rule over 8,000 elements (64 million steps, tens of seconds) does not.
pub const MAX_STEPS: u64 = 1_000_000;

/// The compiled size a regex may take (the `regex` crate's own bound on its automata).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

thread_local! {
    static REMAINING: Cell<u64> = const { Cell::new(MAX_STEPS) };
    static EXHAUSTED: Cell<bool> = const { Cell::new(false) };
}

/// Starts the budget of one evaluation on this thread.
pub fn reset() {
    REMAINING.with(|r| r.set(MAX_STEPS));
    EXHAUSTED.with(|e| e.set(false));
}

/// Whether the evaluation that just ran on this thread overdrew its budget.
pub fn exhausted() -> bool {
    EXHAUSTED.with(Cell::get)
}

/// Charges `steps` to this thread's evaluation; false once the budget is overdrawn.
pub fn charge_steps(steps: u64) -> bool {
    charge(steps)
}

fn charge(steps: u64) -> bool {
    REMAINING.with(|r| match r.get().checked_sub(steps) {
        Some(left) => {
            r.set(left);
            true
        }
        None => {
            EXHAUSTED.with(|e| e.set(true));
            false
        }
    })
}

/// A function as the interpreter stores it (the crate does not export its alias).
pub type Function =
    Box<dyn for<'c, 'v> Fn(&mut FunctionContext<'c, 'v>) -> Result<CowVal<'c, 'v>, ExecutionError> + Send + Sync>;

/// The range of a comprehension: charged with its size, passed through unchanged.
pub fn range<'c, 'v>(ftx: &mut FunctionContext<'c, 'v>) -> Result<CowVal<'c, 'v>, ExecutionError> {
    let Some(range) = ftx.args.first().cloned() else {
        return Err(ftx.error("expected one argument"));
    };
    let size = range.as_sizer().map(|s| *s.size().inner()).unwrap_or(0).max(1);
    if !charge(size as u64) {
        return Err(ftx.error(format!("cost budget of {MAX_STEPS} iterations exhausted")));
    }
    Ok(range)
}

static PATTERNS: LazyLock<Mutex<lru::LruCache<String, Arc<regex::Regex>>>> =
    LazyLock::new(|| Mutex::new(lru::LruCache::new(NonZeroUsize::new(256).expect("non-zero"))));

/// Compiles `pattern` once; later calls with the same pattern share it.
pub fn regex(pattern: &str) -> Result<Arc<regex::Regex>, String> {
    if let Some(re) = PATTERNS.lock().unwrap_or_else(|p| p.into_inner()).get(pattern) {
        return Ok(re.clone());
    }
    let re = regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map(Arc::new)
        .map_err(|e| format!("`{pattern}` is not a valid regex: {}", one_line(&e.to_string())))?;
    PATTERNS.lock().unwrap_or_else(|p| p.into_inner()).put(pattern.to_string(), re.clone());
    Ok(re)
}

/// The regex crate's messages draw a caret under the pattern over several lines.
fn one_line(message: &str) -> String {
    message.lines().map(str::trim).filter(|l| !l.is_empty() && *l != "^").collect::<Vec<_>>().join(" ")
}

/// `s.matches(re)` and `matches(s, re)`.
pub fn matches(
    ftx: &FunctionContext<'_, '_>,
    cel::extractors::This(this): cel::extractors::This<Arc<String>>,
    pattern: Arc<String>,
) -> Result<bool, ExecutionError> {
    let re = regex(&pattern).map_err(|m| ftx.error(m))?;
    Ok(re.is_match(&this))
}
