//! The Pingora glue: one `ProxyHttp` that answers token routes in
//! `request_filter` and proxies everything else.
//!
//! This module only moves bytes between sockets and the pure core
//! ([`crate::token_contract`], [`crate::routing`], [`crate::identity`]); every
//! decision about what a request means is made there. Proxied requests are left
//! to Pingora, which streams bodies both ways and handles WebSocket upgrades
//! itself, so the per-request work on the proxy path is a route lookup, the
//! `X-Forwarded-*` and `X-Request-Id` headers, and counting for metrics and the
//! access log. Those headers are most of streamgate's own cost there (README,
//! Performance): each Pingora header insert parses the name and updates two maps.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode};
use pingora::connectors::http::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::ErrorType;
use pingora_memory_cache::MemoryCache;

use crate::config::{AccessLogSettings, Config, RouteAccess, Upstream};
use crate::identity::{
    credential_key, ForwardAuth, Identity, IdentityError, IdentitySource, TrustedNetworks,
};
use crate::limits::RateLimit;
use crate::logging::AccessRecord;
use crate::metrics::{Metrics, TokenRouteMetrics, UpstreamMetrics};
use crate::routing::{Action, MintKind, RouteTable};
use crate::signing::SignerSlot;
use crate::token_contract::{Rejection, Reply, TokenMinter};

const REQUEST_ID: &str = "x-request-id";

/// An upstream ready to connect to: its name for messages and a prepared peer.
pub(crate) struct UpstreamPeer {
    pub(crate) name: String,
    pub(crate) peer: HttpPeer,
}

impl UpstreamPeer {
    pub(crate) fn new(upstream: &Upstream) -> Self {
        let mut peer = HttpPeer::new(upstream.address, upstream.tls, upstream.sni.clone());
        peer.options.connection_timeout = Some(upstream.connect_timeout);
        peer.options.read_timeout = Some(upstream.read_timeout);
        peer.options.write_timeout = Some(upstream.write_timeout);
        peer.options.idle_timeout = Some(upstream.idle_timeout);
        peer.options.verify_cert = upstream.verify_cert;
        peer.options.verify_hostname = upstream.verify_cert;
        UpstreamPeer {
            name: upstream.name.clone(),
            peer,
        }
    }
}

/// Forward-auth answers cached per route and credential hash.
type SessionCache = MemoryCache<(usize, [u8; 32]), Identity>;

pub struct Gateway {
    routes: RouteTable,
    upstreams: Vec<UpstreamPeer>,
    minter: TokenMinter,
    access: Vec<RouteAccess>,
    trusted: TrustedNetworks,
    per_client_ip: Option<RateLimit>,
    per_identity: Option<RateLimit>,
    /// Identity headers of `header` mode, removed from proxied requests that do
    /// not come from a trusted peer so that the app cannot be fooled either.
    spoofable_headers: Vec<HeaderName>,
    connector: Connector,
    sessions: SessionCache,
    metrics: Arc<Metrics>,
    /// Indexed like `access`.
    token_metrics: Vec<TokenRouteMetrics>,
    /// Indexed like `upstreams`.
    upstream_metrics: Vec<UpstreamMetrics>,
    access_log: AccessLogSettings,
}

/// Per-request state, for routing, the access log and metrics.
pub struct RequestCtx {
    started: Instant,
    request_id: HeaderValue,
    route: &'static str,
    upstream: Option<usize>,
    access: Option<usize>,
    upstream_sent: Option<Instant>,
    user_id: Option<String>,
}

/// A token route's answer and the headers that go with it.
struct Answer {
    reply: Reply,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// Metric label when refused.
    refusal: Option<&'static str>,
    user_id: Option<String>,
}

impl From<Rejection> for Answer {
    fn from(rejection: Rejection) -> Self {
        let headers = match &rejection {
            Rejection::TooManyRequests {
                retry_after_seconds,
            } => vec![(header::RETRY_AFTER, HeaderValue::from(*retry_after_seconds))],
            _ => Vec::new(),
        };
        Answer {
            refusal: Some(rejection.reason()),
            reply: rejection.into_reply(),
            headers,
            user_id: None,
        }
    }
}

