//! Tokens, both ways: asking streamgate for Stream tokens and verifying what
//! it minted (the one place that decodes them), and signing the
//! identity-provider tokens that `identity: jwt` accepts or refuses.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::Value;

use super::client::post_json;
use super::config::API_SECRET;
use super::process::Streamgate;
use super::FIXTURES;

pub const USER_TOKEN_PATH: &str = "/api/tokens/user";
pub const CALL_TOKEN_PATH: &str = "/api/tokens/call";

/// The first segment of every Stream token: `{"alg":"HS256","typ":"JWT"}`.
pub const HEADER_SEGMENT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

// ---- asking for tokens -------------------------------------------------------

/// POSTs `body` as JSON to the token route `path` with extra request headers;
/// the status, the JSON answer and the response headers.
pub async fn mint(
    gate: &Streamgate,
    path: &str,
    body: Value,
    headers: &[(&str, &str)],
) -> (u16, Value, reqwest::header::HeaderMap) {
    let response = post_json(gate.url(path), &body, headers).await;
    let status = response.status().as_u16();
    let response_headers = response.headers().clone();
    let answer = response.json().await.expect("a JSON answer");
    (status, answer, response_headers)
}

/// [`mint`] on `POST /api/tokens/user`.
pub async fn mint_user(
    gate: &Streamgate,
    body: Value,
    headers: &[(&str, &str)],
) -> (u16, Value, reqwest::header::HeaderMap) {
    mint(gate, USER_TOKEN_PATH, body, headers).await
}

// ---- verifying Stream tokens ---------------------------------------------------

/// The token in a success envelope (`data.token`).
pub fn token_in(answer: &Value) -> &str {
    answer["data"]["token"].as_str().expect("a token")
}

/// Decodes `token` as Stream does: HS256 with `secret` as the key, an `exp`
/// claim required and not passed.
fn decode(token: &str, secret: &str) -> jsonwebtoken::errors::Result<Value> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.required_spec_claims = ["exp".to_string()].into();
    jsonwebtoken::decode::<Value>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .map(|data| data.claims)
}

/// Whether `token` verifies with `secret` (see [`claims`] for the checks that
/// panic instead).
pub fn verifies_with(token: &str, secret: &str) -> bool {
    decode(token, secret).is_ok()
}

/// Verifies a Stream token and returns its claims, panicking unless: the
/// header segment is exactly HS256/JWT, the signature verifies with `secret`,
/// `exp` is present and not passed, and it does not verify with another secret.
pub fn claims(token: &str, secret: &str) -> Value {
    assert!(
        token.starts_with(&format!("{HEADER_SEGMENT}.")),
        "header segment of {token}"
    );
    let claims = decode(token, secret)
        .unwrap_or_else(|e| panic!("token does not verify with the secret: {e}: {token}"));
    assert!(
        !verifies_with(token, &format!("another {secret}")),
        "token must not verify with another secret"
    );
    claims
}

/// The claims of the token in a success envelope, verified with [`API_SECRET`].
pub fn minted_claims(answer: &Value) -> Value {
    claims(token_in(answer), API_SECRET)
}

/// The user a minted token is for (`user_id`), after verifying it.
pub fn minted_user(answer: &Value) -> String {
    minted_claims(answer)["user_id"]
        .as_str()
        .expect("a user_id claim")
        .to_string()
}

// ---- identity-provider tokens ------------------------------------------------

/// Seconds since the Unix epoch, as in `iat` and `exp`.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `claims` signed with HS256 and `secret`.
pub fn hs256(claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// `claims` signed with RS256 and the fixture key `key` (`tests/fixtures/<key>.pem`),
/// with `kid` set to `key`.
pub fn rs256(claims: Value, key: &str) -> String {
    let pem = std::fs::read(format!("{FIXTURES}/{key}.pem")).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(key.to_string());
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_pem(&pem).unwrap()).unwrap()
}
