//! Distributed tracing: W3C Trace Context on every request, and spans sent
//! to an OpenTelemetry collector over OTLP/HTTP when `tracing.otlp` is set.
//!
//! Propagation happens with or without export. A `traceparent` from a
//! trusted peer (`trusted_cidrs`: the ingress or auth proxy in front) is
//! continued, so that a trace started in front goes on through streamgate
//! to the app, with its `tracestate`. From anyone else it is not believed: a
//! client must not be able to join its requests to the operator's traces,
//! pick their ids or force them to be sampled. A new trace starts, and the
//! client's context is kept only as a span link (OpenTelemetry's advice for
//! public endpoints). Either way the app receives streamgate's own
//! `traceparent`, never the client's.
//!
//! Export uses the OpenTelemetry SDK's batch processor: a finished span goes
//! into a bounded queue (`max_queue_size`; when it is full the span is
//! dropped, and counted: see `counted`) and a thread of its own sends
//! batches, so a slow or absent collector never holds a request or grows
//! memory. Span and attribute names follow OpenTelemetry's semantic
//! conventions for HTTP (`http.request.method`, `url.path`,
//! `http.response.status_code`, `server.address`...); what is streamgate's
//! own is under `streamgate.`.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{
    Link, SpanContext, SpanKind, SpanRef, Status, TraceContextExt, TraceFlags, TraceState,
    Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, IdGenerator, RandomIdGenerator, Sampler, SdkTracer,
    SdkTracerProvider,
};

use crate::telemetry::metrics::Metrics;

mod counted;
mod settings;
#[cfg(test)]
mod tests;

pub use settings::{OtlpEndpoint, OtlpSettings, TracingSettings};

/// Builds the per-request traces; shared by every request.
pub struct Tracing {
    propagator: TraceContextPropagator,
    ids: RandomIdGenerator,
    export: Option<(SdkTracerProvider, SdkTracer)>,
}

impl Tracing {
    /// Starts the exporter's thread when `settings.otlp` is set, its spans
    /// counted in `metrics`. Fails when the exporter cannot be built (an
    /// endpoint the SDK refuses).
    pub fn new(settings: &TracingSettings, metrics: &Metrics) -> Result<Tracing, String> {
        let export = match &settings.otlp {
            None => None,
            Some(otlp) => Some(exporting(settings, otlp, metrics)?),
        };
        Ok(Tracing {
            propagator: TraceContextPropagator::new(),
            ids: RandomIdGenerator::default(),
            export,
        })
    }

    /// The server span of a request with `headers` from `peer`: the caller's
    /// trace continued when the peer is trusted, else a new one.
    pub fn start(&self, method: &str, headers: &HeaderMap, trusted: bool) -> RequestTrace {
        let received = self.propagator.extract(&Headers::new(headers));
        let received = received.span().span_context().clone();
        let (parent, link) = match (received.is_valid(), trusted) {
            (true, true) => (Some(received), None),
            (true, false) => (None, Some(received)),
            (false, _) => (None, None),
        };
        let server = match &self.export {
            Some((_, tracer)) => {
                let mut builder = tracer
                    .span_builder(method.to_owned())
                    .with_kind(SpanKind::Server);
                if let Some(link) = link {
                    builder = builder.with_links(vec![Link::with_context(link)]);
                }
                let cx = parent.map_or_else(Context::new, |parent| {
                    Context::new().with_remote_span_context(parent)
                });
                let span = builder.start_with_context(tracer, &cx);
                Context::new().with_span(span)
            }
            None => {
                let (trace_id, flags, state) = match parent {
                    Some(parent) => (
                        parent.trace_id(),
                        parent.trace_flags(),
                        parent.trace_state().clone(),
                    ),
                    // Sampled, so that an app whose own sampler follows its
                    // caller (the default) keeps recording.
                    None => (
                        self.ids.new_trace_id(),
                        TraceFlags::SAMPLED,
                        TraceState::default(),
                    ),
                };
                Context::new().with_remote_span_context(SpanContext::new(
                    trace_id,
                    self.ids.new_span_id(),
                    flags,
                    false,
                    state,
                ))
            }
        };
        RequestTrace {
            server,
            upstream: None,
        }
    }