impl From<IdentityError> for Answer {
    fn from(error: IdentityError) -> Self {
        match error {
            IdentityError::Unauthorized { reason, challenge } => {
                let mut answer = Answer::from(Rejection::Unauthorized(reason));
                if let Some(challenge) = challenge {
                    answer.headers.push((
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static(challenge),
                    ));
                }
                answer
            }
            IdentityError::Forbidden(reason) => Rejection::Forbidden(reason).into(),
            IdentityError::Unavailable(reason) => Rejection::Unavailable(reason).into(),
        }
    }
}

impl Gateway {
    /// `signer` is shared with the secret watcher, `metrics` with the admin
    /// listener; `connector` makes the forward-auth session checks.
    pub fn new(
        config: Config,
        signer: Arc<SignerSlot>,
        metrics: Arc<Metrics>,
        connector: Connector,
    ) -> Self {
        let spoofable_headers = config
            .access
            .iter()
            .filter_map(|a| match &a.identity {
                IdentitySource::Header(mode) => {
                    Some(mode.spoofable_headers().cloned().collect::<Vec<_>>())
                }
                _ => None,
            })
            .flatten()
            .collect();
        Gateway {
            routes: config.routes,
            upstreams: config.upstreams.iter().map(UpstreamPeer::new).collect(),
            minter: TokenMinter::with_signer(&config.stream.api_key, signer, config.tokens),
            token_metrics: config
                .access
                .iter()
                .map(|a| metrics.token_route(&a.route))
                .collect(),
            upstream_metrics: config
                .upstreams
                .iter()
                .map(|u| metrics.upstream(&u.name))
                .collect(),
            access: config.access,
            trusted: config.trusted_cidrs,
            per_client_ip: config
                .rate_limits
                .per_client_ip
                .map(|l| RateLimit::new(l.requests, l.window)),
            per_identity: config
                .rate_limits
                .per_identity
                .map(|l| RateLimit::new(l.requests, l.window)),
            spoofable_headers,
            connector,
            sessions: MemoryCache::new(4096),
            metrics,
            access_log: config.access_log,
        }
    }

    fn rate_limited(&self, access: &RouteAccess, limit: &str, retry_after_seconds: u64) -> Answer {
        self.metrics
            .rate_limited
            .with_label_values(&[access.route.as_str(), limit])
            .inc();
        Rejection::TooManyRequests {
            retry_after_seconds,
        }
        .into()
    }

    fn peer_ip(session: &Session) -> Option<std::net::IpAddr> {
        session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
    }

