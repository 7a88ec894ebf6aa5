//! gRPC through streamgate: a tonic app behind an upstream with
//! `protocol: h2c`, reached on streamgate's plain port with HTTP/2 prior
//! knowledge by a tonic client. Every call shape, statuses and metadata from
//! the app passed through unchanged, and the answers streamgate writes itself
//! (app down, deadline missed, no route) in gRPC form; the same calls over a
//! TLS listener (ALPN h2). Plus HTTP/2 with a plain client: a large upload
//! over h2c to an HTTP/1.1 app.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use futures_util::future::join_all;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tonic::{Code, Status};

/// The app's routes behind `/test.Echo/`; `/retired.Service/` answered by a
/// fixed 404 without touching the app; nothing else matches.
fn grpc_config(app: SocketAddr, read_timeout: &str) -> String {
    format!(
        r#"
listen: ["127.0.0.1:{{port}}"]
upstreams:
  grpc: {{ address: "{app}", protocol: h2c, connect_timeout: 1s, read_timeout: {read_timeout} }}
stream:
  api_key: "{API_KEY}"
  api_secret: "{API_SECRET}"
routes:
  - {{ match: {{ path_prefix: /test.Echo/ }}, upstream: grpc }}
  - {{ match: {{ path_prefix: /retired.Service/ }}, direct_response: {{ status: 404, body: "retired" }} }}
admin: {{ listen: "127.0.0.1:{{admin_port}}" }}
access_log: {{ format: json }}
server: {{ threads: 2, pid_file: "{{dir}}/streamgate.pid", upgrade_sock: "{{dir}}/upgrade.sock", drain_seconds: 1, grace_period_seconds: 1, graceful_shutdown_timeout_seconds: 1 }}
"#
    )
}

/// The app and streamgate in front of it with a 3 s read timeout: longer than
/// any deadline the tests set, so a call ended sooner was ended by its deadline.
async fn gate_in_front_of_app() -> Streamgate {
    let app = start_grpc_app().await;
    Streamgate::start(&grpc_config(app.addr, "3s"))
}

fn echo(message: &str) -> EchoRequest {
    EchoRequest {
        message: message.into(),
        ..EchoRequest::default()
    }
}

/// Whether `body` could be the JSON error envelope streamgate writes for
/// HTTP clients, which a gRPC client cannot read.
fn looks_like_json(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body).is_ok()
}

