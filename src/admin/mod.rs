//! The admin listener: liveness, readiness, metrics and the documents of the
//! running configuration (`/config_dump`, `/openapi.json`) on their own address,
//! never proxied, so that probes and scrapes neither reach the app nor compete
//! with its traffic.
//!
//! Readiness is what Kubernetes routes traffic by, so it says no for every
//! reason a token request or a proxied request would fail: no signing key yet,
//! no identity provider keys yet, shutting down, or (when a probe path is configured) the app not answering.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use http::{header, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::protocols::http::ServerSession;
use serde_json::json;

use crate::config::{ReadinessProbe, StreamApp};
use crate::identity::JwksKeys;
use crate::respond::Answer;
use crate::telemetry::metrics::Metrics;
use crate::token::SignerSlot;
use crate::upstream::{self, Upstream};

/// Process state the probes report.
#[derive(Debug, Default)]
pub struct Health {
    shutting_down: AtomicBool,
}

impl Health {
    pub fn start_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}

pub struct AdminService {
    pub health: Arc<Health>,
    /// Each Stream app's signer: ready only once every one is loaded.
    pub signers: Vec<(StreamApp, Arc<SignerSlot>)>,
    pub metrics: Arc<Metrics>,
    /// The probe and the upstream it asks.
    pub probe: Option<(ReadinessProbe, Arc<Upstream>)>,
    pub connector: Connector,
    /// Key sets fetched from identity providers: not ready until each has
    /// keys, as with the Stream API secret.
    pub key_sets: Vec<Arc<JwksKeys>>,
    /// The configuration in effect, secrets left out ([`crate::config::Config::dump`]).
    pub config_dump: Arc<serde_json::Value>,
    /// The OpenAPI document of the token routes as configured
    /// ([`crate::config::Config::openapi`]).
    pub openapi: Arc<serde_json::Value>,
}

/// How much of the app's answer to the readiness probe is read at most.
const PROBE_MAX_BODY_BYTES: usize = 64 * 1024;

fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Vec<u8>> {
    Answer::json_value(status.as_u16(), &body).into_response()
}

impl AdminService {
    async fn readiness(&self) -> Response<Vec<u8>> {
        let not_ready = |reason: &str| {
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "not_ready", "reason": reason}),
            )
        };
        if self.health.is_shutting_down() {
            return not_ready("shutting down");
        }
        if let Some((app, _)) = self.signers.iter().find(|(_, s)| !s.is_loaded()) {
            // The one-app form says no more than it always has.
            let which = match app.key.as_str() {
                "stream" => String::new(),
                key => format!(" ({key})"),
            };
            return not_ready(&format!("no Stream API secret loaded yet{which}"));
        }
        if let Some(pending) = self.key_sets.iter().find(|keys| !keys.is_loaded()) {
            let url = pending.origin().map_or("", |origin| origin.location.url());
            let why = pending
                .last_error()
                .map_or_else(String::new, |e| format!(": the last fetch failed: {e}"));
            return not_ready(&format!(
                "the identity provider's keys ({url}) have not been fetched yet{why}"
            ));
        }
        if let Some((probe, upstream)) = &self.probe {
            let request = match RequestHeader::build("GET", probe.path.as_bytes(), None) {
                Ok(mut request) => {
                    if request.insert_header(header::CONTENT_LENGTH, "0").is_err() {
                        return not_ready("could not build the upstream probe");
                    }
                    request
                }
                Err(_) => return not_ready("could not build the upstream probe"),
            };
            let answer = tokio::time::timeout(
                probe.timeout,
                upstream::ask(&self.connector, upstream, request, PROBE_MAX_BODY_BYTES),
            )
            .await;
            match answer {
                Ok(Ok((status, _, _))) if status.is_success() => {}
                Ok(Ok((status, _, _))) => {
                    return not_ready(&format!(
                        "upstream '{}' answered {} at {}",
                        upstream.name,
                        status.as_u16(),
                        probe.path
                    ))
                }
                Ok(Err(_)) => {
                    return not_ready(&format!("upstream '{}' is unavailable", upstream.name))
                }
                Err(_) => {
                    return not_ready(&format!(
                        "upstream '{}' did not answer {} in time",
                        upstream.name, probe.path
                    ))
                }
            }
        }
        json_response(StatusCode::OK, json!({"status": "ready"}))
    }
}

#[async_trait]
impl ServeHttp for AdminService {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        match session.req_header().uri.path() {
            "/healthz" => json_response(StatusCode::OK, json!({"status": "ok"})),
            "/readyz" => self.readiness().await,
            "/config_dump" => json_response(StatusCode::OK, (*self.config_dump).clone()),
            "/openapi.json" => json_response(StatusCode::OK, (*self.openapi).clone()),
            "/metrics" => {
                Answer::content(200, "text/plain; version=0.0.4", self.metrics.render())
                    .into_response()
            }
            other => Answer::error(
                404,
                &format!("Not found: the admin listener serves /healthz, /readyz, /metrics, /config_dump and /openapi.json, not {other}"),
            )
            .into_response(),
        }
    }
}
