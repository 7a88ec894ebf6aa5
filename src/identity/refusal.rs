//! Why no identity could be established: one fixed code per kind of failure
//! (the `reason` of the refused-tokens metric and of the access log), and a
//! message for the caller that says which part is wrong and what to do.
//!
//! Messages are written here and in the modes, never taken from a library's
//! `Display`: jsonwebtoken's (`Base64 error: Invalid last symbol 116`) names
//! its internals and helps nobody. No message carries a credential.

use crate::token::Rejection;

/// The fixed list of identity refusal codes, with their HTTP status.
///
/// | code | status | when |
/// |---|---|---|
/// | `missing_credentials` | 401 | `jwt`: no `Authorization: Bearer …`; `forward_auth`: neither `Cookie` nor `Authorization` |
/// | `malformed_token` | 401 | not three base64url parts, a header that is not JSON, an unknown `alg` or `alg: none` (the payload is read once the signature verifies: an altered one is `invalid_signature`) |
/// | `algorithm_not_allowed` | 401 | an `alg` outside `jwt.algorithms`, or one that does not fit the key |
/// | `unknown_key` | 401 | the JWT names a `kid` that is not in the key set ([`IdentityError::is_unknown_key`]) |
/// | `missing_kid` | 401 | the JWT names no `kid` and the key set holds several keys |
/// | `unusable_key` | 401 | the key the JWT names cannot verify anything (a key-set problem) |
/// | `invalid_signature` | 401 | the signature does not verify with the key |
/// | `token_expired` | 401 | `exp` is past (beyond `jwt.leeway`; at all when the minted token is capped at it) |
/// | `token_not_yet_valid` | 401 | `nbf` is ahead (beyond `jwt.leeway`) |
/// | `wrong_issuer` | 401 | `iss` is not `jwt.issuer` |
/// | `wrong_audience` | 401 | `aud` does not hold `jwt.audience`, or is set when none is configured |
/// | `missing_claim` | 401 | no `exp`, or no `jwt.user_claim` |
/// | `invalid_claim` | 401 | `exp`/`nbf` not a number, or the user claim not a string or integer |
/// | `untrusted_peer` | 401 | `header`: the peer is not in `trusted_cidrs` |
/// | `missing_user_header` | 401 | `header`: the user header is absent or empty |
/// | `conflicting_user_header` | 401 | `header`: the header sent twice, or also in another spelling |
/// | `session_refused` | 401 | `forward_auth`: the session endpoint answered 401 or 403 |
/// | `invalid_user_id` | 403 | the identity does not map to a valid Stream user id |
/// | `session_unavailable` | 503 | `forward_auth`: the session endpoint failed, timed out or could not be reached |
/// | `session_without_user_id` | 503 | `forward_auth`: a 2xx answer without a user id where configured |
/// | `keys_unavailable` | 503 | `jwt`: the identity provider's keys have not been fetched yet |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    MissingCredentials,
    MalformedToken,
    AlgorithmNotAllowed,
    UnknownKey,
    MissingKid,
    UnusableKey,
    InvalidSignature,
    TokenExpired,
    TokenNotYetValid,
    WrongIssuer,
    WrongAudience,
    MissingClaim,
    InvalidClaim,
    UntrustedPeer,
    MissingUserHeader,
    ConflictingUserHeader,
    SessionRefused,
    InvalidUserId,
    SessionUnavailable,
    SessionWithoutUserId,
    KeysUnavailable,
}

/// The three answers an identity refusal can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Unauthorized,
    Forbidden,
    Unavailable,
}

impl Reason {
    /// The code: the metrics' `reason` label and the access log's `reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MissingCredentials => "missing_credentials",
            Reason::MalformedToken => "malformed_token",
            Reason::AlgorithmNotAllowed => "algorithm_not_allowed",
            Reason::UnknownKey => "unknown_key",
            Reason::MissingKid => "missing_kid",
            Reason::UnusableKey => "unusable_key",
            Reason::InvalidSignature => "invalid_signature",
            Reason::TokenExpired => "token_expired",
            Reason::TokenNotYetValid => "token_not_yet_valid",
            Reason::WrongIssuer => "wrong_issuer",
            Reason::WrongAudience => "wrong_audience",
            Reason::MissingClaim => "missing_claim",
            Reason::InvalidClaim => "invalid_claim",
            Reason::UntrustedPeer => "untrusted_peer",
            Reason::MissingUserHeader => "missing_user_header",
            Reason::ConflictingUserHeader => "conflicting_user_header",
            Reason::SessionRefused => "session_refused",
            Reason::InvalidUserId => "invalid_user_id",
            Reason::SessionUnavailable => "session_unavailable",
            Reason::SessionWithoutUserId => "session_without_user_id",
            Reason::KeysUnavailable => "keys_unavailable",
        }
    }

    /// The HTTP status of the answer: 401, 403 or 503.
    pub fn status(self) -> u16 {
        match self.class() {
            Class::Unauthorized => 401,
            Class::Forbidden => 403,
            Class::Unavailable => 503,
        }
    }

    fn class(self) -> Class {
        match self {
            Reason::InvalidUserId => Class::Forbidden,
            Reason::SessionUnavailable | Reason::SessionWithoutUserId | Reason::KeysUnavailable => {
                Class::Unavailable
            }
            _ => Class::Unauthorized,
        }
    }
}

/// Why no identity could be established: a [`Reason`] and the words for the
/// caller (the error envelope's message after `Unauthorized: `, `Forbidden: `
/// or `Service unavailable: `).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", reason.as_str())]
pub struct IdentityError {
    reason: Reason,
    message: String,
    /// `WWW-Authenticate` value, where the mode has a scheme to name.
    challenge: Option<&'static str>,
}

impl IdentityError {
    pub(crate) fn new(reason: Reason, message: impl Into<String>) -> Self {
        IdentityError {
            reason,
            message: message.into(),
            challenge: None,
        }
    }

    pub(crate) fn with_challenge(mut self, challenge: &'static str) -> Self {
        self.challenge = Some(challenge);
        self
    }

    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// What the caller is told.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The `WWW-Authenticate` value to send with a 401, if any.
    pub fn challenge(&self) -> Option<&'static str> {
        self.challenge
    }

    /// The JWT names a `kid` that the current key set does not hold: the one
    /// refusal that fetching the key set again could turn into a success (the
    /// identity provider rotated its keys). False for a JWT without `kid`,
    /// for static keys, and for every other failure.
    pub fn is_unknown_key(&self) -> bool {
        self.reason == Reason::UnknownKey
    }

    /// The `result` label of the identity-failures metric: `unauthorized`,
    /// `forbidden` or `unavailable` (the fine code is the refused-tokens
    /// metric's `reason`).
    pub fn result(&self) -> &'static str {
        match self.reason.class() {
            Class::Unauthorized => "unauthorized",
            Class::Forbidden => "forbidden",
            Class::Unavailable => "unavailable",
        }
    }

    /// The token contract's refusal with this message and the status of the
    /// reason.
    pub fn into_rejection(self) -> Rejection {
        match self.reason.class() {
            Class::Unauthorized => Rejection::Unauthorized(self.message),
            Class::Forbidden => Rejection::Forbidden(self.message),
            Class::Unavailable => Rejection::Unavailable(self.message),
        }
    }
}