    /// Answers a token route: every step that can refuse, in the order that
    /// reveals least to a caller who should not get a token.
    async fn mint(
        &self,
        session: &mut Session,
        kind: MintKind,
        access: &RouteAccess,
        access_index: usize,
    ) -> Result<Answer> {
        let headers = &session.req_header().headers;
        let content_type = headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes());
        let content_length = headers.get(header::CONTENT_LENGTH).map(|v| v.as_bytes());
        let expects_continue = headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if let Err(rejection) = self.minter.check_headers(content_type, content_length) {
            // The body was not read: the connection cannot carry another request.
            session.set_keepalive(None);
            return Ok(rejection.into());
        }
        if expects_continue {
            session.write_continue_response().await?;
        }
        let Some(body) = read_body_up_to(session, self.minter.policy().max_body_bytes).await?
        else {
            session.set_keepalive(None);
            return Ok(self.minter.too_large().into());
        };
        let peer = Self::peer_ip(session);
        if let (Some(limit), Some(peer)) = (&self.per_client_ip, peer) {
            let forwarded = session.req_header().headers.get_all("x-forwarded-for");
            let client = self
                .trusted
                .client_ip(peer, forwarded.iter().map(|v| v.as_bytes()));
            if let Err(retry_after_seconds) = limit.check(&client) {
                return Ok(self.rate_limited(access, "client_ip", retry_after_seconds));
            }
        }
        let identity = match self.identify(session, access, access_index, peer).await {
            Ok(identity) => identity,
            Err(error) => {
                let result = match &error {
                    IdentityError::Unauthorized { .. } => "unauthorized",
                    IdentityError::Forbidden(_) => "forbidden",
                    IdentityError::Unavailable(_) => "unavailable",
                };
                self.metrics
                    .identity_failures
                    .with_label_values(&[
                        access.route.as_str(),
                        access.identity.mode_name(),
                        result,
                    ])
                    .inc();
                return Ok(error.into());
            }
        };
        let grant = match self
            .minter
            .parse(kind, &body, identity.is_some())
            .and_then(|request| self.minter.authorize(request, identity.as_ref()))
        {
            Ok(grant) => grant,
            Err(rejection) => return Ok(rejection.into()),
        };
        if let Some(limit) = &self.per_identity {
            if let Err(retry_after_seconds) = limit.check(&grant.user_id) {
                let mut answer = self.rate_limited(access, "identity", retry_after_seconds);
                answer.user_id = Some(grant.user_id);
                return Ok(answer);
            }
        }
        let mut answer: Answer = match self.minter.issue(&grant, SystemTime::now()) {
            Ok(reply) => Answer {
                reply,
                headers: Vec::new(),
                refusal: None,
                user_id: None,
            },
            Err(rejection) => rejection.into(),
        };
        answer.user_id = Some(grant.user_id);
        Ok(answer)
    }

    async fn identify(
        &self,
        session: &Session,
        access: &RouteAccess,
        access_index: usize,
        peer: Option<std::net::IpAddr>,
    ) -> Result<Option<Identity>, IdentityError> {
        let headers = &session.req_header().headers;
        match &access.identity {
            IdentitySource::None => Ok(None),
            IdentitySource::Header(mode) => {
                let trusted = peer.is_some_and(|ip| self.trusted.contains(ip));
                mode.identify(trusted, headers).map(Some)
            }
            IdentitySource::Jwt(mode) => mode
                .identify(headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()))
                .map(Some),
            IdentitySource::ForwardAuth(mode) => self
                .forward_auth(mode, access_index, session.req_header())
                .await
                .map(Some),
        }
    }

    /// Asks the app's session endpoint who the caller is, with only the
    /// caller's `Cookie` and `Authorization` headers.
    async fn forward_auth(
        &self,
        mode: &ForwardAuth,
        access_index: usize,
        request: &RequestHeader,
    ) -> Result<Identity, IdentityError> {
        let cookie = request.headers.get(header::COOKIE);
        let authorization = request.headers.get(header::AUTHORIZATION);
        let key = credential_key(
            cookie.map(|v| v.as_bytes()),
            authorization.map(|v| v.as_bytes()),
        )
        .ok_or_else(|| IdentityError::Unauthorized {
            reason: "not signed in (no session cookie or Authorization header)".into(),
            challenge: None,
        })?;
        let cache_key = (access_index, key);
        if !mode.cache_ttl.is_zero() {
            if let (Some(identity), _) = self.sessions.get(&cache_key) {
                return Ok(identity);
            }
        }
        let upstream = &self.upstreams[mode.upstream];
        let mut sub_request = build_session_request(mode, request)
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
            ask_upstream(&self.connector, upstream, sub_request, mode.max_body_bytes),
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

    /// A CORS preflight for a token route with a CORS policy, if this is one.
    fn preflight(&self, request: &RequestHeader) -> Option<Vec<(HeaderName, HeaderValue)>> {
        if request.method != Method::OPTIONS {
            return None;
        }
        let requested = request.headers.get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
        let method = Method::from_bytes(requested.as_bytes()).ok()?;
        let (_, access) = self.routes.find_mint(&method, request.uri.path())?;
        let cors = self.access.get(access)?.cors.as_ref()?;
        Some(cors.preflight_headers(request.headers.get(header::ORIGIN)))
    }
}

