//! The Pingora glue: one `ProxyHttp` that answers token routes in
//! `request_filter` and proxies everything else.
//!
//! This module only moves bytes between sockets and the pure core
//! ([`crate::token`], [`crate::routing`], [`crate::identity`], [`crate::net`]);
//! every decision about what a request means is made there. Proxied requests
//! are left to Pingora, which streams bodies both ways and handles WebSocket
//! upgrades itself, so the per-request work on the proxy path is a route
//! lookup, the `X-Forwarded-*` and `X-Request-Id` headers, and counting for
//! metrics and the access log. Those headers are most of streamgate's own cost
//! there (README, Performance): each Pingora header insert parses the name and
//! updates two maps.
//!
//! One type, files by concern (as pingora-proxy spreads `HttpProxy`): the
//! phases below delegate to [`framing`] (the request's HTTP/1.1 shape, and
//! the connection's reuse), [`path`] (the path routing reads and the app
//! receives), [`token_route`] (minting, and who the caller is),
//! [`forward_auth`] (the session check), [`forwarding`] (what the app receives), [`grpc`] (a
//! call's deadline and outcome) and [`errors`] (what a client is told when proxying fails);
//! every answer is written by [`crate::respond`].

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use async_trait::async_trait;
use http::header::{self, HeaderName};
use http::Method;
use pingora::connectors::http::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::ErrorType;

mod ctx;
mod errors;
mod forward_auth;
mod forwarding;
mod framing;
mod grpc;
mod path;
mod token_route;

pub use ctx::RequestCtx;
use forwarding::peer_ip;
use token_route::TokenRoute;

use crate::config::{Config, RateLimitSetting, RouteAction, StreamApp};
use crate::identity::IdentitySource;
use crate::limits::{Limit, RedisLimiter, Shared};
use crate::net::headers::UnderscoresAction;
use crate::net::path::PathRules;
use crate::net::request_id::{self, X_REQUEST_ID};
use crate::net::TrustedNetworks;
use crate::respond::Answer;
use crate::routing::{request_host, DirectResponse, RouteTable};
use crate::telemetry::access_log::{AccessLogFormat, AccessLogSettings, AccessRecord};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::trace::{Finished, Tracing};
use crate::token::{SignerSlot, TokenMinter};
use crate::upstream::{UnknownUpstream, Upstream, Upstreams};

/// A name the configuration was checked to define, missing at run time: a
/// fault of ours, reported at start rather than on a request.
#[derive(Debug, thiserror::Error)]
pub enum UnknownTarget {
    #[error(transparent)]
    Upstream(#[from] UnknownUpstream),
    #[error("no Stream app named {0:?} (the configuration check should have refused it)")]
    App(String),
}

/// The host a request names, for routes with `match.host`: HTTP/2's
/// `:authority`, else the `Host` header; without the port ([`request_host`]).
fn host_of(request: &RequestHeader) -> Option<&str> {
    let authority = match request.uri.authority() {
        Some(authority) => authority.as_str(),
        None => request.headers.get(header::HOST)?.to_str().ok()?,
    };
    Some(request_host(authority))
}

/// Where a matched route leads, with its runtime state.
enum Target {
    Mint(Arc<TokenRoute>),
    Proxy(Arc<Upstream>),
    Respond(DirectResponse),
}

pub struct Gateway {
    routes: RouteTable<Target>,
    trusted: TrustedNetworks,
    paths: PathRules,
    per_client_ip: Option<Limit>,
    per_identity: Option<Limit>,
    /// Identity headers of `header` mode, removed from proxied requests that do
    /// not come from a trusted peer (and in other spellings from every peer) so
    /// that the app cannot be fooled either.
    spoofable_headers: Vec<HeaderName>,
    underscores: UnderscoresAction,
    connector: Connector,
    metrics: Arc<Metrics>,
    access_log: AccessLogSettings,
    tracing: Arc<Tracing>,
}

impl Gateway {
    /// `upstreams` and `metrics` are shared with the admin listener, each
    /// app's signer with its secret watcher, `tracing` with the server (which
    /// flushes it at exit); `connector` makes the forward-auth session
    /// checks. Fails only if the configuration names an upstream or app it
    /// does not define, which its check refuses.
    pub fn new(
        config: Config,
        upstreams: &Upstreams,
        signers: &[(StreamApp, Arc<SignerSlot>)],
        metrics: Arc<Metrics>,
        connector: Connector,
        tracing: Arc<Tracing>,
    ) -> Result<Self, UnknownTarget> {
        let mut spoofable_headers = Vec::new();
        let tokens = config.tokens;
        let routes = config.routes.try_map(|label, action| match action {
            RouteAction::Mint(settings) => {
                if let IdentitySource::Header(mode) = &settings.identity {
                    spoofable_headers.extend(mode.spoofable_headers().cloned());
                }
                let (app, signer) = signers
                    .iter()
                    .find(|(app, _)| app.name == settings.app)
                    .ok_or_else(|| UnknownTarget::App(settings.app.clone()))?;
                let minter = TokenMinter::with_signer(
                    &app.credentials.api_key,
                    Arc::clone(signer),
                    tokens.clone(),
                );
                TokenRoute::new(label, *settings, minter, upstreams, &metrics)
                    .map(|route| Target::Mint(Arc::new(route)))
                    .map_err(UnknownTarget::Upstream)
            }
            RouteAction::Proxy(name) => upstreams
                .get(&name)
                .map(Target::Proxy)
                .map_err(UnknownTarget::Upstream),
            RouteAction::Respond(direct) => Ok(Target::Respond(direct)),
        })?;
        let shared = config.rate_limits.redis.as_ref().map(|redis| {
            let limiter = RedisLimiter::new(&redis.url, redis.key_prefix.clone(), redis.timeout);
            Arc::new(Shared::new(limiter, redis.on_error))
        });
        let limit = |name, setting: Option<RateLimitSetting>| {
            setting.map(|l| Limit::new(name, l.requests, l.window, shared.clone()))
        };
        Ok(Gateway {
            routes,
            trusted: config.trusted_cidrs,
            paths: config.http.path_rules(),
            per_client_ip: limit("client_ip", config.rate_limits.per_client_ip),
            per_identity: limit("identity", config.rate_limits.per_identity),
            spoofable_headers,
            underscores: config.http.headers_with_underscores_action,
            connector,
            metrics,
            access_log: config.access_log,
            tracing,
        })
    }

