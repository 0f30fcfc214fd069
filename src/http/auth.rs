//! Who may use the HTTP API: `[http] tokens` as bearer tokens with scopes (`commands`, `queries`, `admin`);
//! with no tokens configured, only clients on loopback. Shared by the API and the console's actions, which
//! also take the operator token (`[http] token`), as a bearer token or the form field the buttons send.

use std::net::SocketAddr;

use axum::http::HeaderMap;
use eddy_engine::api::Refusal;
use eddy_engine::config::HttpConfig;

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Commands,
    Queries,
    Admin,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Commands => "commands",
            Scope::Queries => "queries",
            Scope::Admin => "admin",
        }
    }
}

/// Allows the request, or says why not: 401 without a known token, 403 without the scope (or, without
/// tokens configured, off loopback).
pub fn authorize(
    http: &HttpConfig,
    headers: &HeaderMap,
    peer: SocketAddr,
    scope: Scope,
) -> Result<(), (Refusal, String)> {
    if http.tokens.is_empty() {
        if peer.ip().is_loopback() {
            return Ok(());
        }
        let message = "no [http] tokens are configured, so the API answers only clients on loopback";
        return Err((Refusal::Forbidden, message.into()));
    }
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let Some(presented) = presented else {
        return Err((Refusal::Unauthorized, "send `Authorization: Bearer <token>`".into()));
    };
    // Every token is compared, each in constant time, so timing tells nothing about which one nearly matched.
    let found = http.tokens.values().fold(None, |found, t| {
        if constant_time_eq(t.token.as_bytes(), presented.as_bytes()) {
            Some(t)
        } else {
            found
        }
    });
    match found {
        None => Err((Refusal::Unauthorized, "unknown token".into())),
        Some(t) if t.scopes.iter().any(|s| s == scope.name()) => Ok(()),
        Some(_) => Err((Refusal::Forbidden, format!("the token lacks the `{}` scope", scope.name()))),
    }
}

/// Why a console action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("this needs the operator token ([http] token) or a token with the admin scope: none was given")]
    Missing,
    #[error("the token given is neither the operator token nor one with the admin scope")]
    Wrong,
}

/// Checks a console action (`Scope::Admin`): with no token configured at all, allowed (the listener is on
/// loopback unless configured otherwise); otherwise the operator token, or an API token with the scope, must
/// come as `Authorization: Bearer` or as the form's `token` field.
pub fn check(http: &HttpConfig, headers: &HeaderMap, form_token: Option<&str>, scope: Scope) -> Result<(), Denied> {
    let operator = http.token.as_deref().filter(|t| !t.is_empty());
    if operator.is_none() && http.tokens.is_empty() {
        return Ok(());
    }
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let given = bearer.or(form_token).filter(|t| !t.is_empty()).ok_or(Denied::Missing)?;
    let is_operator = operator.is_some_and(|o| constant_time_eq(given.as_bytes(), o.as_bytes()));
    let scoped = http
        .tokens
        .values()
        .filter(|t| constant_time_eq(t.token.as_bytes(), given.as_bytes()))
        .any(|t| t.scopes.iter().any(|s| s == scope.name()));
    if is_operator || scoped {
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
    use super::*;
    use eddy_engine::config::HttpToken;

    fn config() -> HttpConfig {
        let mut http = HttpConfig::default();
        let token = |t: &str, scopes: &[&str]| HttpToken {
            token: t.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        };
        http.tokens.insert("svc".into(), token("service-token-0123456789", &["commands", "queries"]));
        http.tokens.insert("ro".into(), token("reader-token-0123456789", &["queries"]));
        http
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", format!("Bearer {token}").parse().unwrap());
        h
    }

    #[test]
    fn tokens_and_scopes() {
        let far: SocketAddr = "198.51.100.3:5000".parse().unwrap();
        let http = config();
        assert_eq!(authorize(&http, &bearer("service-token-0123456789"), far, Scope::Commands), Ok(()));
        let refused = |h: &HeaderMap, scope| authorize(&http, h, far, scope).unwrap_err().0;
        assert_eq!(refused(&bearer("reader-token-0123456789"), Scope::Commands), Refusal::Forbidden);
        assert_eq!(refused(&bearer("service-token-012345678"), Scope::Queries), Refusal::Unauthorized);
        assert_eq!(refused(&HeaderMap::new(), Scope::Queries), Refusal::Unauthorized);
        assert_eq!(refused(&bearer("service-token-0123456789"), Scope::Admin), Refusal::Forbidden);
    }

    #[test]
    fn without_tokens_only_loopback() {
        let http = HttpConfig::default();
        for ok in ["127.0.0.1:1", "[::1]:1"] {
            assert_eq!(authorize(&http, &HeaderMap::new(), ok.parse().unwrap(), Scope::Admin), Ok(()));
        }
        let far = "203.0.113.9:1".parse().unwrap();
        assert_eq!(authorize(&http, &HeaderMap::new(), far, Scope::Queries).unwrap_err().0, Refusal::Forbidden);
    }
}
