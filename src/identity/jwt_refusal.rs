//! Why `jwt` mode refused a bearer token, in words that name the part at
//! fault and what to do, with the reason code: jsonwebtoken's own errors
//! mapped once, and the mode's own refusals, all here. jsonwebtoken's
//! `Display` names library internals (`Base64 error: Invalid last symbol
//! 116`) and never reaches a caller.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::Algorithm;
use serde_json::Value;

use super::{IdentityError, Reason};

const INVALID_TOKEN_CHALLENGE: &str = r#"Bearer realm="streamgate", error="invalid_token""#;

/// A 401 about the JWT itself, with the `invalid_token` challenge.
fn invalid(reason: Reason, message: impl Into<String>) -> IdentityError {
    IdentityError::new(reason, message).with_challenge(INVALID_TOKEN_CHALLENGE)
}

pub(super) fn algorithm_not_allowed(algorithm: Algorithm) -> IdentityError {
    invalid(
        Reason::AlgorithmNotAllowed,
        format!(
            "the JWT is signed with {algorithm:?}, which is not accepted here: use a token \
             from the configured identity provider"
        ),
    )
}

/// The `kid` the JWT names is not in the key set: the one refusal a fetch
/// of the key set could undo ([`IdentityError::is_unknown_key`]).
/// `exp` is past: beyond `leeway`, or (when the minted token's lifetime is
/// capped at the JWT's) at all, since that token would be born expired.
pub(super) fn expired() -> IdentityError {
    invalid(
        Reason::TokenExpired,
        "the JWT has expired (exp is in the past); sign in again for a fresh one",
    )
}

pub(super) fn unknown_key() -> IdentityError {
    invalid(
        Reason::UnknownKey,
        "the JWT names a signing key (kid) that is not in the identity provider's key set: it \
         comes from another issuer, or its key was retired; sign in again",
    )
}

pub(super) fn missing_kid() -> IdentityError {
    invalid(
        Reason::MissingKid,
        "the JWT names no signing key (kid), and the identity provider has several: it must put \
         the key's kid in the JWT header",
    )
}

/// `user_claim` (from the configuration) is absent.
pub(super) fn no_user_claim(user_claim: &str) -> IdentityError {
    invalid(
        Reason::MissingClaim,
        format!("the JWT has no {user_claim:?} claim, which names the user"),
    )
}

pub(super) fn not_a_user_id(user_claim: &str) -> IdentityError {
    invalid(
        Reason::InvalidClaim,
        format!(
            "the JWT's {user_claim:?} claim is not a user id (a non-empty string or an integer)"
        ),
    )
}

pub(super) fn unusable_key() -> IdentityError {
    invalid(
        Reason::UnusableKey,
        "the key that should verify this JWT cannot be used (a problem with the identity \
         provider's keys, for the operator to fix)",
    )
}

/// What jsonwebtoken's refusal of `token` means.
pub(super) fn refusal(token: &str, error: &jsonwebtoken::errors::Error) -> IdentityError {
    match error.kind() {
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => malformed(token),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidKeyFormat => {
            match jsonwebtoken::decode_header(token) {
                Ok(header) => algorithm_not_allowed(header.alg),
                Err(_) => malformed(token),
            }
        }
        ErrorKind::InvalidSignature => invalid(
            Reason::InvalidSignature,
            "the JWT's signature does not verify: it was not signed by the identity provider's \
             key, or it was altered",
        ),
        ErrorKind::ExpiredSignature => expired(),
        ErrorKind::ImmatureSignature => invalid(
            Reason::TokenNotYetValid,
            "the JWT is not valid yet (nbf is in the future); check the issuing machine's clock",
        ),
        ErrorKind::InvalidIssuer => invalid(
            Reason::WrongIssuer,
            "the JWT's issuer (iss) is not the configured identity provider: use a token from it",
        ),
        ErrorKind::InvalidAudience => invalid(
            Reason::WrongAudience,
            "the JWT's audience (aud) is not this service: ask the identity provider for a \
             token meant for it",
        ),
        // jsonwebtoken calls a required claim of the wrong type missing; the
        // payload (its signature checked by now) tells the two apart.
        ErrorKind::MissingRequiredClaim(claim) => match payload(token) {
            Some(claims) if claims.get(claim).is_some() => wrong_type(claim),
            // The name comes from the validation streamgate built (exp, iss,
            // aud), not from the token.
            _ => invalid(
                Reason::MissingClaim,
                format!("the JWT has no {claim} claim, which is required"),
            ),
        },
        ErrorKind::InvalidClaimFormat(claim) => wrong_type(claim),
        // Key material jsonwebtoken could not use (a broken key in the set),
        // and failures it may add later: nothing the caller can change.
        _ => unusable_key(),
    }
}