/// One request to an upstream over Pingora's connection pool, body capped:
/// the session check of `forward_auth` and the admin readiness probe.
pub(crate) async fn ask_upstream(
    connector: &Connector,
    upstream: &UpstreamPeer,
    request: RequestHeader,
    max_body: usize,
) -> Result<(StatusCode, HeaderMap, Bytes)> {
    let (mut http, _reused) = connector.get_http_session(&upstream.peer).await?;
    http.write_request_header(Box::new(request)).await?;
    http.finish_request_body().await?;
    http.read_response_header().await?;
    let response = http
        .response_header()
        .ok_or_else(|| Error::explain(ErrorType::InvalidHTTPHeader, "no response header"))?;
    let (status, headers) = (response.status, response.headers.clone());
    let mut body = BytesMut::new();
    while let Some(chunk) = http.read_response_body().await? {
        if body.len() + chunk.len() > max_body {
            return Error::e_explain(ErrorType::InvalidHTTPHeader, "upstream answer too large");
        }
        body.extend_from_slice(&chunk);
    }
    connector
        .release_http_session(http, &upstream.peer, upstream.peer.options.idle_timeout)
        .await;
    Ok((status, headers, body.freeze()))
}

/// A request id from the client is kept when it is short printable ASCII, so
/// that a trace started in front of streamgate continues through it and the app.
fn request_id(request: &RequestHeader) -> HeaderValue {
    request
        .headers
        .get(REQUEST_ID)
        .filter(|v| {
            (1..=128).contains(&v.len()) && v.as_bytes().iter().all(|b| b.is_ascii_graphic())
        })
        .cloned()
        .unwrap_or_else(|| {
            let id = uuid::Uuid::new_v4();
            HeaderValue::from_str(
                id.hyphenated()
                    .encode_lower(&mut uuid::Uuid::encode_buffer()),
            )
            .unwrap_or_else(|_| HeaderValue::from_static("-"))
        })
}

/// The session check request: method and path from the config, the caller's
/// `Host` (apps route and set cookies by it), nothing else of the caller's.
fn build_session_request(mode: &ForwardAuth, request: &RequestHeader) -> Result<RequestHeader> {
    let mut sub_request = RequestHeader::build(mode.method.clone(), mode.path.as_bytes(), None)?;
    if let Some(host) = request.headers.get(header::HOST) {
        sub_request.insert_header(header::HOST, host.clone())?;
    }
    sub_request.insert_header(header::ACCEPT, "application/json")?;
    sub_request.insert_header(header::CONTENT_LENGTH, "0")?;
    Ok(sub_request)
}

/// The whole request body, or `None` once it exceeds `limit` bytes. Chunked
/// bodies have no Content-Length to check up front, so the cap is enforced here.
async fn read_body_up_to(session: &mut Session, limit: usize) -> Result<Option<Bytes>> {
    // A token request body nearly always arrives as one chunk: keep it as is,
    // and copy into a buffer only when a second one follows.
    let Some(first) = session.read_request_body().await? else {
        return Ok(Some(Bytes::new()));
    };
    if first.len() > limit {
        return Ok(None);
    }
    let Some(second) = session.read_request_body().await? else {
        return Ok(Some(first));
    };
    let mut body = BytesMut::from(first);
    let mut next = Some(second);
    while let Some(chunk) = next {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
        next = session.read_request_body().await?;
    }
    Ok(Some(body.freeze()))
}