    /// A child of `parent` of `kind`: a real span when exporting, else a
    /// new span id in the same trace, for the `traceparent` sent on.
    fn child(&self, parent: &Context, name: Cow<'static, str>, kind: SpanKind) -> Context {
        match &self.export {
            Some((_, tracer)) => {
                let span = tracer
                    .span_builder(name)
                    .with_kind(kind)
                    .start_with_context(tracer, parent);
                parent.with_span(span)
            }
            None => {
                let span = parent.span();
                let of = span.span_context();
                parent.with_remote_span_context(SpanContext::new(
                    of.trace_id(),
                    self.ids.new_span_id(),
                    of.trace_flags(),
                    false,
                    of.trace_state().clone(),
                ))
            }
        }
    }

    /// Whether spans are sent anywhere (`tracing.otlp`): what is recorded
    /// only for them is skipped otherwise.
    pub fn exporting(&self) -> bool {
        self.export.is_some()
    }

    /// Sends what is queued and stops the exporter's thread.
    pub fn shutdown(&self) {
        if let Some((provider, _)) = &self.export {
            if let Err(e) = provider.shutdown() {
                log::warn!("tracing: the last spans could not be sent: {e}");
            }
        }
    }

    /// `traceparent` (and `tracestate`) for a request made in `cx`.
    fn inject(&self, cx: &Context, headers: &mut Vec<(HeaderName, HeaderValue)>) {
        self.propagator.inject_context(cx, &mut Collected(headers));
    }
}

fn exporting(
    settings: &TracingSettings,
    otlp: &OtlpSettings,
    metrics: &Metrics,
) -> Result<(SdkTracerProvider, SdkTracer), String> {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(otlp.endpoint.as_str())
        .with_timeout(otlp.timeout)
        .with_http_client(Blocking::new(otlp.timeout))
        .build()
        .map_err(|e| format!("tracing.otlp: {e}"))?;
    let batch = BatchConfigBuilder::default()
        .with_max_queue_size(otlp.max_queue_size)
        .build();
    let exported = |result| metrics.trace_spans_exported.with_label_values(&[result]);
    let exporter = counted::CountedExporter {
        inner: exporter,
        ok: exported("ok"),
        error: exported("error"),
    };
    let provider = SdkTracerProvider::builder()
        .with_span_processor(counted::CountedProcessor {
            inner: BatchSpanProcessor::builder(exporter)
                .with_batch_config(batch)
                .build(),
            ended: metrics.trace_spans_ended.clone(),
        })
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            settings.sampling_ratio,
        ))))
        .with_resource(
            opentelemetry_sdk::Resource::builder_empty()
                .with_service_name(settings.service_name.clone())
                .with_attribute(KeyValue::new("service.version", crate::version::VERSION))
                .build(),
        )
        .build();
    let tracer = provider.tracer("streamgate");
    Ok((provider, tracer))
}

/// One request's spans: the server span, and the span of the current
/// attempt to reach the app.
pub struct RequestTrace {
    server: Context,
    upstream: Option<Context>,
}

impl RequestTrace {
    /// The trace id, 32 lowercase hex digits, for the access log.
    pub fn trace_id(&self) -> String {
        self.server.span().span_context().trace_id().to_string()
    }

    /// Names the server span after the route (`{method} {route}`, the
    /// semantic conventions' form) and records it as `http.route`.
    pub fn set_route(&self, method: &str, route: &str) {
        recording(&self.server, |span| {
            span.update_name(format!("{method} {route}"));
            span.set_attribute(KeyValue::new("http.route", route.to_owned()));
        });
    }

