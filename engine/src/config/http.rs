//! `[http]`: the one HTTP listener for health, metrics, the console and the HTTP API (served by the binary's
//! `src/http/`; the engine only holds the settings).

use serde::{Deserialize, Serialize};

use super::{ConfigErrors, Source};

/// The default listener: loopback only, so a fresh engine shows its console and metrics to its own host.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3339";

/// The HTTP listener.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// `host:port` to listen on (`127.0.0.1:3339` by default; port 0 picks a free one). Empty turns HTTP
    /// off. Overridden by `EDDY_HTTP__LISTEN`.
    pub listen: String,
    /// The operator token: when set, the console's buttons (retry, rebuild) need it. Never logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { listen: DEFAULT_LISTEN.into(), token: None }
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