/// The claims jsonwebtoken reads itself, with the JSON types it accepts.
const REGISTERED_CLAIMS: [(&str, &str); 5] = [
    ("exp", "a number of seconds since 1970"),
    ("nbf", "a number of seconds since 1970"),
    ("sub", "a string"),
    ("iss", "a string or a list of strings"),
    ("aud", "a string or a list of strings"),
];

fn wrong_type(claim: &str) -> IdentityError {
    let expected = REGISTERED_CLAIMS
        .iter()
        .find(|(name, _)| *name == claim)
        .map_or("of the type the JWT standard gives it", |(_, expected)| {
            expected
        });
    invalid(
        Reason::InvalidClaim,
        format!("the JWT's {claim} claim is not {expected}"),
    )
}

/// The first registered claim in `claims` whose JSON type jsonwebtoken
/// cannot read (it then fails on the whole payload, naming none).
fn ill_typed(claims: &serde_json::Map<String, Value>) -> Option<&'static str> {
    let strings = |value: &Value| match value {
        Value::String(_) => true,
        Value::Array(items) => items.iter().all(Value::is_string),
        _ => false,
    };
    REGISTERED_CLAIMS
        .iter()
        .map(|(name, _)| *name)
        .find(|name| {
            claims.get(*name).is_some_and(|value| match *name {
                "exp" | "nbf" => !value.is_number(),
                "sub" => !value.is_string(),
                _ => !strings(value),
            })
        })
}

/// The payload of `token` as JSON, if it is base64url JSON at all.
fn payload(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

/// Which part of a JWT jsonwebtoken could not read, found by reading the
/// parts again (only after it failed; jsonwebtoken does not say which).
fn malformed(token: &str) -> IdentityError {
    let malformed = |message| invalid(Reason::MalformedToken, message);
    let parts: Vec<&str> = token.split('.').collect();
    let [header, _, signature] = parts[..] else {
        return malformed("the bearer token is not a JWT (three base64url parts separated by '.')");
    };
    let Ok(header_json) = URL_SAFE_NO_PAD.decode(header) else {
        return malformed("the JWT header (its first part) is not base64url");
    };
    let Ok(Value::Object(header_fields)) = serde_json::from_slice::<Value>(&header_json) else {
        return malformed("the JWT header (its first part) is not a JSON object");
    };
    if jsonwebtoken::decode_header(token).is_err() {
        return malformed(match header_fields.get("alg").and_then(Value::as_str) {
            Some(alg) if alg.eq_ignore_ascii_case("none") => {
                "the JWT is unsigned (alg \"none\"), which is never accepted"
            }
            Some(alg) if alg.parse::<Algorithm>().is_ok() => {
                "the JWT header (its first part) has a field of the wrong type"
            }
            _ => "the JWT header's alg is missing or not a signing algorithm (RS256, ES256, …)",
        });
    }
    if URL_SAFE_NO_PAD.decode(signature).is_err() {
        return malformed("the JWT signature (its third part) is not base64url");
    }
    match payload(token) {
        Some(Value::Object(claims)) => match ill_typed(&claims) {
            Some(claim) => wrong_type(claim),
            None => malformed("the bearer token is not a well-formed JWT"),
        },
        Some(_) => malformed("the JWT payload (its second part) is not a JSON object of claims"),
        None => malformed("the JWT payload (its second part) is not base64url JSON"),
    }
}
