//! The app behind streamgate, as the proxy and the admin listener reach it:
//! one [`Upstream`] per configured upstream, holding everything a request to
//! it needs at run time (the prepared Pingora peer and its metric series),
//! built once into [`Upstreams`] and shared, and [`ask`], the one-shot
//! sub-request of forward auth and the readiness probe.

mod upgrade;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode};
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::ErrorType;

use crate::config::{UpstreamProtocol, UpstreamSettings};
use crate::telemetry::metrics::{Metrics, UpstreamMetrics};

/// Concurrent requests on one HTTP/2 connection to an upstream: the common
/// server default for `SETTINGS_MAX_CONCURRENT_STREAMS` (RFC 9113 §6.5.2
/// recommends no fewer than 100).
const H2_STREAMS_PER_CONNECTION: usize = 100;

/// An upstream ready to connect to.
pub struct Upstream {
    /// The configured name, for messages, logs and metric labels.
    pub name: String,
    pub peer: HttpPeer,
    /// The peer HTTP/1 upgrade requests (WebSocket) use: `peer` on
    /// connections that keep the tunnel alive through a Pingora race (see
    /// [`upgrade`]). `None` for HTTP/2 upstreams, which take no upgrades.
    pub upgrade_peer: Option<HttpPeer>,
    pub metrics: UpstreamMetrics,
}

impl Upstream {
    pub fn new(settings: &UpstreamSettings, metrics: &Metrics) -> Self {
        let mut peer = HttpPeer::new(settings.address, settings.tls, settings.sni.clone());
        peer.options.connection_timeout = Some(settings.connect_timeout);
        peer.options.read_timeout = Some(settings.read_timeout);
        peer.options.write_timeout = Some(settings.write_timeout);
        peer.options.idle_timeout = Some(settings.idle_timeout);
        peer.options.verify_cert = settings.verify_cert;
        peer.options.verify_hostname = settings.verify_cert;
        match settings.protocol {
            UpstreamProtocol::Http1 => {}
            UpstreamProtocol::H2c => peer.options.set_http_version(2, 2),
            UpstreamProtocol::H2 => peer.options.set_http_version(2, 1),
        }
        // Requests share an HTTP/2 connection as gRPC clients expect, up to
        // what the app's SETTINGS allow; Pingora's default is one stream per
        // connection.
        peer.options.max_h2_streams = H2_STREAMS_PER_CONNECTION;
        let upgrade_peer = matches!(settings.protocol, UpstreamProtocol::Http1)
            .then(|| upgrade::upgrade_peer(&peer, settings.connect_timeout));
        Upstream {
            name: settings.name.clone(),
            peer,
            upgrade_peer,
            metrics: metrics.upstream(&settings.name),
        }
    }
}

/// Every configured upstream by name, built once at start.
pub struct Upstreams(BTreeMap<String, Arc<Upstream>>);

/// A name the configuration was checked to define, missing at run time: a
/// fault of ours, reported at start rather than on a request.
#[derive(Debug, thiserror::Error)]
#[error("no upstream named {0:?} (the configuration check should have refused it)")]
pub struct UnknownUpstream(pub String);

impl Upstreams {
    pub fn new(settings: &[UpstreamSettings], metrics: &Metrics) -> Self {
        Upstreams(
            settings
                .iter()
                .map(|s| (s.name.clone(), Arc::new(Upstream::new(s, metrics))))
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Result<Arc<Upstream>, UnknownUpstream> {
        self.0
            .get(name)
            .cloned()
            .ok_or_else(|| UnknownUpstream(name.to_string()))
    }
}

/// One request to `upstream` over Pingora's connection pool, its answer's body
/// capped at `max_body` bytes (an error beyond).
pub async fn ask(
    connector: &Connector,
    upstream: &Upstream,
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
