//! Trace context through streamgate, and spans sent to a collector: W3C
//! `traceparent` continued from trusted peers only, a new trace otherwise,
//! the trace id in the access log, and a real OTLP/HTTP receiver on loopback
//! decoding what streamgate exports (spans, parents, attributes), including
//! when the collector never answers and at shutdown.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use serde_json::{json, Value};

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT_ID: &str = "b7ad6b7169203331";

fn traceparent() -> String {
    format!("00-{TRACE_ID}-{PARENT_ID}-01")
}

/// `traceparent`'s four fields.
fn fields(traceparent: &str) -> Vec<String> {
    traceparent.split('-').map(str::to_owned).collect()
}

/// What the echo app received of `name`.
fn received<'a>(echo: &'a Value, name: &str) -> Vec<&'a str> {
    echo["headers"][name]
        .as_array()
        .map(|values| values.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The `trace_id` of the access-log line of the request with `request_id`.
fn logged_trace_id(gate: &Streamgate, request_id: &str) -> String {
    let line = poll(Duration::from_secs(10), || {
        gate.stdout()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|line| line["request_id"] == request_id)
    })
    .unwrap_or_else(|| panic!("no access-log line for {request_id}:\n{}", gate.stdout()));
    line["trace_id"].as_str().unwrap_or_default().to_owned()
}

async fn echo_with(gate: &Streamgate, request_id: &str, headers: &[(&str, &str)]) -> Value {
    let mut all = vec![("x-request-id", request_id)];
    all.extend_from_slice(headers);
    get_json_with(gate.url("/trace"), &all).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_callers_trace_continues_to_the_app() {
    let app = start_app().await;
    let gate = Streamgate::start(&default_config(app.addr));
    let parent = traceparent();
    let echo = echo_with(
        &gate,
        "continued",
        &[("traceparent", &parent), ("tracestate", "vendor=abc")],
    )
    .await;
    let sent = received(&echo, "traceparent");
    assert_eq!(sent.len(), 1, "{echo}");
    let sent = fields(sent[0]);
    assert_eq!((sent[0].as_str(), sent[1].as_str()), ("00", TRACE_ID));
    assert_ne!(
        sent[2], PARENT_ID,
        "streamgate's own span is the app's parent"
    );
    assert_eq!(sent[2].len(), 16);
    assert_eq!(sent[3], "01");
    assert_eq!(received(&echo, "tracestate"), ["vendor=abc"]);
    assert_eq!(logged_trace_id(&gate, "continued"), TRACE_ID);

    // No context: a new trace, sampled so that the app keeps recording, and
    // its id in the access log.
    let echo = echo_with(&gate, "started", &[]).await;
    let sent = fields(received(&echo, "traceparent")[0]);
    assert_eq!(sent[1].len(), 32);
    assert_ne!(sent[1], "0".repeat(32));
    assert_eq!(sent[3], "01");
    assert_eq!(logged_trace_id(&gate, "started"), sent[1]);
    assert!(received(&echo, "tracestate").is_empty());
}

/// From a peer outside `trusted_cidrs` the client's context is not believed:
/// the app gets a new trace id and none of the client's `tracestate`; a
/// malformed or repeated `traceparent` from anyone starts a new trace too.
#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_or_malformed_context_starts_a_new_trace() {
    let app = start_app().await;
    let untrusted = Streamgate::start(&config_with(app.addr, "trusted_cidrs: [\"192.0.2.0/24\"]"));
    let parent = traceparent();
    let echo = echo_with(
        &untrusted,
        "untrusted",
        &[("traceparent", &parent), ("tracestate", "vendor=abc")],
    )
    .await;
    let sent = received(&echo, "traceparent");
    assert_eq!(sent.len(), 1, "{echo}");
    let sent = fields(sent[0]);
    assert_ne!(sent[1], TRACE_ID, "{echo}");
    assert!(received(&echo, "tracestate").is_empty(), "{echo}");
    assert_eq!(logged_trace_id(&untrusted, "untrusted"), sent[1]);

    let trusted = Streamgate::start(&default_config(app.addr));
    let upper = parent.to_uppercase();
    for (id, headers) in [
        (
            "repeated",
            vec![
                ("traceparent", parent.as_str()),
                ("traceparent", parent.as_str()),
            ],
        ),
        (
            "short",
            vec![(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            )],
        ),
        (
            "zero",
            vec![(
                "traceparent",
                "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            )],
        ),
        (
            "version-ff",
            vec![(
                "traceparent",
                "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )],
        ),
        ("upper", vec![("traceparent", upper.as_str())]),
    ] {
        let echo = echo_with(&trusted, id, &headers).await;
        let sent = received(&echo, "traceparent");
        assert_eq!(sent.len(), 1, "{id}: {echo}");
        let sent = fields(sent[0]);
        assert_ne!(sent[1], TRACE_ID, "{id}: {echo}");
        assert_eq!(sent.len(), 4, "{id}: {echo}");
    }
}

// ---- export ----------------------------------------------------------------

/// An OTLP/HTTP receiver: `POST /v1/traces` with a protobuf
/// `ExportTraceServiceRequest`, kept decoded.
struct Collector {
    port: u16,
    exports: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

async fn start_collector() -> Collector {
    let exports = Arc::new(Mutex::new(Vec::new()));
    let router =
        Router::new()
            .route(
                "/v1/traces",
                post(
                    |State(exports): State<Arc<Mutex<Vec<ExportTraceServiceRequest>>>>,
                     body: Bytes| async move {
                        let request = ExportTraceServiceRequest::decode(body)
                            .expect("an ExportTraceServiceRequest");
                        exports.lock().unwrap().push(request);
                        (
                            [("content-type", "application/x-protobuf")],
                            Vec::<u8>::new(),
                        )
                    },
                ),
            )
            .with_state(Arc::clone(&exports));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, router).await });
    Collector { port, exports }
}

impl Collector {
    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/v1/traces", self.port)
    }

    fn spans(&self) -> Vec<Span> {
        self.exports
            .lock()
            .unwrap()
            .iter()
            .flat_map(|export| &export.resource_spans)
            .flat_map(|resource| &resource.scope_spans)
            .flat_map(|scope| scope.spans.clone())
            .collect()
    }

    /// The spans of the trace `trace_id`, once there are `count` of them.
    async fn trace(&self, trace_id: &str, count: usize) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let spans: Vec<Span> = self
                .spans()
                .into_iter()
                .filter(|span| hex(&span.trace_id) == trace_id)
                .collect();
            if spans.len() >= count || Instant::now() > deadline {
                assert_eq!(spans.len(), count, "spans of {trace_id}: {spans:#?}");
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn service_names(&self) -> Vec<String> {
        self.exports
            .lock()
            .unwrap()
            .iter()
            .flat_map(|export| &export.resource_spans)
            .filter_map(|resource| resource.resource.as_ref())
            .flat_map(|resource| &resource.attributes)
            .filter(|kv| kv.key == "service.name")
            .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
                AnyValue::StringValue(name) => Some(name.clone()),
                _ => None,
            })
            .collect()
    }
}

