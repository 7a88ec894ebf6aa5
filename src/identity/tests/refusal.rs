//! The reason codes: a fixed list of distinct snake_case labels, each with
//! the status its table gives.

use std::collections::BTreeSet;

use crate::identity::{IdentityError, Reason};
use crate::token::Rejection;

const ALL: [(Reason, &str, u16); 21] = [
    (Reason::MissingCredentials, "missing_credentials", 401),
    (Reason::MalformedToken, "malformed_token", 401),
    (Reason::AlgorithmNotAllowed, "algorithm_not_allowed", 401),
    (Reason::UnknownKey, "unknown_key", 401),
    (Reason::MissingKid, "missing_kid", 401),
    (Reason::UnusableKey, "unusable_key", 401),
    (Reason::InvalidSignature, "invalid_signature", 401),
    (Reason::TokenExpired, "token_expired", 401),
    (Reason::TokenNotYetValid, "token_not_yet_valid", 401),
    (Reason::WrongIssuer, "wrong_issuer", 401),
    (Reason::WrongAudience, "wrong_audience", 401),
    (Reason::MissingClaim, "missing_claim", 401),
    (Reason::InvalidClaim, "invalid_claim", 401),
    (Reason::UntrustedPeer, "untrusted_peer", 401),
    (Reason::MissingUserHeader, "missing_user_header", 401),
    (
        Reason::ConflictingUserHeader,
        "conflicting_user_header",
        401,
    ),
    (Reason::SessionRefused, "session_refused", 401),
    (Reason::InvalidUserId, "invalid_user_id", 403),
    (Reason::SessionUnavailable, "session_unavailable", 503),
    (Reason::SessionWithoutUserId, "session_without_user_id", 503),
    (Reason::KeysUnavailable, "keys_unavailable", 503),
];

#[test]
fn codes_are_distinct_snake_case_with_their_status() {
    let mut seen = BTreeSet::new();
    for (reason, code, status) in ALL {
        assert_eq!((reason.as_str(), reason.status()), (code, status));
        assert!(seen.insert(code), "{code} twice");
        assert!(
            code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{code}"
        );
        // None may be mistaken for one of the contract's own reasons.
        assert!(!["unauthorized", "forbidden", "unavailable"].contains(&code));
    }
}

#[test]
fn an_identity_error_becomes_the_contract_envelope_with_its_status() {
    for (reason, _, status) in ALL {
        let error = IdentityError::new(reason, "words");
        assert_eq!(error.is_unknown_key(), reason == Reason::UnknownKey);
        let result = error.result();
        let rejection = error.into_rejection();
        assert_eq!(rejection.status(), status);
        let expected = match status {
            401 => ("unauthorized", Rejection::Unauthorized("words".into())),
            403 => ("forbidden", Rejection::Forbidden("words".into())),
            _ => ("unavailable", Rejection::Unavailable("words".into())),
        };
        assert_eq!((result, rejection), expected);
    }
}
