//! The path that routes is the path the app receives ([`crate::net::path`]),
//! less its path parameters: read once, before anything looks at it, kept in
//! the request's context when its normal form differs from what the client
//! sent, and written into the request for the app. The query is never
//! touched.

use std::borrow::Cow;

use pingora::http::RequestHeader;
use pingora::prelude::*;

use super::{Gateway, RequestCtx};
use crate::respond::Answer;

impl Gateway {
    /// Reads the request's path by the `http:` rules into `ctx`; the 400 that
    /// refuses it, if it is refused.
    pub(super) fn read_path(
        &self,
        request: &RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Option<Answer> {
        // A target that is not UTF-8 never gets here: Pingora's parser
        // answers it 400 (tests/paths.rs checks it still does).
        let refusal = self.normalize_path(request, ctx);
        if refusal.is_none() {
            ctx.route_key = match self.paths.route_key(ctx.path(request)) {
                Cow::Owned(key) => Some(key),
                Cow::Borrowed(_) => None,
            };
        }
        refusal
    }

    /// The normalizing half of [`Self::read_path`].
    fn normalize_path(&self, request: &RequestHeader, ctx: &mut RequestCtx) -> Option<Answer> {
        match self.paths.normalize(request.uri.path()) {
            Ok(Cow::Borrowed(_)) => None,
            Ok(Cow::Owned(normalized)) => {
                // Percent-encoding can triple a path; past what a request
                // target may hold (the `http` crate's URI limit) the app could
                // not be sent it. A 414 names that, where a failure to build
                // the upstream request would be our 500.
                let query = request.uri.query().map_or(0, |q| q.len() + 1);
                if normalized.len() + query > MAX_TARGET_BYTES {
                    ctx.route = "path_refused";
                    return Some(Answer::error(
                        414,
                        &format!(
                            "URI too long: the normalized request target exceeds {MAX_TARGET_BYTES} bytes"
                        ),
                    ));
                }
                ctx.normalized_path = Some(normalized);
                None
            }
            Err(refusal) => {
                ctx.route = "path_refused";
                Some(Answer::error(400, &refusal.to_string()))
            }
        }
    }
}

/// The longest request target the `http` crate's `Uri` accepts (`u16::MAX - 1`).
const MAX_TARGET_BYTES: usize = 65_534;

/// Puts the normalized path, if it differs, into the request for the app,
/// with the query's bytes as received.
pub(super) fn forward_path(upstream_request: &mut RequestHeader, ctx: &RequestCtx) -> Result<()> {
    let Some(path) = &ctx.normalized_path else {
        return Ok(());
    };
    let received = upstream_request.raw_path();
    let query = received
        .iter()
        .position(|&b| b == b'?')
        .map_or(&[][..], |at| &received[at..]);
    let mut target = Vec::with_capacity(path.len() + query.len());
    target.extend_from_slice(path.as_bytes());
    target.extend_from_slice(query);
    upstream_request.set_raw_path(&target)
}
