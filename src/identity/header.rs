//! `header` mode: an auth layer in front (oauth2-proxy, an ingress) has put
//! the user in a header.

use http::{HeaderMap, HeaderName};

use super::{Identity, IdentityError, UserIdTemplate};
use crate::net::headers::other_spellings;

/// `header` mode: an auth layer in front (oauth2-proxy, an ingress) has put the
/// user in a header. Believed only from trusted peers.
#[derive(Debug, Clone)]
pub struct HeaderIdentity {
    pub user_header: HeaderName,
    pub roles_header: Option<HeaderName>,
    pub template: UserIdTemplate,
}

impl HeaderIdentity {
    pub fn identify(
        &self,
        peer_trusted: bool,
        headers: &HeaderMap,
    ) -> Result<Identity, IdentityError> {
        let missing = || {
            IdentityError::unauthorized(
                format!(
                    "no authenticated user: the {} header must be set by a trusted proxy",
                    self.user_header
                ),
                None,
            )
        };
        if !peer_trusted {
            return Err(missing());
        }
        // Another spelling that CGI-style apps read as the same header got past
        // the proxy in front, which writes only the exact name: that proxy does
        // not control this header, so nothing in it is believed.
        for name in self.spoofable_headers() {
            if let Some(other) = other_spellings(headers, name).next() {
                return Err(IdentityError::unauthorized(
                    format!("the {name} header was also sent as {other}"),
                    None,
                ));
            }
        }
        // Two values mean something in front appended instead of replacing:
        // which one is the real user cannot be told, so neither is believed.
        let mut values = headers.get_all(&self.user_header).iter();
        let (first, second) = (values.next(), values.next());
        if second.is_some() {
            return Err(IdentityError::unauthorized(
                format!("the {} header was sent more than once", self.user_header),
                None,
            ));
        }
        let user = first
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or_else(missing)?;
        let roles = self
            .roles_header
            .as_ref()
            .map(|name| {
                headers
                    .get_all(name)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(','))
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        self.template.apply(user, roles)
    }

    /// Headers that must not reach the app from an untrusted peer: they would
    /// let a caller claim to be someone to the app as well.
    pub fn spoofable_headers(&self) -> impl Iterator<Item = &HeaderName> {
        std::iter::once(&self.user_header).chain(self.roles_header.as_ref())
    }
}
