//! `header` mode: an auth layer in front (oauth2-proxy, an ingress) has put
//! the user in a header.

use http::{HeaderMap, HeaderName};

use super::{Identity, IdentityError, Reason, UserIdMapping};
use crate::net::headers::other_spellings;

/// `header` mode: an auth layer in front (oauth2-proxy, an ingress) has put the
/// user in a header. Believed only from trusted peers.
#[derive(Debug, Clone)]
pub struct HeaderIdentity {
    pub user_header: HeaderName,
    pub roles_header: Option<HeaderName>,
    pub mapping: UserIdMapping,
}

impl HeaderIdentity {
    pub fn identify(
        &self,
        peer_trusted: bool,
        headers: &HeaderMap,
    ) -> Result<Identity, IdentityError> {
        // The same words whether the peer is untrusted or the header absent:
        // an untrusted caller learns nothing about which peers are believed.
        let not_signed_in = |reason| {
            IdentityError::new(
                reason,
                format!(
                    "not signed in: sign in through the auth proxy in front of this service, \
                     which sets the {} header",
                    self.user_header
                ),
            )
        };
        if !peer_trusted {
            return Err(not_signed_in(Reason::UntrustedPeer));
        }
        // Another spelling that CGI-style apps read as the same header got past
        // the proxy in front, which writes only the exact name: that proxy does
        // not control this header, so nothing in it is believed.
        for name in self.spoofable_headers() {
            if let Some(other) = other_spellings(headers, name).next() {
                return Err(IdentityError::new(
                    Reason::ConflictingUserHeader,
                    format!("the {name} header was also sent as {other}"),
                ));
            }
        }
        // Two values mean something in front appended instead of replacing:
        // which one is the real user cannot be told, so neither is believed.
        let mut values = headers.get_all(&self.user_header).iter();
        let (first, second) = (values.next(), values.next());
        if second.is_some() {
            return Err(IdentityError::new(
                Reason::ConflictingUserHeader,
                format!("the {} header was sent more than once", self.user_header),
            ));
        }
        let user = first
            .filter(|v| !v.as_bytes().trim_ascii().is_empty())
            .ok_or_else(|| not_signed_in(Reason::MissingUserHeader))?;
        // UTF-8, not only visible ASCII: a provider's id may be any text, and
        // `user_id_map` is what makes it a Stream user id.
        let user = std::str::from_utf8(user.as_bytes())
            .map_err(|_| {
                IdentityError::new(
                    Reason::InvalidUserId,
                    format!("the {} header is not UTF-8 text", self.user_header),
                )
            })?
            .trim();
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
        self.mapping.apply(user, roles)
    }

    /// Headers that must not reach the app from an untrusted peer: they would
    /// let a caller claim to be someone to the app as well.
    pub fn spoofable_headers(&self) -> impl Iterator<Item = &HeaderName> {
        std::iter::once(&self.user_header).chain(self.roles_header.as_ref())
    }
}
