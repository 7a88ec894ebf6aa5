//! What the app receives besides the client's request: the request id, the
//! headers that describe the connection ([`crate::net::forwarded`]), no
//! identity header an untrusted peer wrote, and no header name with `_` unless
//! `http.headers_with_underscores_action` allows it ([`crate::net::headers`]).

use http::header;
use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

use super::Gateway;
use crate::net::forwarded::{self, Connection};
use crate::net::headers::Screening;
use crate::net::request_id::X_REQUEST_ID;
use crate::net::Protocol;
use crate::respond::Answer;

impl Gateway {
    /// `http.headers_with_underscores_action`, applied as the request arrives
    /// and before routing, as Envoy does in its codec: token routes, the
    /// session check and the app all see the same headers. The refusal, if
    /// the request is refused.
    pub(super) fn screen_header_names(&self, session: &mut Session) -> Option<Answer> {
        match self.underscores.screen(&session.req_header().headers) {
            Screening::Pass => None,
            Screening::Drop(names) => {
                let request = session.req_header_mut();
                for name in &names {
                    request.remove_header(name);
                }
                None
            }
            Screening::Reject(name) => {
                let message = format!("Bad request: the header name {name} contains an underscore");
                // The body, if any, is not read: the connection cannot carry another request.
                session.set_keepalive(None);
                Some(Answer::error(400, &message))
            }
        }
    }

    /// Rewrites the request for the app; `request_id` is this request's.
    pub(super) fn forward_headers(
        &self,
        session: &Session,
        upstream_request: &mut RequestHeader,
        request_id: &http::HeaderValue,
    ) -> Result<()> {
        upstream_request.insert_header(X_REQUEST_ID, request_id.clone())?;
        let peer = peer_ip(session);
        let connection = Connection {
            peer,
            trusted: peer.is_some_and(|ip| self.trusted.contains(ip)),
            port: session
                .server_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.port()),
            tls: over_tls(session),
        };
        let authority = upstream_request
            .headers
            .get(header::HOST)
            .cloned()
            .or_else(|| {
                let authority = upstream_request.uri.authority()?;
                http::HeaderValue::from_str(authority.as_str()).ok()
            });
        let edits = forwarded::for_app(
            &upstream_request.headers,
            authority.as_ref(),
            &connection,
            &self.spoofable_headers,
        );
        for name in &edits.remove {
            upstream_request.remove_header(name);
        }
        for (name, value) in edits.set {
            upstream_request.insert_header(name, value)?;
        }
        Ok(())
    }
}

impl Gateway {
    /// The request's trace context for the app: streamgate's `traceparent`
    /// (a span of this attempt), and `tracestate` only as a trusted caller
    /// sent it; whatever the client sent of either is replaced or removed
    /// (see `telemetry::trace`).
    pub(super) fn forward_trace(
        &self,
        upstream_request: &mut RequestHeader,
        ctx: &mut super::RequestCtx,
    ) -> Result<()> {
        upstream_request.remove_header(&TRACEPARENT);
        upstream_request.remove_header(&TRACESTATE);
        let (Some(trace), Some(upstream)) = (&mut ctx.trace, &ctx.upstream) else {
            return Ok(());
        };
        let headers = trace.start_upstream(
            &self.tracing,
            upstream_request.method.as_str(),
            &upstream.name,
            &upstream.peer._address,
        );
        for (name, value) in headers {
            upstream_request.insert_header(name, value)?;
        }
        Ok(())
    }
}

const TRACEPARENT: header::HeaderName = header::HeaderName::from_static("traceparent");
const TRACESTATE: header::HeaderName = header::HeaderName::from_static("tracestate");

/// Whether the client's connection is TLS (a `tls` listener).
pub(super) fn over_tls(session: &Session) -> bool {
    session
        .digest()
        .is_some_and(|digest| digest.ssl_digest.is_some())
}

/// The protocol of the client's request, for the access log and metrics.
pub(super) fn protocol(session: &Session) -> Protocol {
    if session.is_http2() {
        if over_tls(session) {
            Protocol::H2
        } else {
            Protocol::H2c
        }
    } else if session.req_header().version == http::Version::HTTP_10 {
        Protocol::Http10
    } else {
        Protocol::Http11
    }
}

/// The socket peer's address (not yet the client's: see `net::trusted`).
pub(super) fn peer_ip(session: &Session) -> Option<std::net::IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}