/// Writes one of streamgate's own JSON answers.
async fn send_reply(
    session: &mut Session,
    reply: Reply,
    extra: &[(HeaderName, HeaderValue)],
    request_id: &HeaderValue,
) -> Result<()> {
    let mut response = ResponseHeader::build(reply.status, Some(5 + extra.len()))?;
    response.insert_header(REQUEST_ID, request_id.clone())?;
    response.insert_header(header::CONTENT_TYPE, "application/json")?;
    response.insert_header(header::CONTENT_LENGTH, reply.body.len())?;
    response.insert_header(header::CACHE_CONTROL, "no-store")?;
    for (name, value) in extra {
        response.append_header(name.clone(), value.clone())?;
    }
    session
        .write_response_header(Box::new(response), false)
        .await?;
    session
        .write_response_body(Some(Bytes::from(reply.body)), true)
        .await
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    /// No downstream modules: Pingora's default adds a (disabled) compression
    /// module whose filters still run on every request and body chunk, and
    /// streamgate passes the app's encoding through untouched.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            request_id: HeaderValue::from_static("-"),
            route: "-",
            upstream: None,
            access: None,
            upstream_sent: None,
            user_id: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.request_id = request_id(session.req_header());
        if let Some(headers) = self.preflight(session.req_header()) {
            ctx.route = "cors_preflight";
            let mut response =
                ResponseHeader::build(StatusCode::NO_CONTENT, Some(headers.len() + 1))?;
            for (name, value) in headers {
                response.append_header(name, value)?;
            }
            response.insert_header(header::CONTENT_LENGTH, 0)?;
            response.insert_header(REQUEST_ID, ctx.request_id.clone())?;
            session
                .write_response_header(Box::new(response), true)
                .await?;
            return Ok(true);
        }
        let request = session.req_header();
        let action = self
            .routes
            .find(&request.method, request.uri.path())
            .map(|route| &route.action);
        match action {
            Some(Action::Proxy { upstream }) => {
                ctx.route = "proxy";
                ctx.upstream = Some(*upstream);
                Ok(false)
            }
            Some(Action::Respond(direct)) => {
                ctx.route = "direct_response";
                let mut response = ResponseHeader::build(direct.status, Some(2))?;
                response.insert_header(header::CONTENT_TYPE, direct.content_type.as_str())?;
                response.insert_header(header::CONTENT_LENGTH, direct.body.len())?;
                session
                    .write_response_header(Box::new(response), false)
                    .await?;
                session
                    .write_response_body(Some(direct.body.clone()), true)
                    .await?;
                Ok(true)
            }
            Some(Action::Mint { kind, access }) => {
                let (kind, access_index) = (*kind, *access);
                ctx.route = "token";
                ctx.access = Some(access_index);
                let access = &self.access[access_index];
                let origin = session.req_header().headers.get(header::ORIGIN).cloned();
                let mut answer = self.mint(session, kind, access, access_index).await?;
                if let Some(cors) = &access.cors {
                    answer
                        .headers
                        .extend(cors.response_headers(origin.as_ref()));
                }
                let counters = &self.token_metrics[access_index];
                match answer.refusal {
                    None => counters.issued.inc(),
                    Some(reason) => self
                        .metrics
                        .tokens_refused
                        .with_label_values(&[access.route.as_str(), reason])
                        .inc(),
                }
                ctx.user_id = answer.user_id;
                // Observed before the write, so that a client holding the answer
                // always finds it counted.
                counters
                    .duration
                    .observe(ctx.started.elapsed().as_secs_f64());
                send_reply(session, answer.reply, &answer.headers, &ctx.request_id).await?;
                Ok(true)
            }
            None => {
                ctx.route = "not_found";
                let message = format!(
                    "Not found: no route matches {} {}",
                    request.method,
                    request.uri.path()
                );
                send_reply(session, Reply::error(404, &message), &[], &ctx.request_id).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let upstream = ctx
            .upstream
            .and_then(|i| self.upstreams.get(i))
            .ok_or_else(|| {
                Error::explain(
                    ErrorType::InternalError,
                    "request reached upstream_peer without a route",
                )
            })?;
        Ok(Box::new(upstream.peer.clone()))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        upstream_request.insert_header(REQUEST_ID, ctx.request_id.clone())?;
        ctx.upstream_sent = Some(Instant::now());
        if !self.spoofable_headers.is_empty()
            && !Self::peer_ip(session).is_some_and(|ip| self.trusted.contains(ip))
        {
            for name in &self.spoofable_headers {
                upstream_request.remove_header(name);
            }
        }
        add_forwarded_headers(session, upstream_request)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let upstream = ctx.upstream.and_then(|i| self.upstreams.get(i));
        let name = upstream.map_or("?", |u| u.name.as_str());
        let reply = match (e.esource(), e.etype()) {
            (_, ErrorType::HTTPStatus(code)) => Some(Reply::error(*code, "Request failed")),
            (ErrorSource::Upstream, ErrorType::ReadTimedout) => {
                let timeout = upstream
                    .and_then(|u| u.peer.options.read_timeout)
                    .unwrap_or_default();
                Some(Reply::error(
                    504,
                    &format!(
                        "Gateway timeout: upstream '{name}' did not answer within {}",
                        humantime::format_duration(timeout)
                    ),
                ))
            }
            (ErrorSource::Upstream, _) => Some(Reply::error(
                502,
                &format!("Bad gateway: upstream '{name}' is unavailable"),
            )),
            (
                ErrorSource::Downstream,
                ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed,
            ) => None,
            (ErrorSource::Downstream, _) => Some(Reply::error(
                400,
                "Bad request: the request could not be read",
            )),
            (ErrorSource::Internal | ErrorSource::Unset, _) => Some(Reply::error(
                500,
                "Internal error: the request could not be proxied",
            )),
        };
        let error_code = reply.as_ref().map_or(0, |r| r.status);
        // Once the upstream's response has started, its status line is already on
        // the wire; all that can be done is to close the connection.
        if let Some(reply) = reply.filter(|_| session.response_written().is_none()) {
            session.set_keepalive(None);
            if let Err(write_error) = send_reply(session, reply, &[], &ctx.request_id).await {
                log::debug!("could not send error response downstream: {write_error}");
            }
        }
        FailToProxy {
            error_code,
            can_reuse_downstream: false,
        }
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let (Some(sent), Some(upstream)) = (ctx.upstream_sent, ctx.upstream) {
            self.upstream_metrics[upstream]
                .duration
                .observe(sent.elapsed().as_secs_f64());
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        upstream_response.insert_header(REQUEST_ID, ctx.request_id.clone())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        if let Some(upstream) = ctx.upstream {
            self.upstream_metrics[upstream].connect_errors.inc();
        }
        e
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        if let Some(upstream) = ctx.upstream {
            self.upstream_metrics[upstream].count_response(status);
        }
        if self.access_log.format == crate::config::AccessLogFormat::Off {
            return;
        }
        let request = session.req_header();
        let route = match ctx.access {
            Some(access) => self.access[access].route.as_str(),
            None => ctx.route,
        };
        AccessRecord {
            timestamp: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            request_id: ctx.request_id.to_str().unwrap_or("-"),
            client_ip: Self::peer_ip(session).map(|ip: IpAddr| ip.to_string()),
            method: request.method.as_str(),
            path: request.uri.path(),
            query: request
                .uri
                .query()
                .filter(|_| self.access_log.include_query),
            status,
            bytes: session.body_bytes_sent(),
            duration_ms: ctx.started.elapsed().as_secs_f64() * 1000.0,
            route,
            upstream: ctx.upstream.map(|i| self.upstreams[i].name.as_str()),
            user_id: ctx.user_id.as_deref(),
        }
        .emit(self.access_log.format);
    }

    /// Pingora's default summary includes the query string, where apps put
    /// tokens and signed URLs; error logs get method, path and host only.
    fn request_summary(&self, session: &Session, _ctx: &RequestCtx) -> String {
        let request = session.req_header();
        let host = request
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("-");
        format!("{} {}, Host: {host}", request.method, request.uri.path())
    }
}

/// `X-Forwarded-For` gets the peer appended to whatever proxies before us wrote.
/// `X-Forwarded-Proto`/`-Host` are kept when an ingress in front already set
/// them (it saw the original scheme and host; we only see plain HTTP from it).
fn add_forwarded_headers(session: &Session, upstream_request: &mut RequestHeader) -> Result<()> {
    const XFF: &str = "x-forwarded-for";
    const XFP: &str = "x-forwarded-proto";
    const XFH: &str = "x-forwarded-host";
    if let Some(peer) = session.client_addr().and_then(|a| a.as_inet()) {
        let ip = peer.ip().to_string();
        let mut previous = upstream_request.headers.get_all(XFF).iter().peekable();
        let forwarded_for = if previous.peek().is_none() {
            ip
        } else {
            let mut joined = Vec::new();
            for value in previous {
                joined.extend_from_slice(value.as_bytes());
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(ip.as_bytes());
            String::from_utf8_lossy(&joined).into_owned()
        };
        upstream_request.insert_header(XFF, forwarded_for)?;
    }
    if !upstream_request.headers.contains_key(XFP) {
        upstream_request.insert_header(XFP, "http")?;
    }
    if !upstream_request.headers.contains_key(XFH) {
        if let Some(host) = upstream_request.headers.get(header::HOST).cloned() {
            upstream_request.insert_header(XFH, host)?;
        }
    }
    Ok(())
}
