//! gRPC calls on the proxy path: a call's deadline bounds how long streamgate
//! waits for the app, and its outcome (`grpc-status`) is logged and counted.
//! What a gRPC call means is decided in [`crate::net::grpc`].

use std::time::Duration;

use pingora::http::RequestHeader;
use pingora::prelude::HttpPeer;
use pingora::proxy::Session;

use super::RequestCtx;
use crate::net::grpc::{self, InvalidTimeout, GRPC_TIMEOUT};

/// The deadline a gRPC call carries in `grpc-timeout`, if it is a call and
/// carries one. The header is passed on to the app, which may end the call
/// sooner itself.
pub(super) fn deadline(request: &RequestHeader) -> Result<Option<Duration>, InvalidTimeout> {
    if !grpc::is_call(&request.headers) {
        return Ok(None);
    }
    request
        .headers
        .get(GRPC_TIMEOUT)
        .map(|value| grpc::parse_timeout(value.as_bytes()))
        .transpose()
}

/// `peer` with its read timeout cut to the call's deadline when that is
/// shorter: past it the client has given up, and it is told
/// `DEADLINE_EXCEEDED` (504) rather than left waiting.
pub(super) fn within_deadline(mut peer: HttpPeer, deadline: Option<Duration>) -> HttpPeer {
    if let Some(deadline) = deadline {
        let read_timeout = peer
            .options
            .read_timeout
            .map_or(deadline, |t| t.min(deadline));
        peer.options.read_timeout = Some(read_timeout);
    }
    peer
}

/// The call's `grpc-status` as a bounded label: from the app's trailers, or
/// from the response header (a Trailers-Only answer, the app's or
/// streamgate's own); `None` for a request that is not a gRPC call.
pub(super) fn status(session: &Session, ctx: &RequestCtx) -> Option<&'static str> {
    if !grpc::is_call(&session.req_header().headers) {
        return None;
    }
    let in_header = session
        .response_written()
        .and_then(|response| response.headers.get("grpc-status"));
    ctx.grpc_status
        .as_ref()
        .or(in_header)
        .map(|value| grpc::status_label(value.as_bytes()))
}
