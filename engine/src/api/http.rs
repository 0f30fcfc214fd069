//! The HTTP face of the wire types: a reply's status, and the refusals only HTTP has (a missing token, a
//! wrong content type, ...), in the same `{"ok": false, "error": {"code", "message"}}` shape as every failure.

use bytes::Bytes;
use serde::Serialize;

use super::{clip, Reply};

/// An HTTP-only refusal's code and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 401: no or an unknown bearer token.
    Unauthorized,
    /// 403: the token lacks the scope, or a client off loopback without tokens configured.
    Forbidden,
    /// 404: no such route.
    NoRoute,
    /// 405
    MethodNotAllowed,
    /// 413
    TooLarge,
    /// 415
    UnsupportedMediaType,
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Unauthorized => "unauthorized",
            Refusal::Forbidden => "forbidden",
            Refusal::NoRoute => "not_found",
            Refusal::MethodNotAllowed => "method_not_allowed",
            Refusal::TooLarge => "too_large",
            Refusal::UnsupportedMediaType => "unsupported_media_type",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Refusal::Unauthorized => 401,
            Refusal::Forbidden => 403,
            Refusal::NoRoute => 404,
            Refusal::MethodNotAllowed => 405,
            Refusal::TooLarge => 413,
            Refusal::UnsupportedMediaType => 415,
        }
    }

    /// The body, with `message` made safe like every failure's.
    pub fn body(self, message: &str) -> Bytes {
        #[derive(Serialize)]
        struct Error<'a> {
            code: &'a str,
            message: String,
        }
        #[derive(Serialize)]
        struct Body<'a> {
            ok: bool,
            error: Error<'a>,
        }
        let body = Body { ok: false, error: Error { code: self.code(), message: clip(message) } };
        serde_json::to_vec(&body).expect("replies serialize").into()
    }
}

/// The HTTP status of a reply: 200, or its error code's (the contract's table).
pub fn status_of(reply: &Reply) -> u16 {
    reply.error.as_ref().map_or(200, |f| f.code.status())
}