    /// Starts the span of an attempt to reach the app (a retry ends the
    /// previous one as failed) and returns the headers that carry it.
    pub fn start_upstream(
        &mut self,
        tracing: &Tracing,
        method: &str,
        upstream: &str,
        address: &dyn fmt::Display,
    ) -> Vec<(HeaderName, HeaderValue)> {
        if let Some(previous) = self.upstream.take() {
            recording(&previous, |span| {
                span.set_status(Status::error("retried on a new connection"));
            });
            previous.span().end();
        }
        let (cx, headers) = self.start_client(tracing, method, upstream, |span| {
            span.set_attribute(KeyValue::new("server.address", address.to_string()));
        });
        self.upstream = Some(cx);
        headers
    }

    /// A client span, child of the request's, with the attributes every
    /// client span has and those `record` adds; the headers that carry it.
    fn start_client(
        &self,
        tracing: &Tracing,
        method: &str,
        upstream: &str,
        record: impl FnOnce(&SpanRef<'_>),
    ) -> (Context, Vec<(HeaderName, HeaderValue)>) {
        let cx = tracing.child(
            &self.server,
            Cow::Owned(method.to_owned()),
            SpanKind::Client,
        );
        recording(&cx, |span| {
            span.set_attribute(KeyValue::new("http.request.method", method.to_owned()));
            span.set_attribute(KeyValue::new("streamgate.upstream", upstream.to_owned()));
            record(span);
        });
        let mut headers = Vec::with_capacity(2);
        tracing.inject(&cx, &mut headers);
        (cx, headers)
    }

    /// A sub-request's span (forward-auth's session check) and the headers
    /// that carry it; ended by [`SubRequest::end`].
    pub fn start_sub_request(
        &self,
        tracing: &Tracing,
        method: &str,
        upstream: &str,
        path: &str,
    ) -> SubRequest {
        let (cx, headers) = self.start_client(tracing, method, upstream, |span| {
            span.set_attribute(KeyValue::new("url.path", path.to_owned()));
            span.set_attribute(KeyValue::new("streamgate.forward_auth", true));
        });
        SubRequest { cx, headers }
    }

    /// Records a token request's outcome on the server span: `issued`, or
    /// `refused` with the refusal's reason code.
    pub fn token_outcome(&self, kind: &'static str, refusal: Option<&'static str>) {
        recording(&self.server, |span| {
            span.set_attribute(KeyValue::new("streamgate.token.kind", kind));
            let outcome = if refusal.is_some() {
                "refused"
            } else {
                "issued"
            };
            span.set_attribute(KeyValue::new("streamgate.token.outcome", outcome));
            if let Some(reason) = refusal {
                span.set_attribute(KeyValue::new("streamgate.token.refusal_reason", reason));
            }
        });
    }

    /// Ends the spans with the answer's status (0 when none was sent) and
    /// the app's, when it answered.
    pub fn end(self, request: &Finished<'_>) {
        if let Some(upstream) = self.upstream {
            end_client(
                &upstream,
                request.upstream_status,
                "no response from the app",
            );
        }
        recording(&self.server, |span| server_attributes(span, request));
        self.server.span().end();
    }
}

fn server_attributes(span: &SpanRef<'_>, request: &Finished<'_>) {
    span.set_attribute(KeyValue::new(
        "http.request.method",
        request.method.to_owned(),
    ));
    span.set_attribute(KeyValue::new("url.path", request.path.to_owned()));
    span.set_attribute(KeyValue::new("url.scheme", request.scheme));
    span.set_attribute(KeyValue::new(
        "network.protocol.version",
        request.protocol_version,
    ));
    if let Some(client) = request.client {
        span.set_attribute(KeyValue::new("client.address", client.to_string()));
    }
    if request.status != 0 {
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(request.status),
        ));
    }
    // A server span is an error for 5xx only: 4xx are the client's.
    if request.status >= 500 || request.status == 0 {
        span.set_status(Status::error(""));
    }
}

