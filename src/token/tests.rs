use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::signing::HEADER_SEGMENT;
use super::*;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::json;

const NOW: u64 = 1_795_000_000;

fn minter(policy: TokenPolicy) -> TokenMinter {
    let signer = SignerSlot::default();
    signer.replace(b"the-secret");
    TokenMinter::with_signer("the-key", Arc::new(signer), policy)
}

fn endpoint() -> TokenMinter {
    minter(TokenPolicy::default())
}

/// The three steps for a complete body, as a route without rate limits runs them.
fn answer_with(
    minter: &TokenMinter,
    kind: MintKind,
    body: &[u8],
    identity: Option<&Identity>,
    now: SystemTime,
) -> Reply {
    minter
        .parse(kind, body, identity.is_some())
        .and_then(|request| minter.authorize(request, identity))
        .and_then(|grant| minter.issue(&grant, now))
        .unwrap_or_else(Rejection::into_reply)
}

fn answer(body: &str) -> (u16, Value) {
    let reply = answer_with(
        &endpoint(),
        MintKind::UserToken,
        body.as_bytes(),
        None,
        UNIX_EPOCH + Duration::from_secs(NOW),
    );
    (
        reply.status,
        serde_json::from_slice(&reply.body).expect("reply is JSON"),
    )
}

fn error_of(body: &str) -> (u16, String) {
    let (status, json) = answer(body);
    assert_eq!(json["success"], json!(false), "{json}");
    assert_eq!(json.as_object().unwrap().len(), 2, "{json}");
    (
        status,
        json["error"]
            .as_str()
            .expect("error is a string")
            .to_string(),
    )
}

fn claims_of(token: &str) -> Value {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_exp = false;
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_secret(b"the-secret"), &validation)
        .expect("token verifies")
        .claims
}

#[test]
fn user_token_with_call() {
    let (status, json) =
        answer(r#"{"userId":"user123","validityInSeconds":7200,"callId":"call-456"}"#);
    assert_eq!(status, 200);
    assert_eq!(json["success"], json!(true));
    let data = &json["data"];
    assert_eq!(data["userId"], "user123");
    assert_eq!(data["apiKey"], "the-key");
    assert_eq!(data["callId"], "call-456");
    assert_eq!(data["callType"], "default");
    assert_eq!(data["validityInSeconds"], 7200);
    assert_eq!(data["expiresAt"], "2026-11-18T13:06:40Z");
    let token = data["token"].as_str().unwrap();
    assert!(token.starts_with(HEADER_SEGMENT));
    assert_eq!(
        claims_of(token),
        json!({"user_id":"user123","iat":NOW - 5,"exp":NOW + 7200,"call_cids":["default:call-456"]})
    );
}

#[test]
fn data_keys_are_exactly_the_contract() {
    let reply = answer_with(
        &endpoint(),
        MintKind::UserToken,
        br#"{"userId":"u","extra":"ignored","role":"admin"}"#,
        None,
        UNIX_EPOCH + Duration::from_secs(NOW),
    );
    let text = String::from_utf8(reply.body).unwrap();
    let order = [
        "token",
        "userId",
        "apiKey",
        "callType",
        "validityInSeconds",
        "expiresAt",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|k| text.find(&format!("\"{k}\":")).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
    let json: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        json["data"].as_object().unwrap().len(),
        order.len(),
        "{text}"
    );
    let claims = claims_of(json["data"]["token"].as_str().unwrap());
    assert_eq!(
        claims,
        json!({"user_id":"u","iat":NOW - 5,"exp":NOW + 3600})
    );
}

#[test]
fn custom_call_type_and_integral_float() {
    let (status, json) = answer(
        r#"{"userId":"a@b_c-d","validityInSeconds":60.0,"callId":"x","callType":"livestream"}"#,
    );
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["data"]["validityInSeconds"], 60);
    let claims = claims_of(json["data"]["token"].as_str().unwrap());
    assert_eq!(claims["call_cids"], json!(["livestream:x"]));
}

