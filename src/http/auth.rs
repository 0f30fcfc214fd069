//! Who may change things over HTTP: one place for token checks. With `[http] token` set, a request that
//! changes something (the console's buttons) must present it, as `Authorization: Bearer <token>` or as the
//! form field `token`; reads stay open to whoever can reach the listener.

use axum::http::HeaderMap;

use super::AppState;

/// What a request may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Operator actions: retry, rebuild.
    Admin,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("this needs the operator token ([http] token): none was given")]
    Missing,
    #[error("the token given is not the operator token")]
    Wrong,
}

/// Checks `scope` against the configured token; with none configured, everything is allowed.
pub fn check(state: &AppState, headers: &HeaderMap, form_token: Option<&str>, _scope: Scope) -> Result<(), Denied> {
    let Some(expected) = state.config.http.token.as_deref().filter(|t| !t.is_empty()) else { return Ok(()) };
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let given = bearer.or(form_token).filter(|t| !t.is_empty()).ok_or(Denied::Missing)?;
    if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(Denied::Wrong)
    }
}

/// Compares without stopping at the first difference, so timing does not tell how much of a guess is right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn equal_only_when_equal() {
        assert!(super::constant_time_eq(b"abc", b"abc"));
        assert!(!super::constant_time_eq(b"abc", b"abd"));
        assert!(!super::constant_time_eq(b"abc", b"abcd"));
    }
}
