//! The token contract: request bytes in, HTTP status and JSON body out.
//!
//! This is the whole behaviour of the token routes apart from socket I/O and
//! identity lookup, kept free of Pingora types so that every status, message
//! and claim can be unit-tested and fuzzed without a server. The Pingora glue
//! reads the body (enforcing the size limit while it does), finds out who is
//! calling ([`crate::identity`], which hands over an [`Identity`]), and writes
//! the [`Reply`].
//!
//! A request goes through three steps, so that the glue can rate-limit between
//! knowing whom a token is for and signing it:
//! [`TokenMinter::parse`] (400/422), [`TokenMinter::authorize`] (403), then
//! [`TokenMinter::issue`].
//!
//! Anything a client can send maps to a 2xx or 4xx with a message that names the
//! field and the rule; a 500 is reserved for a fault of ours (a signing failure)
//! and never carries detail that could include the secret.
//!
//! Files: [`request`] (the body and its field rules), [`reply`] (the JSON
//! envelope, refusals and the success body), [`signing`] (HS256 with the SDKs'
//! header segment), [`schema`] (the same rules in JSON Schema, for the OpenAPI
//! document). Nothing here imports Pingora or another module of the crate:
//! identity modes, configuration and the proxy depend on the contract, not the
//! reverse.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use schemars::JsonSchema;
use serde::Deserialize;

mod reply;
mod request;
pub mod schema;
mod signing;

pub use reply::{Rejection, Reply};
pub use request::{
    is_name, is_user_id, is_user_id_char, TokenRequest, NAME_RULE, USER_ID_MAX_LEN, USER_ID_RULE,
};
pub use signing::{Signer, SignerSlot};

use reply::{Claims, Success, TokenData};
use request::is_json_media_type;

/// What streamgate can mint. The YAML names are the `mint:` values of routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MintKind {
    /// A user token (README, "The token contract").
    UserToken,
    /// A token restricted to one call, with an optional call role (README,
    /// "Call tokens").
    CallToken,
}

impl MintKind {
    /// The YAML name: `user_token` or `call_token`.
    pub fn as_str(self) -> &'static str {
        match self {
            MintKind::UserToken => "user_token",
            MintKind::CallToken => "call_token",
        }
    }
}

/// The authenticated caller, already mapped to a Stream user id: what an
/// identity mode hands the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    /// Roles the identity carries (role header, JWT claim, session JSON); they
    /// decide which call roles may be granted beyond the ones anyone may ask for.
    pub roles: Vec<String>,
    /// When the credential the identity came from expires (Unix seconds):
    /// a token minted for it expires no later (jwt mode's `exp`, when
    /// `cap_exp_to_credential` is on).
    pub expires_at: Option<u64>,
}

/// Limits and defaults of the token routes: the `tokens:` section of the
/// configuration, as written (every field optional).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(rename = "Tokens")]
pub struct TokenPolicy {
    /// Validity of a token when the request gives no `validityInSeconds`, in
    /// seconds (default 3600); 1 to `max_validity_seconds`.
    #[schemars(range(min = 1))]
    pub default_validity_seconds: u64,
    /// Largest `validityInSeconds` accepted, in seconds (default 86400).
    #[schemars(range(min = 1))]
    pub max_validity_seconds: u64,
    /// How far `iat` is back-dated, in seconds (default 5, as Stream's Python
    /// and Ruby SDKs do), so that a Stream server whose clock is a little
    /// behind ours does not reject a fresh token as "used before issued".
    pub iat_leeway_seconds: u64,
    /// Largest request body on token routes, in bytes (default 16384);
    /// larger is 413.
    #[schemars(range(min = 1))]
    pub max_body_bytes: usize,
    /// Call roles any caller may ask for (default `[user]`); others need an
    /// identity carrying them.
    #[schemars(inner(regex(pattern = schema::NAME_PATTERN)))]
    pub anyone_roles: Vec<String>,
    /// The `callType` values allowed on both token routes (others are 403);
    /// absent: any valid name.
    #[schemars(inner(regex(pattern = schema::NAME_PATTERN)))]
    pub allowed_call_types: Option<Vec<String>>,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        TokenPolicy {
            default_validity_seconds: 3600,
            max_validity_seconds: 86400,
            iat_leeway_seconds: 5,
            max_body_bytes: 16384,
            anyone_roles: vec!["user".to_string()],
            allowed_call_types: None,
        }
    }
}

/// Signs tokens for the token routes: credentials, policy and signer, built
/// once at start and shared by every request.
#[derive(Debug)]
pub struct TokenMinter {
    api_key: String,
    policy: TokenPolicy,
    signer: Arc<SignerSlot>,
}

/// An authorized request: exactly what the token will say.
#[derive(Debug, PartialEq, Eq)]
pub struct Grant {
    pub user_id: String,
    validity_seconds: u64,
    /// The identity's credential expiry: the token's `exp` is at most this.
    not_after: Option<u64>,
    call_id: Option<String>,
    call_type: String,
    role: Option<String>,
}

impl TokenMinter {
    /// A minter whose key can be rotated through `signer` while it runs.
    pub fn with_signer(api_key: &str, signer: Arc<SignerSlot>, policy: TokenPolicy) -> Self {
        TokenMinter {
            api_key: api_key.to_string(),
            signer,
            policy,
        }
    }

