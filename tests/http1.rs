//! HTTP/1.1 as RFC 9112 says, on the wire: requests written byte for byte by
//! a raw client, what streamgate answers, whether the connection still serves
//! a next request, and exactly what the app received.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const USER_TOKEN: &str =
    "POST /api/tokens/user HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n";
const ALICE: &str = r#"{"userId":"alice"}"#;

fn start() -> (RecordingUpstream, Streamgate) {
    let upstream = RecordingUpstream::start();
    let gate = Streamgate::start(&default_config(upstream.addr));
    (upstream, gate)
}

/// A new connection that has sent `request`, and the first answer to it.
fn exchange(gate: &Streamgate, request: impl AsRef<[u8]>) -> (RawClient, RawResponse) {
    let mut client = RawClient::connect(gate.port);
    let response = client.send(request).response();
    (client, response)
}

/// The error envelope streamgate writes: JSON, `success: false`, `error`.
fn error_message(response: &RawResponse) -> String {
    assert_eq!(
        response.header("content-type").as_deref(),
        Some("application/json"),
        "{}",
        response.head
    );
    let json: Value = serde_json::from_slice(&response.body).expect("JSON envelope");
    assert_eq!(json["success"], Value::Bool(false), "{json}");
    json["error"].as_str().expect("error message").to_string()
}

fn assert_refused(response: &RawResponse, status: u16, message: &str) {
    assert_eq!(response.status, status, "{}", response.head);
    assert_eq!(error_message(response), message);
}

/// The connection serves another request: the app answers it, and receives
/// exactly that request.
fn assert_usable(client: &mut RawClient, upstream: &RecordingUpstream) {
    client.send("GET /next HTTP/1.1\r\nHost: a\r\n\r\n");
    let next = client
        .response_within(Duration::from_secs(5))
        .expect("the connection serves a next request");
    assert_eq!(next.status, 200, "{}", next.head);
    assert_eq!(next.body_text(), "ok");
    assert_eq!(upstream.last().request_line(), "GET /next HTTP/1.1");
}

fn assert_closed(client: &mut RawClient, response: &RawResponse) {
    assert_eq!(
        response.header("connection").as_deref(),
        Some("close"),
        "{}",
        response.head
    );
    assert!(
        client.closed_within(Duration::from_secs(2)),
        "connection left open"
    );
}

/// `request` is refused with `status`, the connection closed, and the app
/// receives nothing.
fn assert_refused_and_closed(
    gate: &Streamgate,
    upstream: &RecordingUpstream,
    request: &str,
    status: u16,
) -> RawResponse {
    let before = upstream.requests().len();
    let (mut client, response) = exchange(gate, request);
    assert_eq!(response.status, status, "{request:?}: {}", response.head);
    assert_closed(&mut client, &response);
    assert_eq!(
        upstream.requests().len(),
        before,
        "{request:?} reached the app"
    );
    response
}

// Item 5: Host (RFC 9112 §3.2).

#[test]
fn http_1_1_without_exactly_one_valid_host_is_refused() {
    let (upstream, gate) = start();
    let missing = assert_refused_and_closed(&gate, &upstream, "GET /p HTTP/1.1\r\n\r\n", 400);
    assert_eq!(
        error_message(&missing),
        "Bad request: an HTTP/1.1 request needs a Host header"
    );
    let empty =
        assert_refused_and_closed(&gate, &upstream, "GET /p HTTP/1.1\r\nHost:\r\n\r\n", 400);
    assert_eq!(
        error_message(&empty),
        "Bad request: the Host header is empty"
    );
    for host in ["a b", "a:b", "a:99999"] {
        let request = format!("GET /p HTTP/1.1\r\nHost: {host}\r\n\r\n");
        let invalid = assert_refused_and_closed(&gate, &upstream, &request, 400);
        assert_eq!(
            error_message(&invalid),
            "Bad request: the Host header is not a valid host[:port]"
        );
    }
    // Refused by Pingora while it reads the head, with its own empty 400.
    for request in [
        "GET /p HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET /p HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
        "GET /p HTTP/1.1\r\nHost: user@a\r\n\r\n",
    ] {
        assert_refused_and_closed(&gate, &upstream, request, 400);
    }
    // A POST with a body refused for its Host closes before reading it.
    assert_refused_and_closed(
        &gate,
        &upstream,
        "POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
        400,
    );
}

