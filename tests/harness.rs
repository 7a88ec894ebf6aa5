//! The harness checks itself: the helpers other tests lean on for their
//! verdicts (token verification, metric lookup, mounted files, waits) must
//! refuse what they are meant to refuse, or those tests would pass vacuously.

mod common;

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};
use tonic::Code;

/// A token shaped like the ones streamgate mints: the fixed HS256/JWT header
/// segment, `claims`, and an HS256 signature with `secret`.
fn stream_shaped(claims: &Value, secret: &str) -> String {
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let message = format!("{HEADER_SEGMENT}.{payload}");
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(secret.as_bytes()),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{message}.{signature}")
}

#[test]
fn the_header_segment_is_hs256_jwt() {
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(HEADER_SEGMENT).unwrap())
        .expect("JSON header");
    assert_eq!(header, json!({"alg": "HS256", "typ": "JWT"}));
}

#[test]
fn claims_returns_the_claims_of_a_good_token() {
    let token = stream_shaped(&json!({"user_id": "u", "exp": now() + 600}), "s3cret");
    assert_eq!(claims(&token, "s3cret")["user_id"], "u");
    assert!(verifies_with(&token, "s3cret"));
    let answer = json!({"success": true, "data": {"token": token}});
    assert_eq!(token_in(&answer), token);
}

#[test]
#[should_panic(expected = "does not verify")]
fn claims_refuses_another_secret() {
    let token = stream_shaped(&json!({"user_id": "u", "exp": now() + 600}), "s3cret");
    claims(&token, "guessed");
}

#[test]
#[should_panic(expected = "does not verify")]
fn claims_refuses_an_expired_token() {
    let token = stream_shaped(&json!({"user_id": "u", "exp": now() - 3600}), "s3cret");
    claims(&token, "s3cret");
}

#[test]
#[should_panic(expected = "does not verify")]
fn claims_refuses_a_token_without_exp() {
    let token = stream_shaped(&json!({"user_id": "u"}), "s3cret");
    claims(&token, "s3cret");
}

#[test]
#[should_panic(expected = "header segment")]
fn claims_refuses_another_header() {
    // Same algorithm and key, but the header is serialized differently.
    let token = hs256(json!({"user_id": "u", "exp": now() + 600}), "s3cret");
    assert!(verifies_with(&token, "s3cret"));
    claims(&token, "s3cret");
}

#[test]
fn verifies_with_is_false_for_a_tampered_token() {
    let token = stream_shaped(&json!({"user_id": "u", "exp": now() + 600}), "s3cret");
    let forged_payload =
        URL_SAFE_NO_PAD.encode(json!({"user_id": "root", "exp": now() + 600}).to_string());
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[1] = &forged_payload;
    assert!(!verifies_with(&parts.join("."), "s3cret"));
}

#[test]
fn exposition_is_parsed_and_looked_up_by_labels() {
    let samples = parse_exposition(
        "# HELP requests_total Requests.\n\
         # TYPE requests_total counter\n\
         requests_total{route=\"a\",status_class=\"2xx\"} 3\n\
         requests_total{route=\"a\",status_class=\"5xx\"} 1\n\
         requests_total{route=\"b\",status_class=\"2xx\"} 5\n\
         \n\
         requests_total_other 7\n\
         up 1\n",
    );
    assert_eq!(samples.len(), 5);
    assert_eq!(metric(&samples, "requests_total", &[]), 9.0);
    assert_eq!(metric(&samples, "requests_total", &[("route", "a")]), 4.0);
    assert_eq!(
        metric(
            &samples,
            "requests_total",
            &[("route", "a"), ("status_class", "5xx")]
        ),
        1.0
    );
    assert_eq!(metric(&samples, "requests_total", &[("route", "c")]), 0.0);
    assert_eq!(metric(&samples, "up", &[]), 1.0);
    assert_eq!(metric(&samples, "missing", &[]), 0.0);
}