/// Runs `record` on the span of `cx` only if it is recorded (exported and
/// sampled): attributes cost allocations that nobody would read otherwise.
fn recording(cx: &Context, record: impl FnOnce(&SpanRef<'_>)) {
    let span = cx.span();
    if span.is_recording() {
        record(&span);
    }
}

/// What the server span records when the request is done.
pub struct Finished<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub scheme: &'static str,
    /// `1.0`, `1.1` or `2`.
    pub protocol_version: &'static str,
    pub client: Option<IpAddr>,
    pub status: u16,
    pub upstream_status: Option<u16>,
}

/// A sub-request's span and the headers to send with it.
pub struct SubRequest {
    cx: Context,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl SubRequest {
    /// Ends the span with the status the app answered, or as failed.
    pub fn end(self, status: Option<u16>) {
        end_client(&self.cx, status, "no answer");
    }
}

/// Ends a client span with the status its server answered (5xx is an
/// error), or as failed with `absent` when it did not answer.
fn end_client(cx: &Context, status: Option<u16>, absent: &'static str) {
    recording(cx, |span| match status {
        Some(status) => {
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
            if status >= 500 {
                span.set_status(Status::error(""));
            }
        }
        None => span.set_status(Status::error(absent)),
    });
    cx.span().end();
}

/// The request's headers as the propagator reads them.
struct Headers<'a> {
    map: &'a HeaderMap,
    /// Several `tracestate` headers, joined: they are one list (W3C Trace
    /// Context §3.3.1); `None` for the usual one or none.
    tracestate: Option<String>,
}

impl<'a> Headers<'a> {
    fn new(map: &'a HeaderMap) -> Self {
        let states = map.get_all("tracestate");
        let tracestate = (states.iter().nth(1).is_some()).then(|| {
            states
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect::<Vec<_>>()
                .join(",")
        });
        Headers { map, tracestate }
    }
}

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if let (Some(joined), "tracestate") = (&self.tracestate, key) {
            return Some(joined);
        }
        // A repeated traceparent is ambiguous (W3C Trace Context §3.2):
        // none is believed.
        let mut values = self.map.get_all(key).iter();
        let first = values.next()?;
        values.next().is_none().then(|| first.to_str().ok())?
    }

    fn keys(&self) -> Vec<&str> {
        self.map.keys().map(HeaderName::as_str).collect()
    }
}

struct Collected<'a>(&'a mut Vec<(HeaderName, HeaderValue)>);

impl Injector for Collected<'_> {
    fn set(&mut self, key: &str, value: String) {
        // The propagator writes `tracestate` even when it is empty.
        if value.is_empty() {
            return;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.push((name, value));
        }
    }
}

/// The exporter's HTTP client: reqwest's blocking client, made on the
/// batch processor's own thread the first time it sends (a blocking client
/// must not be made or dropped inside the async runtime).
struct Blocking {
    timeout: Duration,
    client: OnceLock<reqwest::blocking::Client>,
}

impl Blocking {
    fn new(timeout: Duration) -> Self {
        Blocking {
            timeout,
            client: OnceLock::new(),
        }
    }
}

impl fmt::Debug for Blocking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("reqwest::blocking::Client")
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for Blocking {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let client = match self.client.get() {
            Some(client) => client,
            None => {
                let built = reqwest::blocking::Client::builder()
                    .timeout(self.timeout)
                    .connect_timeout(self.timeout)
                    .build()?;
                self.client.get_or_init(|| built)
            }
        };
        let request = reqwest::blocking::Request::try_from(request)?;
        let response = client.execute(request)?;
        let mut answer = http::Response::builder().status(response.status());
        for (name, value) in response.headers() {
            answer = answer.header(name, value);
        }
        Ok(answer.body(response.bytes()?)?)
    }
}
