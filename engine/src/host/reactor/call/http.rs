//! A call by HTTP, with reqwest (rustls, no OpenSSL): `Idempotency-Key` carries the effect id. A 2xx reply
//! is the reply; 408, 429 and 5xx are retried; any other status is the service's final answer.

use std::sync::OnceLock;
use std::time::Duration;

use reqwest::{Client, Method, Response, Url};
use serde_json::Value as Json;

use super::super::effects::{EFFECT_ID_HEADER, REACTOR_HEADER};
use super::super::Pending;
use super::{reply_of, Attempt, Call, Outcome, MAX_REPLY};
use crate::envelope::headers;

/// Methods a call may use.
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];
/// How much of an error reply's body goes into the failure's message.
const MESSAGE_BYTES: usize = 1024;

/// One pooled client for every call of the process.
fn client() -> Result<&'static Client, String> {
    static CLIENT: OnceLock<Result<Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            Client::builder()
                .redirect(reqwest::redirect::Policy::limited(5))
                .build()
                .map_err(|e| format!("cannot make the HTTP client: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

pub fn is_method(method: &str) -> bool {
    METHODS.contains(&method)
}

/// An absolute http(s) URL with a host.
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed = Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!("`{url}` is not an http:// or https:// URL with a host"));
    }
    Ok(())
}

/// A header a call may send.
pub fn check_header(name: &str, value: &str) -> Result<(), String> {
    reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("`{name}` is not a header name"))?;
    // Checked as written: `${NAME}` is replaced by text from the environment when the call runs.
    reqwest::header::HeaderValue::from_str(value)
        .map_err(|_| format!("the value of `{name}` is not a header value"))?;
    Ok(())
}

/// `value` with every `${NAME}` replaced by the environment variable `NAME`.
pub fn expand_env(value: &str) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| format!("`{value}`: `${{` without a closing `}}`"))?;
        let name = &after[..end];
        let var = std::env::var(name).map_err(|_| format!("the environment variable `{name}` is not set"))?;
        out.push_str(&var);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// One attempt of an HTTP call.
pub(super) async fn attempt(
    reactor: &str,
    pending: &Pending,
    call: &Call,
    (method, url, extra): (&str, &str, &std::collections::BTreeMap<String, String>),
) -> Result<Outcome, Attempt> {
    let invalid = |message: String| Outcome::Failed { status: 0, reason: "invalid", message };
    let client = match client() {
        Ok(c) => c,
        Err(e) => return Ok(invalid(e)),
    };
    let method = Method::from_bytes(method.as_bytes()).unwrap_or(Method::POST);
    let mut request = client
        .request(method.clone(), url)
        .timeout(Duration::from_millis(call.timeout_ms))
        .header("Idempotency-Key", &pending.id)
        .header(EFFECT_ID_HEADER, &pending.id)
        .header(REACTOR_HEADER, reactor);
    if !pending.correlation_id.is_empty() {
        request = request.header(headers::CORRELATION_ID, &pending.correlation_id);
    }
    for (name, value) in extra {
        match expand_env(value) {
            Ok(value) => request = request.header(name, value),
            Err(e) => return Ok(invalid(format!("header {name}: {e}"))),
        }
    }
    request = match (&method, &call.data) {
        (&Method::GET | &Method::DELETE, Json::Object(map)) => {
            let query: Vec<(&String, String)> = map.iter().map(|(k, v)| (k, scalar(v))).collect();
            request.query(&query)
        }
        _ => request.json(&call.data),
    };
    let response = match request.send().await {
        Err(e) if e.is_builder() => return Ok(invalid(format!("{url}: {e}"))),
        other => other.map_err(|e| failed_request(url, call.timeout_ms, &e))?,
    };
    let status = response.status();
    let bytes = read_bounded(response).await.map_err(|e| failed_request(url, call.timeout_ms, &e))?;
    if status.is_success() {
        return Ok(bytes.map_or_else(|too_large| too_large, |b| reply_of(&b)));
    }
    let text =
        bytes.map(|b| String::from_utf8_lossy(&b[..b.len().min(MESSAGE_BYTES)]).into_owned()).unwrap_or_default();
    let message = format!("{url}: {status}: {}", text.trim());
    let code = status.as_u16();
    if status.is_server_error() || code == 408 || code == 429 {
        return Err(Attempt { status: code, reason: "status", message });
    }
    Ok(Outcome::Failed { status: code, reason: "status", message })
}

/// A query parameter's text: strings as they are, anything else as JSON.
fn scalar(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn failed_request(url: &str, timeout_ms: u64, e: &reqwest::Error) -> Attempt {
    if e.is_timeout() {
        return Attempt {
            status: 0,
            reason: "timeout",
            message: format!("{url} did not answer within {timeout_ms} ms"),
        };
    }
    // reqwest's message is only "error sending request"; the cause says what went wrong.
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message = format!("{message}: {s}");
        source = s.source();
    }
    Attempt { status: 0, reason: "unreachable", message }
}

/// The body, read up to [`MAX_REPLY`] + 1 bytes; past that, the failure to record.
async fn read_bounded(mut response: Response) -> Result<Result<Vec<u8>, Outcome>, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        out.extend_from_slice(&chunk);
        if out.len() > MAX_REPLY {
            return Ok(Err(reply_of(&out)));
        }
    }
    Ok(Ok(out))
}
