//! `jwt` mode's refusals: each way a bearer token can be wrong, made for real
//! (signed with jsonwebtoken, or built part by part), gets its own reason
//! and words, and never jsonwebtoken's own text.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Value};

use crate::identity::jwks::{JwksLocation, RemoteJwks};
use crate::identity::jwt::BEARER_CHALLENGE;
use crate::identity::*;

const SECRET: &[u8] = b"idp-secret";
const ISSUER: &str = "https://idp.example";
const AUDIENCE: &str = "streamgate";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims every check accepts; tests change one at a time.
fn claims() -> Value {
    json!({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600, "nbf": now() - 10})
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

/// The validation `config::validate::identity` builds for an issuer, an
/// audience and a 30 s leeway.
fn validation(algorithms: &[Algorithm]) -> Validation {
    let mut validation = Validation::new(algorithms[0]);
    validation.algorithms = algorithms.to_vec();
    validation.validate_nbf = true;
    validation.leeway = 30;
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    validation
        .required_spec_claims
        .extend(["iss".to_string(), "aud".to_string()]);
    validation
}

fn hmac_mode() -> JwtIdentity {
    hmac_mode_reading("sub")
}

fn hmac_mode_reading(user_claim: &str) -> JwtIdentity {
    JwtIdentity::new(
        JwtKeys::Static(DecodingKey::from_secret(SECRET)),
        validation(&[Algorithm::HS256]),
        user_claim.into(),
        Some("roles".into()),
        UserIdMapping::default(),
    )
}

/// A JWKS of the fixture keys named, plus any extra JWKs.
fn jwks_mode(fixture_keys: &[&str], extra: &[Value]) -> JwtIdentity {
    let mut keys: Vec<Value> = Vec::new();
    for name in fixture_keys {
        let text = std::fs::read(format!("{FIXTURES}/{name}.jwks.json")).unwrap();
        let set: Value = serde_json::from_slice(&text).unwrap();
        keys.extend(set["keys"].as_array().unwrap().iter().cloned());
    }
    keys.extend(extra.iter().cloned());
    let document = json!({ "keys": keys }).to_string();
    JwtIdentity::new(
        JwtKeys::Jwks(Arc::new(JwksKeys::parse(document.as_bytes()).unwrap())),
        validation(&[Algorithm::RS256, Algorithm::ES256]),
        "sub".into(),
        None,
        UserIdMapping::default(),
    )
}

fn hs(algorithm: Algorithm, claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(algorithm),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

/// RS256 with the fixture key `key`, naming `kid` (or none).
fn rs(key: &str, kid: Option<&str>, claims: &Value) -> String {
    let pem = std::fs::read(format!("{FIXTURES}/{key}.pem")).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(String::from);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_pem(&pem).unwrap()).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `header.payload` (both already encoded) with a valid HS256 signature, so
/// that jsonwebtoken gets past the signature to the part under test.
fn signed(header: &str, payload: &str) -> String {
    let message = format!("{header}.{payload}");
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(SECRET),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{message}.{signature}")
}

fn hs256_header() -> String {
    b64(br#"{"alg":"HS256","typ":"JWT"}"#)
}

fn refused(mode: &JwtIdentity, token: &str) -> IdentityError {
    mode.identify(Some(format!("Bearer {token}").as_bytes()))
        .expect_err(token)
}

/// A 401 with the `invalid_token` challenge, `reason` and exactly `message`,
/// and nothing of jsonwebtoken's own text or of the token.
fn assert_refused(mode: &JwtIdentity, token: &str, reason: Reason, message: &str) {
    let error = refused(mode, token);
    assert_eq!(error.reason(), reason, "{token}: {error}");
    assert_eq!(error.message(), message, "{token}");
    assert_eq!(reason.status(), 401);
    assert_eq!(
        error.challenge(),
        Some(r#"Bearer realm="streamgate", error="invalid_token""#)
    );
    for leak in ["Base64", "JSON error", "symbol", "Invalid", "Error"] {
        assert!(!error.message().contains(leak), "{leak} in {error}");
    }
    assert!(token.len() < 8 || !error.message().contains(token));
    assert!(!error.is_unknown_key() || reason == Reason::UnknownKey);
}

#[test]
fn a_valid_token_names_its_user_and_roles() {
    let token = hs(
        Algorithm::HS256,
        &with(claims(), "roles", json!("admin staff")),
        SECRET,
    );
    let identity = hmac_mode()
        .identify(Some(format!("Bearer {token}").as_bytes()))
        .unwrap();
    assert_eq!(identity.user_id, "alice");
    assert_eq!(identity.roles, ["admin", "staff"]);
}

#[test]
fn no_bearer_credential_is_missing_credentials_with_the_plain_challenge() {
    let mode = hmac_mode();
    for authorization in [None, Some(&b"Basic YWxpY2U6cHc="[..]), Some(b"Bearer  ")] {
        let error = mode.identify(authorization).unwrap_err();
        assert_eq!(error.reason(), Reason::MissingCredentials);
        assert_eq!(error.challenge(), Some(BEARER_CHALLENGE));
        assert_eq!(
            error.message(),
            "no credentials: send the identity provider's token as Authorization: Bearer <JWT>"
        );
    }
}

#[test]
fn each_malformed_part_is_named() {
    let mode = hmac_mode();
    let payload = b64(claims().to_string().as_bytes());
    let cases = [
        // The issue's example: jsonwebtoken said "Base64 error: Invalid last symbol 116".
        (
            "not.a.jwt".to_string(),
            "the JWT header (its first part) is not base64url",
        ),
        (
            "abc".into(),
            "the bearer token is not a JWT (three base64url parts separated by '.')",
        ),
        (
            format!("{}.{payload}.c2ln.c2ln", hs256_header()),
            "the bearer token is not a JWT (three base64url parts separated by '.')",
        ),
        (
            format!("{}.{payload}.c2ln", b64(b"hello")),
            "the JWT header (its first part) is not a JSON object",
        ),
        (
            format!("{}.{payload}.", b64(br#"{"alg":"none","typ":"JWT"}"#)),
            "the JWT is unsigned (alg \"none\"), which is never accepted",
        ),
        (
            format!("{}.{payload}.c2ln", b64(br#"{"alg":"HS999"}"#)),
            "the JWT header's alg is missing or not a signing algorithm (RS256, ES256, …)",
        ),
        (
            format!("{}.{payload}.c2ln", b64(br#"{"typ":"JWT"}"#)),
            "the JWT header's alg is missing or not a signing algorithm (RS256, ES256, …)",
        ),
        (
            format!("{}.{payload}.c2ln", b64(br#"{"alg":"HS256","kid":7}"#)),
            "the JWT header (its first part) has a field of the wrong type",
        ),
        (
            format!("{}.{payload}.s!g", hs256_header()),
            "the JWT signature (its third part) is not base64url",
        ),
        (
            signed(&hs256_header(), "pay!oad"),
            "the JWT payload (its second part) is not base64url JSON",
        ),
        (
            signed(&hs256_header(), &b64(b"[1,2]")),
            "the JWT payload (its second part) is not a JSON object of claims",
        ),
    ];
    for (token, message) in cases {
        assert_refused(&mode, &token, Reason::MalformedToken, message);
    }
}

#[test]
fn an_algorithm_outside_the_list_is_refused_by_name() {
    let mode = hmac_mode();
    assert_refused(
        &mode,
        &hs(Algorithm::HS384, &claims(), SECRET),
        Reason::AlgorithmNotAllowed,
        "the JWT is signed with HS384, which is not accepted here: use a token from the \
         configured identity provider",
    );
    // Algorithm confusion: an RS256 token offered to an HMAC-secret mode.
    assert_refused(
        &mode,
        &rs("idp-key-1", None, &claims()),
        Reason::AlgorithmNotAllowed,
        "the JWT is signed with RS256, which is not accepted here: use a token from the \
         configured identity provider",
    );
}

#[test]
fn signature_time_issuer_and_audience_each_have_their_reason() {
    let mode = hmac_mode();
    let cases = [
        (
            hs(Algorithm::HS256, &claims(), b"guessed"),
            Reason::InvalidSignature,
            "the JWT's signature does not verify: it was not signed by the identity \
             provider's key, or it was altered",
        ),
        (
            hs(
                Algorithm::HS256,
                &with(claims(), "exp", json!(1000)),
                SECRET,
            ),
            Reason::TokenExpired,
            "the JWT has expired (exp is in the past); sign in again for a fresh one",
        ),
        (
            hs(
                Algorithm::HS256,
                &with(claims(), "nbf", json!(now() + 3600)),
                SECRET,
            ),
            Reason::TokenNotYetValid,
            "the JWT is not valid yet (nbf is in the future); check the issuing machine's clock",
        ),
        (
            hs(
                Algorithm::HS256,
                &with(claims(), "iss", json!("https://evil.example")),
                SECRET,
            ),
            Reason::WrongIssuer,
            "the JWT's issuer (iss) is not the configured identity provider: use a token from it",
        ),
        (
            hs(
                Algorithm::HS256,
                &with(claims(), "aud", json!(["other", "more"])),
                SECRET,
            ),
            Reason::WrongAudience,
            "the JWT's audience (aud) is not this service: ask the identity provider for a token \
             meant for it",
        ),
    ];
    for (token, reason, message) in cases {
        assert_refused(&mode, &token, reason, message);
    }
    // Within the leeway is still valid.
    let just_expired = hs(
        Algorithm::HS256,
        &with(claims(), "exp", json!(now() - 5)),
        SECRET,
    );
    assert!(mode
        .identify(Some(format!("Bearer {just_expired}").as_bytes()))
        .is_ok());
}

#[test]
fn missing_and_ill_typed_claims_are_named() {
    let mode = hmac_mode();
    let cases = [
        (
            without(claims(), "exp"),
            Reason::MissingClaim,
            "the JWT has no exp claim, which is required",
        ),
        (
            without(claims(), "iss"),
            Reason::MissingClaim,
            "the JWT has no iss claim, which is required",
        ),
        (
            without(claims(), "aud"),
            Reason::MissingClaim,
            "the JWT has no aud claim, which is required",
        ),
        (
            without(claims(), "sub"),
            Reason::MissingClaim,
            "the JWT has no \"sub\" claim, which names the user",
        ),
        (
            with(claims(), "exp", json!("tomorrow")),
            Reason::InvalidClaim,
            "the JWT's exp claim is not a number of seconds since 1970",
        ),
        (
            with(claims(), "iss", json!(5)),
            Reason::InvalidClaim,
            "the JWT's iss claim is not a string or a list of strings",
        ),
        (
            with(claims(), "aud", json!({"name": AUDIENCE})),
            Reason::InvalidClaim,
            "the JWT's aud claim is not a string or a list of strings",
        ),
        (
            with(claims(), "nbf", json!("yesterday")),
            Reason::InvalidClaim,
            "the JWT's nbf claim is not a number of seconds since 1970",
        ),
        // jsonwebtoken reads sub itself: an object there fails the whole
        // payload, and the words still name the claim.
        (
            with(claims(), "sub", json!({"id": 1})),
            Reason::InvalidClaim,
            "the JWT's sub claim is not a string",
        ),
        (
            with(claims(), "sub", json!(["a"])),
            Reason::InvalidClaim,
            "the JWT's sub claim is not a string",
        ),
        (
            with(claims(), "exp", json!({"at": 1})),
            Reason::InvalidClaim,
            "the JWT's exp claim is not a number of seconds since 1970",
        ),
        (
            with(claims(), "iss", json!([1])),
            Reason::InvalidClaim,
            "the JWT's iss claim is not a string or a list of strings",
        ),
        (
            with(claims(), "sub", json!("")),
            Reason::InvalidClaim,
            "the JWT's \"sub\" claim is not a user id (a non-empty string or an integer)",
        ),
    ];
    for (claims, reason, message) in cases {
        assert_refused(
            &mode,
            &hs(Algorithm::HS256, &claims, SECRET),
            reason,
            message,
        );
    }
}

/// A user claim of streamgate's own, not one jsonwebtoken reads.
#[test]
fn the_user_claim_must_be_a_string_or_an_integer() {
    let mode = hmac_mode();
    let by_uid = hmac_mode_reading("uid");
    for uid in [json!({"id": 1}), json!(true), json!(1.5)] {
        assert_refused(
            &by_uid,
            &hs(Algorithm::HS256, &with(claims(), "uid", uid), SECRET),
            Reason::InvalidClaim,
            "the JWT's \"uid\" claim is not a user id (a non-empty string or an integer)",
        );
    }
    // An integer sub is a user id.
    let numeric = hs(
        Algorithm::HS256,
        &with(claims(), "sub", json!(1041)),
        SECRET,
    );
    assert_eq!(
        mode.identify(Some(format!("Bearer {numeric}").as_bytes()))
            .unwrap()
            .user_id,
        "1041"
    );
}

#[test]
fn a_provider_id_stream_refuses_is_403_without_a_challenge() {
    let token = hs(
        Algorithm::HS256,
        &with(claims(), "sub", json!("auth0|123")),
        SECRET,
    );
    let error = refused(&hmac_mode(), &token);
    assert_eq!(
        (error.reason(), error.reason().status(), error.challenge()),
        (Reason::InvalidUserId, 403, None)
    );
    assert!(
        error.message().contains("user_id_map"),
        "{}",
        error.message()
    );
}

#[test]
fn a_kid_the_key_set_lacks_is_the_unknown_key_the_glue_can_refetch_for() {
    let mode = jwks_mode(&["idp-key-1"], &[]);
    let ok = rs("idp-key-1", Some("idp-key-1"), &claims());
    assert_eq!(
        mode.identify(Some(format!("Bearer {ok}").as_bytes()))
            .unwrap()
            .user_id,
        "alice"
    );
    let rotated = rs("idp-key-2", Some("idp-key-2"), &claims());
    assert_refused(
        &mode,
        &rotated,
        Reason::UnknownKey,
        "the JWT names a signing key (kid) that is not in the identity provider's key set: it \
         comes from another issuer, or its key was retired; sign in again",
    );
    assert!(refused(&mode, &rotated).is_unknown_key());
    // One key and no kid: that key is the one.
    let no_kid = rs("idp-key-1", None, &claims());
    assert!(mode
        .identify(Some(format!("Bearer {no_kid}").as_bytes()))
        .is_ok());
}

#[test]
fn no_kid_among_several_keys_is_not_an_unknown_key() {
    let mode = jwks_mode(&["idp-key-1", "idp-key-2"], &[]);
    let token = rs("idp-key-1", None, &claims());
    assert_refused(
        &mode,
        &token,
        Reason::MissingKid,
        "the JWT names no signing key (kid), and the identity provider has several: it must \
         put the key's kid in the JWT header",
    );
    assert!(!refused(&mode, &token).is_unknown_key());
}

/// Refused on its algorithm before its kid is looked up: a forged HMAC token
/// naming a made-up kid must not look like a key rotation.
#[test]
fn a_key_set_refuses_the_algorithm_before_looking_up_the_kid() {
    let mode = jwks_mode(&["idp-key-1"], &[]);
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("made-up".into());
    let forged =
        jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(b"public")).unwrap();
    assert_refused(
        &mode,
        &forged,
        Reason::AlgorithmNotAllowed,
        "the JWT is signed with HS256, which is not accepted here: use a token from the \
         configured identity provider",
    );
    // An accepted algorithm that does not fit the key its kid names (ES256
    // against an RSA key) is refused before any signature is checked.
    let mismatched = format!(
        "{}.{}.c2ln",
        b64(br#"{"alg":"ES256","kid":"idp-key-1"}"#),
        b64(claims().to_string().as_bytes())
    );
    assert_refused(
        &mode,
        &mismatched,
        Reason::AlgorithmNotAllowed,
        "the JWT is signed with ES256, which is not accepted here: use a token from the \
         configured identity provider",
    );
}

#[test]
fn a_broken_key_in_the_set_is_an_unusable_key() {
    let broken = json!({"kty": "RSA", "kid": "broken", "alg": "RS256", "n": "!!", "e": "AQAB"});
    let mode = jwks_mode(&["idp-key-1"], &[broken]);
    assert_refused(
        &mode,
        &rs("idp-key-1", Some("broken"), &claims()),
        Reason::UnusableKey,
        "the key that should verify this JWT cannot be used (a problem with the identity \
         provider's keys, for the operator to fix)",
    );
}

/// A provider's key set not fetched yet says nothing about the token: 503,
/// and nothing a key refetch is asked for.
#[test]
fn keys_not_fetched_yet_are_a_503_not_a_verdict_on_the_token() {
    let origin = RemoteJwks {
        location: JwksLocation::Url("https://idp.example/jwks".into()),
        connect_timeout: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        ca_pem: None,
        min_cache_duration: Duration::from_secs(300),
        max_cache_duration: Duration::from_secs(3600),
        unknown_kid_refetch_interval: Duration::from_secs(30),
    };
    let mode = JwtIdentity::new(
        JwtKeys::Jwks(Arc::new(JwksKeys::remote(origin))),
        validation(&[Algorithm::RS256]),
        "sub".into(),
        None,
        UserIdMapping::default(),
    );
    let error = refused(&mode, &rs("idp-key-1", Some("idp-key-1"), &claims()));
    assert_eq!(
        (error.reason(), error.reason().status(), error.challenge()),
        (Reason::KeysUnavailable, 503, None)
    );
    assert!(!error.is_unknown_key());
    assert_eq!(
        error.message(),
        "the identity provider's keys have not been fetched yet; try again shortly"
    );
}

#[test]
fn with_the_lifetime_cap_the_identity_carries_exp_and_a_past_one_is_expired() {
    let mode = hmac_mode().cap_exp_to_credential(true);
    let bearer = |exp: Value| {
        let token = hs(Algorithm::HS256, &with(claims(), "exp", exp), SECRET);
        (format!("Bearer {token}"), token)
    };
    let exp = now() + 600;
    // A fractional NumericDate counts down to its second.
    for given in [json!(exp), json!(exp as f64 + 0.9)] {
        let identity = mode.identify(Some(bearer(given).0.as_bytes())).unwrap();
        assert_eq!(identity.expires_at, Some(exp));
    }
    // Past, but within the leeway: accepted without the cap, refused with it,
    // since a token capped at it would be born expired.
    let (uncapped, just_expired) = bearer(json!(now() - 5));
    let message = "the JWT has expired (exp is in the past); sign in again for a fresh one";
    assert_refused(&mode, &just_expired, Reason::TokenExpired, message);
    let identity = hmac_mode().identify(Some(uncapped.as_bytes())).unwrap();
    assert_eq!(identity.expires_at, None);
}
