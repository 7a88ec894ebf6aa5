//! Identity: who is asking for a token, decided from the request alone.
//!
//! A Stream token is a bearer credential for one user, so a token endpoint that
//! mints for whatever `userId` it is sent lets anyone impersonate anyone. Each
//! mode here answers "which user is this request from?" without the app
//! changing: a header set by a trusted auth proxy ([`header`]), the app's own
//! session endpoint ([`forward_auth`]), or a JWT from the company's identity
//! provider ([`jwt`], with keys from [`jwks`]). Every mode's user id then
//! goes through [`user_id`] to become a Stream user id, and every refusal is
//! an [`IdentityError`] with a code from a fixed list ([`refusal`]).
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
mod jwt_refusal;
pub mod oidc;
pub mod refusal;
pub mod user_id;

pub use crate::token::Identity;
pub use forward_auth::{credential_key, ForwardAuth, UserIdLocation};
pub use header::HeaderIdentity;
pub use jwks::JwksKeys;
pub use jwt::{decoding_key_from_pem, JwtIdentity, JwtKeys};
pub use refusal::{IdentityError, Reason};
pub use user_id::{UserIdMap, UserIdMapping, UserIdTemplate};

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
    /// The mode and its settings as configured, without key material
    /// (`/config_dump`, and the start-up summary's one line per route).
    pub fn describe(&self) -> serde_json::Value {
        let (details, mapping) = match self {
            IdentitySource::None => return serde_json::json!({ "mode": "none" }),
            IdentitySource::Header(mode) => (
                serde_json::json!({
                    "user": mode.user_header.as_str(),
                    "roles": mode.roles_header.as_ref().map(|h| h.as_str()),
                }),
                &mode.mapping,
            ),
            IdentitySource::ForwardAuth(mode) => (
                serde_json::json!({
                    "upstream": mode.upstream,
                    "method": mode.method.as_str(),
                    "path": mode.path,
                    "user_id": match &mode.user_id {
                        UserIdLocation::Header(name) => format!("header {name}"),
                        UserIdLocation::JsonPointer(pointer) => format!("pointer {pointer}"),
                    },
                    "roles_pointer": mode.roles_pointer,
                    "timeout": humantime::format_duration(mode.timeout).to_string(),
                    "cache_ttl": humantime::format_duration(mode.cache_ttl).to_string(),
                }),
                &mode.mapping,
            ),
            IdentitySource::Jwt(mode) => (mode.describe(), mode.mapping()),
        };
        let mut described = serde_json::json!({ "mode": self.mode_name() });
        described[self.mode_name()] = details;
        if let (Some(object), serde_json::Value::Object(mapping)) =
            (described.as_object_mut(), mapping.describe())
        {
            object.extend(mapping);
        }
        described
    }

    pub fn mode_name(&self) -> &'static str {
        match self {
            IdentitySource::None => "none",
            IdentitySource::Header(_) => "header",
            IdentitySource::ForwardAuth(_) => "forward_auth",
            IdentitySource::Jwt(_) => "jwt",
        }
    }

    /// How the mode's user ids become Stream user ids; `None` in mode `none`,
    /// where the caller names the Stream user id itself.
    pub fn user_id_mapping(&self) -> Option<&UserIdMapping> {
        match self {
            IdentitySource::None => None,
            IdentitySource::Header(mode) => Some(&mode.mapping),
            IdentitySource::ForwardAuth(mode) => Some(&mode.mapping),
            IdentitySource::Jwt(mode) => Some(mode.mapping()),
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