#[test]
fn http_1_0_without_host_reaches_the_app_with_the_address_it_was_sent_to() {
    let (upstream, gate) = start();
    let (mut client, response) = exchange(&gate, "GET /p HTTP/1.0\r\n\r\n");
    assert_eq!(response.status, 200, "{}", response.head);
    // HTTP/1.0 closes unless asked otherwise.
    assert_closed(&mut client, &response);
    let received = upstream.last();
    assert_eq!(received.target(), "/p");
    assert_eq!(
        received.headers("host"),
        [format!("127.0.0.1:{}", gate.port)]
    );

    let (mut client, response) =
        exchange(&gate, "GET /q HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(response.status, 200, "{}", response.head);
    assert_eq!(upstream.last().target(), "/q");
    assert_usable(&mut client, &upstream);
}

// Item 6: absolute-form (RFC 9112 §3.2.2).

#[test]
fn absolute_form_reaches_the_app_in_origin_form() {
    let (upstream, gate) = start();
    for (target, origin) in [
        ("http://x.test/p?x=1", "/p?x=1"),
        ("http://x.test", "/"),
        ("http://x.test?x=1", "/?x=1"),
    ] {
        let (mut client, response) = exchange(
            &gate,
            format!("GET {target} HTTP/1.1\r\nHost: x.test\r\n\r\n"),
        );
        assert_eq!(response.status, 200, "{target}: {}", response.head);
        let received = upstream.last();
        assert_eq!(received.request_line(), format!("GET {origin} HTTP/1.1"));
        assert_eq!(received.headers("host"), ["x.test"]);
        assert_usable(&mut client, &upstream);
    }
    // HTTP/1.0 may leave Host out: the target's authority becomes the Host.
    let (_, response) = exchange(&gate, "GET http://x.test:8080/p HTTP/1.0\r\n\r\n");
    assert_eq!(response.status, 200, "{}", response.head);
    let received = upstream.last();
    assert_eq!(received.request_line(), "GET /p HTTP/1.1");
    assert_eq!(received.headers("host"), ["x.test:8080"]);
}

#[test]
fn absolute_form_routes_on_its_path_and_must_agree_with_host() {
    let (upstream, gate) = start();
    // A token route, named in absolute-form: answered by streamgate.
    let request = format!(
        "POST http://x.test/api/tokens/user HTTP/1.1\r\nHost: x.test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{ALICE}",
        ALICE.len()
    );
    let (mut client, response) = exchange(&gate, request);
    assert_eq!(response.status, 200, "{}", response.head);
    assert!(response.body_text().contains(r#""userId":"alice""#));
    assert!(upstream.requests().is_empty(), "minted, not forwarded");
    assert_usable(&mut client, &upstream);

    let scheme = assert_refused_and_closed(
        &gate,
        &upstream,
        "GET ftp://x.test/p HTTP/1.1\r\nHost: x.test\r\n\r\n",
        400,
    );
    assert_eq!(
        error_message(&scheme),
        "Bad request: an absolute request target must be an http or https URI"
    );
    let no_host = assert_refused_and_closed(
        &gate,
        &upstream,
        "GET http://x.test/p HTTP/1.1\r\n\r\n",
        400,
    );
    assert_eq!(
        error_message(&no_host),
        "Bad request: an HTTP/1.1 request needs a Host header"
    );
    // Two authorities that disagree: refused (by Pingora, before routing).
    assert_refused_and_closed(
        &gate,
        &upstream,
        "GET http://x.test/p HTTP/1.1\r\nHost: y.test\r\n\r\n",
        400,
    );
}

// Item 7: Content-Length (RFC 9110 §8.6, RFC 9112 §6.3).

#[test]
fn a_repeated_equal_content_length_is_forwarded_once() {
    let (upstream, gate) = start();
    for lengths in [
        "Content-Length: 5, 5\r\n",
        "Content-Length: 5\r\nContent-Length: 5\r\n",
    ] {
        let (mut client, response) = exchange(
            &gate,
            format!("POST /p HTTP/1.1\r\nHost: a\r\n{lengths}\r\nhello"),
        );
        assert_eq!(response.status, 200, "{lengths:?}: {}", response.head);
        let received = upstream.last();
        assert_eq!(received.headers("content-length"), ["5"]);
        assert_eq!(received.body, b"hello");
        assert_usable(&mut client, &upstream);
    }
    // The token route reads it as one value too.
    let length = ALICE.len();
    let (mut client, response) = exchange(
        &gate,
        format!("{USER_TOKEN}Content-Length: {length}, {length}\r\n\r\n{ALICE}"),
    );
    assert_eq!(response.status, 200, "{}", response.head);
    assert_usable(&mut client, &upstream);
}

#[test]
fn a_content_length_that_is_not_one_number_is_refused() {
    let (upstream, gate) = start();
    // Refused by Pingora while it reads the head.
    for length in [
        "5, 6",
        "5\r\nContent-Length: 6",
        "+5",
        "-5",
        "0x5",
        "5 5",
        "99999999999999999999999",
    ] {
        let request =
            format!("POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: {length}\r\n\r\nhello");
        assert_refused_and_closed(&gate, &upstream, &request, 400);
    }
    // Fits 64 bits unsigned, not the signed length most apps hold it in.
    let huge = assert_refused_and_closed(
        &gate,
        &upstream,
        "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\nhello",
        400,
    );
    assert_eq!(
        error_message(&huge),
        "Bad request: Content-Length must be a whole number of bytes below 2^63"
    );
}

#[test]
fn content_length_with_transfer_encoding_is_refused() {
    let (upstream, gate) = start();
    for headers in [
        "Content-Length: 5\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: chunked\r\ncontent-length: 5",
    ] {
        let request =
            format!("POST /p HTTP/1.1\r\nHost: a\r\n{headers}\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
        let response = assert_refused_and_closed(&gate, &upstream, &request, 400);
        assert_eq!(
            error_message(&response),
            "Bad request: Content-Length and Transfer-Encoding together"
        );
    }
    let token = format!(
        "{USER_TOKEN}Content-Length: 22\r\nTransfer-Encoding: chunked\r\n\r\n12\r\n{ALICE}\r\n0\r\n\r\n"
    );
    assert_refused_and_closed(&gate, &upstream, &token, 400);
}

// Item 8: transfer codings (RFC 9112 §6.1, §6.3, §7).

#[test]
fn transfer_codings_other_than_chunked_are_not_implemented() {
    let (upstream, gate) = start();
    for (codings, named) in [
        ("gzip, chunked", "gzip"),
        ("x-unknown, chunked", "x-unknown"),
        ("identity, chunked", "identity"),
        ("gzip\r\nTransfer-Encoding: chunked", "gzip"),
    ] {
        let request = format!(
            "POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {codings}\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        );
        let response = assert_refused_and_closed(&gate, &upstream, &request, 501);
        assert_eq!(
            error_message(&response),
            format!(
                "Not implemented: transfer coding \"{named}\" (streamgate decodes only chunked)"
            )
        );
    }
    let token =
        format!("{USER_TOKEN}Transfer-Encoding: gzip, chunked\r\n\r\n12\r\n{ALICE}\r\n0\r\n\r\n");
    assert_refused_and_closed(&gate, &upstream, &token, 501);
}

#[test]
fn transfer_codings_that_do_not_end_in_one_chunked_are_malformed() {
    let (upstream, gate) = start();
    let twice = assert_refused_and_closed(
        &gate,
        &upstream,
        "POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        400,
    );
    assert_eq!(
        error_message(&twice),
        "Bad request: Transfer-Encoding must end with chunked, applied once"
    );
    // Refused by Pingora while it reads the head.
    for request in [
        "POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\nhello",
        "POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nhello",
        "POST /p HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ] {
        assert_refused_and_closed(&gate, &upstream, request, 400);
    }
}

#[test]
fn chunked_bodies_are_forwarded_in_any_letter_case() {
    let (upstream, gate) = start();
    for coding in ["chunked", "Chunked"] {
        let (mut client, response) = exchange(
            &gate,
            format!("POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {coding}\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        );
        assert_eq!(response.status, 200, "{}", response.head);
        let received = upstream.last();
        assert_eq!(received.body, b"hello");
        assert!(received.headers("content-length").is_empty());
        assert_usable(&mut client, &upstream);
    }
}

// Item 9: malformed chunked bodies (RFC 9112 §7.1).

/// Chunked bodies that break §7.1, each with `{ALICE}` (0x12 bytes) in it.
fn malformed_chunked_bodies() -> Vec<(&'static str, String)> {
    vec![
        ("bad chunk size", format!("zz\r\n{ALICE}\r\n0\r\n\r\n")),
        ("bare LF line endings", format!("12\n{ALICE}\n0\n\n")),
        (
            "missing CRLF after data",
            format!("12\r\n{ALICE}X0\r\n\r\n"),
        ),
        (
            "chunk size overflow",
            format!("FFFFFFFFFFFFFFFFFF\r\n{ALICE}\r\n0\r\n\r\n"),
        ),
        (
            "bad second chunk",
            format!("12\r\n{ALICE}\r\n-1\r\nx\r\n0\r\n\r\n"),
        ),
    ]
}

/// Sends every malformed chunked body after `head` (its own connection
/// each): each is a 400 with the envelope, and the connection is closed.
fn assert_malformed_chunked_refused(gate: &Streamgate, head: &str) {
    for (fault, body) in malformed_chunked_bodies() {
        let (mut client, response) = exchange(
            gate,
            format!("{head}Transfer-Encoding: chunked\r\n\r\n{body}"),
        );
        assert_eq!(response.status, 400, "{fault}: {}", response.head);
        assert_eq!(
            error_message(&response),
            "Bad request: the request could not be read",
            "{fault}"
        );
        assert_closed(&mut client, &response);
    }
}

#[test]
fn malformed_chunked_bodies_on_token_routes_are_400() {
    let (upstream, gate) = start();
    assert_malformed_chunked_refused(&gate, USER_TOKEN);
    assert!(upstream.requests().is_empty());
}

#[test]
fn malformed_chunked_bodies_never_reach_the_app_as_a_request() {
    let (upstream, gate) = start();
    assert_malformed_chunked_refused(&gate, "POST /upload HTTP/1.1\r\nHost: a\r\n");
    // The app may have seen a head and part of a body, never a whole request.
    std::thread::sleep(Duration::from_millis(200));
    assert!(upstream.requests().is_empty(), "{:?}", upstream.requests());
}

// Item 10: pipelining (RFC 9112 §9.3.2).

#[test]
fn pipelined_proxied_requests_are_answered_in_order() {
    let (upstream, gate) = start();
    let mut client = RawClient::connect(gate.port);
    client.send(
        "GET /a HTTP/1.1\r\nHost: a\r\nX-Request-Id: r1\r\n\r\n\
         POST /b HTTP/1.1\r\nHost: a\r\nX-Request-Id: r2\r\nContent-Length: 5\r\n\r\nhello\
         GET /c HTTP/1.1\r\nHost: a\r\nX-Request-Id: r3\r\n\r\n",
    );
    for id in ["r1", "r2", "r3"] {
        let response = client.response();
        assert_eq!(response.status, 200, "{id}: {}", response.head);
        assert_eq!(response.header("x-request-id").as_deref(), Some(id));
        assert_eq!(response.header("connection").as_deref(), Some("keep-alive"));
    }
    let received = upstream.requests();
    let targets: Vec<&str> = received.iter().map(|r| r.target()).collect();
    assert_eq!(targets, ["/a", "/b", "/c"]);
    assert_eq!(received[1].body, b"hello");
    assert!(received[0].body.is_empty() && received[2].body.is_empty());
    assert_usable(&mut client, &upstream);
}

#[test]
fn pipelined_token_requests_are_answered_in_order() {
    let (upstream, gate) = start();
    let bob = r#"{"userId":"bob"}"#;
    let mut client = RawClient::connect(gate.port);
    client.send(format!(
        "{USER_TOKEN}Content-Length: {}\r\n\r\n{ALICE}{USER_TOKEN}Content-Length: {}\r\n\r\n{bob}GET /after HTTP/1.1\r\nHost: a\r\n\r\n",
        ALICE.len(),
        bob.len()
    ));
    for user in ["alice", "bob"] {
        let response = client.response();
        assert_eq!(response.status, 200, "{user}: {}", response.head);
        let json: Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(json["data"]["userId"], user);
    }
    let proxied = client.response();
    assert_eq!(proxied.status, 200, "{}", proxied.head);
    assert_eq!(proxied.body_text(), "ok");
    assert_eq!(upstream.last().target(), "/after");
    assert_usable(&mut client, &upstream);
}

#[test]
fn requests_pipelined_after_a_refused_one_are_not_served() {
    let (upstream, gate) = start();
    let mut client = RawClient::connect(gate.port);
    client.send("GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n");
    let refused = client.response();
    assert_eq!(refused.status, 400, "{}", refused.head);
    assert_closed(&mut client, &refused);
    assert!(upstream.requests().is_empty());
}

// Item 11: Expect (RFC 9110 §10.1.1).

/// Sends `head`, expects a 100 Continue, then sends `body` and returns the
/// final response.
fn continue_then(client: &mut RawClient, head: &str, body: &str) -> RawResponse {
    let interim = client.send(head).response();
    assert_eq!(interim.status, 100, "{}", interim.head);
    client.send(body).response()
}

#[test]
fn after_100_continue_a_token_route_keeps_the_connection() {
    let (upstream, gate) = start();
    let mut client = RawClient::connect(gate.port);
    let head = format!(
        "{USER_TOKEN}Expect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        ALICE.len()
    );
    for _ in 0..2 {
        let response = continue_then(&mut client, &head, ALICE);
        assert_eq!(response.status, 200, "{}", response.head);
        assert_eq!(response.header("connection").as_deref(), Some("keep-alive"));
    }
    assert_usable(&mut client, &upstream);
}

#[test]
fn after_100_continue_a_proxied_request_keeps_the_connection() {
    let (upstream, gate) = start();
    let mut client = RawClient::connect(gate.port);
    let head =
        "PUT /upload HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
    let response = continue_then(&mut client, head, "hello");
    assert_eq!(response.status, 200, "{}", response.head);
    assert_eq!(response.header("connection").as_deref(), Some("keep-alive"));
    let received = upstream.last();
    assert_eq!(received.headers("expect"), ["100-continue"]);
    assert_eq!(received.body, b"hello");
    assert_usable(&mut client, &upstream);
}

#[test]
fn http_1_0_expectations_of_100_continue_are_ignored() {
    let (upstream, gate) = start();
    let (mut client, response) = exchange(
        &gate,
        "POST /p HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert_eq!(
        response.status, 200,
        "no 100 to an HTTP/1.0 client: {}",
        response.head
    );
    let received = upstream.last();
    assert!(received.headers("expect").is_empty(), "{}", received.head);
    assert_eq!(received.body, b"hello");
    assert_usable(&mut client, &upstream);
}

#[test]
fn expectations_other_than_100_continue_get_417() {
    let (upstream, gate) = start();
    let message = "Expectation failed: streamgate meets only Expect: 100-continue";
    // Without a body the connection stays usable.
    let (mut client, response) = exchange(
        &gate,
        "GET /p HTTP/1.1\r\nHost: a\r\nExpect: x-fast\r\n\r\n",
    );
    assert_refused(&response, 417, message);
    assert_eq!(response.header("connection").as_deref(), Some("keep-alive"));
    assert!(upstream.requests().is_empty());
    assert_usable(&mut client, &upstream);
    // With a body left unread, it closes.
    for request in [
        "POST /p HTTP/1.1\r\nHost: a\r\nExpect: 100-continue, x-fast\r\nContent-Length: 5\r\n\r\nhello".to_string(),
        format!("{USER_TOKEN}Expect: x-fast\r\nContent-Length: {}\r\n\r\n{ALICE}", ALICE.len()),
    ] {
        let response = assert_refused_and_closed(&gate, &upstream, &request, 417);
        assert_eq!(error_message(&response), message);
    }
}

#[test]
fn token_refusals_before_the_body_close_without_asking_for_it() {
    let (upstream, gate) = start();
    // Expecting 100-continue: the refusal comes instead of the 100, and the
    // connection closes since the client may or may not send the body now.
    for (head, status) in [
        (
            "POST /api/tokens/user HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
            415,
        ),
        (
            "POST /api/tokens/user HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: 100000\r\n\r\n",
            413,
        ),
    ] {
        let (mut client, response) = exchange(&gate, head);
        assert_eq!(response.status, status, "{}", response.head);
        error_message(&response);
        assert_closed(&mut client, &response);
    }
    // Body already sent, and a request after it: the refusal arrives whole,
    // then the connection closes (the next request is not read as a body).
    let (mut client, response) = exchange(
        &gate,
        "POST /api/tokens/user HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhelloGET /next HTTP/1.1\r\nHost: a\r\n\r\n",
    );
    assert_eq!(response.status, 415, "{}", response.head);
    error_message(&response);
    assert_closed(&mut client, &response);
    assert!(upstream.requests().is_empty());
}
