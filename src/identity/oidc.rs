//! The parts of fetching an identity provider's keys that are rules, not I/O:
//! where OpenID Connect Discovery puts the provider's metadata, what of it is
//! believed, and how long a fetched key set is kept.

use std::time::Duration;

use serde::Deserialize;

/// `{issuer}/.well-known/openid-configuration`, the issuer's trailing `/`
/// removed first (OpenID Connect Discovery 1.0 §4: "If the Issuer value
/// contains a path component, any terminating / MUST be removed before
/// appending /.well-known/openid-configuration").
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// The provider metadata streamgate reads.
#[derive(Deserialize)]
struct Metadata {
    issuer: String,
    jwks_uri: String,
}

/// The `jwks_uri` of a discovery document fetched for `issuer`.
///
/// The document's `issuer` must be exactly the configured one (Discovery §4.3:
/// "MUST be identical"); otherwise a document served from a wrong place (a
/// proxy's error page, another tenant) would choose the keys. `jwks_uri` must
/// be `https` unless `issuer` itself is plaintext (a loopback test IdP).
pub fn jwks_uri(document: &[u8], issuer: &str) -> Result<String, String> {
    let metadata: Metadata = serde_json::from_slice(document).map_err(|e| {
        format!(
            "the discovery document is not OpenID provider metadata with issuer and jwks_uri: {e}"
        )
    })?;
    if metadata.issuer != issuer {
        return Err(format!(
            "the discovery document names issuer {:?}, not the configured {issuer:?} \
             (they must be identical, trailing '/' included)",
            metadata.issuer
        ));
    }
    let secure = metadata.jwks_uri.starts_with("https://");
    let plaintext_allowed =
        issuer.starts_with("http://") && metadata.jwks_uri.starts_with("http://");
    if !secure && !plaintext_allowed {
        return Err(format!(
            "the discovery document's jwks_uri {:?} is not an https URL",
            metadata.jwks_uri
        ));
    }
    Ok(metadata.jwks_uri)
}

/// How long a key set fetched with this `Cache-Control` is used before it is
/// fetched again: its `max-age` (RFC 9111 §5.2.2.1) within `[min, max]`;
/// `no-cache`/`no-store` mean `min`; no `max-age` means `max` (an unknown
/// `kid` triggers a refetch anyway, so a long default costs nothing at
/// rotation, while `max` still bounds how long a key removed by the
/// provider is believed).
pub fn cache_duration(cache_control: Option<&str>, min: Duration, max: Duration) -> Duration {
    let mut seconds = None;
    for directive in cache_control.unwrap_or("").split(',') {
        let (name, value) = match directive.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
            None => (directive.trim(), None),
        };
        if name.eq_ignore_ascii_case("no-cache") || name.eq_ignore_ascii_case("no-store") {
            return min;
        }
        if name.eq_ignore_ascii_case("max-age") {
            // §1.2.2: a delta-seconds too large to represent means "a very
            // long time", i.e. the upper bound here.
            seconds = value.and_then(|v| {
                v.bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| v.parse::<u64>().unwrap_or(u64::MAX))
            });
        }
    }
    match seconds {
        Some(seconds) => Duration::from_secs(seconds).clamp(min, max),
        None => max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(300);
    const MAX: Duration = Duration::from_secs(3600);

    #[test]
    fn discovery_is_under_the_issuer_without_its_trailing_slash() {
        assert_eq!(
            discovery_url("https://tenant.auth0.com/"),
            "https://tenant.auth0.com/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("https://kc.example/realms/acme"),
            "https://kc.example/realms/acme/.well-known/openid-configuration"
        );
    }

    #[test]
    fn the_documents_issuer_must_be_the_configured_one() {
        let doc = br#"{"issuer":"https://accounts.google.com","jwks_uri":"https://www.googleapis.com/oauth2/v3/certs","extra":1}"#;
        assert_eq!(
            jwks_uri(doc, "https://accounts.google.com").unwrap(),
            "https://www.googleapis.com/oauth2/v3/certs"
        );
        let err = jwks_uri(doc, "https://accounts.google.com/").unwrap_err();
        assert!(err.contains("must be identical"), "{err}");
    }

    #[test]
    fn a_plaintext_or_missing_jwks_uri_is_refused() {
        let doc = br#"{"issuer":"https://idp","jwks_uri":"http://idp/keys"}"#;
        assert!(jwks_uri(doc, "https://idp")
            .unwrap_err()
            .contains("not an https URL"));
        let doc = br#"{"issuer":"http://127.0.0.1:1","jwks_uri":"http://127.0.0.1:1/keys"}"#;
        assert!(jwks_uri(doc, "http://127.0.0.1:1").is_ok());
        let err = jwks_uri(br#"{"issuer":"https://idp"}"#, "https://idp").unwrap_err();
        assert!(err.contains("jwks_uri"), "{err}");
        assert!(jwks_uri(b"<html>", "https://idp").is_err());
    }

    #[test]
    fn max_age_is_clamped_into_the_bounds() {
        assert_eq!(
            cache_duration(Some("public, max-age=900"), MIN, MAX),
            Duration::from_secs(900)
        );
        assert_eq!(cache_duration(Some("max-age=15"), MIN, MAX), MIN);
        assert_eq!(
            cache_duration(Some("max-age=86400, must-revalidate"), MIN, MAX),
            MAX
        );
        assert_eq!(
            cache_duration(Some("Max-Age=\"600\""), MIN, MAX),
            Duration::from_secs(600)
        );
        assert_eq!(
            cache_duration(Some("max-age=99999999999999999999999"), MIN, MAX),
            MAX
        );
    }

    #[test]
    fn no_max_age_means_the_upper_bound_and_no_cache_the_lower() {
        assert_eq!(cache_duration(None, MIN, MAX), MAX);
        assert_eq!(cache_duration(Some("public"), MIN, MAX), MAX);
        assert_eq!(cache_duration(Some("max-age=-5"), MIN, MAX), MAX);
        assert_eq!(cache_duration(Some("max-age=900, no-store"), MIN, MAX), MIN);
        assert_eq!(cache_duration(Some("no-cache"), MIN, MAX), MIN);
    }
}
