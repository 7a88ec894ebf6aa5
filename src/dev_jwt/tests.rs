use std::path::Path;
use std::sync::Arc;

use clap::Parser;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::Validation;
use rsa::pkcs1::EncodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use serde_json::Value;

use super::*;
use crate::identity::{decoding_key_from_pem, JwksKeys};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[derive(Parser)]
struct Command {
    #[command(flatten)]
    args: Args,
}

fn args(command: &[&str]) -> Args {
    Command::try_parse_from([&["dev-jwt"], command].concat())
        .unwrap_or_else(|e| panic!("{command:?}: {e}"))
        .args
}

fn file(path: &str) -> Vec<u8> {
    std::fs::read(format!("{ROOT}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn development_key() -> Vec<u8> {
    file("conf/dev-idp/dev-idp.key.pem")
}

/// `token`'s claims, verified as `conf/identity-jwt.yaml` verifies: RS256,
/// the key of `conf/example-jwks.json` its `kid` names, `iss` and `aud`.
fn verified(token: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    let keys: JwkSet = serde_json::from_slice(&file("conf/example-jwks.json")).unwrap();
    let jwk = keys
        .find(header.kid.as_deref().expect("a kid"))
        .expect("the kid names a key of the example JWKS");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&["https://login.example.com/"]);
    validation.set_audience(&["stream-tokens"]);
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .unwrap()
        .claims
}

#[test]
fn a_token_verifies_with_the_example_jwks_and_carries_what_was_asked() {
    let now = jsonwebtoken::get_current_timestamp();
    let token = sign(
        &args(&[
            "--sub",
            "alice",
            "--roles",
            "admin,moderator",
            "--expires-in",
            "10m",
        ]),
        &development_key(),
        now,
    )
    .unwrap();
    let claims = verified(&token);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["roles"], serde_json::json!(["admin", "moderator"]));
    assert_eq!(claims["iat"], now);
    assert_eq!(claims["exp"], now + 600);
}

#[test]
fn the_defaults_are_one_hour_no_roles_and_the_development_kid() {
    let now = jsonwebtoken::get_current_timestamp();
    let token = sign(&args(&["--sub", "bob"]), &development_key(), now).unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(&token).unwrap().kid.as_deref(),
        Some("streamgate-dev-1")
    );
    let claims = verified(&token);
    assert_eq!(claims["exp"], now + 3600);
    assert!(claims.get("roles").is_none(), "{claims}");
}

/// The defaults must stay those of the file a new user tries them with.
#[test]
fn the_defaults_match_the_example_jwt_config() {
    let config: Value = serde_yaml_ng::from_slice(&file("conf/identity-jwt.yaml")).unwrap();
    let jwt = &config["identity"]["jwt"];
    let defaults = args(&["--sub", "alice"]);
    assert_eq!(jwt["issuer"], defaults.issuer.as_str());
    assert_eq!(jwt["audience"], defaults.audience.as_str());
    assert_eq!(jwt["roles_claim"], "roles");
    assert_eq!(jwt["algorithms"], serde_json::json!(["RS256"]));
    // Relative to the config file, which sits beside the key set.
    assert!(jwt["jwks_file"]
        .as_str()
        .unwrap()
        .contains(":-example-jwks.json}"));
    assert!(Path::new(ROOT).join(&defaults.key).is_file());
}

#[test]
fn bad_arguments_are_refused_before_signing() {
    for command in [
        &["--roles", "admin"][..],
        &["--sub", ""],
        &["--sub", "alice", "--expires-in", "0s"],
        &["--sub", "alice", "--expires-in", "500ms"],
        &["--sub", "alice", "--expires-in", "soon"],
    ] {
        assert!(
            Command::try_parse_from([&["dev-jwt"], command].concat()).is_err(),
            "{command:?}"
        );
    }
}

#[test]
fn only_a_private_key_signs() {
    for pem in [file("conf/dev-idp/dev-idp.pub.pem"), b"not a key".to_vec()] {
        let error = sign(&args(&["--sub", "alice"]), &pem, 0).unwrap_err();
        assert!(error.contains("not an RSA private key in PEM"), "{error}");
    }
}

/// The constant the warning compares with is the bundled key's modulus: a
/// token the private key signs verifies with it.
#[test]
fn the_recognized_modulus_is_the_bundled_keys() {
    let token = sign(&args(&["--sub", "alice"]), &development_key(), 0).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let key = DecodingKey::from_rsa_components(DEVELOPMENT_MODULUS, "AQAB").unwrap();
    assert!(jsonwebtoken::decode::<Value>(&token, &key, &validation).is_ok());
}

#[test]
fn the_development_key_is_recognized_in_every_form() {
    let jwks = |path: &str| JwtKeys::Jwks(Arc::new(JwksKeys::parse(&file(path)).unwrap()));
    let pem = |pem: &[u8]| JwtKeys::Static(decoding_key_from_pem(pem).unwrap().0);
    let spki = file("conf/dev-idp/dev-idp.pub.pem");
    // The same key as `-----BEGIN RSA PUBLIC KEY-----` (PKCS#1), under another name.
    let pkcs1 = rsa::RsaPublicKey::from_public_key_pem(std::str::from_utf8(&spki).unwrap())
        .unwrap()
        .to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)
        .unwrap();
    for (what, keys) in [
        ("the example JWKS", jwks("conf/example-jwks.json")),
        ("the public PEM", pem(&spki)),
        ("a PKCS#1 PEM", pem(pkcs1.as_bytes())),
    ] {
        assert!(is_development_key(&keys), "{what}");
    }
    for (what, keys) in [
        ("another JWKS", jwks("tests/fixtures/idp-key-1.jwks.json")),
        (
            "another PEM",
            pem(&file("tests/fixtures/idp-key-1.pub.pem")),
        ),
        (
            "an HMAC secret",
            JwtKeys::Static(DecodingKey::from_secret(DEVELOPMENT_MODULUS.as_bytes())),
        ),
    ] {
        assert!(!is_development_key(&keys), "{what}");
    }
}

/// A JWKS that lists another key first, then the development one, still is
/// one that trusts it.
#[test]
fn a_jwks_holding_the_development_key_among_others_is_recognized() {
    let mut set: Value =
        serde_json::from_slice(&file("tests/fixtures/idp-key-1.jwks.json")).unwrap();
    let development: Value = serde_json::from_slice(&file("conf/example-jwks.json")).unwrap();
    let keys = set["keys"].as_array_mut().unwrap();
    keys.push(development["keys"][0].clone());
    let document = serde_json::to_vec(&set).unwrap();
    let keys = JwtKeys::Jwks(Arc::new(JwksKeys::parse(&document).unwrap()));
    assert!(is_development_key(&keys));
}
