//! `forward_auth` mode performed: the session check sent to the app, and a
//! short-lived cache of its answers keyed by a hash of the credentials.

use std::sync::Arc;

use http::header;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora_memory_cache::MemoryCache;

use crate::identity::{credential_key, ForwardAuth, Identity, IdentityError, Reason};
use crate::telemetry::trace::{RequestTrace, Tracing};
use crate::upstream::{self, Upstream};

/// How many sessions one token route caches at most: a fixed memory bound
/// whatever credentials clients invent.
const SESSION_CACHE_ENTRIES: usize = 4096;

/// One token route's session check: the mode, the upstream it asks, and the
/// answers cached by credential hash (a route's own cache, since a session's
/// identity under one route's settings says nothing about another's).
pub(super) struct SessionCheck {
    mode: ForwardAuth,
    upstream: Arc<Upstream>,
    cache: MemoryCache<[u8; 32], Identity>,
}

impl SessionCheck {
    pub(super) fn new(mode: ForwardAuth, upstream: Arc<Upstream>) -> Self {
        SessionCheck {
            mode,
            upstream,
            cache: MemoryCache::new(SESSION_CACHE_ENTRIES),
        }
    }

    /// Asks the app's session endpoint who the caller is, with only the
    /// caller's `Cookie` and `Authorization` headers.
    /// The check is a child span of `trace`'s request when given.
    pub(super) async fn identify(
        &self,
        connector: &Connector,
        request: &RequestHeader,
        trace: Option<(&Tracing, &RequestTrace)>,
    ) -> Result<Identity, IdentityError> {
        let mode = &self.mode;
        let cookie = request.headers.get(header::COOKIE);
        let authorization = request.headers.get(header::AUTHORIZATION);
        let key = credential_key(
            cookie.map(|v| v.as_bytes()),
            authorization.map(|v| v.as_bytes()),
        )
        .ok_or_else(|| {
            IdentityError::new(
                Reason::MissingCredentials,
                "not signed in: the request has no session cookie or Authorization header; \
                 sign in to the app first",
            )
        })?;
        if !mode.cache_ttl.is_zero() {
            if let (Some(identity), _) = self.cache.get(&key) {
                return Ok(identity);
            }
        }
        // Pingora's error text names its internals: logged, not sent.
        let unbuildable = |e: Box<Error>| {
            log::warn!("the session check request could not be built: {e}");
            unavailable("the check could not be built")
        };
        let mut sub_request = session_request(mode, request).map_err(unbuildable)?;
        for (name, value) in [
            (header::COOKIE, cookie),
            (header::AUTHORIZATION, authorization),
        ] {
            if let Some(value) = value {
                sub_request
                    .insert_header(name, value.clone())
                    .map_err(unbuildable)?;
            }
        }
        let upstream = &self.upstream;
        let span = trace.map(|(tracing, trace)| {
            trace.start_sub_request(tracing, mode.method.as_str(), &upstream.name, &mode.path)
        });
        for (name, value) in span.iter().flat_map(|span| span.headers.iter()) {
            sub_request
                .insert_header(name.clone(), value.clone())
                .map_err(unbuildable)?;
        }
        let answer = tokio::time::timeout(
            mode.timeout,
            upstream::ask(connector, upstream, sub_request, mode.max_body_bytes),
        )
        .await;
        let status = match &answer {
            Ok(Ok((status, _, _))) => Some(status.as_u16()),
            _ => None,
        };
        if let Some(span) = span {
            span.end(status);
        }
        let (status, headers, body) = match answer {
            Err(_) => return Err(unavailable("it did not answer in time")),
            Ok(Err(e)) => {
                log::warn!("forward auth to upstream '{}' failed: {e}", upstream.name);
                return Err(unavailable("it could not be reached"));
            }
            Ok(Ok(answer)) => answer,
        };
        let identity = mode.interpret(status, &headers, &body)?;
        if !mode.cache_ttl.is_zero() {
            self.cache.put(&key, identity.clone(), Some(mode.cache_ttl));
        }
        Ok(identity)
    }
}

/// 503 `session_unavailable`; which upstream, path and timeout are the
/// operator's to know, not the caller's.
fn unavailable(what: &str) -> IdentityError {
    IdentityError::new(
        Reason::SessionUnavailable,
        format!("the app could not be asked who is signed in ({what}); try again later"),
    )
}

/// The session check request: method and path from the config, the caller's
/// `Host` (apps route and set cookies by it), nothing else of the caller's.
fn session_request(mode: &ForwardAuth, request: &RequestHeader) -> Result<RequestHeader> {
    let mut sub_request = RequestHeader::build(mode.method.clone(), mode.path.as_bytes(), None)?;
    if let Some(host) = request.headers.get(header::HOST) {
        sub_request.insert_header(header::HOST, host.clone())?;
    }
    sub_request.insert_header(header::ACCEPT, "application/json")?;
    sub_request.insert_header(header::CONTENT_LENGTH, "0")?;
    Ok(sub_request)
}
