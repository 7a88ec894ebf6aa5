//! Proxying failures: whether a request is sent again, and what a client is
//! told when it is not, classified once from Pingora's error: the upstream's
//! fault is a 502 (504 for a read timeout), a request that could not be read a
//! 400, a client that went away nothing at all.
//!
//! One retry, on a new connection, only where it cannot make the app act twice:
//! after a failed connect (nothing reached the app), or when a pooled
//! connection fails before any response byte and the method is idempotent
//! (RFC 9110 §9.2.2) with its body still replayable. Pingora marks the second
//! case `ReusedOnly`; its own default policy decides it the same way.

use std::time::Duration;

use pingora::prelude::*;
use pingora::proxy::Session;
use pingora::ErrorType;

use super::ctx::RequestCtx;
use crate::respond::Answer;
use crate::upstream::Upstream;

/// Tries per request: the first and one retry (Pingora's `max_retries`).
pub(super) const ATTEMPTS: u8 = 2;

/// A connect that failed: counted, and retried once.
pub(super) fn after_connect_error(ctx: &RequestCtx, mut error: Box<Error>) -> Box<Error> {
    if let Some(upstream) = &ctx.upstream {
        upstream.metrics.connect_errors.inc();
        let retry = ctx.attempts < ATTEMPTS;
        error.set_retry(retry);
        if retry {
            upstream.metrics.retries_after_connect_error.inc();
        }
    }
    error
}

/// An error once connected: retried only when Pingora says the request never
/// reached a fresh connection's app (`ReusedOnly` on a reused one) and sending
/// it again is safe.
pub(super) fn while_proxying(
    session: &Session,
    ctx: &RequestCtx,
    mut error: Box<Error>,
    client_reused: bool,
) -> Box<Error> {
    let request = session.req_header();
    let replayable = request.method.is_idempotent() && !session.as_ref().retry_buffer_truncated();
    if replayable && ctx.attempts < ATTEMPTS {
        error.retry.decide_reuse(client_reused);
    } else {
        error.set_retry(false);
    }
    if error.retry() {
        if let Some(upstream) = &ctx.upstream {
            upstream.metrics.retries_on_reused_connection.inc();
        }
    }
    error
}

/// The client closed or reset its connection: nobody is left to answer, and
/// nothing for an operator to act on (the access log has the request).
pub(super) fn client_went_away(error: &Error) -> bool {
    matches!(
        (error.esource(), error.etype()),
        (
            ErrorSource::Downstream,
            ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed,
        )
    )
}

/// The answer for `error`, or `None` when there is nobody left to answer.
///
/// `deadline` is a gRPC call's `grpc-timeout`: a read timeout it cut short
/// is the call's deadline passing, and is said so.
pub(super) fn answer_for(
    error: &Error,
    upstream: Option<&Upstream>,
    deadline: Option<Duration>,
) -> Option<Answer> {
    let name = upstream.map_or("?", |u| u.name.as_str());
    match (error.esource(), error.etype()) {
        (_, ErrorType::HTTPStatus(code)) => Some(Answer::error(*code, "Request failed")),
        (ErrorSource::Upstream, ErrorType::ReadTimedout) => {
            let timeout = upstream
                .and_then(|u| u.peer.options.read_timeout)
                .unwrap_or_default();
            if let Some(deadline) = deadline.filter(|d| *d < timeout) {
                return Some(Answer::error(
                    504,
                    &format!(
                        "Deadline exceeded: upstream '{name}' did not answer within the call's grpc-timeout ({})",
                        humantime::format_duration(deadline)
                    ),
                ));
            }
            Some(Answer::error(
                504,
                &format!(
                    "Gateway timeout: upstream '{name}' did not answer within {}",
                    humantime::format_duration(timeout)
                ),
            ))
        }
        (ErrorSource::Upstream, _) => Some(Answer::error(
            502,
            &format!("Bad gateway: upstream '{name}' is unavailable"),
        )),
        _ if client_went_away(error) => None,
        (ErrorSource::Downstream, _) => Some(Answer::error(
            400,
            "Bad request: the request could not be read",
        )),
        (ErrorSource::Internal | ErrorSource::Unset, _) => Some(Answer::error(
            500,
            "Internal error: the request could not be proxied",
        )),
    }
}
