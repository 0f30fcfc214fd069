//! `[http]`: the one HTTP listener for health, metrics, the console and the HTTP API (served by the binary's
//! `src/http/`; the engine only holds the settings).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ConfigErrors, Source};

/// The default listener: loopback only, so a fresh engine shows its console and metrics to its own host.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3339";

/// The HTTP listener.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// `host:port` to listen on (`127.0.0.1:3339` by default; port 0 picks a free one). Empty turns HTTP
    /// off. Overridden by `EDDY_HTTP__LISTEN`.
    pub listen: String,
    /// The operator token: when set, the console's buttons (retry, rebuild) need it (or a `tokens` entry with
    /// the `admin` scope). Never logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Bearer tokens of the HTTP API, by name (`[http.tokens.<name>]`, or `EDDY_HTTP__TOKENS__<NAME>__TOKEN`).
    /// Without any, the API answers only clients on loopback.
    pub tokens: BTreeMap<String, HttpToken>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { listen: DEFAULT_LISTEN.into(), token: None, tokens: BTreeMap::new() }
    }
}

/// The scopes a token may hold.
pub const SCOPES: &[&str] = &["commands", "queries", "admin"];
/// The shortest token accepted: a guessable one is no protection.
pub const MIN_TOKEN_LEN: usize = 16;

/// One API token.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpToken {
    /// The secret a client sends as `Authorization: Bearer <token>` (at least 16 characters).
    pub token: String,
    /// What it may do: `commands` (send commands), `queries` (views, aggregates, events), `admin` (the
    /// console's actions).
    pub scopes: Vec<String>,
}

/// Never prints the secret (configs are logged and shown in errors).
impl std::fmt::Debug for HttpToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpToken").field("token", &"<hidden>").field("scopes", &self.scopes).finish()
    }
}

/// Never prints the operator token (configs are logged and shown in errors).
impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .field("tokens", &self.tokens)
            .finish()
    }
}

impl HttpConfig {
    /// Whether HTTP is served at all.
    pub fn enabled(&self) -> bool {
        !self.listen.trim().is_empty()
    }
}

pub(super) fn validate(http: &HttpConfig, source: &Source, errors: &mut ConfigErrors) {
    if http.enabled() && !is_host_port(&http.listen) {
        errors.push(
            source.file_of("http.listen"),
            "http.listen",
            "must be host:port (e.g. 127.0.0.1:3339, [::1]:3339, 0.0.0.0:3339), or empty to turn HTTP off",
        );
    }
    if let Some(token) = &http.token {
        if token.chars().count() < MIN_TOKEN_LEN || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            let message = format!("at least {MIN_TOKEN_LEN} characters, without spaces");
            errors.push(source.file_of("http.token"), "http.token", message);
        }
    }
    for (name, t) in &http.tokens {
        let key = format!("http.tokens.{name}");
        if t.token.chars().count() < MIN_TOKEN_LEN || t.token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            let message = format!("at least {MIN_TOKEN_LEN} characters, without spaces");
            errors.push(source.file_of(&format!("{key}.token")), format!("{key}.token"), message);
        }
        if http.tokens.iter().any(|(other, o)| other < name && o.token == t.token) {
            errors.push(source.file_of(&format!("{key}.token")), format!("{key}.token"), "the same token as another");
        }
        for (i, scope) in t.scopes.iter().enumerate().filter(|(_, s)| !SCOPES.contains(&s.as_str())) {
            let message = format!("unknown scope `{scope}` (one of: {})", SCOPES.join(", "));
            errors.push(source.file_of(&format!("{key}.scopes")), format!("{key}.scopes[{i}]"), message);
        }
    }
}

/// `host:port` with a non-empty host and a port that is a number.
fn is_host_port(listen: &str) -> bool {
    match listen.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && !host.contains(char::is_whitespace) && port.parse::<u16>().is_ok(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::is_host_port;

    #[test]
    fn listen_addresses() {
        for ok in ["127.0.0.1:3339", "0.0.0.0:0", "[::1]:80", "localhost:8080"] {
            assert!(is_host_port(ok), "{ok}");
        }
        for bad in ["3339", ":3339", "127.0.0.1", "127.0.0.1:http", "127.0.0.1:70000", "a b:1"] {
            assert!(!is_host_port(bad), "{bad}");
        }
    }
}
