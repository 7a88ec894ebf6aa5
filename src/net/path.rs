//! Request paths: one request, one meaning (RFC 3986 §6 normalization before
//! routing, and the same path for the app).

use serde::Deserialize;

/// Envoy's `path_with_escaped_slashes_action`, less its redirect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscapedSlashesAction {
    /// 400: the safe default (one request, one meaning).
    RejectRequest,
    /// Routed and forwarded with `%2F` as is.
    KeepUnchanged,
    /// Decoded to `/` before routing and forwarding.
    UnescapeAndForward,
}
