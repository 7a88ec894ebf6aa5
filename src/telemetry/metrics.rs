//! Prometheus metrics, served at `GET /metrics` on the admin listener.
//!
//! Label values come only from the configuration (route and upstream names) or
//! from fixed lists (reasons, status classes), never from requests, so the
//! number of series is bounded no matter what clients send. Children whose
//! labels are known at start are resolved once, keeping label hashing off the
//! hot path.

use crate::net::Protocol;
use crate::version;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub tokens_issued: IntCounterVec,
    pub tokens_refused: IntCounterVec,
    pub token_duration: HistogramVec,
    pub proxied_requests: IntCounterVec,
    pub upstream_duration: HistogramVec,
    pub upstream_connect_errors: IntCounterVec,
    pub upstream_retries: IntCounterVec,
    pub rate_limited: IntCounterVec,
    pub rate_limit_backend_errors: IntCounterVec,
    pub identity_failures: IntCounterVec,
    pub secret_reloads: IntCounterVec,
    pub secret_reload_failures: IntCounterVec,
    pub secret_loaded: IntGaugeVec,
    pub downstream_connections: IntGauge,
    pub downstream_connections_waiting: IntGauge,
    pub downstream_connections_queued: IntCounter,
    pub downstream_connections_refused: IntCounter,
    pub request_heads_refused: IntCounterVec,
    /// Requests on the proxy listener, by [`Protocol`], in `Protocol::ALL` order.
    requests: [IntCounter; 4],
    pub grpc_responses: IntCounterVec,
    pub tls_certificate_reloads: IntCounterVec,
    pub tls_certificate_reload_failures: IntCounterVec,
    pub tls_certificate_expiry: IntGaugeVec,
    pub jwks_fetches: IntCounterVec,
    pub jwks_keys: IntGaugeVec,
    pub jwks_unknown_kid_refetches: IntCounterVec,
    pub trace_spans_ended: IntCounter,
    pub trace_spans_exported: IntCounterVec,
}

/// Token answers take microseconds; the default buckets start at 5 ms.
const TOKEN_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5,
];