/// The checks every answer streamgate writes itself to a gRPC call must pass:
/// HTTP 200, a gRPC content type, the status in `grpc-status`, no JSON body.
fn assert_grpc_form(answer: &RawGrpcAnswer, code: Code) {
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(
        answer.content_type().starts_with("application/grpc"),
        "{answer:?}"
    );
    assert_eq!(answer.grpc_status(), Some(code as i32), "{answer:?}");
    assert!(!looks_like_json(&answer.body), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unary_calls_pass_through_with_their_metadata() {
    let gate = gate_in_front_of_app().await;
    let mut client = GrpcClient::connect(gate.port)
        .await
        .with_timeout(Duration::from_secs(2));
    let response = client
        .unary_with("Unary", echo("hello"), &[("x-client-meta", "kept")])
        .await
        .unwrap();
    assert_eq!(response.get_ref().message, "hello");
    assert_eq!(response.get_ref().client_meta, "kept");
    assert_eq!(response.metadata().get("x-server-meta").unwrap(), "unary");
    // The app learns the caller's deadline too (streamgate may shorten it,
    // never drop it), so it can give up when nobody waits any more.
    assert!(
        !response.get_ref().grpc_timeout.is_empty(),
        "grpc-timeout did not reach the app"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_calls_share_one_connection() {
    let gate = gate_in_front_of_app().await;
    let client = GrpcClient::connect(gate.port).await;
    let calls = (0..50).map(|i| {
        let mut client = client.clone();
        async move { client.unary("Unary", echo(&format!("call {i}"))).await }
    });
    for (i, result) in join_all(calls).await.into_iter().enumerate() {
        assert_eq!(result.unwrap().get_ref().message, format!("call {i}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn server_streaming_delivers_every_message_in_order() {
    let gate = gate_in_front_of_app().await;
    let mut client = GrpcClient::connect(gate.port).await;
    let outcome = client
        .server_stream(EchoRequest {
            count: 100,
            ..echo("item")
        })
        .await;
    outcome.end.unwrap();
    let indexes: Vec<u32> = outcome.replies.iter().map(|r| r.index).collect();
    assert_eq!(indexes, (0..100).collect::<Vec<_>>());
    assert_eq!(outcome.replies[99].message, "item 99");
}

#[tokio::test(flavor = "multi_thread")]
async fn client_streaming_reaches_the_app_whole() {
    let gate = gate_in_front_of_app().await;
    let mut client = GrpcClient::connect(gate.port).await;
    let messages = (1..=100)
        .map(|value| EchoRequest {
            value,
            ..EchoRequest::default()
        })
        .collect();
    let reply = client.client_stream(messages).await.unwrap().into_inner();
    assert_eq!((reply.index, reply.sum), (100, 5050));
}

/// Each reply comes back before the next message is sent: nothing between
/// client and app waits for a whole stream.
#[tokio::test(flavor = "multi_thread")]
async fn bidirectional_streams_answer_message_by_message() {
    let gate = gate_in_front_of_app().await;
    let mut client = GrpcClient::connect(gate.port).await;
    let mut call = client.bidi().await.unwrap();
    for i in 0..10 {
        let reply = call.exchange(echo(&format!("ping {i}"))).await;
        assert_eq!(reply.message, format!("echo: ping {i}"));
        assert_eq!(reply.index, i);
    }
    call.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_error_status_from_the_app_reaches_the_client_unchanged() {
    let app = start_grpc_app().await;
    let gate = Streamgate::start(&grpc_config(app.addr, "3s"));
    let mut client = GrpcClient::connect(gate.port).await;
    // Non-ASCII and `%` travel percent-encoded in grpc-message.
    let fail = EchoRequest {
        code: Code::NotFound as i32,
        ..echo("no such thing: ü 100%")
    };
    let status: Status = client.unary("Fail", fail.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "no such thing: ü 100%");
    assert_eq!(status.metadata().get(DETAIL_KEY).unwrap(), "from the app");

    // On the wire: the same trailers-only answer as straight from the app.
    let direct = raw_grpc_call(app.addr.port(), "/test.Echo/Fail", &fail).await;
    let proxied = raw_grpc_call(gate.port, "/test.Echo/Fail", &fail).await;
    assert_grpc_form(&proxied, Code::NotFound);
    for name in ["grpc-status", "grpc-message", DETAIL_KEY] {
        assert_eq!(proxied.grpc_field(name), direct.grpc_field(name), "{name}");
    }
}

/// A status that ends a stream after messages travels in HTTP/2 trailers;
/// its message and custom metadata arrive as the app sent them.
#[tokio::test(flavor = "multi_thread")]
async fn trailers_after_messages_pass_through() {
    let gate = gate_in_front_of_app().await;
    let mut client = GrpcClient::connect(gate.port).await;
    let outcome = client
        .server_stream(EchoRequest {
            count: 3,
            code: Code::Aborted as i32,
            ..echo("part")
        })
        .await;
    assert_eq!(outcome.replies.len(), 3);
    let status = outcome.end.unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(status.message(), "the stream ends in failure");
    assert_eq!(status.metadata().get(DETAIL_KEY).unwrap(), "from the app");

    let answer = raw_grpc_call(gate.port, "/test.Echo/Unary", &echo("hi")).await;
    let trailers = answer
        .trailers
        .as_ref()
        .expect("trailers after the message");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_app_down_is_unavailable() {
    let closed = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let gate = Streamgate::start(&grpc_config(closed, "3s"));
    let mut client = GrpcClient::connect(gate.port).await;
    let started = Instant::now();
    let status = client.unary("Unary", echo("anyone?")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(2));

    let answer = raw_grpc_call(gate.port, "/test.Echo/Unary", &echo("anyone?")).await;
    assert_grpc_form(&answer, Code::Unavailable);
}

/// The client's `grpc-timeout` (300 ms) ends a call the app takes 2 s over,
/// well before the upstream's 3 s read timeout would.
#[tokio::test(flavor = "multi_thread")]
async fn a_missed_deadline_is_deadline_exceeded_in_time() {
    let gate = gate_in_front_of_app().await;
    let mut client = GrpcClient::connect(gate.port)
        .await
        .with_timeout(Duration::from_millis(300));
    let slow = EchoRequest {
        delay_ms: 2000,
        ..echo("late")
    };
    let started = Instant::now();
    let status = client.unary("Slow", slow).await.unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_millis(1500),
        "answered after {elapsed:?}"
    );
    // The connection is still good for the next call.
    let reply = client.unary("Unary", echo("after")).await.unwrap();
    assert_eq!(reply.get_ref().message, "after");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_read_timeout_is_deadline_exceeded() {
    let app = start_grpc_app().await;
    let gate = Streamgate::start(&grpc_config(app.addr, "500ms"));
    let mut client = GrpcClient::connect(gate.port).await;
    let slow = EchoRequest {
        delay_ms: 2000,
        ..echo("late")
    };
    let started = Instant::now();
    let status = client.unary("Slow", slow.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(started.elapsed() < Duration::from_millis(1500));

    let answer = raw_grpc_call(gate.port, "/test.Echo/Slow", &slow).await;
    assert_grpc_form(&answer, Code::DeadlineExceeded);
}

/// No route for the path, or a route that answers 404 itself: the gRPC
/// client is told UNIMPLEMENTED, not handed a JSON 404.
#[tokio::test(flavor = "multi_thread")]
async fn a_call_no_route_serves_is_unimplemented() {
    let gate = gate_in_front_of_app().await;
    let mut client = GrpcClient::connect(gate.port).await;
    for path in ["/other.Service/Method", "/retired.Service/Method"] {
        let status = client.unary_at(path, echo("hello")).await.unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented, "{path}: {status:?}");
        let answer = raw_grpc_call(gate.port, path, &echo("hello")).await;
        assert_grpc_form(&answer, Code::Unimplemented);
    }
}

/// `len` bytes that are not one repeated value, so a lost or shifted chunk
/// changes them.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            // A 64-bit LCG (Knuth's MMIX constants); its high byte.
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            state.to_be_bytes()[0]
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_5_mib_message_each_way_arrives_intact() {
    let gate = gate_in_front_of_app().await;
    let mut client = GrpcClient::connect(gate.port).await;
    let payload = pattern(5 * 1024 * 1024, 7);
    let reply = client
        .unary(
            "Unary",
            EchoRequest {
                payload: payload.clone(),
                ..echo("big")
            },
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.payload.len(), payload.len());
    assert!(reply.payload == payload, "the payload came back changed");
}

/// A plain HTTP/2 client (curl, prior knowledge) uploads 5 MiB to an
/// HTTP/1.1 app through streamgate's plain port.
#[tokio::test(flavor = "multi_thread")]
async fn a_5_mib_upload_over_h2c_reaches_an_http1_app_intact() {
    let app = start_app().await;
    let gate = Streamgate::start(&default_config(app.addr));
    let body = pattern(5 * 1024 * 1024, 11);
    let file = gate.dir().join("upload.bin");
    std::fs::write(&file, &body).unwrap();
    let url = gate.url("/upload");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-sS", "--http2-prior-knowledge", "--max-time", "20"])
            .args(["-H", "content-type: application/octet-stream"])
            .arg("--data-binary")
            .arg(format!("@{}", file.display()))
            .args(["-w", "\n%{http_version} %{http_code}"])
            .arg(url)
            .output()
            .expect("run curl (the tests need curl with HTTP/2)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "curl: {output:?}");
    let (json, status_line) = stdout.rsplit_once('\n').unwrap();
    assert_eq!(status_line, "2 200", "HTTP/2 all the way to the client");
    let echoed: Value = serde_json::from_str(json).unwrap();
    assert_eq!(echoed["method"], "POST");
    assert_eq!(echoed["body_len"], body.len());
    assert_eq!(echoed["body_sha256"], hex(&Sha256::digest(&body)));
}

/// gRPC over a TLS listener: ALPN picks h2, and the calls reach the h2c app
/// behind it as on the plain port.
#[tokio::test(flavor = "multi_thread")]
async fn grpc_over_a_tls_listener() {
    let app = start_grpc_app().await;
    let ca = TestCa::new("listener CA");
    let pair = ca.server(1);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, &pair.cert).unwrap();
    std::fs::write(&key, &pair.key).unwrap();
    let config = grpc_config(app.addr, "3s").replace(
        "listen: [\"127.0.0.1:{port}\"]",
        &format!(
            "listen:\n  - {{ address: \"127.0.0.1:{{port}}\", tls: {{ cert_file: \"{}\", key_file: \"{}\" }} }}",
            cert.display(),
            key.display()
        ),
    );
    let gate = Streamgate::start(&config);
    let mut client = GrpcClient::connect_tls(gate.port, &ca.pem).await;
    let reply = client.unary("Unary", echo("secure")).await.unwrap();
    assert_eq!(reply.get_ref().message, "secure");
    let outcome = client
        .server_stream(EchoRequest {
            count: 10,
            ..echo("item")
        })
        .await;
    outcome.end.unwrap();
    assert_eq!(outcome.replies.len(), 10);
    let fail = EchoRequest {
        code: Code::PermissionDenied as i32,
        ..echo("not you")
    };
    let status = client.unary("Fail", fail).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::PermissionDenied, "not you")
    );
}
