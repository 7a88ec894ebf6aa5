//! What the app receives besides the client's request: the request id, the
//! `X-Forwarded-*` headers ([`crate::net::forwarded`]), and no identity header
//! an untrusted peer wrote.

use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

use super::Gateway;
use crate::net::forwarded::{
    forwarded_for, PROTO, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO,
};
use crate::net::request_id::X_REQUEST_ID;

impl Gateway {
    /// Rewrites the request for the app; `request_id` is this request's.
    pub(super) fn forward_headers(
        &self,
        session: &Session,
        upstream_request: &mut RequestHeader,
        request_id: &http::HeaderValue,
    ) -> Result<()> {
        upstream_request.insert_header(X_REQUEST_ID, request_id.clone())?;
        let peer = peer_ip(session);
        if !self.spoofable_headers.is_empty() && !peer.is_some_and(|ip| self.trusted.contains(ip)) {
            for name in &self.spoofable_headers {
                upstream_request.remove_header(name);
            }
        }
        if let Some(peer) = peer {
            let value = forwarded_for(
                upstream_request.headers.get_all(&X_FORWARDED_FOR).iter(),
                peer,
            );
            upstream_request.insert_header(X_FORWARDED_FOR, value)?;
        }
        if !upstream_request.headers.contains_key(&X_FORWARDED_PROTO) {
            upstream_request.insert_header(X_FORWARDED_PROTO, PROTO)?;
        }
        if !upstream_request.headers.contains_key(&X_FORWARDED_HOST) {
            if let Some(host) = upstream_request.headers.get(http::header::HOST).cloned() {
                upstream_request.insert_header(X_FORWARDED_HOST, host)?;
            }
        }
        Ok(())
    }
}

/// The socket peer's address (not yet the client's: see `net::trusted`).
pub(super) fn peer_ip(session: &Session) -> Option<std::net::IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}
