use std::time::Duration;

use http::{HeaderMap, HeaderName, Method, StatusCode};

use super::*;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    map
}

#[test]
fn header_identity_is_believed_only_from_trusted_peers() {
    let mode = HeaderIdentity {
        user_header: HeaderName::from_static("x-forwarded-user"),
        roles_header: Some(HeaderName::from_static("x-forwarded-groups")),
        mapping: UserIdMapping::default(),
    };
    let request = headers(&[
        ("x-forwarded-user", "alice"),
        ("x-forwarded-groups", "admin, staff"),
    ]);
    let identity = mode.identify(true, &request).unwrap();
    assert_eq!(identity.user_id, "alice");
    assert_eq!(identity.roles, ["admin", "staff"]);
    let untrusted = mode.identify(false, &request).unwrap_err();
    assert_eq!(untrusted.reason(), Reason::UntrustedPeer);
    let missing = mode.identify(true, &headers(&[])).unwrap_err();
    assert_eq!(missing.reason(), Reason::MissingUserHeader);
    let blank = mode
        .identify(true, &headers(&[("x-forwarded-user", "  ")]))
        .unwrap_err();
    assert_eq!(blank.reason(), Reason::MissingUserHeader);
    assert_eq!(
        untrusted.message(),
        missing.message(),
        "an untrusted peer is not told that it is untrusted"
    );
    assert_eq!(
        missing.message(),
        "not signed in: sign in through the auth proxy in front of this service, which sets \
         the x-forwarded-user header"
    );
    for refused in [&untrusted, &missing] {
        assert_eq!(
            (refused.reason().status(), refused.challenge()),
            (401, None)
        );
    }
    let smuggled = headers(&[
        ("x-forwarded-user", "mallory"),
        ("x-forwarded-user", "alice"),
    ]);
    assert_eq!(
        mode.identify(true, &smuggled).unwrap_err().reason(),
        Reason::ConflictingUserHeader
    );
}

/// A provider id in UTF-8 reaches the mapping (which makes it a Stream id or
/// says why not); bytes that are not UTF-8 are no user id at all.
#[test]
fn header_identity_reads_utf8_ids() {
    let mode = HeaderIdentity {
        user_header: HeaderName::from_static("x-forwarded-user"),
        roles_header: None,
        mapping: UserIdMapping::new(
            UserIdMap::replace_invalid("_").unwrap(),
            UserIdTemplate::default(),
        )
        .unwrap(),
    };
    let mut request = HeaderMap::new();
    request.insert(
        "x-forwarded-user",
        http::HeaderValue::from_bytes("zoë|1".as_bytes()).unwrap(),
    );
    assert_eq!(mode.identify(true, &request).unwrap().user_id, "zo__1");
    request.insert(
        "x-forwarded-user",
        http::HeaderValue::from_bytes(b"zo\xeb").unwrap(),
    );
    let refused = mode.identify(true, &request).unwrap_err();
    assert_eq!(refused.reason(), Reason::InvalidUserId);
    assert_eq!(
        refused.message(),
        "the x-forwarded-user header is not UTF-8 text"
    );
}

/// A header that CGI-style apps read as the identity header, sent beside it:
/// the proxy in front did not control it, so neither is believed, from any peer.
#[test]
fn header_identity_is_not_read_beside_another_spelling() {
    let mode = HeaderIdentity {
        user_header: HeaderName::from_static("x-forwarded-user"),
        roles_header: Some(HeaderName::from_static("x-forwarded-groups")),
        mapping: UserIdMapping::default(),
    };
    for (name, value) in [
        ("x_forwarded_user", "admin"),
        ("X-Forwarded_User", "admin"),
        ("X_FORWARDED-USER", "admin"),
        ("x.forwarded.user", "admin"),
        ("X_Forwarded_Groups", "admin"),
        ("x-forwarded_groups", "admin"),
    ] {
        let request = headers(&[
            ("x-forwarded-user", "alice"),
            ("x-forwarded-groups", "staff"),
            (name, value),
        ]);
        for trusted in [true, false] {
            let refused = mode.identify(trusted, &request).unwrap_err();
            let expected = if trusted {
                Reason::ConflictingUserHeader
            } else {
                Reason::UntrustedPeer
            };
            assert_eq!(refused.reason(), expected, "{name} (trusted: {trusted})");
        }
        let alone = headers(&[(name, value)]);
        assert!(mode.identify(true, &alone).is_err(), "{name} alone");
    }
    let unrelated = headers(&[("x-forwarded-user", "alice"), ("x_forwarded_email", "a@b")]);
    assert_eq!(mode.identify(true, &unrelated).unwrap().user_id, "alice");
}

