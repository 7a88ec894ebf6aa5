use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, Method, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Value};

use super::jwt::BEARER_CHALLENGE;
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
        template: UserIdTemplate::default(),
    };
    let request = headers(&[
        ("x-forwarded-user", "alice"),
        ("x-forwarded-groups", "admin, staff"),
    ]);
    let identity = mode.identify(true, &request).unwrap();
    assert_eq!(identity.user_id, "alice");
    assert_eq!(identity.roles, ["admin", "staff"]);
    assert!(matches!(
        mode.identify(false, &request),
        Err(IdentityError::Unauthorized { .. })
    ));
    assert!(matches!(
        mode.identify(true, &headers(&[])),
        Err(IdentityError::Unauthorized { .. })
    ));
    let smuggled = headers(&[
        ("x-forwarded-user", "mallory"),
        ("x-forwarded-user", "alice"),
    ]);
    assert!(matches!(
        mode.identify(true, &smuggled),
        Err(IdentityError::Unauthorized { .. })
    ));
}

/// A header that CGI-style apps read as the identity header, sent beside it:
/// the proxy in front did not control it, so neither is believed, from any peer.
#[test]
fn header_identity_is_not_read_beside_another_spelling() {
    let mode = HeaderIdentity {
        user_header: HeaderName::from_static("x-forwarded-user"),
        roles_header: Some(HeaderName::from_static("x-forwarded-groups")),
        template: UserIdTemplate::default(),
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
            assert!(
                matches!(
                    mode.identify(trusted, &request),
                    Err(IdentityError::Unauthorized { .. })
                ),
                "{name} (trusted: {trusted})"
            );
        }
        let alone = headers(&[(name, value)]);
        assert!(mode.identify(true, &alone).is_err(), "{name} alone");
    }
    let unrelated = headers(&[("x-forwarded-user", "alice"), ("x_forwarded_email", "a@b")]);
    assert_eq!(mode.identify(true, &unrelated).unwrap().user_id, "alice");
}

#[test]
fn template_maps_and_checks_the_user_id() {
    let template = UserIdTemplate::parse("tenant-{id}").unwrap();
    assert_eq!(template.apply("42", vec![]).unwrap().user_id, "tenant-42");
    assert!(matches!(
        template.apply("a.b@example.com", vec![]),
        Err(IdentityError::Forbidden(_))
    ));
    assert!(UserIdTemplate::parse("no-placeholder").is_err());
    assert!(UserIdTemplate::parse("{id}-{id}").is_err());
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
        template: UserIdTemplate::default(),
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
    assert!(matches!(
        mode.interpret(StatusCode::UNAUTHORIZED, &HeaderMap::new(), b""),
        Err(IdentityError::Unauthorized { .. })
    ));
    assert!(matches!(
        mode.interpret(StatusCode::FORBIDDEN, &HeaderMap::new(), b""),
        Err(IdentityError::Unauthorized { .. })
    ));
    assert!(matches!(
        mode.interpret(StatusCode::INTERNAL_SERVER_ERROR, &HeaderMap::new(), b""),
        Err(IdentityError::Unavailable(_))
    ));
    assert!(matches!(
        mode.interpret(StatusCode::OK, &HeaderMap::new(), b"<html>"),
        Err(IdentityError::Unavailable(_))
    ));

    let by_header = forward_auth(UserIdLocation::Header(HeaderName::from_static("x-user-id")));
    let identity = by_header
        .interpret(StatusCode::OK, &headers(&[("x-user-id", "bob")]), b"{}")
        .unwrap();
    assert_eq!(identity.user_id, "bob");
}

fn jwt_mode(secret: &[u8]) -> JwtIdentity {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&["https://idp.example"]);
    validation.validate_aud = false;
    JwtIdentity::new(
        JwtKeys::Static(DecodingKey::from_secret(secret)),
        validation,
        "sub".into(),
        Some("roles".into()),
        UserIdTemplate::default(),
    )
}

fn bearer(claims: Value, secret: &[u8]) -> String {
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap();
    format!("Bearer {token}")
}

#[test]
fn jwt_identity_verifies_signature_expiry_and_issuer() {
    let mode = jwt_mode(b"idp-secret");
    let exp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let good = bearer(
        json!({"sub":"alice","iss":"https://idp.example","exp":exp,"roles":"admin"}),
        b"idp-secret",
    );
    let identity = mode.identify(Some(good.as_bytes())).unwrap();
    assert_eq!(
        identity,
        Identity {
            user_id: "alice".into(),
            roles: vec!["admin".into()],
            expires_at: None,
        }
    );

    let forged = bearer(
        json!({"sub":"alice","iss":"https://idp.example","exp":exp}),
        b"wrong",
    );
    let expired = bearer(
        json!({"sub":"alice","iss":"https://idp.example","exp":1000}),
        b"idp-secret",
    );
    let wrong_issuer = bearer(
        json!({"sub":"alice","iss":"https://evil.example","exp":exp}),
        b"idp-secret",
    );
    let no_sub = bearer(
        json!({"iss":"https://idp.example","exp":exp}),
        b"idp-secret",
    );
    for bad in [
        forged,
        expired,
        wrong_issuer,
        no_sub,
        "Bearer not.a.jwt".into(),
        "Basic abc".into(),
    ] {
        match mode.identify(Some(bad.as_bytes())) {
            Err(IdentityError::Unauthorized {
                challenge: Some(_), ..
            }) => {}
            other => panic!("{bad}: {other:?}"),
        }
    }
    assert!(matches!(
        mode.identify(None),
        Err(IdentityError::Unauthorized {
            challenge: Some(BEARER_CHALLENGE),
            ..
        })
    ));
}