/// A span's attributes as strings.
fn attributes(span: &Span) -> BTreeMap<String, String> {
    span.attributes
        .iter()
        .filter_map(|kv| {
            let value = match kv.value.as_ref()?.value.as_ref()? {
                AnyValue::StringValue(s) => s.clone(),
                AnyValue::IntValue(i) => i.to_string(),
                AnyValue::BoolValue(b) => b.to_string(),
                other => format!("{other:?}"),
            };
            Some((kv.key.clone(), value))
        })
        .collect()
}

fn one_of_kind(spans: &[Span], kind: SpanKind) -> &Span {
    let found: Vec<&Span> = spans.iter().filter(|s| s.kind == kind as i32).collect();
    assert_eq!(found.len(), 1, "{kind:?} spans: {spans:#?}");
    found[0]
}

fn tracing_config(app: std::net::SocketAddr, endpoint: &str, extra: &str) -> String {
    config_with(
        app,
        &format!("tracing:\n  otlp: {{ endpoint: \"{endpoint}\"{extra} }}"),
    )
}

/// A proxied request: the server span continues the caller's trace, the
/// client span (the app's parent in `traceparent`) is its child and carries
/// the app's status.
#[tokio::test(flavor = "multi_thread")]
async fn a_proxied_requests_spans_reach_the_collector_with_their_parents() {
    let (app, collector) = (start_app().await, start_collector().await);
    let gate = Streamgate::start_with_env(
        &tracing_config(app.addr, &collector.endpoint(), ""),
        &[("OTEL_BSP_SCHEDULE_DELAY", "100")],
    );
    let parent = traceparent();
    let echo = echo_with(&gate, "exported", &[("traceparent", &parent)]).await;
    let app_parent = fields(received(&echo, "traceparent")[0])[2].clone();

    let spans = collector.trace(TRACE_ID, 2).await;
    let server = one_of_kind(&spans, SpanKind::Server);
    let client = one_of_kind(&spans, SpanKind::Client);
    assert_eq!(hex(&server.parent_span_id), PARENT_ID);
    assert_eq!(hex(&client.parent_span_id), hex(&server.span_id));
    assert_eq!(hex(&client.span_id), app_parent);
    assert_eq!(server.name, "GET /*");
    let server_attributes = attributes(server);
    for (key, value) in [
        ("http.request.method", "GET"),
        ("url.path", "/trace"),
        ("url.scheme", "http"),
        ("http.route", "/*"),
        ("http.response.status_code", "200"),
        ("network.protocol.version", "1.1"),
        ("client.address", "127.0.0.1"),
    ] {
        assert_eq!(
            server_attributes.get(key).map(String::as_str),
            Some(value),
            "{key}: {server_attributes:?}"
        );
    }
    let client_attributes = attributes(client);
    assert_eq!(client_attributes["streamgate.upstream"], "app");
    assert_eq!(client_attributes["http.response.status_code"], "200");
    assert_eq!(client_attributes["server.address"], app.addr.to_string());
    assert!(client.start_time_unix_nano >= server.start_time_unix_nano);
    assert!(client.end_time_unix_nano <= server.end_time_unix_nano);
    assert!(collector.service_names().iter().all(|n| n == "streamgate"));
    // The start-up summary and /config_dump say where spans go.
    let said = format!(
        "tracing: W3C trace context propagated; spans sent to {} (sampling ratio 1)",
        collector.endpoint()
    );
    assert!(gate.logs().contains(&said), "{}", gate.logs());
    let dump = get_json(gate.admin_url("/config_dump")).await;
    assert_eq!(dump["tracing"]["otlp"]["endpoint"], collector.endpoint());
    assert_eq!(dump["tracing"]["otlp"]["max_queue_size"], 2048);
    assert_eq!(dump["tracing"]["sampling_ratio"], 1.0);
    // Both spans are counted as ended and, once the collector took them, as
    // exported: nothing dropped.
    assert_eq!(metric_now(&gate, SPANS_ENDED, &[]).await, 2.0);
    assert!(
        metric_reaches(&gate, SPANS_EXPORTED, &[("result", "ok")], |n| n == 2.0).await,
        "exported: {}",
        metric_now(&gate, SPANS_EXPORTED, &[("result", "ok")]).await
    );
    assert_eq!(
        metric_now(&gate, SPANS_EXPORTED, &[("result", "error")]).await,
        0.0
    );
}

