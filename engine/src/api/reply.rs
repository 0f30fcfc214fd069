//! Replies as they go on the wire, with the contract's stable error codes.

use async_nats::HeaderMap;
use bytes::Bytes;
use serde::Serialize;
use serde_json::Value as Json;

use crate::envelope::headers;

/// The contract's error codes. Their names and statuses are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    Invalid,
    NotFound,
    Conflict,
    Rejected,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Invalid => "invalid",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Rejected => "rejected",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// The code named `s` on the wire.
    pub fn parse(s: &str) -> Option<ErrorCode> {
        [
            ErrorCode::Invalid,
            ErrorCode::NotFound,
            ErrorCode::Conflict,
            ErrorCode::Rejected,
            ErrorCode::Unavailable,
            ErrorCode::Internal,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }

    pub fn status(self) -> u16 {
        match self {
            ErrorCode::Invalid => 400,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::Rejected => 422,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }
}

/// A failed request. Built with [`Failure::new`], so its message is always fit for a header.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    pub code: ErrorCode,
    message: String,
}

impl Failure {
    /// A failure with `message` made safe for the wire (see [`super::clip`]): it goes into a header.
    pub fn new(code: ErrorCode, message: impl AsRef<str>) -> Self {
        Self { code, message: super::clip(message.as_ref()) }
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

/// One appended event in a success reply.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplyEvent {
    #[serde(rename = "type")]
    pub event_type: String,
    pub seq: u64,
    pub data: Json,
}

/// An accepted command.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Success {
    pub ok: bool,
    pub aggregate: String,
    pub id: String,
    pub version: u64,
    pub seq: u64,
    pub events: Vec<ReplyEvent>,
}

#[derive(Serialize)]
struct FailureBody<'a> {
    ok: bool,
    error: &'a Failure,
}

/// A reply, serialized once so a repeated command id gets the very same bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub body: Bytes,
    pub error: Option<Failure>,
}

impl Reply {
    pub fn success(success: &Success) -> Self {
        Self { body: serde_json::to_vec(success).expect("replies serialize").into(), error: None }
    }

    /// A success reply with any body (queries, admin).
    pub fn ok_json(body: &impl Serialize) -> Self {
        Self { body: serde_json::to_vec(body).expect("replies serialize").into(), error: None }
    }

    pub fn failure(failure: Failure) -> Self {
        let body = serde_json::to_vec(&FailureBody { ok: false, error: &failure }).expect("replies serialize");
        Self { body: body.into(), error: Some(failure) }
    }

    /// The micro-service error headers (empty on success).
    pub fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(f) = &self.error {
            h.insert(headers::SERVICE_ERROR_CODE, f.code.status().to_string().as_str());
            h.insert(headers::SERVICE_ERROR, f.message.as_str());
        }
        h
    }
}

impl AsRef<Reply> for Reply {
    fn as_ref(&self) -> &Reply {
        self
    }
}

impl From<Failure> for Reply {
    fn from(f: Failure) -> Self {
        Reply::failure(f)
    }
}