impl Metrics {
    // One declaration per metric, in one place: the whole exposition can be
    // read here, and splitting the list by length would only scatter it.
    #[allow(clippy::too_many_lines)]
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let vec =
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
            registry
                .register(Box::new(vec.clone()))
                .expect("metric registered once");
            vec
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: Vec<f64>| {
            let vec = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
                .expect("valid metric definition");
            registry
                .register(Box::new(vec.clone()))
                .expect("metric registered once");
            vec
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let vec =
                IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
            registry
                .register(Box::new(vec.clone()))
                .expect("metric registered once");
            vec
        };
        let metrics = Metrics {
            tokens_issued: counter(
                "streamgate_tokens_issued_total",
                "Tokens minted, by route and Stream app.",
                &["route", "app"],
            ),
            tokens_refused: counter(
                "streamgate_tokens_refused_total",
                "Token requests refused, by route, Stream app and reason.",
                &["route", "app", "reason"],
            ),
            token_duration: histogram(
                "streamgate_token_request_duration_seconds",
                "Time to answer a token request, from headers read to answer ready to write.",
                &["route"],
                TOKEN_BUCKETS.to_vec(),
            ),
            proxied_requests: counter(
                "streamgate_proxied_requests_total",
                "Requests proxied, by upstream and response status class.",
                &["upstream", "status_class"],
            ),
            upstream_duration: histogram(
                "streamgate_upstream_response_duration_seconds",
                "Time from sending a request upstream to its response header.",
                &["upstream"],
                prometheus::DEFAULT_BUCKETS.to_vec(),
            ),
            upstream_connect_errors: counter(
                "streamgate_upstream_connect_errors_total",
                "Failed connection attempts to an upstream.",
                &["upstream"],
            ),
            upstream_retries: counter(
                "streamgate_upstream_retries_total",
                "Requests sent again on a new connection, by upstream and reason \
                 (connect: the connection failed; reused_connection: a pooled connection \
                 failed before any response byte).",
                &["upstream", "reason"],
            ),
            rate_limited: counter(
                "streamgate_rate_limited_total",
                "Token requests refused by a rate limit, by route, Stream app and limit.",
                &["route", "app", "limit"],
            ),
            rate_limit_backend_errors: counter(
                "streamgate_rate_limit_backend_errors_total",
                "Rate-limit checks the shared backend (Redis) did not answer within its timeout \
                 or failed, by limit and what rate_limits.redis.on_error did instead \
                 (local, allow, deny).",
                &["limit", "on_error"],
            ),
            identity_failures: counter(
                "streamgate_identity_failures_total",
                "Token requests whose caller could not be identified, by route, mode and result.",
                &["route", "mode", "result"],
            ),
            secret_reloads: counter(
                "streamgate_secret_reloads_total",
                "Stream API secret loaded from its file, by Stream app.",
                &["app"],
            ),
            secret_reload_failures: counter(
                "streamgate_secret_reload_failures_total",
                "Stream API secret file changes that could not be used (unreadable or empty), \
                 by Stream app.",
                &["app"],
            ),
            secret_loaded: gauge(
                "streamgate_secret_loaded",
                "1 when the Stream app's API secret is loaded, by Stream app.",
                &["app"],
            ),
            downstream_connections: IntGauge::new(
                "streamgate_downstream_connections",
                "Client connections being served, each holding one of http.max_downstream_connections.",
            )
            .expect("valid metric definition"),
            downstream_connections_waiting: IntGauge::new(
                "streamgate_downstream_connections_waiting",
                "Client connections accepted and waiting for a free connection slot.",
            )
            .expect("valid metric definition"),
            downstream_connections_queued: IntCounter::new(
                "streamgate_downstream_connections_queued_total",
                "Client connections that had to wait for a free connection slot.",
            )
            .expect("valid metric definition"),
            downstream_connections_refused: IntCounter::new(
                "streamgate_downstream_connections_refused_total",
                "Client connections closed unserved: every slot busy and as many already waiting.",
            )
            .expect("valid metric definition"),
            request_heads_refused: counter(
                "streamgate_request_heads_refused_total",
                "Requests answered before routing because their head (request line and headers) \
                 was too large (431), had a request line too long (414) or came too slowly (408).",
                &["reason"],
            ),
            requests: {
                let by_protocol = counter(
                    "streamgate_requests_total",
                    "Requests on the proxy listener, by protocol (http/1.0, http/1.1, h2, h2c).",
                    &["protocol"],
                );
                Protocol::ALL.map(|p| by_protocol.with_label_values(&[p.as_str()]))
            },
            grpc_responses: counter(
                "streamgate_grpc_responses_total",
                "gRPC calls answered, by grpc-status (from the app, or streamgate's own answer).",
                &["grpc_status"],
            ),
            tls_certificate_reloads: counter(
                "streamgate_tls_certificate_reloads_total",
                "New certificates served by a TLS listener after its files changed, by listener.",
                &["listener"],
            ),
            tls_certificate_reload_failures: counter(
                "streamgate_tls_certificate_reload_failures_total",
                "Changed certificate files of a TLS listener that could not be served (unreadable, \
                 not PEM, or a key of another certificate); the last good pair stays. By listener.",
                &["listener"],
            ),
            tls_certificate_expiry: gauge(
                "streamgate_tls_certificate_expiry_timestamp_seconds",
                "When the certificate a TLS listener serves expires, in Unix seconds, by listener.",
                &["listener"],
            ),
            jwks_fetches: counter(
                "streamgate_jwks_fetches_total",
                "Fetches of an identity provider's key set (jwt mode's issuer_url or jwks_url), \
                 by key set (the configured URL) and result (ok, error); after an error the last \
                 good set stays in use.",
                &["key_set", "result"],
            ),
            jwks_keys: gauge(
                "streamgate_jwks_keys",
                "Keys in the key set in use, by key set (the configured URL); 0 until the first \
                 fetch succeeds.",
                &["key_set"],
            ),
            jwks_unknown_kid_refetches: counter(
                "streamgate_jwks_unknown_kid_refetches_total",
                "Tokens naming a key id the key set lacks, by key set and what came of asking the \
                 provider again: fetched (a new set is in), failed (that fetch failed), capped (a \
                 refetch already ran within unknown_kid_refetch_interval, so the provider was \
                 not asked) or timed_out.",
                &["key_set", "result"],
            ),
            trace_spans_ended: IntCounter::new(
                "streamgate_trace_spans_ended_total",
                "Sampled spans ended and handed to the OTLP export queue (tracing.otlp); those \
                 neither exported nor still queued (at most max_queue_size) were dropped because \
                 the queue was full.",
            )
            .expect("valid metric definition"),
            trace_spans_exported: counter(
                "streamgate_trace_spans_exported_total",
                "Spans sent to the OTLP collector, by result: ok (accepted) or error (the batch \
                 failed or timed out, and is lost).",
                &["result"],
            ),
            registry,
        };
        for single in [
            Box::new(metrics.downstream_connections.clone())
                as Box<dyn prometheus::core::Collector>,
            Box::new(metrics.downstream_connections_waiting.clone()),
            Box::new(metrics.downstream_connections_queued.clone()),
            Box::new(metrics.downstream_connections_refused.clone()),
            Box::new(metrics.trace_spans_ended.clone()),
        ] {
            metrics
                .registry
                .register(single)
                .expect("metric registered once");
        }
        let build_info = IntGaugeVec::new(
            Opts::new(
                "streamgate_build_info",
                "Build information (version, git commit, build date); the value is always 1.",
            ),
            &["version", "commit", "build_date"],
        )
        .expect("valid metric definition");
        build_info
            .with_label_values(&[version::VERSION, version::COMMIT, version::BUILD_DATE])
            .set(1);
        metrics
            .registry
            .register(Box::new(build_info))
            .expect("metric registered once");
        metrics
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::error!("could not encode metrics: {e}");
        }
        out
    }
}