const SPANS_ENDED: &str = "streamgate_trace_spans_ended_total";
const SPANS_EXPORTED: &str = "streamgate_trace_spans_exported_total";

/// A token request in forward_auth mode: the server span says what was
/// minted and the outcome, and the session check is its child client span,
/// whose id the app's session endpoint received.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_requests_session_check_is_a_child_span() {
    let (app, collector) = (start_app().await, start_collector().await);
    let config = tracing_config(app.addr, &collector.endpoint(), "").replace(
        "tracing:",
        "identity:\n  mode: forward_auth\n  forward_auth: { path: /api/me, user_id_pointer: /user/id, cache_ttl: 0s }\ntracing:",
    );
    let gate = Streamgate::start_with_env(&config, &[("OTEL_BSP_SCHEDULE_DELAY", "100")]);
    let parent = traceparent();
    let answer = post_json(
        gate.url("/api/tokens/user"),
        &json!({}),
        &[("cookie", "session=alice"), ("traceparent", &parent)],
    )
    .await;
    assert_eq!(answer.status(), 200);
    let first_check = app.sessions.last_traceparent.lock().unwrap().clone();
    let refused = post_json(
        gate.url("/api/tokens/user"),
        &json!({"userId": "bob"}),
        &[
            ("cookie", "session=alice"),
            (
                "traceparent",
                "00-11111111111111111111111111111111-2222222222222222-01",
            ),
        ],
    )
    .await;
    assert_eq!(refused.status(), 403);

    let spans = collector.trace(TRACE_ID, 2).await;
    let server = one_of_kind(&spans, SpanKind::Server);
    let check = one_of_kind(&spans, SpanKind::Client);
    assert_eq!(server.name, "POST /api/tokens/user");
    assert_eq!(hex(&check.parent_span_id), hex(&server.span_id));
    let sent = fields(&first_check.expect("the session check's traceparent"));
    assert_eq!(sent[1], TRACE_ID);
    assert_eq!(sent[2], hex(&check.span_id));
    let server_attributes = attributes(server);
    assert_eq!(server_attributes["streamgate.token.kind"], "user_token");
    assert_eq!(server_attributes["streamgate.token.outcome"], "issued");
    let check_attributes = attributes(check);
    assert_eq!(check_attributes["streamgate.forward_auth"], "true");
    assert_eq!(check_attributes["url.path"], "/api/me");
    assert_eq!(check_attributes["http.response.status_code"], "200");

    let spans = collector.trace("11111111111111111111111111111111", 2).await;
    let server_attributes = attributes(one_of_kind(&spans, SpanKind::Server));
    assert_eq!(server_attributes["streamgate.token.outcome"], "refused");
    assert_eq!(
        server_attributes["streamgate.token.refusal_reason"],
        "forbidden"
    );
    assert_eq!(server_attributes["http.response.status_code"], "403");
}

