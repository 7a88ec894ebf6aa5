//! The Pingora glue: one `ProxyHttp` that answers token routes in
//! `request_filter` and proxies everything else.
//!
//! This module only moves bytes between sockets and the pure core
//! ([`crate::token_contract`], [`crate::routing`]); every decision about what a
//! request means is made there. Proxied requests are left to Pingora, which
//! streams bodies both ways and handles WebSocket upgrades itself, so the only
//! per-request work here is a route lookup and the `X-Forwarded-*` headers.

use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::header;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{http_proxy_service_with_name, FailToProxy, ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::ErrorType;

use crate::config::{Config, Upstream};
use crate::routing::{Action, MintKind, RouteTable};
use crate::token_contract::{Reply, UserTokenEndpoint};

/// An upstream ready to connect to: its name for messages and a prepared peer.
struct UpstreamPeer {
    name: String,
    peer: HttpPeer,
    read_timeout_secs: u64,
}

impl UpstreamPeer {
    fn new(upstream: &Upstream) -> Self {
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
            read_timeout_secs: upstream.read_timeout.as_secs(),
        }
    }
}

pub struct Gateway {
    routes: RouteTable,
    upstreams: Vec<UpstreamPeer>,
    user_tokens: UserTokenEndpoint,
}

/// Per-request state: which upstream the route chose, if any.
#[derive(Default)]
pub struct RequestCtx {
    upstream: Option<usize>,
}

impl Gateway {
    pub fn new(config: &Config) -> Self {
        Gateway {
            routes: config.routes.clone(),
            upstreams: config.upstreams.iter().map(UpstreamPeer::new).collect(),
            user_tokens: UserTokenEndpoint::new(
                &config.stream.api_key,
                &config.stream.api_secret,
                config.tokens.clone(),
            ),
        }
    }

    async fn mint_user_token(&self, session: &mut Session) -> Result<()> {
        let headers = &session.req_header().headers;
        let content_type = headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes());
        let content_length = headers.get(header::CONTENT_LENGTH).map(|v| v.as_bytes());
        let expects_continue = headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if let Err(rejection) = self.user_tokens.check_headers(content_type, content_length) {
            // The body was not read: the connection cannot carry another request.
            session.set_keepalive(None);
            return send_reply(session, rejection.into_reply()).await;
        }
        if expects_continue {
            session.write_continue_response().await?;
        }
        let body = match read_body_up_to(session, self.user_tokens.policy().max_body_bytes).await? {
            Some(body) => body,
            None => {
                session.set_keepalive(None);
                return send_reply(session, self.user_tokens.too_large().into_reply()).await;
            }
        };
        let reply = self.user_tokens.answer(&body, SystemTime::now());
        send_reply(session, reply).await
    }

    fn upstream_name(&self, ctx: &RequestCtx) -> &str {
        ctx.upstream
            .and_then(|i| self.upstreams.get(i))
            .map_or("?", |u| u.name.as_str())
    }
}

/// The whole request body, or `None` once it exceeds `limit` bytes. Chunked
/// bodies have no Content-Length to check up front, so the cap is enforced here.
async fn read_body_up_to(session: &mut Session, limit: usize) -> Result<Option<Bytes>> {
    let mut body = BytesMut::new();
    while let Some(chunk) = session.read_request_body().await? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body.freeze()))
}

/// Writes one of streamgate's own JSON answers.
async fn send_reply(session: &mut Session, reply: Reply) -> Result<()> {
    let mut response = ResponseHeader::build(reply.status, Some(3))?;
    response.insert_header(header::CONTENT_TYPE, "application/json")?;
    response.insert_header(header::CONTENT_LENGTH, reply.body.len())?;
    response.insert_header(header::CACHE_CONTROL, "no-store")?;
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

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let request = session.req_header();
        let action = self
            .routes
            .find(&request.method, request.uri.path())
            .map(|route| &route.action);
        match action {
            Some(Action::Proxy { upstream }) => {
                ctx.upstream = Some(*upstream);
                Ok(false)
            }
            Some(Action::Respond(direct)) => {
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
            Some(Action::Mint(MintKind::UserToken)) => {
                self.mint_user_token(session).await?;
                Ok(true)
            }
            None => {
                let message = format!(
                    "Not found: no route matches {} {}",
                    request.method,
                    request.uri.path()
                );
                send_reply(session, Reply::error(404, &message)).await?;
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
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        add_forwarded_headers(session, upstream_request)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let reply = match (e.esource(), e.etype()) {
            (_, ErrorType::HTTPStatus(code)) => Some(Reply::error(*code, "Request failed")),
            (ErrorSource::Upstream, ErrorType::ReadTimedout) => {
                let upstream = &self.upstream_name(ctx);
                let secs = ctx
                    .upstream
                    .and_then(|i| self.upstreams.get(i))
                    .map_or(0, |u| u.read_timeout_secs);
                Some(Reply::error(
                    504,
                    &format!(
                        "Gateway timeout: upstream '{upstream}' did not answer within {secs}s"
                    ),
                ))
            }
            (ErrorSource::Upstream, _) => Some(Reply::error(
                502,
                &format!(
                    "Bad gateway: upstream '{}' is unavailable",
                    self.upstream_name(ctx)
                ),
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
            if let Err(write_error) = send_reply(session, reply).await {
                log::debug!("could not send error response downstream: {write_error}");
            }
        }
        FailToProxy {
            error_code,
            can_reuse_downstream: false,
        }
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

/// Builds the Pingora server for `config` and runs it until a signal stops it.
pub fn run(config: &Config) -> ! {
    let settings = &config.server;
    let server_conf = ServerConf {
        threads: settings.threads,
        work_stealing: settings.work_stealing,
        grace_period_seconds: Some(settings.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(settings.graceful_shutdown_timeout_seconds),
        upstream_keepalive_pool_size: settings.upstream_keepalive_pool_size,
        pid_file: settings.pid_file.clone(),
        upgrade_sock: settings.upgrade_sock.clone(),
        // A refused or timed-out connect is retried once, not Pingora's 16 times:
        // a sidecar's app is on loopback, and a client must get its 502 promptly.
        max_retries: 1,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, server_conf);
    server.bootstrap();
    let mut service =
        http_proxy_service_with_name(&server.configuration, Gateway::new(config), "streamgate");
    for address in &config.listen {
        service.add_tcp(&address.to_string());
    }
    server.add_service(service);
    log::info!(
        "streamgate listening on {}",
        config
            .listen
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    server.run_forever()
}
