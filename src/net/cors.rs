//! CORS for token routes: browsers on another origin may call the token
//! endpoint only if the configuration names that origin.
//!
//! Proxied routes are never touched: the app keeps whatever CORS policy it has.
//! A disallowed origin gets no CORS headers at all, which is how a browser is
//! told "no"; `Vary: Origin` is always sent so a cache never serves one
//! origin's answer to another.
//!
//! Origins are compared the way browsers send them. A browser's `Origin` is
//! the ASCII serialization of the page's origin (RFC 6454 §6.2, WHATWG URL):
//! lower-case scheme and host, no default port, an IDN host in punycode, no
//! path. Configured origins are brought to that form once, at load
//! ([`configured_origin`]), so `https://Admin.Example.com:443` in a file
//! allows the `https://admin.example.com` a browser sends. The request's
//! `Origin` is then compared byte for byte, not normalized: browsers never
//! send another spelling, and a client that does (curl, a server) does not
//! enforce CORS, so allowing its variant would protect nothing and cost a URL
//! parse per request. An allowed `Origin` is echoed as received, which is
//! then exactly the configured origin.

use http::header::{self, HeaderName, HeaderValue};
use url::Url;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// `*`: any origin, only without credentials (browsers refuse the combination).
    Any,
    /// Origins in their ASCII serialization ([`configured_origin`]), each once;
    /// a request's `Origin` must equal one of them.
    List(Vec<String>),
}

/// A configured origin in the form browsers send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredOrigin {
    /// The ASCII serialization: `https://admin.example.com`,
    /// `http://localhost:8080`, `https://xn--bcher-kva.example`, `http://[::1]:8080`.
    pub origin: String,
    /// The path the text had after the host and port (`/`, `/app`), dropped
    /// from [`Self::origin`]: a browser's `Origin` never has one, so it is
    /// likely a URL pasted where an origin belongs.
    pub dropped_path: Option<String>,
}

