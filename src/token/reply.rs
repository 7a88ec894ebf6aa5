//! What the token routes answer: the `{"success":…}` envelope, the refusals
//! with their statuses, and the success body in the order Stream's SDK
//! examples print it.

use serde::Serialize;

/// A finished answer: status and the JSON body to send with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    /// The `{"success":false,"error":…}` envelope every error uses, including the
    /// proxy's own (404 no route, 502 upstream down).
    pub fn error(status: u16, message: &str) -> Reply {
        #[derive(Serialize)]
        struct Envelope<'a> {
            success: bool,
            error: &'a str,
        }
        let body = serde_json::to_vec(&Envelope {
            success: false,
            error: message,
        })
        .unwrap_or_else(|_| br#"{"success":false,"error":"Internal error"}"#.to_vec());
        Reply { status, body }
    }
}

/// Why a token request was refused, one variant per status of the contract.
/// The `Display` form is the message of the JSON envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("Invalid request header: {0}")]
    InvalidHeader(String),
    #[error("Invalid JSON body: {0}")]
    InvalidJson(String),
    #[error("Unauthorized: {0}")]
    Unauthorized(String),
    #[error("Forbidden: {0}")]
    Forbidden(String),
    #[error("Request body too large: the limit is {limit} bytes")]
    TooLarge { limit: usize },
    #[error("Unsupported Content-Type {0:?}: send application/json")]
    UnsupportedMediaType(String),
    #[error("Validation failed: {0}")]
    Validation(String),
    #[error("Too many requests: retry in {retry_after_seconds} s")]
    TooManyRequests { retry_after_seconds: u64 },
    /// A fault of ours; the message never carries detail that could hold the secret.
    #[error("Internal error: the token could not be signed")]
    Internal,
    #[error("Service unavailable: {0}")]
    Unavailable(String),
}

impl Rejection {
    pub fn status(&self) -> u16 {
        match self {
            Rejection::InvalidHeader(_) | Rejection::InvalidJson(_) => 400,
            Rejection::Unauthorized(_) => 401,
            Rejection::Forbidden(_) => 403,
            Rejection::TooLarge { .. } => 413,
            Rejection::UnsupportedMediaType(_) => 415,
            Rejection::Validation(_) => 422,
            Rejection::TooManyRequests { .. } => 429,
            Rejection::Internal => 500,
            Rejection::Unavailable(_) => 503,
        }
    }

    pub fn into_reply(self) -> Reply {
        Reply::error(self.status(), &self.to_string())
    }

    /// The `reason` label of the refused-tokens metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::InvalidHeader(_) => "invalid_header",
            Rejection::InvalidJson(_) => "invalid_json",
            Rejection::Unauthorized(_) => "unauthorized",
            Rejection::Forbidden(_) => "forbidden",
            Rejection::TooLarge { .. } => "too_large",
            Rejection::UnsupportedMediaType(_) => "unsupported_media_type",
            Rejection::Validation(_) => "validation",
            Rejection::TooManyRequests { .. } => "rate_limited",
            Rejection::Internal => "internal",
            Rejection::Unavailable(_) => "unavailable",
        }
    }
}

/// Claims exactly as Stream's Node SDK writes them: nothing else, so that no
/// request field can leak into the token.
#[derive(Serialize)]
pub(super) struct Claims<'a> {
    pub(super) user_id: &'a str,
    pub(super) iat: u64,
    pub(super) exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) call_cids: Option<[&'a str; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) role: Option<&'a str>,
}

#[derive(Serialize)]
pub(super) struct Success<'a> {
    pub(super) success: bool,
    pub(super) data: TokenData<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TokenData<'a> {
    pub(super) token: &'a str,
    pub(super) user_id: &'a str,
    pub(super) api_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) call_id: Option<&'a str>,
    pub(super) call_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) role: Option<&'a str>,
    pub(super) validity_in_seconds: u64,
    pub(super) expires_at: String,
}
