//! `jwt` mode's key sources as configured: which combinations load, and the
//! key path and reason of each that does not.

use std::time::Duration;

use super::tests::{load, MINIMAL};
use crate::identity::jwks::JwksLocation;

/// `MINIMAL` with a top-level `identity: jwt` block holding `jwt` (YAML flow map body).
fn with_jwt(jwt: &str) -> String {
    format!("{MINIMAL}identity:\n  mode: jwt\n  jwt: {{ {jwt} }}\n")
}

fn error_of(jwt: &str) -> (String, String) {
    let error = load(&with_jwt(jwt)).expect_err(jwt);
    (error.key.clone(), error.reason.clone())
}

#[test]
fn an_issuer_url_is_a_fetched_key_set_and_the_required_issuer() {
    let config = load(&with_jwt("issuer_url: \"https://tenant.auth0.com/\"")).unwrap();
    assert_eq!(
        config.key_sets.len(),
        1,
        "both default token routes share one key set"
    );
    let origin = config.key_sets[0].origin().unwrap().clone();
    assert_eq!(
        origin.location,
        JwksLocation::Issuer("https://tenant.auth0.com/".into())
    );
    assert_eq!(
        (origin.connect_timeout, origin.timeout),
        (Duration::from_secs(5), Duration::from_secs(10))
    );
    assert_eq!(
        (origin.min_cache_duration, origin.max_cache_duration),
        (Duration::from_secs(300), Duration::from_secs(3600))
    );
    assert_eq!(origin.unknown_kid_refetch_interval, Duration::from_secs(30));
    assert!(
        !config.key_sets[0].is_loaded(),
        "nothing is fetched at load"
    );
}

#[test]
fn a_jwks_url_takes_the_fetch_settings() {
    let config = load(&with_jwt(
        "jwks_url: \"https://www.googleapis.com/oauth2/v3/certs\", issuer: \"https://accounts.google.com\", \
         jwks_fetch: { timeout: 3s, min_cache_duration: 1m, max_cache_duration: 6h, unknown_kid_refetch_interval: 10s }",
    ))
    .unwrap();
    let origin = config.key_sets[0].origin().unwrap();
    assert_eq!(origin.timeout, Duration::from_secs(3));
    assert_eq!(origin.max_cache_duration, Duration::from_secs(6 * 3600));
    assert_eq!(origin.unknown_kid_refetch_interval, Duration::from_secs(10));
}

#[test]
fn key_sources_are_exclusive() {
    let (key, reason) = error_of("issuer_url: \"https://idp.example\", jwks_file: /x.json");
    assert_eq!(key, "identity.jwt");
    assert!(reason.contains("exactly one of"), "{reason}");
    let (key, _) =
        error_of("issuer_url: \"https://idp.example\", jwks_url: \"https://idp.example/k\"");
    assert_eq!(key, "identity.jwt");
    let (key, reason) = error_of("jwks_file: /x.json, jwks_fetch: { timeout: 1s }");
    assert_eq!(key, "identity.jwt.jwks_fetch");
    assert!(reason.contains("not fetched"), "{reason}");
}

#[test]
fn keys_are_fetched_over_https_only_but_to_loopback() {
    for url in ["http://idp.example", "http://10.0.0.5:8080/realms/x"] {
        let (key, reason) = error_of(&format!("issuer_url: \"{url}\""));
        assert_eq!(key, "identity.jwt.issuer_url");
        assert!(reason.contains("plaintext"), "{reason}");
    }
    for url in [
        "http://127.0.0.1:8080",
        "http://localhost:8080/realms/x",
        "http://[::1]:1",
    ] {
        assert!(
            load(&with_jwt(&format!("issuer_url: \"{url}\""))).is_ok(),
            "{url}"
        );
    }
    let (key, reason) = error_of("jwks_url: \"ftp://idp.example/keys\"");
    assert_eq!(key, "identity.jwt.jwks_url");
    assert!(reason.contains("not https"), "{reason}");
    let (_, reason) = error_of("jwks_url: \"not a url\"");
    assert!(reason.contains("is not a URL"), "{reason}");
}