/// Reads a configured origin (`https://Admin.Example.com:443`) as browsers
/// serialize it (`https://admin.example.com`): scheme and host lower-cased,
/// the scheme's default port (80, 443) dropped, an IDN host in punycode, a
/// path dropped and reported in [`ConfiguredOrigin::dropped_path`].
///
/// Errors, as a reason to put after the key path: a text that is not
/// `scheme://host[:port]`, a scheme other than `http` and `https` (their
/// origins are opaque or not web pages'), `null`, a user name or password, a
/// query, a fragment.
pub fn configured_origin(text: &str) -> Result<ConfiguredOrigin, String> {
    if text == "null" {
        // What sandboxed frames and file: pages send: any site can make one.
        return Err(
            "\"null\" is the origin of sandboxed frames and local files, which any site can \
             create; it cannot be allowed"
                .to_string(),
        );
    }
    let like = "an origin is written like \"https://app.example.com\" (scheme, host, port if not the default)";
    let after_scheme = match text.find("://") {
        Some(at) => &text[at + 3..],
        None => return Err(format!("{text:?} is not an origin: {like}")),
    };
    let url = Url::parse(text).map_err(|e| format!("{text:?} is not an origin ({e}): {like}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "{text:?}: only http and https origins can be allowed (a browser sends no other \
             origin that names a site)"
        ));
    }
    let extra = if !url.username().is_empty() || url.password().is_some() {
        Some("a user name or password")
    } else if url.query().is_some() {
        Some("a query")
    } else if url.fragment().is_some() {
        Some("a fragment")
    } else {
        None
    };
    if let Some(extra) = extra {
        return Err(format!("{text:?} has {extra}; {like}"));
    }
    // `Url` reads both `https://x` and `https://x/` as the path `/`: only the
    // text says whether one was written. Userinfo, query and fragment are
    // refused above, so whatever follows the first slash is the path.
    let dropped_path = after_scheme
        .find(['/', '\\'])
        .map(|at| after_scheme[at..].to_string());
    Ok(ConfiguredOrigin {
        origin: url.origin().ascii_serialization(),
        dropped_path,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsPolicy {
    pub origins: AllowedOrigins,
    pub allow_credentials: bool,
    pub allowed_methods: String,
    pub allowed_headers: String,
    pub max_age_seconds: u64,
}

pub type Headers = Vec<(HeaderName, HeaderValue)>;

impl CorsPolicy {
    fn allow_origin(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        let origin = origin?;
        match &self.origins {
            AllowedOrigins::Any => Some(HeaderValue::from_static("*")),
            AllowedOrigins::List(list) => list
                .iter()
                .any(|allowed| allowed.as_bytes() == origin.as_bytes())
                .then(|| origin.clone()),
        }
    }

    /// Headers for an actual (non-preflight) response.
    pub fn response_headers(&self, origin: Option<&HeaderValue>) -> Headers {
        let mut headers = vec![(header::VARY, HeaderValue::from_static("Origin"))];
        if let Some(allowed) = self.allow_origin(origin) {
            headers.push((header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed));
            if self.allow_credentials {
                headers.push((
                    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                ));
            }
        }
        headers
    }

    /// Headers for the answer to a preflight `OPTIONS`.
    pub fn preflight_headers(&self, origin: Option<&HeaderValue>) -> Headers {
        let mut headers = self.response_headers(origin);
        if headers.len() > 1 {
            for (name, value) in [
                (header::ACCESS_CONTROL_ALLOW_METHODS, &self.allowed_methods),
                (header::ACCESS_CONTROL_ALLOW_HEADERS, &self.allowed_headers),
                (
                    header::ACCESS_CONTROL_MAX_AGE,
                    &self.max_age_seconds.to_string(),
                ),
            ] {
                if let Ok(value) = HeaderValue::from_str(value) {
                    headers.push((name, value));
                }
            }
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(origins: AllowedOrigins, allow_credentials: bool) -> CorsPolicy {
        CorsPolicy {
            origins,
            allow_credentials,
            allowed_methods: "POST".into(),
            allowed_headers: "Content-Type, Authorization".into(),
            max_age_seconds: 600,
        }
    }

    fn get<'a>(headers: &'a Headers, name: &HeaderName) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.to_str().unwrap())
    }

    #[test]
    fn listed_origin_is_echoed_with_credentials() {
        let cors = policy(
            AllowedOrigins::List(vec!["https://app.example".into()]),
            true,
        );
        let origin = HeaderValue::from_static("https://app.example");
        let headers = cors.preflight_headers(Some(&origin));
        assert_eq!(
            get(&headers, &header::ACCESS_CONTROL_ALLOW_ORIGIN),
            Some("https://app.example")
        );
        assert_eq!(
            get(&headers, &header::ACCESS_CONTROL_ALLOW_CREDENTIALS),
            Some("true")
        );
        assert_eq!(
            get(&headers, &header::ACCESS_CONTROL_ALLOW_METHODS),
            Some("POST")
        );
        assert_eq!(get(&headers, &header::ACCESS_CONTROL_MAX_AGE), Some("600"));
        assert_eq!(get(&headers, &header::VARY), Some("Origin"));
    }

    #[test]
    fn other_origin_gets_only_vary() {
        let cors = policy(
            AllowedOrigins::List(vec!["https://app.example".into()]),
            true,
        );
        let evil = HeaderValue::from_static("https://evil.example");
        assert_eq!(
            cors.preflight_headers(Some(&evil)),
            vec![(header::VARY, HeaderValue::from_static("Origin"))]
        );
        assert_eq!(cors.response_headers(None).len(), 1);
    }

    #[test]
    fn wildcard_without_credentials() {
        let cors = policy(AllowedOrigins::Any, false);
        let origin = HeaderValue::from_static("https://anyone.example");
        let headers = cors.response_headers(Some(&origin));
        assert_eq!(
            get(&headers, &header::ACCESS_CONTROL_ALLOW_ORIGIN),
            Some("*")
        );
        assert_eq!(
            get(&headers, &header::ACCESS_CONTROL_ALLOW_CREDENTIALS),
            None
        );
    }

    fn origin(text: &str) -> String {
        configured_origin(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .origin
    }

    fn refusal(text: &str) -> String {
        match configured_origin(text) {
            Ok(read) => panic!("{text} was accepted as {read:?}"),
            Err(reason) => reason,
        }
    }

    #[test]
    fn scheme_and_host_are_lower_cased() {
        assert_eq!(
            origin("https://Admin.Example.com"),
            "https://admin.example.com"
        );
        assert_eq!(origin("HTTPS://APP.EXAMPLE.COM"), "https://app.example.com");
    }

    #[test]
    fn only_the_schemes_own_default_port_is_dropped() {
        assert_eq!(origin("https://app.example:443"), "https://app.example");
        assert_eq!(origin("http://app.example:80"), "http://app.example");
        assert_eq!(origin("http://app.example:443"), "http://app.example:443");
        assert_eq!(origin("https://app.example:80"), "https://app.example:80");
        assert_eq!(origin("http://localhost:8080"), "http://localhost:8080");
        assert_eq!(origin("http://127.0.0.1:3000"), "http://127.0.0.1:3000");
    }

    #[test]
    fn an_international_host_is_put_in_punycode() {
        assert_eq!(
            origin("https://Bücher.example"),
            "https://xn--bcher-kva.example"
        );
        assert_eq!(
            origin("https://xn--bcher-kva.example"),
            "https://xn--bcher-kva.example"
        );
    }

    #[test]
    fn ipv6_literals_are_bracketed_and_compressed() {
        assert_eq!(origin("http://[::1]:8080"), "http://[::1]:8080");
        assert_eq!(origin("http://[::1]:80"), "http://[::1]");
        assert_eq!(origin("https://[0:0:0:0:0:0:0:1]"), "https://[::1]");
        assert_eq!(
            origin("https://[2001:DB8::A]:8443"),
            "https://[2001:db8::a]:8443"
        );
    }

    #[test]
    fn a_path_is_dropped_and_reported() {
        let bare = configured_origin("https://app.example.com").unwrap();
        assert_eq!(bare.dropped_path, None);
        for (text, path) in [
            ("https://app.example.com/", "/"),
            ("https://app.example.com/app", "/app"),
            ("https://App.example.com:443/app/", "/app/"),
            ("http://[::1]:8080/", "/"),
        ] {
            let read = configured_origin(text).unwrap();
            assert_eq!(read.dropped_path.as_deref(), Some(path), "{text}");
            assert!(!read.origin.ends_with('/'), "{text}: {}", read.origin);
        }
        assert_eq!(
            origin("https://App.example.com:443/app/"),
            "https://app.example.com"
        );
    }

    #[test]
    fn query_fragment_and_credentials_are_refused() {
        assert!(refusal("https://app.example.com?x=1").contains("has a query"));
        assert!(refusal("https://app.example.com/?").contains("has a query"));
        assert!(refusal("https://app.example.com#top").contains("has a fragment"));
        for text in [
            "https://user@app.example.com",
            "https://user:pw@app.example.com",
        ] {
            assert!(refusal(text).contains("a user name or password"), "{text}");
        }
    }

    #[test]
    fn other_schemes_and_opaque_origins_are_refused() {
        for text in [
            "ftp://files.example.com",
            "file:///etc/passwd",
            "chrome-extension://abcdefghijklmnop",
            "ws://app.example.com",
        ] {
            assert!(
                refusal(text).contains("only http and https"),
                "{text}: {}",
                refusal(text)
            );
        }
        assert!(refusal("null").contains("cannot be allowed"));
        assert!(refusal("data:text/html,hi").contains("is not an origin"));
    }

    #[test]
    fn what_is_not_a_url_is_refused_with_the_form_expected() {
        for text in [
            "app.example.com",
            "https:app.example.com",
            "",
            "https://",
            "https://exa mple.com",
            "https://app.example.com:99999",
        ] {
            let reason = refusal(text);
            assert!(reason.contains("is not an origin"), "{text}: {reason}");
            assert!(
                reason.contains("an origin is written like"),
                "{text}: {reason}"
            );
        }
    }

    /// Exact comparison of the request's `Origin`: the normalized list meets
    /// what browsers send; another spelling is not a browser's and is not allowed.
    #[test]
    fn a_browser_origin_matches_the_normalized_entry_exactly() {
        let cors = policy(
            AllowedOrigins::List(vec![origin("https://Admin.Example.com:443/")]),
            false,
        );
        let browser = HeaderValue::from_static("https://admin.example.com");
        assert_eq!(
            get(
                &cors.response_headers(Some(&browser)),
                &header::ACCESS_CONTROL_ALLOW_ORIGIN
            ),
            Some("https://admin.example.com")
        );
        for other in ["https://Admin.Example.com", "https://admin.example.com/"] {
            let other = HeaderValue::from_static(other);
            assert_eq!(cors.response_headers(Some(&other)).len(), 1);
        }
    }
}
