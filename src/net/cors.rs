//! CORS for token routes: browsers on another origin may call the token
//! endpoint only if the configuration names that origin.
//!
//! Proxied routes are never touched: the app keeps whatever CORS policy it has.
//! A disallowed origin gets no CORS headers at all, which is how a browser is
//! told "no"; `Vary: Origin` is always sent so a cache never serves one
//! origin's answer to another.

use http::header::{self, HeaderName, HeaderValue};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// `*`: any origin, only without credentials (browsers refuse the combination).
    Any,
    List(Vec<String>),
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
}
