use serde_json::json;

use super::*;
use crate::token::Signer;

const NOW: u64 = 1_800_000_000;
const SECRET: &[u8] = b"the-api-secret";

fn stream_token(claims: &Value) -> String {
    Signer::new(SECRET).sign(claims).expect("sign")
}

fn b64(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(text)
}

#[test]
fn decodes_a_minted_token_without_the_secret() {
    let token = stream_token(&json!({"user_id": "alice", "exp": NOW + 60}));
    let decoded = decode(&token).unwrap();
    assert_eq!(decoded.header["alg"], "HS256");
    assert_eq!(decoded.claims["user_id"], "alice");
}

#[test]
fn malformed_tokens_name_the_wrong_part() {
    let cases = [
        ("garbage", "expected 3 parts"),
        ("a.b.c.d", "found 4"),
        ("@@.e30.c2ln", "header (part 1) is not base64url"),
        (
            &format!("{}.e30.c2ln", b64("[1]")),
            "header (part 1) is JSON but not an object",
        ),
        (
            &format!("{}.e30.c2ln", b64("{")),
            "header (part 1) is not JSON",
        ),
        (
            &format!("{}.@@.c2ln", b64("{}")),
            "payload (part 2) is not base64url",
        ),
        (
            &format!("{}.e30.", b64("{}")),
            "signature (part 3) is empty",
        ),
        (
            &format!("{}.e30.@@", b64("{}")),
            "signature (part 3) is not base64url",
        ),
    ];
    for (token, expected) in cases {
        let error = decode(token).unwrap_err().to_string();
        assert!(error.contains(expected), "{token}: {error}");
    }
}

#[test]
fn spans_use_two_units_at_most() {
    assert_eq!(span(0), "0s");
    assert_eq!(span(59 * 60 + 12), "59m 12s");
    assert_eq!(span(3 * 3600), "3h");
    assert_eq!(span(3 * 3600 + 5), "3h");
    assert_eq!(span(2 * 86_400 + 4 * 3600 + 9), "2d 4h");
}

#[test]
fn time_claims_in_words() {
    let exp = time_claim("exp", &json!(NOW + 59 * 60 + 12), NOW);
    assert!(exp.ends_with("(expires in 59m 12s)"), "{exp}");
    assert!(exp.starts_with("2027-01-15T08:"), "{exp}");
    assert!(time_claim("exp", &json!(NOW - 3 * 3600), NOW).ends_with("(expired 3h ago)"));
    assert!(time_claim("iat", &json!(NOW - 60), NOW).ends_with("(1m ago)"));
    assert!(time_claim("nbf", &json!(NOW + 5), NOW).ends_with("(not valid for another 5s)"));
    assert!(time_claim("exp", &json!("soon"), NOW).contains("not a valid exp"));
    let lines = time_lines(
        &decode(&stream_token(&json!({"iat": NOW, "exp": NOW + 1})))
            .unwrap()
            .claims,
        NOW,
    );
    assert_eq!(lines.len(), 2, "{lines:?}");
}

#[test]
fn a_valid_stream_token_verifies() {
    let token = stream_token(&json!({"user_id": "alice", "iat": NOW, "exp": NOW + 3600}));
    let claims = verify(&token, SECRET, NOW).unwrap();
    assert_eq!(claims["user_id"], "alice");
}

#[test]
fn each_invalid_token_says_why() {
    let valid = json!({"user_id": "alice", "exp": NOW + 3600});
    let other_secret = Signer::new(b"another").sign(&valid).unwrap();
    let expired = stream_token(&json!({"user_id": "alice", "exp": NOW - 10}));
    let at_exp = stream_token(&json!({"user_id": "alice", "exp": NOW}));
    let no_exp = stream_token(&json!({"user_id": "alice"}));
    let text_exp = stream_token(&json!({"user_id": "alice", "exp": "tomorrow"}));
    let early = stream_token(&json!({"user_id": "alice", "exp": NOW + 60, "nbf": NOW + 30}));
    let rs256 = format!("{}.{}.c2ln", b64(r#"{"alg":"RS256"}"#), b64("{}"));
    let none = format!("{}.{}.c2ln", b64(r#"{"alg":"none"}"#), b64("{}"));
    let no_alg = format!("{}.{}.c2ln", b64("{}"), b64("{}"));
    let cases = [
        (other_secret.as_str(), "signature does not match"),
        (&expired, "expired: exp is "),
        (&at_exp, "expired"),
        (&no_exp, "missing exp"),
        (&text_exp, "exp is not a number"),
        (&early, "not valid yet"),
        (&rs256, "not HS256: the header says alg RS256"),
        (&none, "not HS256"),
        (&no_alg, "not HS256: the header has no alg"),
        ("garbage", "malformed: not a JWT"),
    ];
    for (token, expected) in cases {
        let reason = verify(token, SECRET, NOW).unwrap_err().0;
        assert!(reason.starts_with(expected), "{token}: {reason}");
    }
}

#[test]
fn an_altered_payload_fails_the_signature() {
    let token = stream_token(&json!({"user_id": "alice", "exp": NOW + 60}));
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = b64(r#"{"user_id":"admin","exp":1900000000}"#);
    let reason = verify(&parts.join("."), SECRET, NOW).unwrap_err().0;
    assert!(reason.starts_with("signature"), "{reason}");
}
