//! Token routes: every step that can refuse, in the order that reveals least
//! to a caller who should not get a token, then the signed reply. The
//! decisions are the token contract's and the identity modes'; this file
//! reads the body, asks them, and counts.

use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderValue};
use pingora::prelude::*;
use pingora::proxy::Session;

use super::forward_auth::SessionCheck;
use super::forwarding::peer_ip;
use super::framing;
use super::Gateway;
use crate::config::TokenRouteSettings;
use crate::identity::jwks::Refetch;
use crate::identity::{HeaderIdentity, IdentityError, IdentitySource, JwtIdentity};
use crate::limits::{Checked, Verdict};
use crate::net::cors::CorsPolicy;
use crate::net::forwarded::X_FORWARDED_FOR;
use crate::respond::Answer;
use crate::telemetry::metrics::{Metrics, TokenRouteMetrics};
use crate::telemetry::trace::RequestTrace;
use crate::token::{Identity, MintKind, Rejection, TokenMinter};
use crate::upstream::{UnknownUpstream, Upstreams};

/// One token route and everything a request to it needs at run time.
pub struct TokenRoute {
    /// `POST /api/tokens/user`: the access log's route and the metrics' label.
    pub(super) label: String,
    /// The Stream app it signs for: the metrics' `app` label, and part of
    /// the per-user limit's key (the same id in two apps is two users).
    pub(super) app: String,
    /// Signs with the app's key and current secret.
    pub(super) minter: TokenMinter,
    pub(super) kind: MintKind,
    pub(super) caller: Caller,
    /// The identity mode's name, the identity-failures metric's `mode` label.
    pub(super) mode: &'static str,
    pub(super) cors: Option<CorsPolicy>,
    pub(super) metrics: TokenRouteMetrics,
}

/// How a token route learns who is calling, with what that needs at run time.
pub(super) enum Caller {
    /// `identity.mode: none`: anyone may mint for any user.
    Anyone,
    Header(HeaderIdentity),
    Jwt(Box<JwtIdentity>),
    ForwardAuth(Box<SessionCheck>),
}

impl TokenRoute {
    pub(super) fn new(
        label: String,
        settings: TokenRouteSettings,
        minter: TokenMinter,
        upstreams: &Upstreams,
        metrics: &Metrics,
    ) -> Result<TokenRoute, UnknownUpstream> {
        let mode = settings.identity.mode_name();
        let caller = match settings.identity {
            IdentitySource::None => Caller::Anyone,
            IdentitySource::Header(header) => Caller::Header(header),
            IdentitySource::Jwt(jwt) => Caller::Jwt(jwt),
            IdentitySource::ForwardAuth(mode) => {
                let upstream = upstreams.get(&mode.upstream)?;
                Caller::ForwardAuth(Box::new(SessionCheck::new(mode, upstream)))
            }
        };
        Ok(TokenRoute {
            metrics: metrics.token_route(&label, &settings.app),
            label,
            app: settings.app,
            minter,
            kind: settings.kind,
            caller,
            mode,
            cors: settings.cors,
        })
    }
}

/// A token route's answer, and what the access log and metrics need of it.
pub(super) struct TokenOutcome {
    pub answer: Answer,
    /// Why it was refused, from fixed lists ([`Rejection::reason`],
    /// [`crate::identity::Reason`]): the refused-tokens metric's `reason`
    /// and the access log's.
    pub refusal: Option<&'static str>,
    /// Whom the token was (or would have been) for.
    pub user_id: Option<String>,
}

impl From<Rejection> for TokenOutcome {
    fn from(rejection: Rejection) -> Self {
        let retry_after = match &rejection {
            Rejection::TooManyRequests {
                retry_after_seconds,
            } => Some((header::RETRY_AFTER, HeaderValue::from(*retry_after_seconds))),
            _ => None,
        };
        TokenOutcome {
            refusal: Some(rejection.reason()),
            answer: Answer::json(rejection.into_reply()).with_headers(retry_after),
            user_id: None,
        }
    }
}

