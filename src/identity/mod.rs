//! Identity: who is asking for a token, decided from the request alone.
//!
//! A Stream token is a bearer credential for one user, so a token endpoint that
//! mints for whatever `userId` it is sent lets anyone impersonate anyone. Each
//! mode here answers "which user is this request from?" without the app
//! changing: a header set by a trusted auth proxy ([`header`]), the app's own
//! session endpoint ([`forward_auth`]), or a JWT from the company's identity
//! provider ([`jwt`], with keys from [`jwks`]).
//!
//! Everything here is free of Pingora: the forward-auth mode describes the
//! sub-request and interprets its answer, while the Pingora glue performs it.
//! The result is the token contract's [`Identity`]; whether the peer is trusted
//! is decided by [`crate::net`] and passed in.

use serde_json::Value;

pub mod forward_auth;
pub mod header;
pub mod jwks;
pub mod jwt;
pub mod oidc;

pub use crate::token::Identity;
use crate::token::{is_user_id, USER_ID_RULE};
pub use forward_auth::{credential_key, ForwardAuth, UserIdLocation};
pub use header::HeaderIdentity;
pub use jwks::JwksKeys;
pub use jwt::{decoding_key_from_pem, JwtIdentity, JwtKeys};

/// Why no identity could be established.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// 401: no credentials, or credentials that do not hold.
    #[error("unauthorized: {reason}")]
    Unauthorized {
        reason: String,
        /// `WWW-Authenticate` value, where the mode has a scheme to name.
        challenge: Option<&'static str>,
    },
    /// 403: authenticated, but the identity cannot be a Stream user id.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 503: the app's session endpoint could not be asked.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl IdentityError {
    pub(crate) fn unauthorized(reason: impl Into<String>, challenge: Option<&'static str>) -> Self {
        IdentityError::Unauthorized {
            reason: reason.into(),
            challenge,
        }
    }

    /// The credential names a key (`kid`) that the key set does not hold.
    pub fn is_unknown_key(&self) -> bool {
        matches!(self, IdentityError::Unauthorized { reason, .. } if reason == jwt::UNKNOWN_KID)
    }

    /// The `result` label of the identity-failures metric.
    pub fn result(&self) -> &'static str {
        match self {
            IdentityError::Unauthorized { .. } => "unauthorized",
            IdentityError::Forbidden(_) => "forbidden",
            IdentityError::Unavailable(_) => "unavailable",
        }
    }
}

/// `"tenant-{id}"`: how an identity becomes a Stream user id when teams
/// namespace their Stream users. The result must still satisfy Stream's rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserIdTemplate {
    prefix: String,
    suffix: String,
}

impl UserIdTemplate {
    /// Parses a template with exactly one `{id}`.
    pub fn parse(template: &str) -> Result<Self, String> {
        match template.split_once("{id}") {
            Some((prefix, suffix)) if !suffix.contains("{id}") => Ok(UserIdTemplate {
                prefix: prefix.to_string(),
                suffix: suffix.to_string(),
            }),
            _ => Err(format!(
                "{template:?} must contain {{id}} exactly once, e.g. \"tenant-{{id}}\""
            )),
        }
    }

    fn apply(&self, raw: &str, roles: Vec<String>) -> Result<Identity, IdentityError> {
        let user_id = format!("{}{raw}{}", self.prefix, self.suffix);
        if is_user_id(&user_id) {
            Ok(Identity {
                user_id,
                roles,
                expires_at: None,
            })
        } else {
            Err(IdentityError::Forbidden(format!(
                "the authenticated user {raw:?} does not map to a valid Stream user id \
                 (a user id {USER_ID_RULE}); set identity.user_id_template"
            )))
        }
    }
}

/// How a token route learns who is calling.
#[derive(Debug)]
pub enum IdentitySource {
    /// Anyone may mint for any user. Allowed, and warned about at every start.
    None,
    Header(HeaderIdentity),
    ForwardAuth(ForwardAuth),
    Jwt(Box<JwtIdentity>),
}

impl IdentitySource {
    pub fn mode_name(&self) -> &'static str {
        match self {
            IdentitySource::None => "none",
            IdentitySource::Header(_) => "header",
            IdentitySource::ForwardAuth(_) => "forward_auth",
            IdentitySource::Jwt(_) => "jwt",
        }
    }
}

/// A user id given as a JSON string or integer.
fn scalar_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
        _ => None,
    }
}

/// Roles given as one string (space- or comma-separated) or a list of strings.
fn string_list(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => s
            .split([',', ' '])
            .filter(|r| !r.is_empty())
            .map(String::from)
            .collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str())
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