    /// The request's id and trace, before anything can answer it.
    fn identify_request(&self, session: &Session, ctx: &mut RequestCtx) {
        let request = session.req_header();
        ctx.request_id = request_id::accept_or_generate(request.headers.get(X_REQUEST_ID));
        let trusted = peer_ip(session).is_some_and(|ip| self.trusted.contains(ip));
        ctx.trace = Some(
            self.tracing
                .start(request.method.as_str(), &request.headers, trusted),
        );
    }

    /// The answer to a CORS preflight for a token route with a CORS policy,
    /// if this request is one.
    fn preflight(&self, request: &RequestHeader, path: &str) -> Option<Answer> {
        if request.method != Method::OPTIONS {
            return None;
        }
        let requested = request.headers.get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
        let method = Method::from_bytes(requested.as_bytes()).ok()?;
        let Target::Mint(route) = &self.routes.find(&method, host_of(request), path)?.action else {
            return None;
        };
        let cors = route.cors.as_ref()?;
        Some(Answer::no_content(
            cors.preflight_headers(request.headers.get(header::ORIGIN)),
        ))
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    /// No downstream modules: Pingora's default adds a (disabled) compression
    /// module whose filters still run on every request and body chunk, and
    /// streamgate passes the app's encoding through untouched.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        self.identify_request(session, ctx);
        if framing::admit(session, ctx).await? {
            return Ok(true);
        }
        if let Some(answer) = self.screen_header_names(session) {
            ctx.route = "refused";
            answer.write(session, &ctx.request_id).await?;
            return Ok(true);
        }
        if let Some(refusal) = self.read_path(session.req_header(), ctx) {
            refusal.write(session, &ctx.request_id).await?;
            return Ok(true);
        }
        let request = session.req_header();
        if let Some(answer) = self.preflight(request, ctx.route_key(request)) {
            ctx.route = "cors_preflight";
            answer.write(session, &ctx.request_id).await?;
            return Ok(true);
        }
        let Some(route) =
            self.routes
                .find(&request.method, host_of(request), ctx.route_key(request))
        else {
            let message = format!(
                "Not found: no route matches {} {}",
                request.method,
                ctx.path(request)
            );
            ctx.route = "not_found";
            Answer::error(404, &message)
                .write(session, &ctx.request_id)
                .await?;
            return Ok(true);
        };
        if self.tracing.exporting() {
            if let Some(trace) = &ctx.trace {
                trace.set_route(request.method.as_str(), &route.template());
            }
        }
        match &route.action {
            Target::Proxy(upstream) => match grpc::deadline(request) {
                Ok(deadline) => {
                    ctx.route = "proxy";
                    ctx.upstream = Some(Arc::clone(upstream));
                    ctx.grpc_deadline = deadline;
                    Ok(false)
                }
                // Not counted or logged as proxied: the app never sees it.
                Err(invalid) => {
                    ctx.route = "refused";
                    Answer::error(400, &invalid.to_string())
                        .write(session, &ctx.request_id)
                        .await?;
                    Ok(true)
                }
            },
            Target::Respond(direct) => {
                ctx.route = "direct_response";
                Answer::direct(direct)
                    .write(session, &ctx.request_id)
                    .await?;
                Ok(true)
            }
            Target::Mint(token_route) => {
                // Recorded first: a request that fails while its body is read
                // is still logged under its route.
                let token_route = ctx.token_route.insert(Arc::clone(token_route));
                let outcome = self
                    .token_answer(session, token_route, ctx.trace.as_ref())
                    .await?;
                ctx.user_id = outcome.user_id;
                ctx.refusal = outcome.refusal;
                if let Some(trace) = &ctx.trace {
                    trace.token_outcome(token_route.kind.as_str(), ctx.refusal);
                }
                // Observed before the write, so that a client holding the answer
                // always finds it counted.
                token_route
                    .metrics
                    .duration
                    .observe(ctx.started.elapsed().as_secs_f64());
                outcome.answer.write(session, &ctx.request_id).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        ctx.attempts += 1;
        let upstream = ctx.upstream.as_ref().ok_or_else(|| {
            Error::explain(
                ErrorType::InternalError,
                "request reached upstream_peer without a route",
            )
        })?;
        let peer = match &upstream.upgrade_peer {
            Some(upgrade_peer) if session.is_upgrade_req() => upgrade_peer,
            _ => &upstream.peer,
        };
        Ok(Box::new(grpc::within_deadline(
            peer.clone(),
            ctx.grpc_deadline,
        )))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.upstream_sent = Some(Instant::now());
        path::forward_path(upstream_request, ctx)?;
        self.forward_headers(session, upstream_request, &ctx.request_id)?;
        self.forward_trace(upstream_request, ctx)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let answer = errors::answer_for(e, ctx.upstream.as_deref(), ctx.grpc_deadline);
        let error_code = answer.as_ref().map_or(0, Answer::status);
        // Once the upstream's response has started, its status line is already on
        // the wire; all that can be done is to close the connection.
        if let Some(answer) = answer.filter(|_| session.response_written().is_none()) {
            session.set_keepalive(None);
            if let Err(write_error) = answer.write(session, &ctx.request_id).await {
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
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.upstream_status = Some(upstream_response.status.as_u16());
        if let (Some(sent), Some(upstream)) = (ctx.upstream_sent, &ctx.upstream) {
            upstream
                .metrics
                .duration
                .observe(sent.elapsed().as_secs_f64());
        }
        Ok(())
    }

    fn upstream_response_trailer_filter(
        &self,
        _session: &mut Session,
        trailers: &mut http::HeaderMap,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.grpc_status = trailers.get("grpc-status").cloned();
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        framing::close_early_final_responses_only(session, upstream_response);
        upstream_response.insert_header(X_REQUEST_ID, ctx.request_id.clone())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        errors::after_connect_error(ctx, e)
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let e = e.more_context(format!("Peer: {peer}"));
        errors::while_proxying(session, ctx, e, client_reused)
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        if let Some(upstream) = &ctx.upstream {
            upstream.metrics.count_response(status);
        }
        let protocol = forwarding::protocol(session);
        self.metrics.count_request(protocol);
        let grpc_status = grpc::status(session, ctx);
        if let Some(code) = grpc_status {
            self.metrics.grpc_responses.with_label_values(&[code]).inc();
        }
        let request = session.req_header();
        let trace_id = ctx.trace.as_ref().map(|trace| trace.trace_id());
        if let Some(trace) = ctx.trace.take() {
            trace.end(&Finished {
                method: request.method.as_str(),
                path: request.uri.path(),
                scheme: if forwarding::over_tls(session) {
                    "https"
                } else {
                    "http"
                },
                protocol_version: protocol.version(),
                client: peer_ip(session),
                status,
                upstream_status: ctx.upstream_status,
            });
        }
        if self.access_log.format == AccessLogFormat::Off {
            return;
        }
        AccessRecord {
            timestamp: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            request_id: ctx.request_id.to_str().unwrap_or("-"),
            trace_id: trace_id.as_deref(),
            client_ip: peer_ip(session).map(|ip| ip.to_string()),
            method: request.method.as_str(),
            path: request.uri.path(),
            protocol: protocol.as_str(),
            query: request
                .uri
                .query()
                .filter(|_| self.access_log.include_query),
            status,
            bytes: session.body_bytes_sent(),
            duration_ms: ctx.started.elapsed().as_secs_f64() * 1000.0,
            route: ctx
                .token_route
                .as_ref()
                .map_or(ctx.route, |route| route.label.as_str()),
            upstream: ctx.upstream.as_ref().map(|u| u.name.as_str()),
            user_id: ctx.user_id.as_deref(),
            reason: ctx.refusal,
            grpc_status,
        }
        .emit(self.access_log.format);
    }

    /// Pingora logs every failed request at ERROR; a client that hung up is
    /// not a fault of streamgate's or the app's, and hundreds of such lines
    /// an hour (seen in `make soak`) would bury the ones that are.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, error: &Error) -> bool {
        errors::client_went_away(error)
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