impl From<IdentityError> for TokenOutcome {
    /// The contract's envelope with the identity mode's words, counted and
    /// logged under the identity's own reason (`token_expired`, …) rather
    /// than the envelope's (`unauthorized`).
    fn from(error: IdentityError) -> Self {
        let reason = error.reason().as_str();
        let challenge = error
            .challenge()
            .map(|c| (header::WWW_AUTHENTICATE, HeaderValue::from_static(c)));
        let mut outcome = TokenOutcome::from(error.into_rejection());
        outcome.refusal = Some(reason);
        outcome.answer = outcome.answer.with_headers(challenge);
        outcome
    }
}

impl Gateway {
    /// Answers a token route, counting the outcome.
    pub(super) async fn token_answer(
        &self,
        session: &mut Session,
        route: &TokenRoute,
        trace: Option<&RequestTrace>,
    ) -> Result<TokenOutcome> {
        let origin = session.req_header().headers.get(header::ORIGIN).cloned();
        let mut outcome = self.mint(session, route, trace).await?;
        if let Some(cors) = &route.cors {
            outcome.answer = outcome
                .answer
                .with_headers(cors.response_headers(origin.as_ref()));
        }
        match outcome.refusal {
            None => route.metrics.issued.inc(),
            Some(reason) => self
                .metrics
                .tokens_refused
                .with_label_values(&[route.label.as_str(), route.app.as_str(), reason])
                .inc(),
        }
        Ok(outcome)
    }

    async fn mint(
        &self,
        session: &mut Session,
        route: &TokenRoute,
        trace: Option<&RequestTrace>,
    ) -> Result<TokenOutcome> {
        let headers = &session.req_header().headers;
        let content_type = headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes());
        let content_length = headers.get(header::CONTENT_LENGTH).map(|v| v.as_bytes());
        let expects_continue = headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if let Err(rejection) = route.minter.check_headers(content_type, content_length) {
            // The body was not read: the connection cannot carry another request.
            session.set_keepalive(None);
            return Ok(rejection.into());
        }
        if expects_continue {
            framing::write_continue(session).await?;
        }
        let Some(body) = read_body_up_to(session, route.minter.policy().max_body_bytes).await?
        else {
            session.set_keepalive(None);
            return Ok(route.minter.too_large().into());
        };
        let peer = peer_ip(session);
        if let (Some(limit), Some(peer)) = (&self.per_client_ip, peer) {
            let forwarded = session.req_header().headers.get_all(X_FORWARDED_FOR);
            let client = self
                .trusted
                .client_ip(peer, forwarded.iter().map(|v| v.as_bytes()));
            let checked = limit.check(&client.to_string()).await;
            if let Some(outcome) = self.limited(route, "client_ip", checked) {
                return Ok(outcome);
            }
        }
        let identity = match self.identify(session, route, peer, trace).await {
            Ok(identity) => identity,
            Err(error) => {
                self.metrics
                    .identity_failures
                    .with_label_values(&[route.label.as_str(), route.mode, error.result()])
                    .inc();
                return Ok(error.into());
            }
        };
        let grant = match route
            .minter
            .parse(route.kind, &body, identity.is_some())
            .and_then(|request| route.minter.authorize(request, identity.as_ref()))
        {
            Ok(grant) => grant,
            Err(rejection) => return Ok(rejection.into()),
        };
        if let Some(limit) = &self.per_identity {
            let checked = limit
                .check(&format!("{}:{}", route.app, grant.user_id))
                .await;
            if let Some(mut outcome) = self.limited(route, "identity", checked) {
                outcome.user_id = Some(grant.user_id);
                return Ok(outcome);
            }
        }
        let mut outcome = match route.minter.issue(&grant, SystemTime::now()) {
            Ok(reply) => TokenOutcome {
                answer: Answer::json(reply),
                refusal: None,
                user_id: None,
            },
            Err(rejection) => rejection.into(),
        };
        outcome.user_id = Some(grant.user_id);
        Ok(outcome)
    }

    /// The refusal a limit's verdict calls for, counted; `None` when the
    /// request passes.
    fn limited(&self, route: &TokenRoute, limit: &str, checked: Checked) -> Option<TokenOutcome> {
        if let Some(on_error) = checked.fallback {
            self.metrics
                .rate_limit_backend_errors
                .with_label_values(&[limit, on_error.as_str()])
                .inc();
        }
        let rejection = match checked.verdict {
            Verdict::Pass => return None,
            // Not a rate-limit refusal: counted as an `unavailable` refusal.
            Verdict::Unavailable => Rejection::Unavailable(
                "the shared rate limiter cannot be reached (rate_limits.redis.on_error: deny)"
                    .into(),
            ),
            Verdict::Limited {
                retry_after_seconds,
            } => {
                self.metrics
                    .rate_limited
                    .with_label_values(&[route.label.as_str(), route.app.as_str(), limit])
                    .inc();
                Rejection::TooManyRequests {
                    retry_after_seconds,
                }
            }
        };
        Some(rejection.into())
    }

    async fn identify(
        &self,
        session: &Session,
        route: &TokenRoute,
        peer: Option<std::net::IpAddr>,
        trace: Option<&RequestTrace>,
    ) -> Result<Option<Identity>, IdentityError> {
        let headers = &session.req_header().headers;
        match &route.caller {
            Caller::Anyone => Ok(None),
            Caller::Header(mode) => {
                let trusted = peer.is_some_and(|ip| self.trusted.contains(ip));
                mode.identify(trusted, headers).map(Some)
            }
            Caller::Jwt(mode) => {
                let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
                match mode.identify(authorization) {
                    Err(error) if error.is_unknown_key() => {
                        self.identify_after_refetch(mode, authorization, error)
                            .await
                    }
                    identified => identified,
                }
                .map(Some)
            }
            Caller::ForwardAuth(check) => check
                .identify(
                    &self.connector,
                    session.req_header(),
                    trace.map(|trace| (&*self.tracing, trace)),
                )
                .await
                .map(Some),
        }
    }
}

