//! Request header names an app may read differently from streamgate.

use serde::Deserialize;

/// Envoy's `headers_with_underscores_action` (nginx's `underscores_in_headers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnderscoresAction {
    /// Forwarded as sent.
    Allow,
    /// Removed before the app sees the request: the default.
    DropHeader,
    /// 400.
    RejectRequest,
}
