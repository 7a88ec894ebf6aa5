//! The `identity` section's user-id settings and JWT claim requirements, as
//! loaded from YAML: bad values name their key, good ones reach the modes.

use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::config::{Config, ConfigError, RouteAction};
use crate::identity::{IdentitySource, Reason};

const MINIMAL: &str = r#"
listen: ["127.0.0.1:3000"]
upstreams:
  app: { address: "127.0.0.1:8080" }
stream: { api_key: key, api_secret: s3cret }
"#;

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_yaml(text, &|_| None).map_err(|errors| errors.0[0].clone())
}

/// `MINIMAL` with a header-mode identity block carrying `settings`.
fn header_mode(settings: &str) -> String {
    format!("{MINIMAL}identity:\n  mode: header\n{settings}")
}

/// The identity source of the first token route.
fn identity(config: &Config) -> &IdentitySource {
    config
        .routes
        .routes()
        .iter()
        .find_map(|route| match &route.action {
            RouteAction::Mint(settings) => Some(&settings.identity),
            _ => None,
        })
        .expect("a token route")
}

/// The Stream user id header mode makes of `user`, from a trusted peer.
fn mapped(config: &Config, user: &str) -> String {
    let IdentitySource::Header(mode) = identity(config) else {
        panic!("header mode");
    };
    let mut headers = HeaderMap::new();
    headers.insert("x-forwarded-user", HeaderValue::from_str(user).unwrap());
    mode.identify(true, &headers).unwrap().user_id
}

#[test]
fn user_id_map_forms_reach_the_mode() {
    let replace = load(&header_mode("  user_id_map: { replace_invalid: \"_\" }\n")).unwrap();
    assert_eq!(mapped(&replace, "auth0|123"), "auth0_123");
    let hash = load(&header_mode(
        "  user_id_map: { hash: sha256 }\n  user_id_template: \"t-{id}\"\n",
    ))
    .unwrap();
    assert_eq!(
        mapped(&hash, "auth0|123"),
        "t-4043445eadeeeb2a5d885af3c133f60ef57523a1ff87ba20edcc5b6de392eb6c"
    );
}

#[test]
fn a_bad_user_id_map_names_its_key() {
    let cases = [
        (
            "{ lowercase: true }",
            "identity.user_id_map.lowercase",
            "unknown field `lowercase`, expected `replace_invalid` or `hash`",
        ),
        (
            "{ replace_invalid: \"_\", hash: sha256 }",
            "identity.user_id_map",
            "exactly one of",
        ),
        ("{}", "identity.user_id_map", "exactly one of"),
        (
            "{ hash: md5 }",
            "identity.user_id_map.hash",
            "unknown variant `md5`",
        ),
        ("sha256", "identity.user_id_map", "invalid type"),
        (
            "{ replace_invalid: \".\" }",
            "identity.user_id_map.replace_invalid",
            "\".\" must be 1 to 8 characters from A-Z a-z 0-9 @ _ -",
        ),
        (
            "{ replace_invalid: \"\" }",
            "identity.user_id_map.replace_invalid",
            "must be 1 to 8 characters",
        ),
    ];
    for (map, key, reason) in cases {
        let error = load(&header_mode(&format!("  user_id_map: {map}\n"))).unwrap_err();
        assert_eq!(error.key, key, "{map}: {error}");
        assert!(error.reason.contains(reason), "{map}: {error}");
    }
    let per_route = format!(
        "{MINIMAL}routes:\n  - match: {{ method: POST, path: /t }}\n    mint: user_token\n    \
         identity: {{ mode: header, user_id_map: {{ replace_invalid: \"|\" }} }}\n"
    );
    assert_eq!(
        load(&per_route).unwrap_err().key,
        "routes[0].identity.user_id_map.replace_invalid"
    );
}

#[test]
fn a_template_that_could_never_make_a_stream_id_names_its_key() {
    for (settings, reason) in [
        ("  user_id_template: \"tenant.{id}\"\n", "'.' around {id}"),
        (
            &*format!(
                "  user_id_map: {{ hash: sha256 }}\n  user_id_template: \"{}{{id}}\"\n",
                "t".repeat(200)
            ),
            "64-character hash",
        ),
    ] {
        let error = load(&header_mode(settings)).unwrap_err();
        assert_eq!(error.key, "identity.user_id_template", "{error}");
        assert!(error.reason.contains(reason), "{error}");
    }
}

#[test]
fn replace_invalid_is_announced_once_for_its_routes_and_hash_is_not() {
    let warnings = load(&header_mode("  user_id_map: { replace_invalid: \"_\" }\n"))
        .unwrap()
        .warnings();
    let merged: Vec<&String> = warnings
        .iter()
        .filter(|w| w.contains("replace_invalid"))
        .collect();
    assert_eq!(merged.len(), 1, "{warnings:?}");
    assert!(
        merged[0].contains("POST /api/tokens/user, POST /api/tokens/call")
            && merged[0].contains("hash: sha256"),
        "{}",
        merged[0]
    );
    let hashed = load(&header_mode("  user_id_map: { hash: sha256 }\n"))
        .unwrap()
        .warnings();
    assert!(hashed.is_empty(), "{hashed:?}");
}

/// jsonwebtoken compares `iss` and `aud` only when a token has them; once
/// configured, a token without them is refused.
#[test]
fn a_configured_issuer_and_audience_are_required_claims() {
    let config = load(&format!(
        "{MINIMAL}identity:\n  mode: jwt\n  jwt: {{ hs256_secret: idp, issuer: https://idp.example, \
         audience: streamgate }}\n"
    ))
    .unwrap();
    let IdentitySource::Jwt(mode) = identity(&config) else {
        panic!("jwt mode");
    };
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let bearer = |claims: Value| {
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"idp"),
        )
        .unwrap();
        format!("Bearer {token}")
    };
    let full =
        json!({"sub": "alice", "exp": exp, "iss": "https://idp.example", "aud": "streamgate"});
    assert!(mode.identify(Some(bearer(full.clone()).as_bytes())).is_ok());
    for claim in ["iss", "aud"] {
        let mut partial = full.clone();
        partial.as_object_mut().unwrap().remove(claim);
        let error = mode.identify(Some(bearer(partial).as_bytes())).unwrap_err();
        assert_eq!(error.reason(), Reason::MissingClaim, "{claim}");
        assert_eq!(
            error.message(),
            format!("the JWT has no {claim} claim, which is required")
        );
    }
}
