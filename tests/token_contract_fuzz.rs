//! Fuzz-style property tests of the token contract: over ten thousand generated
//! bodies — random bytes, truncated JSON, wrong types, huge numbers, deep
//! nesting, long and non-ASCII strings — each must get a well-formed 200 or 4xx
//! envelope. No panic, no 500.

mod common;

use std::time::SystemTime;

use common::claims;
use proptest::prelude::*;
use serde_json::{json, Value};
use std::sync::Arc;

use streamgate::token::{Identity, MintKind, Rejection, SignerSlot, TokenMinter, TokenPolicy};

const SECRET: &str = "fuzz-secret";

fn endpoint() -> TokenMinter {
    let signer = SignerSlot::default();
    signer.replace(SECRET.as_bytes());
    TokenMinter::with_signer("fuzz-key", Arc::new(signer), TokenPolicy::default())
}

/// The invariant every answer must satisfy, for a user token from an
/// anonymous caller and a call token from an identified one.
fn assert_well_formed(body: &[u8]) {
    let identity = Identity {
        user_id: "john_doe".into(),
        roles: vec!["moderator".into()],
        expires_at: None,
    };
    assert_well_formed_as(MintKind::UserToken, body, None);
    assert_well_formed_as(MintKind::CallToken, body, Some(&identity));
}

fn assert_well_formed_as(kind: MintKind, body: &[u8], identity: Option<&Identity>) {
    let minter = endpoint();
    let reply = minter
        .parse(kind, body, identity.is_some())
        .and_then(|request| minter.authorize(request, identity))
        .and_then(|grant| minter.issue(&grant, SystemTime::now()))
        .unwrap_or_else(Rejection::into_reply);
    assert!(
        matches!(reply.status, 200 | 400 | 403 | 422),
        "status {} for body {:?}",
        reply.status,
        String::from_utf8_lossy(body)
    );
    let json: Value = serde_json::from_slice(&reply.body).expect("reply is JSON");
    let object = json.as_object().expect("reply is an object");
    assert_eq!(object.len(), 2, "{json}");
    if reply.status == 200 {
        assert_eq!(json["success"], json!(true));
        let token = json["data"]["token"].as_str().expect("token");
        let claims = claims(token, SECRET);
        assert_eq!(claims["user_id"], json["data"]["userId"]);
        if let Some(identity) = identity {
            assert_eq!(
                claims["user_id"],
                identity.user_id.as_str(),
                "never a token for someone else"
            );
        }
    } else {
        assert_eq!(json["success"], json!(false));
        let message = json["error"].as_str().expect("error message");
        let expected_prefix = if reply.status == 400 {
            "Invalid JSON body: "
        } else {
            "Validation failed: "
        };
        assert!(message.starts_with(expected_prefix), "{message}");
    }
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        (1u64..=86_400).prop_map(|n| json!(n as f64)),
        "[A-Za-z0-9@_-]{0,300}".prop_map(Value::String),
        any::<String>().prop_map(Value::String),
        "\\PC{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{0,10}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Objects built from the contract's own field names, so that most cases get
/// past the parser and exercise validation.
fn token_request_like() -> impl Strategy<Value = Vec<u8>> {
    let field = prop_oneof![
        Just("userId".to_string()),
        Just("validityInSeconds".to_string()),
        Just("callId".to_string()),
        Just("callType".to_string()),
        Just("role".to_string()),
        "[a-zA-Z]{1,12}",
    ];
    prop::collection::vec((field, arbitrary_json()), 0..6).prop_map(|pairs| {
        let object: serde_json::Map<String, Value> = pairs.into_iter().collect();
        serde_json::to_vec(&Value::Object(object)).unwrap()
    })
}

const VALID_BODIES: [&str; 3] = [
    r#"{"userId":"john_doe"}"#,
    r#"{"userId":"john_doe","validityInSeconds":86400}"#,
    r#"{"userId":"john_doe","callId":"meeting-123","callType":"default","validityInSeconds":7200}"#,
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        assert_well_formed(&body);
    }

    #[test]
    fn wrong_types_huge_numbers_unicode(body in token_request_like()) {
        assert_well_formed(&body);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn truncated_and_spliced_json(which in 0..VALID_BODIES.len(), cut in 0usize..120, noise in prop::collection::vec(any::<u8>(), 0..4)) {
        let valid = VALID_BODIES[which].as_bytes();
        let mut body = valid[..cut.min(valid.len())].to_vec();
        body.extend_from_slice(&noise);
        assert_well_formed(&body);
    }

    #[test]
    fn deep_nesting(depth in 1usize..20_000, in_field in any::<bool>(), bracket in any::<bool>()) {
        let (open, close) = if bracket { ("[", "]") } else { (r#"{"a":"#, "}") };
        let nested = format!("{}1{}", open.repeat(depth), close.repeat(depth));
        let body = if in_field { format!(r#"{{"userId":"u","extra":{nested}}}"#) } else { nested };
        assert_well_formed(body.as_bytes());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn long_and_unicode_strings(user_id in "\\PC{0,600}", call_id in "[\\PC&&[^\"\\\\]]{0,100}", huge in "[0-9]{1,400}") {
        let body = json!({"userId": user_id, "callId": call_id}).to_string();
        assert_well_formed(body.as_bytes());
        let body = format!(r#"{{"userId":"u","validityInSeconds":{huge}}}"#);
        assert_well_formed(body.as_bytes());
        let body = format!(r#"{{"userId":"u","validityInSeconds":{huge}e{huge}}}"#);
        assert_well_formed(body.as_bytes());
    }

    #[test]
    fn header_checks_never_panic(content_type in prop::collection::vec(any::<u8>(), 0..64), length in prop::collection::vec(any::<u8>(), 0..24)) {
        let endpoint = endpoint();
        if let Err(rejection) = endpoint.check_headers(Some(&content_type), Some(&length)) {
            prop_assert!(matches!(rejection.status(), 400 | 413 | 415));
        }
    }
}