#[test]
fn null_fields_count_as_absent() {
    let (status, json) =
        answer(r#"{"userId":"u","callId":null,"callType":null,"validityInSeconds":null}"#);
    assert_eq!(status, 200, "{json}");
    assert!(json["data"].get("callId").is_none());
    assert_eq!(json["data"]["validityInSeconds"], 3600);
}

#[test]
fn validation_messages_name_field_and_rule() {
    let cases = [
        (r#"{}"#, "Validation failed: userId is required"),
        (
            r#"{"userId":null}"#,
            "Validation failed: userId is required",
        ),
        (
            r#"{"userId":""}"#,
            "Validation failed: userId must be 1 to 255 characters from A-Z a-z 0-9 @ _ -",
        ),
        (
            r#"{"userId":"a b"}"#,
            "Validation failed: userId must be 1 to 255 characters from A-Z a-z 0-9 @ _ -",
        ),
        (
            r#"{"userId":"a|b"}"#,
            "Validation failed: userId must be 1 to 255 characters from A-Z a-z 0-9 @ _ -",
        ),
        (
            r#"{"userId":"é"}"#,
            "Validation failed: userId must be 1 to 255 characters from A-Z a-z 0-9 @ _ -",
        ),
        (
            r#"{"userId":42}"#,
            "Validation failed: userId must be a string",
        ),
        (
            r#"{"userId":"u","validityInSeconds":0}"#,
            "Validation failed: validityInSeconds must be an integer between 1 and 86400",
        ),
        (
            r#"{"userId":"u","validityInSeconds":86401}"#,
            "Validation failed: validityInSeconds must be an integer between 1 and 86400",
        ),
        (
            r#"{"userId":"u","validityInSeconds":-5}"#,
            "Validation failed: validityInSeconds must be an integer between 1 and 86400",
        ),
        (
            r#"{"userId":"u","validityInSeconds":1.5}"#,
            "Validation failed: validityInSeconds must be an integer between 1 and 86400",
        ),
        (
            r#"{"userId":"u","validityInSeconds":"7200"}"#,
            "Validation failed: validityInSeconds must be an integer between 1 and 86400",
        ),
        (
            r#"{"userId":"u","validityInSeconds":1e300}"#,
            "Validation failed: validityInSeconds must be an integer between 1 and 86400",
        ),
        (
            r#"{"userId":"u","callId":""}"#,
            "Validation failed: callId must be 1 to 64 characters from A-Z a-z 0-9 _ -",
        ),
        (
            r#"{"userId":"u","callId":"a:b"}"#,
            "Validation failed: callId must be 1 to 64 characters from A-Z a-z 0-9 _ -",
        ),
        (
            r#"{"userId":"u","callId":7}"#,
            "Validation failed: callId must be a string",
        ),
        (
            r#"{"userId":"u","callType":"a.b"}"#,
            "Validation failed: callType must be 1 to 64 characters from A-Z a-z 0-9 _ -",
        ),
        (
            r#"{"userId":"u","callType":7}"#,
            "Validation failed: callType must be a string",
        ),
    ];
    for (body, message) in cases {
        assert_eq!(error_of(body), (422, message.to_string()), "body {body}");
    }
}

#[test]
fn length_limits_are_inclusive() {
    let at = format!(
        r#"{{"userId":"{}","callId":"{}"}}"#,
        "u".repeat(255),
        "c".repeat(64)
    );
    assert_eq!(answer(&at).0, 200);
    assert_eq!(
        error_of(&format!(r#"{{"userId":"{}"}}"#, "u".repeat(256))).0,
        422
    );
    assert_eq!(
        error_of(&format!(
            r#"{{"userId":"u","callId":"{}"}}"#,
            "c".repeat(65)
        ))
        .0,
        422
    );
}

#[test]
fn malformed_bodies_are_400() {
    for body in [
        "",
        "  ",
        "{",
        "not json",
        "[1,2]",
        r#"["user123"]"#,
        "\"userId\"",
        "null",
        r#"{"userId":"u"} x"#,
        r#"{"userId":"u","userId":"v"}"#,
    ] {
        let (status, message) = error_of(body);
        assert_eq!(status, 400, "body {body:?}: {message}");
        assert!(message.starts_with("Invalid JSON body: "), "{message}");
    }
    assert_eq!(
        error_of("[1]").1,
        "Invalid JSON body: expected a JSON object"
    );
}

#[test]
fn header_checks() {
    let e = endpoint();
    assert_eq!(e.check_headers(None, None), Ok(()));
    assert_eq!(
        e.check_headers(Some(b"application/json"), Some(b"10")),
        Ok(())
    );
    assert_eq!(
        e.check_headers(Some(b"Application/JSON; charset=utf-8"), None),
        Ok(())
    );
    let rejected = e.check_headers(Some(b"text/plain"), None).unwrap_err();
    assert_eq!(rejected.status(), 415);
    assert_eq!(
        rejected.to_string(),
        r#"Unsupported Content-Type "text/plain": send application/json"#
    );
    assert_eq!(
        e.check_headers(Some(b"garbage"), None)
            .unwrap_err()
            .status(),
        415
    );
    assert_eq!(e.check_headers(None, Some(b"16384")), Ok(()));
    assert_eq!(
        e.check_headers(None, Some(b"ten")).unwrap_err().status(),
        400
    );
    let too_large = e.check_headers(None, Some(b"16385")).unwrap_err();
    assert_eq!(too_large.status(), 413);
    assert_eq!(
        too_large.to_string(),
        "Request body too large: the limit is 16384 bytes"
    );
}

#[test]
fn error_envelope_escapes_the_message() {
    let reply = Reply::error(404, "no route for \"/x\"");
    assert_eq!(
        reply.body,
        br#"{"success":false,"error":"no route for \"/x\""}"#
    );
}

fn call_answer(body: &str, identity: Option<&Identity>, policy: TokenPolicy) -> (u16, Value) {
    let minter = minter(policy);
    let reply = answer_with(
        &minter,
        MintKind::CallToken,
        body.as_bytes(),
        identity,
        UNIX_EPOCH + Duration::from_secs(NOW),
    );
    (reply.status, serde_json::from_slice(&reply.body).unwrap())
}

fn alice(roles: &[&str]) -> Identity {
    Identity {
        user_id: "alice".into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        expires_at: None,
    }
}

#[test]
fn identity_decides_the_user() {
    let minter = endpoint();
    let at = UNIX_EPOCH + Duration::from_secs(NOW);
    let me = alice(&[]);
    let reply = answer_with(&minter, MintKind::UserToken, b"{}", Some(&me), at);
    assert_eq!(reply.status, 200);
    let json: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(json["data"]["userId"], "alice");
    assert_eq!(
        claims_of(json["data"]["token"].as_str().unwrap())["user_id"],
        "alice"
    );
    assert_eq!(
        answer_with(
            &minter,
            MintKind::UserToken,
            br#"{"userId":"alice"}"#,
            Some(&me),
            at
        )
        .status,
        200
    );
    let other = answer_with(
        &minter,
        MintKind::UserToken,
        br#"{"userId":"mallory"}"#,
        Some(&me),
        at,
    );
    assert_eq!(
        other,
        Reply::error(
            403,
            "Forbidden: userId does not match the authenticated user"
        )
    );
}

#[test]
fn call_token_carries_the_role_and_call() {
    let (status, json) = call_answer(
        r#"{"userId":"u","callId":"c1","role":"user"}"#,
        None,
        TokenPolicy::default(),
    );
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["data"]["role"], "user");
    assert_eq!(
        claims_of(json["data"]["token"].as_str().unwrap()),
        json!({"user_id":"u","iat":NOW - 5,"exp":NOW + 3600,"call_cids":["default:c1"],"role":"user"})
    );
    let (status, json) = call_answer(
        r#"{"userId":"u","callId":"c1"}"#,
        None,
        TokenPolicy::default(),
    );
    assert_eq!(status, 200);
    assert!(claims_of(json["data"]["token"].as_str().unwrap())
        .get("role")
        .is_none());
    assert_eq!(
        call_answer(r#"{"userId":"u"}"#, None, TokenPolicy::default()),
        (
            422,
            json!({"success":false,"error":"Validation failed: callId is required"})
        )
    );
    assert_eq!(
        call_answer(
            r#"{"userId":"u","callId":"c","role":"a b"}"#,
            None,
            TokenPolicy::default()
        )
        .0,
        422
    );
}

#[test]
fn roles_beyond_the_open_list_need_the_identity_to_carry_them() {
    let escalate = r#"{"callId":"c1","role":"admin"}"#;
    let refused =
        json!({"success":false,"error":"Forbidden: role \"admin\" is not granted to this user"});
    assert_eq!(
        call_answer(escalate, Some(&alice(&[])), TokenPolicy::default()),
        (403, refused.clone())
    );
    assert_eq!(
        call_answer(
            r#"{"userId":"u","callId":"c1","role":"admin"}"#,
            None,
            TokenPolicy::default()
        ),
        (403, refused)
    );
    assert_eq!(
        call_answer(escalate, Some(&alice(&["admin"])), TokenPolicy::default()).0,
        200
    );
}

#[test]
fn call_types_can_be_restricted() {
    let policy = TokenPolicy {
        allowed_call_types: Some(vec!["default".into()]),
        ..TokenPolicy::default()
    };
    assert_eq!(
        call_answer(r#"{"userId":"u","callId":"c"}"#, None, policy.clone()).0,
        200
    );
    let (status, json) = call_answer(
        r#"{"userId":"u","callId":"c","callType":"livestream"}"#,
        None,
        policy,
    );
    assert_eq!(status, 403);
    assert_eq!(
        json["error"],
        "Forbidden: callType \"livestream\" is not allowed (allowed: default)"
    );
}

/// A fixed vector computed outside this crate (Python's `hmac` and `base64`
/// over the SDK header segment and the claims in the Node SDK's order, secret
/// `the-secret`): any change to the claims' bytes, their order or the
/// signature shows up here, not only in a round trip through our own code.
#[test]
fn user_token_matches_an_independently_computed_vector() {
    const EXPECTED: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
        eyJ1c2VyX2lkIjoiam9obiIsImlhdCI6MTc5NDk5OTk5NSwiZXhwIjoxNzk1MDAzNjAwfQ.\
        QIrnGmvZhf5HgQFUb8EFzk8Jk-wFkOqRsEF0NdpCv6w";
    let (status, json) = answer(r#"{"userId":"john"}"#);
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["data"]["token"], EXPECTED);
}

/// The answer for `alice` whose credential expires at `expires_at`, asking `body`.
fn answer_until(expires_at: u64, body: &str) -> (u16, Value) {
    let identity = Identity {
        expires_at: Some(expires_at),
        ..alice(&[])
    };
    let reply = answer_with(
        &endpoint(),
        MintKind::UserToken,
        body.as_bytes(),
        Some(&identity),
        UNIX_EPOCH + Duration::from_secs(NOW),
    );
    (reply.status, serde_json::from_slice(&reply.body).unwrap())
}

#[test]
fn a_token_expires_no_later_than_the_credential() {
    let (status, json) = answer_until(NOW + 600, r#"{"validityInSeconds": 86400}"#);
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["data"]["validityInSeconds"], 600);
    assert_eq!(json["data"]["expiresAt"], "2026-11-18T11:16:40Z");
    let token = json["data"]["token"].as_str().unwrap();
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_exp = false;
    let claims =
        jsonwebtoken::decode::<Value>(token, &DecodingKey::from_secret(b"the-secret"), &validation)
            .unwrap()
            .claims;
    assert_eq!(claims["exp"], NOW + 600);
    // A shorter request than the credential stands.
    let (_, json) = answer_until(NOW + 600, r#"{"validityInSeconds": 60}"#);
    assert_eq!(json["data"]["validityInSeconds"], 60);
}

#[test]
fn a_credential_that_expires_now_gets_no_token() {
    for expires_at in [NOW, NOW - 10] {
        let (status, json) = answer_until(expires_at, "{}");
        assert_eq!(status, 401, "{json}");
        assert!(
            json["error"].as_str().unwrap().contains("expired"),
            "{json}"
        );
    }
    assert_eq!(answer_until(NOW + 1, "{}").0, 200);
}