impl Gateway {
    /// A JWT naming a key the provider's set lacks may be signed with a key
    /// the provider published since the last fetch (a rotation): ask for the
    /// set again — at most once per interval, whatever the requests say — and
    /// look again. Requests meanwhile wait for that one fetch, up to its timeout.
    async fn identify_after_refetch(
        &self,
        mode: &JwtIdentity,
        authorization: Option<&[u8]>,
        unknown: IdentityError,
    ) -> Result<Identity, IdentityError> {
        let Some((keys, origin)) = mode
            .remote_keys()
            .and_then(|keys| Some((keys, keys.origin()?)))
        else {
            return Err(unknown);
        };
        let outcome = keys.refetch_for_unknown_kid(origin.timeout).await;
        self.metrics
            .jwks_unknown_kid_refetches
            .with_label_values(&[origin.location.url(), outcome.as_str()])
            .inc();
        match outcome {
            Refetch::Fetched => mode.identify(authorization),
            _ => Err(unknown),
        }
    }
}

/// The whole request body, or `None` once it exceeds `limit` bytes. Chunked
/// bodies have no Content-Length to check up front, so the cap is enforced here.
async fn read_body_up_to(session: &mut Session, limit: usize) -> Result<Option<Bytes>> {
    // A token request body nearly always arrives as one chunk: keep it as is,
    // and copy into a buffer only when a second one follows.
    let Some(first) = read_body_chunk(session).await? else {
        return Ok(Some(Bytes::new()));
    };
    if first.len() > limit {
        return Ok(None);
    }
    let Some(second) = read_body_chunk(session).await? else {
        return Ok(Some(first));
    };
    let mut body = BytesMut::from(first);
    let mut next = Some(second);
    while let Some(chunk) = next {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
        next = read_body_chunk(session).await?;
    }
    Ok(Some(body.freeze()))
}

/// The next piece of the body. Pingora does not say whose fault a body it
/// cannot read is; it is the client's (a malformed chunk, a body cut short),
/// so the answer is a 400 rather than a 500 (see `errors::answer_for`).
async fn read_body_chunk(session: &mut Session) -> Result<Option<Bytes>> {
    session.read_request_body().await.map_err(|e| e.into_down())
}