/// A collector that accepts connections and never answers, and one that is
/// not there: every request is answered at once (an export's timeout is
/// 30 s here), spans beyond the small queue are dropped, and the process
/// stays up.
#[tokio::test(flavor = "multi_thread")]
async fn a_collector_that_never_answers_holds_no_request() {
    let app = start_app().await;
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    // Accepts and keeps every connection, reading nothing.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().flatten() {
            held.push(stream);
        }
    });
    for (endpoint, silent) in [
        (format!("http://127.0.0.1:{silent_port}/v1/traces"), true),
        (format!("http://127.0.0.1:{}/v1/traces", free_port()), false),
    ] {
        let gate = Streamgate::start_with_env(
            &tracing_config(app.addr, &endpoint, ", timeout: 30s, max_queue_size: 16"),
            &[("OTEL_BSP_SCHEDULE_DELAY", "10")],
        );
        let client = client();
        let started = Instant::now();
        let mut slowest = Duration::ZERO;
        for round in 0..20 {
            let requests = (0..16).map(|i| {
                let client = client.clone();
                let url = gate.url(&format!("/r{round}-{i}"));
                async move {
                    let begun = Instant::now();
                    let status = client.get(url).send().await.map(|r| r.status().as_u16());
                    (status, begun.elapsed())
                }
            });
            for (status, took) in futures_util::future::join_all(requests).await {
                assert_eq!(status.ok(), Some(200), "{endpoint}");
                slowest = slowest.max(took);
            }
        }
        assert!(
            slowest < Duration::from_secs(10),
            "{endpoint}: a request took {slowest:?} (320 in {:?})",
            started.elapsed()
        );
        assert_eq!(status_of(gate.admin_url("/healthz")).await, 200);
        // What became of the 640 spans (a server and a client span per
        // request) shows: none accepted.
        assert_eq!(
            metric_now(&gate, SPANS_ENDED, &[]).await,
            640.0,
            "{endpoint}"
        );
        let ok = metric_now(&gate, SPANS_EXPORTED, &[("result", "ok")]).await;
        assert_eq!(ok, 0.0, "{endpoint}");
        let failed = metric_now(&gate, SPANS_EXPORTED, &[("result", "error")]).await;
        if silent {
            // The first batch waits on the collector for 30 s: beyond it and
            // a full queue (16 each), every span was dropped, none failed.
            assert_eq!(failed, 0.0, "{endpoint}");
        } else {
            assert!(
                metric_reaches(&gate, SPANS_EXPORTED, &[("result", "error")], |n| n > 0.0).await,
                "{endpoint}: no failed batch counted"
            );
        }
    }
}

/// Spans still queued when streamgate is told to stop are sent before it
/// exits (the batch's delay here is ten minutes).
#[tokio::test(flavor = "multi_thread")]
async fn queued_spans_are_sent_at_shutdown() {
    let (app, collector) = (start_app().await, start_collector().await);
    let mut gate = Streamgate::start_with_env(
        &tracing_config(app.addr, &collector.endpoint(), ""),
        &[("OTEL_BSP_SCHEDULE_DELAY", "600000")],
    );
    let parent = traceparent();
    echo_with(&gate, "last", &[("traceparent", &parent)]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(collector.spans().is_empty(), "sent before the delay");
    gate.signal("TERM");
    assert_eq!(gate.wait_exit(Duration::from_secs(20)), Some(Some(0)));
    collector.trace(TRACE_ID, 2).await;
}

/// The section's mistakes, each named by its key: a ratio outside 0..1, an
/// endpoint that is not http(s), one with credentials (which are not
/// echoed), an unknown key.
#[test]
fn tracing_settings_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    for (section, expected) in [
        (
            "tracing: { sampling_ratio: 1.5 }",
            "tracing.sampling_ratio: must be between 0.0 and 1.0",
        ),
        (
            "tracing: { otlp: { endpoint: \"grpc://c:4317\" } }",
            "tracing.otlp.endpoint",
        ),
        (
            "tracing: { otlp: { endpoint: \"https://u:hunter2@c:4318/v1/traces\" } }",
            "credentials",
        ),
        (
            "tracing: { otlp: { endpoint: \"http://c:4318\", batch: 5 } }",
            "tracing.otlp.batch: unknown field `batch`",
        ),
    ] {
        let config = config_with("127.0.0.1:1".parse().unwrap(), section)
            .replace("{port}", &free_port().to_string())
            .replace("{admin_port}", &free_port().to_string())
            .replace("{dir}", dir.path().to_str().unwrap());
        let path = dir.path().join("streamgate.yaml");
        std::fs::write(&path, config).unwrap();
        let output = std::process::Command::new(binary())
            .arg("-t")
            .arg("-c")
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{section}: {stderr}");
        assert!(stderr.contains(expected), "{section}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}
