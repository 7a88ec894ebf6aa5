//! Per-request state: what routing decided, for the later phases, the access
//! log and metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderValue;
use pingora::http::RequestHeader;

use super::token_route::TokenRoute;
use crate::telemetry::trace::RequestTrace;
use crate::upstream::Upstream;

pub struct RequestCtx {
    pub(super) started: Instant,
    pub(super) request_id: HeaderValue,
    /// What kind of answer this was, for the access log when no token route
    /// describes it: `proxy`, `direct_response`, `not_found`, `cors_preflight`,
    /// `refused` (a request refused before routing: its HTTP/1.1 framing, or
    /// a header name under `http.headers_with_underscores_action: reject_request`),
    /// `path_refused`.
    pub(super) route: &'static str,
    /// The path the app receives, when it is not the one received (see
    /// `net::path`).
    pub(super) normalized_path: Option<String>,
    /// The path routes match, when it is not the normalized one: without
    /// path parameters (see `net::path`).
    pub(super) route_key: Option<String>,
    pub(super) upstream: Option<Arc<Upstream>>,
    pub(super) token_route: Option<Arc<TokenRoute>>,
    pub(super) upstream_sent: Option<Instant>,
    /// Connections tried for this request (see `errors::ATTEMPTS`).
    pub(super) attempts: u8,
    pub(super) user_id: Option<String>,
    /// Why a token request was refused: the access log's `reason`.
    pub(super) refusal: Option<&'static str>,
    /// A gRPC call's `grpc-timeout`: the upstream read timeout for it when
    /// shorter than the configured one.
    pub(super) grpc_deadline: Option<Duration>,
    /// `grpc-status` from the app's trailers (a status in the response
    /// header is read from there).
    pub(super) grpc_status: Option<http::HeaderValue>,
    /// The app's status, for its span.
    pub(super) upstream_status: Option<u16>,
    /// This request's spans; taken when they end.
    pub(super) trace: Option<RequestTrace>,
}

impl RequestCtx {
    pub(super) fn new() -> Self {
        RequestCtx {
            started: Instant::now(),
            request_id: HeaderValue::from_static("-"),
            route: "-",
            normalized_path: None,
            route_key: None,
            upstream: None,
            token_route: None,
            upstream_sent: None,
            attempts: 0,
            user_id: None,
            refusal: None,
            grpc_deadline: None,
            grpc_status: None,
            upstream_status: None,
            trace: None,
        }
    }

    /// The path the app receives: normalized (see `net::path`).
    pub(super) fn path<'a>(&'a self, request: &'a RequestHeader) -> &'a str {
        self.normalized_path
            .as_deref()
            .unwrap_or_else(|| request.uri.path())
    }

    /// The path routes match: [`Self::path`] without path parameters.
    pub(super) fn route_key<'a>(&'a self, request: &'a RequestHeader) -> &'a str {
        self.route_key
            .as_deref()
            .unwrap_or_else(|| self.path(request))
    }
}