#[test]
fn a_mount_serves_the_latest_write_through_its_link() {
    let mount = Mount::new("key");
    assert!(
        std::fs::read(mount.path()).is_err(),
        "dangling until written"
    );
    mount.write("one");
    assert_eq!(std::fs::read_to_string(mount.path()).unwrap(), "one");
    mount.write(b"two");
    assert_eq!(std::fs::read_to_string(mount.path()).unwrap(), "two");
    assert!(std::fs::symlink_metadata(mount.path())
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn a_mount_of_several_keys_swaps_them_together() {
    let mount = Mount::with_keys(&["tls.crt", "tls.key"]);
    mount.publish(&[("tls.crt", b"cert 1"), ("tls.key", b"key 1")]);
    let data = std::fs::read_link(mount.path().parent().unwrap().join("..data")).unwrap();
    mount.publish(&[("tls.crt", b"cert 2"), ("tls.key", b"key 2")]);
    assert_eq!(std::fs::read(mount.path_of("tls.crt")).unwrap(), b"cert 2");
    assert_eq!(std::fs::read(mount.path_of("tls.key")).unwrap(), b"key 2");
    assert_ne!(
        std::fs::read_link(mount.path().parent().unwrap().join("..data")).unwrap(),
        data,
        "a new version directory, not a rewrite"
    );
}

/// The TLS helpers' verdicts: certificates of one CA differ by serial (the
/// rotation tests tell pairs apart by it), and the TLS 1.1 hello is one
/// well-framed record holding one ClientHello.
#[test]
fn test_certificates_differ_by_serial_and_the_old_hello_is_well_framed() {
    let ca = TestCa::new("harness CA");
    let (one, two) = (ca.server(1), ca.server(2));
    assert_ne!(one.serial(), two.serial());
    assert_ne!(one.key, two.key);
    assert!(one.not_after() > 0);
    let hello = tls11_client_hello();
    assert_eq!(&hello[..3], [0x16, 0x03, 0x01], "a handshake record");
    let record_len = usize::from(u16::from_be_bytes([hello[3], hello[4]]));
    assert_eq!(record_len, hello.len() - 5);
    assert_eq!(hello[5], 0x01, "a ClientHello");
    let body_len = usize::from(u16::from_be_bytes([hello[7], hello[8]]));
    assert_eq!((hello[6], body_len), (0, hello.len() - 9));
    assert_eq!(&hello[9..11], [0x03, 0x02], "offering TLS 1.1");
}

#[test]
fn poll_gives_up_at_its_limit_and_returns_what_it_found() {
    assert_eq!(poll(Duration::from_millis(50), || None::<()>), None);
    let mut calls = 0;
    assert_eq!(
        poll(Duration::from_secs(5), || {
            calls += 1;
            (calls == 3).then_some(calls)
        }),
        Some(3)
    );
}

#[tokio::test]
async fn eventually_is_true_once_the_check_holds() {
    let mut calls = 0;
    assert!(
        eventually(|| {
            calls += 1;
            let done = calls >= 2;
            async move { done }
        })
        .await
    );
}

/// The raw client and the recording upstream, end to end through streamgate:
/// the upstream sees the bytes streamgate sent, the client the bytes it got.
#[test]
fn raw_client_and_recording_upstream_see_the_wire() {
    let upstream = RecordingUpstream::start();
    let gate = Streamgate::start(&default_config(upstream.addr));
    let mut client = RawClient::connect(gate.port);
    client.send("GET /p?x=1 HTTP/1.1\r\nHost: app.local\r\nX-Custom: one\r\n\r\n");
    let response = client.response();
    assert_eq!(response.status, 200, "{}", response.head);
    assert_eq!(response.body_text(), "ok");
    assert!(response.header("x-request-id").is_some());
    let request = upstream.last();
    assert_eq!(request.request_line(), "GET /p?x=1 HTTP/1.1");
    assert_eq!(request.headers("x-custom"), ["one"]);
    assert!(request
        .header_names()
        .iter()
        .any(|n| n.eq_ignore_ascii_case("x-forwarded-for")));

    client.send("POST /upload HTTP/1.1\r\nHost: app.local\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    assert_eq!(client.response().status, 200);
    assert_eq!(upstream.last().body, b"abc");
    assert_eq!(
        upstream.requests().len(),
        2,
        "both on one kept-alive connection"
    );
}

/// The gRPC app and client of `tests/grpc.rs`, with nothing between them:
/// every call shape works, and statuses, messages and metadata arrive as the
/// app sent them, so a difference through streamgate is streamgate's.
#[tokio::test(flavor = "multi_thread")]
async fn grpc_client_and_app_speak_every_call_shape_directly() {
    let app = start_grpc_app().await;
    let mut client = GrpcClient::connect(app.addr.port()).await;
    let hello = EchoRequest {
        message: "hello".into(),
        ..EchoRequest::default()
    };

    let response = client
        .unary_with(
            "Unary",
            hello.clone(),
            &[("x-client-meta", "from the client")],
        )
        .await
        .unwrap();
    assert_eq!(response.metadata().get("x-server-meta").unwrap(), "unary");
    assert_eq!(response.get_ref().message, "hello");
    assert_eq!(response.get_ref().client_meta, "from the client");

    let outcome = client
        .server_stream(EchoRequest {
            count: 3,
            ..hello.clone()
        })
        .await;
    let texts: Vec<&str> = outcome.replies.iter().map(|r| r.message.as_str()).collect();
    assert_eq!(texts, ["hello 0", "hello 1", "hello 2"]);
    assert!(outcome.end.is_ok());

    let ended = client
        .server_stream(EchoRequest {
            count: 2,
            code: Code::Aborted as i32,
            ..hello.clone()
        })
        .await;
    assert_eq!(ended.replies.len(), 2);
    let status = ended.end.unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(status.metadata().get(DETAIL_KEY).unwrap(), "from the app");

    let values = (1..=4).map(|value| EchoRequest {
        value,
        ..EchoRequest::default()
    });
    let summed = client.client_stream(values.collect()).await.unwrap();
    assert_eq!((summed.get_ref().index, summed.get_ref().sum), (4, 10));

    let mut bidi = client.bidi().await.unwrap();
    assert_eq!(bidi.exchange(hello.clone()).await.message, "echo: hello");
    assert_eq!(bidi.exchange(hello.clone()).await.index, 1);
    assert!(bidi.finish().await.is_ok());

    let failed = client
        .unary(
            "Fail",
            EchoRequest {
                message: "no such thing: ü %".into(),
                code: Code::NotFound as i32,
                ..EchoRequest::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(failed.code(), Code::NotFound);
    assert_eq!(failed.message(), "no such thing: ü %");
    assert_eq!(failed.metadata().get(DETAIL_KEY).unwrap(), "from the app");

    let missing = client.unary_at("/test.Echo/Nope", hello).await.unwrap_err();
    assert_eq!(missing.code(), Code::Unimplemented);
}

/// The app does not enforce `grpc-timeout` and the client only sends it: a
/// deadline test through streamgate cannot pass unless streamgate ends the
/// call.
#[tokio::test(flavor = "multi_thread")]
async fn the_grpc_app_and_client_leave_deadlines_to_the_proxy() {
    let app = start_grpc_app().await;
    let mut client = GrpcClient::connect(app.addr.port())
        .await
        .with_timeout(Duration::from_millis(100));
    let started = std::time::Instant::now();
    let slow = EchoRequest {
        message: "late".into(),
        delay_ms: 400,
        ..EchoRequest::default()
    };
    let reply = client.unary("Slow", slow).await.unwrap();
    assert_eq!(reply.get_ref().message, "late");
    assert!(started.elapsed() >= Duration::from_millis(400));
    let echoed = client.unary("Unary", EchoRequest::default()).await.unwrap();
    assert_eq!(echoed.get_ref().grpc_timeout, "100000u");
}

/// The raw call sees what the gRPC client hides: the HTTP status, a status in
/// trailers after a message, and a trailers-only answer.
#[tokio::test(flavor = "multi_thread")]
async fn raw_grpc_call_sees_status_in_trailers_and_trailers_only() {
    let app = start_grpc_app().await;
    let hello = EchoRequest {
        message: "hello".into(),
        ..EchoRequest::default()
    };
    let answer = raw_grpc_call(app.addr.port(), "/test.Echo/Unary", &hello).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.content_type(), "application/grpc");
    assert_eq!(answer.headers.get("grpc-status"), None);
    assert_eq!(answer.grpc_status(), Some(0));
    assert_eq!(answer.body.len(), 5 + 7, "one frame holding \"hello\"");

    let fail = EchoRequest {
        code: Code::PermissionDenied as i32,
        ..hello
    };
    let answer = raw_grpc_call(app.addr.port(), "/test.Echo/Fail", &fail).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers.get("grpc-status").unwrap(), "7");
    assert_eq!(answer.grpc_field("grpc-message").as_deref(), Some("hello"));
    assert!(answer.body.is_empty());
}
