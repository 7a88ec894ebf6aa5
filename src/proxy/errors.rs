//! What a client is told when proxying fails, classified once from Pingora's
//! error: the upstream's fault is a 502 (504 for a read timeout), a request
//! that could not be read a 400, a client that went away nothing at all.

use pingora::prelude::*;
use pingora::ErrorType;

use crate::respond::Answer;
use crate::upstream::Upstream;

/// The answer for `error`, or `None` when there is nobody left to answer.
pub(super) fn answer_for(error: &Error, upstream: Option<&Upstream>) -> Option<Answer> {
    let name = upstream.map_or("?", |u| u.name.as_str());
    match (error.esource(), error.etype()) {
        (_, ErrorType::HTTPStatus(code)) => Some(Answer::error(*code, "Request failed")),
        (ErrorSource::Upstream, ErrorType::ReadTimedout) => {
            let timeout = upstream
                .and_then(|u| u.peer.options.read_timeout)
                .unwrap_or_default();
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
        (
            ErrorSource::Downstream,
            ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed,
        ) => None,
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