    pub fn policy(&self) -> &TokenPolicy {
        &self.policy
    }

    /// Checks that need only the headers, so that a wrong or oversized request is
    /// refused before its body is read.
    pub fn check_headers(
        &self,
        content_type: Option<&[u8]>,
        content_length: Option<&[u8]>,
    ) -> Result<(), Rejection> {
        if let Some(raw) = content_type {
            if !is_json_media_type(raw) {
                return Err(Rejection::UnsupportedMediaType(
                    String::from_utf8_lossy(raw).into_owned(),
                ));
            }
        }
        if let Some(raw) = content_length {
            let length = std::str::from_utf8(raw)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    Rejection::InvalidHeader(
                        "Content-Length must be a whole number of bytes".into(),
                    )
                })?;
            if length > self.policy.max_body_bytes as u64 {
                return Err(self.too_large());
            }
        }
        Ok(())
    }

    pub fn too_large(&self) -> Rejection {
        Rejection::TooLarge {
            limit: self.policy.max_body_bytes,
        }
    }

    /// Parses and validates a body. `userId` may be left out only when the
    /// caller is identified (`identified`), since it then defaults to them.
    pub fn parse(
        &self,
        kind: MintKind,
        body: &[u8],
        identified: bool,
    ) -> Result<TokenRequest, Rejection> {
        TokenRequest::parse(kind, body, &self.policy, identified)
    }

    /// Decides what the token may say for this caller: with an identity, only
    /// that user, and only roles the policy or the identity allows.
    pub fn authorize(
        &self,
        request: TokenRequest,
        identity: Option<&Identity>,
    ) -> Result<Grant, Rejection> {
        let user_id = match (identity, request.user_id) {
            (Some(identity), Some(requested)) if requested != identity.user_id => {
                return Err(Rejection::Forbidden(
                    "userId does not match the authenticated user".into(),
                ))
            }
            (Some(identity), _) => identity.user_id.clone(),
            (None, Some(requested)) => requested,
            (None, None) => return Err(Rejection::Validation("userId is required".into())),
        };
        if let Some(allowed) = &self.policy.allowed_call_types {
            if request.call_id.is_some() && !allowed.contains(&request.call_type) {
                return Err(Rejection::Forbidden(format!(
                    "callType {:?} is not allowed (allowed: {})",
                    request.call_type,
                    allowed.join(", ")
                )));
            }
        }
        if let Some(role) = &request.role {
            let carried = identity.is_some_and(|i| i.roles.contains(role));
            if !self.policy.anyone_roles.contains(role) && !carried {
                return Err(Rejection::Forbidden(format!(
                    "role {role:?} is not granted to this user"
                )));
            }
        }
        debug_assert!(request.kind == MintKind::UserToken || request.call_id.is_some());
        Ok(Grant {
            user_id,
            validity_seconds: request.validity_seconds,
            not_after: identity.and_then(|i| i.expires_at),
            call_id: request.call_id,
            call_type: request.call_type,
            role: request.role,
        })
    }

    /// Signs the token and builds the 200 answer. A token is never valid
    /// longer than the credential it was minted from: its `exp` (and the
    /// answer's `validityInSeconds`, `expiresAt`) is cut to the credential's
    /// expiry, and a credential that expires now gets a 401.
    pub fn issue(&self, grant: &Grant, now: SystemTime) -> Result<Reply, Rejection> {
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let iat = now.saturating_sub(self.policy.iat_leeway_seconds);
        let requested_exp = now.saturating_add(grant.validity_seconds);
        let exp = grant
            .not_after
            .map_or(requested_exp, |cap| cap.min(requested_exp));
        if exp <= now {
            return Err(Rejection::Unauthorized(
                "the presented credential has expired (its exp is now or past, within the \
                 allowed clock skew): sign in again for a fresh one"
                    .into(),
            ));
        }
        let validity_seconds = exp - now;
        let call_cid = grant
            .call_id
            .as_deref()
            .map(|call_id| format!("{}:{call_id}", grant.call_type));
        let claims = Claims {
            user_id: &grant.user_id,
            iat,
            exp,
            call_cids: call_cid.as_deref().map(|cid| [cid]),
            role: grant.role.as_deref(),
        };
        let signer = self.signer.load().ok_or_else(|| {
            Rejection::Unavailable("the Stream API secret is not loaded yet".into())
        })?;
        let token = signer.sign(&claims).map_err(|e| {
            log::error!("token signing failed: {e}");
            Rejection::Internal
        })?;
        let expires_at = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(exp));
        let response = Success {
            success: true,
            data: TokenData {
                token: &token,
                user_id: &grant.user_id,
                api_key: &self.api_key,
                call_id: grant.call_id.as_deref(),
                call_type: &grant.call_type,
                role: grant.role.as_deref(),
                validity_in_seconds: validity_seconds,
                expires_at: expires_at.to_string(),
            },
        };
        let body = serde_json::to_vec(&response).map_err(|_| Rejection::Internal)?;
        Ok(Reply { status: 200, body })
    }
}

#[cfg(test)]
mod tests;
