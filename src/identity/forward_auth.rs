//! `forward_auth` mode: the app's own "who am I" endpoint decides, as nginx
//! `auth_request` and Traefik ForwardAuth do. This module describes the
//! sub-request and reads its answer; the proxy performs it.

use std::time::Duration;

use http::{HeaderMap, HeaderName, Method, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{scalar_string, string_list, Identity, IdentityError, Reason, UserIdMapping};

/// Where the user id is in the app's "who am I" answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserIdLocation {
    Header(HeaderName),
    /// RFC 6901 JSON pointer into the response body, e.g. `/user/id`.
    JsonPointer(String),
}

/// `forward_auth` mode: ask the app's existing session endpoint who the caller
/// is, forwarding only the caller's `Cookie` and `Authorization`.
#[derive(Debug)]
pub struct ForwardAuth {
    /// Name of the upstream (from `upstreams`) that serves the session endpoint.
    pub upstream: String,
    pub method: Method,
    pub path: String,
    pub user_id: UserIdLocation,
    pub roles_pointer: Option<String>,
    pub timeout: Duration,
    /// `Duration::ZERO` disables caching.
    pub cache_ttl: Duration,
    pub max_body_bytes: usize,
    pub mapping: UserIdMapping,
}

/// Cache key for a caller's credentials: a SHA-256 over them, so the cache never
/// holds a raw cookie or bearer token.
pub fn credential_key(cookie: Option<&[u8]>, authorization: Option<&[u8]>) -> Option<[u8; 32]> {
    if cookie.is_none() && authorization.is_none() {
        return None;
    }
    let mut hasher = Sha256::new();
    for part in [cookie, authorization] {
        // Length-prefixed so that moving bytes between the two fields changes the key.
        let part = part.unwrap_or_default();
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    Some(hasher.finalize().into())
}

impl ForwardAuth {
    /// Interprets the session endpoint's answer.
    pub fn interpret(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Identity, IdentityError> {
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(IdentityError::new(
                Reason::SessionRefused,
                "not signed in: the app does not know these credentials (its session check \
                 refused them); sign in to the app again",
            ));
        }
        if !status.is_success() {
            return Err(IdentityError::new(
                Reason::SessionUnavailable,
                format!(
                    "the app's session check failed (it answered {}); try again later",
                    status.as_u16()
                ),
            ));
        }
        // Which header or pointer was expected is the operator's business
        // (the access log's reason says which check failed); the caller can
        // only be told that the app's answer did not name a user.
        let unreadable = |what: &str| {
            IdentityError::new(
                Reason::SessionWithoutUserId,
                format!(
                    "the app's session check answered without {what}, so the caller cannot be \
                     identified (a fault of the app's setup, not of this request)"
                ),
            )
        };
        let json = || serde_json::from_slice::<Value>(body).map_err(|_| unreadable("a JSON body"));
        let user = match &self.user_id {
            UserIdLocation::Header(name) => headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| unreadable("a user id"))?,
            UserIdLocation::JsonPointer(pointer) => json()?
                .pointer(pointer)
                .and_then(scalar_string)
                .ok_or_else(|| unreadable("a user id"))?,
        };
        let roles = match &self.roles_pointer {
            Some(pointer) => json()?
                .pointer(pointer)
                .map(string_list)
                .unwrap_or_default(),
            None => Vec::new(),
        };
        self.mapping.apply(&user, roles)
    }
}