#[test]
fn credentials_never_sit_in_a_fetched_url_and_an_issuer_has_no_query() {
    let (key, reason) = error_of("jwks_url: \"https://user:pw@idp.example/keys\"");
    assert_eq!(key, "identity.jwt.jwks_url");
    assert!(
        reason.contains("credentials") && !reason.contains("pw"),
        "{reason}"
    );
    let (key, reason) = error_of("issuer_url: \"https://idp.example/?tenant=1\"");
    assert_eq!(key, "identity.jwt.issuer_url");
    assert!(reason.contains("no query"), "{reason}");
    assert!(load(&with_jwt("jwks_url: \"https://idp.example/keys?tenant=1\"")).is_ok());
}

#[test]
fn an_issuer_beside_the_issuer_url_must_be_the_same() {
    let (key, reason) =
        error_of("issuer_url: \"https://tenant.auth0.com/\", issuer: \"https://tenant.auth0.com\"");
    assert_eq!(key, "identity.jwt.issuer");
    assert!(reason.contains("issuer_url"), "{reason}");
    assert!(load(&with_jwt(
        "issuer_url: \"https://tenant.auth0.com/\", issuer: \"https://tenant.auth0.com/\""
    ))
    .is_ok());
}

#[test]
fn fetch_settings_that_cannot_work_are_refused() {
    let cases = [
        ("timeout: 0s", "identity.jwt.jwks_fetch.timeout"),
        (
            "connect_timeout: 0s",
            "identity.jwt.jwks_fetch.connect_timeout",
        ),
        (
            "min_cache_duration: 0s",
            "identity.jwt.jwks_fetch.min_cache_duration",
        ),
        (
            "min_cache_duration: 2h, max_cache_duration: 1h",
            "identity.jwt.jwks_fetch.max_cache_duration",
        ),
        (
            "unknown_kid_refetch_interval: 500ms",
            "identity.jwt.jwks_fetch.unknown_kid_refetch_interval",
        ),
        (
            "ca_file: /nonexistent/ca.pem",
            "identity.jwt.jwks_fetch.ca_file",
        ),
        ("ca_file: Cargo.toml", "identity.jwt.jwks_fetch.ca_file"),
        ("retries: 3", "identity.jwt.jwks_fetch.retries"),
    ];
    for (fetch, wanted) in cases {
        let (key, reason) = error_of(&format!(
            "issuer_url: \"https://idp.example\", jwks_fetch: {{ {fetch} }}"
        ));
        assert_eq!(key, wanted, "{fetch}: {reason}");
    }
}

#[test]
fn the_lifetime_cap_is_on_unless_switched_off() {
    let token_route = |text: &str| {
        let config = load(text).unwrap();
        let (_, settings) = config.token_routes().next().unwrap();
        format!("{:?}", settings.identity)
    };
    let on = token_route(&with_jwt("issuer_url: \"https://idp.example\""));
    assert!(on.contains("cap_exp: true"), "{on}");
    let off = token_route(&with_jwt(
        "issuer_url: \"https://idp.example\", cap_exp_to_credential: false",
    ));
    assert!(off.contains("cap_exp: false"), "{off}");
}

#[test]
fn a_token_for_any_audience_is_warned_about() {
    let warns = |jwt: &str| {
        load(&with_jwt(jwt))
            .unwrap()
            .warnings()
            .iter()
            .any(|w| w.contains("any audience") && w.contains("POST /api/tokens/user"))
    };
    assert!(warns("issuer_url: \"https://accounts.google.com\""));
    assert!(warns("hs256_secret: s3cr3t"));
    assert!(!warns(
        "issuer_url: \"https://accounts.google.com\", audience: \"123.apps.googleusercontent.com\""
    ));
}
