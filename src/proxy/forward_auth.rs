//! `forward_auth` mode performed: the session check sent to the app, and a
//! short-lived cache of its answers keyed by a hash of the credentials.

use http::header;
use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora_memory_cache::MemoryCache;

use super::token_route::TokenRoute;
use super::Gateway;
use crate::identity::{credential_key, ForwardAuth, Identity, IdentityError};
use crate::upstream;

/// Forward-auth answers cached per token route and credential hash.
pub(super) type SessionCache = MemoryCache<(usize, [u8; 32]), Identity>;

/// How many sessions are cached at most: a fixed memory bound whatever
/// credentials clients invent.
pub(super) const SESSION_CACHE_ENTRIES: usize = 4096;

impl Gateway {
    /// Asks the app's session endpoint who the caller is, with only the
    /// caller's `Cookie` and `Authorization` headers.
    pub(super) async fn forward_auth(
        &self,
        mode: &ForwardAuth,
        route: &TokenRoute,
        request: &RequestHeader,
    ) -> Result<Identity, IdentityError> {
        let cookie = request.headers.get(header::COOKIE);
        let authorization = request.headers.get(header::AUTHORIZATION);
        let key = credential_key(
            cookie.map(|v| v.as_bytes()),
            authorization.map(|v| v.as_bytes()),
        )
        .ok_or_else(|| {
            IdentityError::unauthorized(
                "not signed in (no session cookie or Authorization header)",
                None,
            )
        })?;
        let cache_key = (route.id, key);
        if !mode.cache_ttl.is_zero() {
            if let (Some(identity), _) = self.sessions.get(&cache_key) {
                return Ok(identity);
            }
        }
        let upstream = route.session_upstream.as_deref().ok_or_else(|| {
            IdentityError::Unavailable("no upstream serves the session check".into())
        })?;
        let mut sub_request = session_request(mode, request)
            .map_err(|e| IdentityError::Unavailable(e.to_string()))?;
        for (name, value) in [
            (header::COOKIE, cookie),
            (header::AUTHORIZATION, authorization),
        ] {
            if let Some(value) = value {
                sub_request
                    .insert_header(name, value.clone())
                    .map_err(|e| IdentityError::Unavailable(e.to_string()))?;
            }
        }
        let answer = tokio::time::timeout(
            mode.timeout,
            upstream::ask(&self.connector, upstream, sub_request, mode.max_body_bytes),
        )
        .await;
        let (status, headers, body) = match answer {
            Err(_) => {
                return Err(IdentityError::Unavailable(format!(
                    "upstream '{}' did not answer the session check at {} within {}",
                    upstream.name,
                    mode.path,
                    humantime::format_duration(mode.timeout)
                )))
            }
            Ok(Err(e)) => {
                log::warn!("forward auth to upstream '{}' failed: {e}", upstream.name);
                return Err(IdentityError::Unavailable(format!(
                    "upstream '{}' is unavailable for the session check",
                    upstream.name
                )));
            }
            Ok(Ok(answer)) => answer,
        };
        let identity = mode.interpret(status, &headers, &body)?;
        if !mode.cache_ttl.is_zero() {
            self.sessions
                .put(&cache_key, identity.clone(), Some(mode.cache_ttl));
        }
        Ok(identity)
    }
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