#[test]
fn credential_key_hashes_and_separates_fields() {
    assert_eq!(credential_key(None, None), None);
    let a = credential_key(Some(b"ab"), Some(b"c")).unwrap();
    let b = credential_key(Some(b"a"), Some(b"bc")).unwrap();
    assert_ne!(a, b);
    assert_eq!(a, credential_key(Some(b"ab"), Some(b"c")).unwrap());
}

fn forward_auth(user_id: UserIdLocation) -> ForwardAuth {
    ForwardAuth {
        upstream: "app".into(),
        method: Method::GET,
        path: "/api/me".into(),
        user_id,
        roles_pointer: Some("/user/roles".into()),
        timeout: Duration::from_secs(1),
        cache_ttl: Duration::ZERO,
        max_body_bytes: 65536,
        mapping: UserIdMapping::default(),
    }
}

#[test]
fn forward_auth_reads_pointer_header_and_statuses() {
    let mode = forward_auth(UserIdLocation::JsonPointer("/user/id".into()));
    let body = br#"{"user":{"id":"alice","roles":["moderator"]}}"#;
    let identity = mode
        .interpret(StatusCode::OK, &HeaderMap::new(), body)
        .unwrap();
    assert_eq!(
        identity,
        Identity {
            user_id: "alice".into(),
            roles: vec!["moderator".into()],
            expires_at: None,
        }
    );
    let numeric = mode
        .interpret(StatusCode::OK, &HeaderMap::new(), br#"{"user":{"id":7}}"#)
        .unwrap();
    assert_eq!(numeric.user_id, "7");
    let refusals = [
        (StatusCode::UNAUTHORIZED, &b""[..], Reason::SessionRefused),
        (StatusCode::FORBIDDEN, b"", Reason::SessionRefused),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            b"",
            Reason::SessionUnavailable,
        ),
        (StatusCode::OK, b"<html>", Reason::SessionWithoutUserId),
        (
            StatusCode::OK,
            br#"{"user":{}}"#,
            Reason::SessionWithoutUserId,
        ),
        (
            StatusCode::OK,
            br#"{"user":{"id":""}}"#,
            Reason::SessionWithoutUserId,
        ),
    ];
    for (status, body, reason) in refusals {
        let refused = mode.interpret(status, &HeaderMap::new(), body).unwrap_err();
        assert_eq!(refused.reason(), reason, "{status} {body:?}");
        assert!(
            !refused.message().contains("/user/id") && !refused.message().contains("/api/me"),
            "the caller is not told the app's endpoint or pointer: {refused}"
        );
    }
    assert_eq!(
        mode.interpret(StatusCode::BAD_GATEWAY, &HeaderMap::new(), b"")
            .unwrap_err()
            .message(),
        "the app's session check failed (it answered 502); try again later"
    );

    let by_header = forward_auth(UserIdLocation::Header(HeaderName::from_static("x-user-id")));
    let identity = by_header
        .interpret(StatusCode::OK, &headers(&[("x-user-id", "bob")]), b"{}")
        .unwrap();
    assert_eq!(identity.user_id, "bob");
}

mod jwt;
mod refusal;
mod user_id;