impl Metrics {
    pub fn count_request(&self, protocol: Protocol) {
        let index = Protocol::ALL
            .iter()
            .position(|p| *p == protocol)
            .unwrap_or_default();
        self.requests[index].inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The series of one token route, resolved once at start.
pub struct TokenRouteMetrics {
    pub issued: IntCounter,
    pub duration: Histogram,
}

/// The series of one TLS listener, resolved once at start.
pub struct TlsListenerMetrics {
    pub reloads: IntCounter,
    pub reload_failures: IntCounter,
    pub expiry: IntGauge,
}

/// The series of one upstream, resolved once at start.
pub struct UpstreamMetrics {
    by_class: [IntCounter; 6],
    pub duration: Histogram,
    pub connect_errors: IntCounter,
    pub retries_after_connect_error: IntCounter,
    pub retries_on_reused_connection: IntCounter,
}

const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

impl UpstreamMetrics {
    pub fn count_response(&self, status: u16) {
        let class = status_class(status);
        let index = CLASSES
            .iter()
            .position(|c| *c == class)
            .unwrap_or(CLASSES.len() - 1);
        self.by_class[index].inc();
    }
}

impl Metrics {
    /// `app` is the name of the Stream app the route signs for.
    pub fn token_route(&self, route: &str, app: &str) -> TokenRouteMetrics {
        TokenRouteMetrics {
            issued: self.tokens_issued.with_label_values(&[route, app]),
            duration: self.token_duration.with_label_values(&[route]),
        }
    }

    /// `listener` is the listener's address as configured.
    pub fn tls_listener(&self, listener: &str) -> TlsListenerMetrics {
        TlsListenerMetrics {
            reloads: self.tls_certificate_reloads.with_label_values(&[listener]),
            reload_failures: self
                .tls_certificate_reload_failures
                .with_label_values(&[listener]),
            expiry: self.tls_certificate_expiry.with_label_values(&[listener]),
        }
    }

    pub fn upstream(&self, name: &str) -> UpstreamMetrics {
        UpstreamMetrics {
            by_class: CLASSES.map(|class| self.proxied_requests.with_label_values(&[name, class])),
            duration: self.upstream_duration.with_label_values(&[name]),
            connect_errors: self.upstream_connect_errors.with_label_values(&[name]),
            retries_after_connect_error: self
                .upstream_retries
                .with_label_values(&[name, "connect"]),
            retries_on_reused_connection: self
                .upstream_retries
                .with_label_values(&[name, "reused_connection"]),
        }
    }
}

/// `2xx`, `4xx`…: the status class label of a response.
fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_follow_conventions_and_count() {
        let metrics = Metrics::new();
        metrics
            .tokens_issued
            .with_label_values(&["POST /api/tokens/user", "default"])
            .inc();
        metrics.secret_loaded.with_label_values(&["eu"]).set(1);
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(
            text.contains(
                "streamgate_tokens_issued_total{app=\"default\",route=\"POST /api/tokens/user\"} 1"
            ),
            "{text}"
        );
        // Prometheus writes labels in name order.
        let build_info = format!(
            "streamgate_build_info{{build_date=\"{}\",commit=\"{}\",version=\"{}\"}} 1",
            version::BUILD_DATE,
            version::COMMIT,
            version::VERSION
        );
        assert!(text.contains(&build_info), "{text}");
        assert!(
            text.contains("streamgate_secret_loaded{app=\"eu\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn status_classes() {
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(502), "5xx");
        assert_eq!(status_class(0), "none");
    }
}
