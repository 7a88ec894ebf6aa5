//! Request header names an app may read differently from streamgate.
//!
//! To HTTP, `X-Forwarded-User` and `X_Forwarded_User` are two unrelated
//! headers. To an app behind a CGI-style interface they are one: CGI
//! (RFC 3875 §4.1.18) hands each header over as `HTTP_` plus its name
//! uppercased with `-` turned into `_`, and WSGI (PEP 3333), Rack and PHP kept
//! that, so both arrive as `HTTP_X_FORWARDED_USER` and which one the app reads
//! is up to its server. Older Apache and PHP's variable registration go further
//! and turn every character that is not a letter or digit into `_`
//! (`X.Forwarded.User`), so that is the equivalence used here: it is a superset
//! of CGI's and costs nothing for names that matter. A header streamgate
//! vouches for therefore has to be controlled in every spelling with its CGI
//! name, and a name with `_` in it is suspect by default (nginx's
//! `underscores_in_headers off`, Envoy's `headers_with_underscores_action`).

use http::{HeaderMap, HeaderName};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a request header whose name contains `_` gets (CGI-style apps read
/// `X_User` as `X-User`): Envoy's `headers_with_underscores_action`, nginx's
/// `underscores_in_headers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UnderscoresAction {
    /// Forwarded as sent.
    Allow,
    /// Removed before the app sees the request: the default.
    DropHeader,
    /// Refused with 400.
    RejectRequest,
}

/// What [`UnderscoresAction::screen`] decided for one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Screening<'a> {
    /// Nothing to do.
    Pass,
    /// Remove these headers (every line of each) before anything reads them.
    Drop(Vec<HeaderName>),
    /// Refuse the request: this is the first name with `_`.
    Reject(&'a HeaderName),
}

impl UnderscoresAction {
    /// The action's verdict on `headers`.
    pub fn screen(self, headers: &HeaderMap) -> Screening<'_> {
        let mut underscored = headers.keys().filter(|name| has_underscore(name));
        match self {
            UnderscoresAction::Allow => Screening::Pass,
            UnderscoresAction::RejectRequest => underscored
                .next()
                .map_or(Screening::Pass, Screening::Reject),
            UnderscoresAction::DropHeader => {
                let names: Vec<HeaderName> = underscored.cloned().collect();
                if names.is_empty() {
                    Screening::Pass
                } else {
                    Screening::Drop(names)
                }
            }
        }
    }
}

pub fn has_underscore(name: &HeaderName) -> bool {
    name.as_str().contains('_')
}

/// One byte of a header name as a CGI-style app sees it.
fn cgi_byte(byte: u8) -> u8 {
    if byte.is_ascii_alphanumeric() {
        byte.to_ascii_uppercase()
    } else {
        b'_'
    }
}

fn cgi_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| cgi_byte(*x) == cgi_byte(*y))
}

/// Whether CGI-style apps read `a` and `b` as the same header.
pub fn same_cgi_name(a: &HeaderName, b: &HeaderName) -> bool {
    cgi_eq(a.as_str().as_bytes(), b.as_str().as_bytes())
}

/// Whether CGI-style apps read `name` as a header whose name starts with
/// `prefix` (given in lowercase with `-`, like `x-forwarded-`).
pub fn cgi_starts_with(name: &HeaderName, prefix: &str) -> bool {
    let name = name.as_str().as_bytes();
    name.len() >= prefix.len() && cgi_eq(&name[..prefix.len()], prefix.as_bytes())
}

/// Spelled the way proxies write header names: letters, digits and `-` only.
/// Two such names never share a CGI name, so this is the one spelling of a
/// header that a trusted proxy can have written.
pub fn is_plain(name: &HeaderName) -> bool {
    name.as_str()
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The headers of `headers` that CGI-style apps read as `name` but that are
/// not `name` itself.
pub fn other_spellings<'a>(
    headers: &'a HeaderMap,
    name: &'a HeaderName,
) -> impl Iterator<Item = &'a HeaderName> {
    headers
        .keys()
        .filter(move |candidate| *candidate != name && same_cgi_name(candidate, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> HeaderName {
        HeaderName::from_bytes(text.as_bytes()).unwrap()
    }

    fn map(names: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for n in names {
            headers.append(name(n), "v".parse().unwrap());
        }
        headers
    }

    #[test]
    fn spellings_that_cgi_apps_read_as_one_header() {
        let user = name("X-Forwarded-User");
        for spelling in [
            "X_Forwarded_User",
            "x_forwarded_user",
            "X-Forwarded_User",
            "X_FORWARDED-USER",
            "x-forwarded-user",
            "X.Forwarded.User",
            "x~forwarded+user",
        ] {
            assert!(same_cgi_name(&name(spelling), &user), "{spelling}");
        }
        for other in [
            "X-Forwarded-Users",
            "X-Forwarded-Use",
            "XForwarded-User",
            "X--Forwarded-User",
        ] {
            assert!(!same_cgi_name(&name(other), &user), "{other}");
        }
    }

    #[test]
    fn other_spellings_leave_the_exact_name_out() {
        let user = name("x-forwarded-user");
        let headers = map(&[
            "X-Forwarded-User",
            "X_Forwarded_User",
            "x-forwarded_user",
            "X-Forwarded-Groups",
        ]);
        let mut found: Vec<&str> = other_spellings(&headers, &user)
            .map(HeaderName::as_str)
            .collect();
        found.sort_unstable();
        assert_eq!(found, ["x-forwarded_user", "x_forwarded_user"]);
    }

    #[test]
    fn prefix_and_plain_spelling() {
        assert!(cgi_starts_with(&name("X_Forwarded_Prefix"), "x-forwarded-"));
        assert!(cgi_starts_with(&name("x-forwarded-host"), "x-forwarded-"));
        assert!(!cgi_starts_with(&name("x-forwarded"), "x-forwarded-"));
        assert!(!cgi_starts_with(&name("x-forwardedhost"), "x-forwarded-"));
        assert!(is_plain(&name("X-Forwarded-For")));
        assert!(!is_plain(&name("X_Forwarded-For")));
        assert!(!is_plain(&name("X.Forwarded-For")));
    }

    #[test]
    fn underscores_action_screens_names_with_underscores() {
        let headers = map(&["Host", "X_Custom", "x-ok", "a_b"]);
        assert_eq!(UnderscoresAction::Allow.screen(&headers), Screening::Pass);
        let Screening::Drop(mut dropped) = UnderscoresAction::DropHeader.screen(&headers) else {
            panic!("names with underscores are dropped");
        };
        dropped.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        assert_eq!(dropped, [name("a_b"), name("x_custom")]);
        assert!(matches!(
            UnderscoresAction::RejectRequest.screen(&headers),
            Screening::Reject(n) if has_underscore(n)
        ));
        let clean = map(&["Host", "X-Custom"]);
        for action in [
            UnderscoresAction::Allow,
            UnderscoresAction::DropHeader,
            UnderscoresAction::RejectRequest,
        ] {
            assert_eq!(action.screen(&clean), Screening::Pass, "{action:?}");
        }
    }
}
