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
