//! Paths: one request, one meaning, through the real server. A route table
//! that blocks `/internal/` with a 403 cannot be walked around by another
//! spelling of the same path, and the app receives exactly the path that was
//! matched. Requests are written as raw bytes: an HTTP client library would
//! normalize the very spellings under test.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const ROUTES: &str = "routes:
  - { match: { path_prefix: /internal/ }, direct_response: { status: 403, body: blocked } }
  - { match: { method: POST, path: /api/tokens/user }, mint: user_token }
  - { match: { method: POST, path: /api/tokens/call }, mint: call_token }
  - { match: { path_prefix: / }, upstream: app }";

const HEADER_MODE: &str = "identity:\n  mode: header\n  header: { user: X-Forwarded-User }";

/// Streamgate with [`ROUTES`] in front of `app`, plus `extra` YAML.
fn gate(app: &RecordingUpstream, extra: &str) -> Streamgate {
    Streamgate::start(&config_with(app.addr, &format!("{ROUTES}\n{extra}")))
}

/// `method target` with `headers` and `body`, on a connection of its own.
fn send(gate: &Streamgate, method: &str, target: &[u8], headers: &str, body: &str) -> RawResponse {
    let mut request = format!("{method} ").into_bytes();
    request.extend_from_slice(target);
    request.extend_from_slice(
        format!(
            " HTTP/1.1\r\nHost: app.test\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    RawClient::connect(gate.port).send(request).response()
}

fn get(gate: &Streamgate, target: &[u8]) -> RawResponse {
    send(gate, "GET", target, "", "")
}

fn show(target: &[u8]) -> String {
    String::from_utf8_lossy(target).into_owned()
}

/// The error envelope's message of a streamgate answer.
fn error_of(response: &RawResponse) -> String {
    let json: Value = serde_json::from_slice(&response.body)
        .unwrap_or_else(|e| panic!("a JSON answer: {e}: {}", response.head));
    assert_eq!(json["success"], json!(false), "{json}");
    json["error"]
        .as_str()
        .expect("an error message")
        .to_string()
}

/// GETs each target and checks that the app received the expected target.
fn assert_received(gate: &Streamgate, app: &RecordingUpstream, cases: &[(&[u8], &str)]) {
    for (sent, expected) in cases {
        let before = app.requests().len();
        let response = get(gate, sent);
        assert_eq!(response.status, 200, "{}: {}", show(sent), response.head);
        let requests = app.requests();
        assert_eq!(
            requests.len(),
            before + 1,
            "{} reached the app once",
            show(sent)
        );
        assert_eq!(requests[before].target(), *expected, "{}", show(sent));
    }
}

/// GETs each target and checks its status, and that the app received none.
fn assert_answered(gate: &Streamgate, app: &RecordingUpstream, cases: &[(&[u8], u16)]) {
    for (sent, status) in cases {
        let response = get(gate, sent);
        assert_eq!(
            response.status,
            *status,
            "{}: {}",
            show(sent),
            response.head
        );
        if *status == 400 {
            assert!(
                error_of(&response).starts_with("Bad request: "),
                "{}",
                show(sent)
            );
        }
    }
    assert_eq!(app.requests().len(), 0, "{:?}", app.requests());
}

#[test]
fn no_spelling_of_a_blocked_path_reaches_the_app() {
    let app = RecordingUpstream::start();
    let gate = gate(&app, "");
    assert_answered(
        &gate,
        &app,
        &[
            (b"/internal/secret", 403),
            (b"/internal/secret?x=1", 403),
            (b"//internal/secret", 403),
            (b"///internal//secret", 403),
            (b"/%69nternal/secret", 403),
            (b"/%69%6E%74%65%72%6e%61%6c/secret", 403),
            (b"/public/../internal/secret", 403),
            (b"/./internal/secret", 403),
            (b"/internal/./secret", 403),
            (b"/internal/.", 403),
            (b"/../internal/secret", 403),
            (b"/a/b/../../internal/secret", 403),
            (b"/%2e%2e/internal/secret", 403),
            (b"/%2E/internal/secret", 403),
            (b"/public/.%2E/internal/secret", 403),
            (b"/pub%6Cic/%2e%2E/%69nternal/secret", 403),
            (b"/public//../internal/secret", 403),
            (b"/internal%2Fsecret", 400),
            (b"/internal%2fsecret", 400),
            (b"/public/..%2Finternal/secret", 400),
            (b"/%2e%2e%2finternal/secret", 400),
            (b"/internal%5Csecret", 400),
            (b"/internal%5csecret", 400),
            (b"/internal\\secret", 400),
            (b"/public\\..\\internal\\secret", 400),
            (b"/internal%00/secret", 400),
            (b"/%00/../internal/secret", 400),
            (b"/internal\0/secret", 400),
            (b"/internal/%zz", 400),
            (b"/internal/%4", 400),
            (b"/%6", 400),
            // Path parameters, which servlet containers drop before they read
            // the path.
            (b"/internal;x/secret", 403),
            (b"/internal;jsessionid=1/secret", 403),
            (b"/%69nternal;/secret", 403),
            (b"/public/..;/internal/secret", 400),
            (b"/public/%2e%2e;x/internal/secret", 400),
            (b"/.;/internal/secret", 400),
        ],
    );
}

#[test]
fn a_path_that_is_not_utf8_is_refused_before_routing() {
    // By Pingora's parser (an empty 400): were it let through, its Uri would
    // hold a lossy rendering, and the replacement characters would be routed.
    let app = RecordingUpstream::start();
    let gate = gate(&app, "");
    for sent in [
        &b"/internal\xff/secret"[..],
        b"/caf\xe9",
        b"/a/..\xc0\xaf/internal/x",
    ] {
        assert_eq!(get(&gate, sent).status, 400, "{}", show(sent));
    }
    assert_eq!(app.requests().len(), 0, "{:?}", app.requests());
}

#[test]
fn an_absolute_form_target_is_held_to_the_same_rules() {
    let app = RecordingUpstream::start();
    let gate = gate(&app, "");
    for target in [
        &b"http://app.test//internal/secret"[..],
        b"http://app.test/%69nternal/secret",
        b"http://app.test/public/../internal/secret",
        b"http://app.test/internal%2Fsecret",
    ] {
        let status = get(&gate, target).status;
        assert!(matches!(status, 400 | 403), "{}: {status}", show(target));
    }
    assert_eq!(app.requests().len(), 0, "{:?}", app.requests());
}

#[test]
fn refusals_name_their_reason() {
    let app = RecordingUpstream::start();
    let gate = gate(&app, "");
    for (sent, message) in [
        (
            &b"/a%2Fb"[..],
            "Bad request: the path contains an encoded slash (%2F)",
        ),
        (
            b"/a%5cb",
            "Bad request: the path contains an encoded backslash (%5C)",
        ),
        (b"/a\\b", "Bad request: the path contains a backslash"),
        (b"/a%00b", "Bad request: the path contains a NUL (%00)"),
        (
            b"/a%zz",
            "Bad request: the path contains a '%' that is not followed by two hex digits",
        ),
        (
            b"/a/..;/b",
            "Bad request: the path contains a dot segment with parameters (such as '..;')",
        ),
    ] {
        let response = get(&gate, sent);
        assert_eq!(response.status, 400, "{}", show(sent));
        assert_eq!(
            response.header("content-type").as_deref(),
            Some("application/json"),
            "{}: {}",
            show(sent),
            response.head
        );
        assert_eq!(error_of(&response), message, "{}", show(sent));
    }
    assert_eq!(app.requests().len(), 0);
}

#[test]
fn the_app_receives_the_path_that_was_matched_and_the_query_as_sent() {
    let app = RecordingUpstream::start();
    let gate = gate(&app, "");
    assert_received(
        &gate,
        &app,
        &[
            (b"/a/b", "/a/b"),
            (b"/a/%7Euser/../b//c?x=%2F", "/a/b/c?x=%2F"),
            (b"//a/./b/?q=/../%2e%2e//%7E&r", "/a/b/?q=/../%2e%2e//%7E&r"),
            (b"/%41%62%63/%7euser/%2D%2e%5F", "/Abc/~user/-._"),
            (b"/a%3bb%3Fc%25", "/a%3Bb%3Fc%25"),
            // Parameters go to the app as sent (a `;jsessionid=` session).
            (b"/app/;jsessionid=AB12?x=1", "/app/;jsessionid=AB12?x=1"),
            (b"/a;v=1/b", "/a;v=1/b"),
            (b"/%252e%252e/x", "/%252e%252e/x"),
            (b"/caf%c3%a9", "/caf%C3%A9"),
            (b"/caf\xc3\xa9", "/caf%C3%A9"),
            (b"/a{b}|c", "/a%7Bb%7D%7Cc"),
            (b"/../x", "/x"),
            (b"/../../", "/"),
            (b"/public/.", "/public/"),
            (b"/public/..", "/"),
            (b"/a/.../..b/c.", "/a/.../..b/c."),
            (b"/internal", "/internal"),
            (b"/internal/../public", "/public"),
            (b"//", "/"),
        ],
    );
}

#[test]
fn keep_unchanged_routes_and_forwards_slash_escapes_as_sent() {
    let app = RecordingUpstream::start();
    let gate = gate(
        &app,
        "http:\n  path_with_escaped_slashes_action: keep_unchanged",
    );
    assert_received(
        &gate,
        &app,
        &[
            // One segment, `internal/secret`, for routing and for the app.
            (b"/internal%2Fsecret", "/internal%2Fsecret"),
            (b"/internal%2fsecret", "/internal%2Fsecret"),
            (b"/a%5cb", "/a%5Cb"),
            (b"/a\\b", "/a\\b"),
            (b"/a/..%2Fb/%7E", "/a/..%2Fb/~"),
        ],
    );
    assert_eq!(get(&gate, b"/a%00").status, 400, "a NUL is always refused");
    assert_eq!(get(&gate, b"/x/../internal/a%2Fb").status, 403);
}

#[test]
fn unescape_and_forward_reads_every_slash_spelling_as_a_separator() {
    let app = RecordingUpstream::start();
    let gate = gate(
        &app,
        "http:\n  path_with_escaped_slashes_action: unescape_and_forward",
    );
    for blocked in [
        &b"/internal%2Fsecret"[..],
        b"/internal%5csecret",
        b"/internal\\secret",
        b"/public/..%2Finternal/secret",
        b"/public\\..\\internal\\secret",
    ] {
        assert_eq!(get(&gate, blocked).status, 403, "{}", show(blocked));
    }
    assert_eq!(app.requests().len(), 0);
    assert_received(
        &gate,
        &app,
        &[(b"/a%2Fb%5cc\\d%2F%2Fe?s=%2F", "/a/b/c/d/e?s=%2F")],
    );
    assert_eq!(get(&gate, b"/a%00").status, 400, "a NUL is always refused");
}

#[test]
fn merge_slashes_off_keeps_empty_segments_for_routing_and_the_app() {
    let app = RecordingUpstream::start();
    let gate = gate(&app, "http:\n  merge_slashes: false");
    assert_received(
        &gate,
        &app,
        &[
            (b"/a//b/", "/a//b/"),
            (b"/a/./b//%7E", "/a/b//~"),
            // `//internal/` is not `/internal/` to routing, nor to the app.
            (b"//internal/secret", "//internal/secret"),
        ],
    );
    assert_eq!(get(&gate, b"/public/../internal/secret").status, 403);
}

#[test]
fn normalize_path_off_matches_and_forwards_the_path_as_sent() {
    let app = RecordingUpstream::start();
    let gate = gate(&app, "http:\n  normalize_path: false");
    assert_received(
        &gate,
        &app,
        &[
            (b"/a/../%69/%7e/%zz", "/a/../%69/%7e/%zz"),
            // The risk it takes: an app that resolves `..` serves /internal/secret.
            (b"/public/../internal/secret", "/public/../internal/secret"),
            // merge_slashes is its own key.
            (b"//a//b", "/a/b"),
        ],
    );
    assert_eq!(
        get(&gate, b"/a%2Fb").status,
        400,
        "slash escapes: their own key"
    );
    assert_eq!(get(&gate, b"/a%00").status, 400);

    let app = RecordingUpstream::start();
    let as_sent = "http:\n  normalize_path: false\n  merge_slashes: false\n  path_with_escaped_slashes_action: keep_unchanged";
    let gate = self::gate(&app, as_sent);
    assert_received(&gate, &app, &[(b"//a/./%2f/\\?q", "//a/./%2f/\\?q")]);
}

#[test]
fn token_routes_match_the_normalized_path() {
    let app = RecordingUpstream::start();
    let gate = gate(&app, "");
    let json = "Content-Type: application/json\r\n";
    for target in [
        &b"//api/tokens/user"[..],
        b"/api/./tokens/user",
        b"/api/tokens/%75ser",
        b"/x/../api//tokens/user",
    ] {
        let response = send(&gate, "POST", target, json, r#"{"userId":"john"}"#);
        assert_eq!(
            response.status,
            200,
            "{}: {}",
            show(target),
            response.body_text()
        );
        let answer: Value = serde_json::from_slice(&response.body).expect("JSON");
        assert_eq!(minted_user(&answer), "john");
    }
    assert_eq!(app.requests().len(), 0, "token requests are never proxied");
}

#[test]
fn a_token_route_spelled_otherwise_asks_for_the_same_identity() {
    let app = RecordingUpstream::start();
    let gate = gate(&app, HEADER_MODE);
    let json = "Content-Type: application/json\r\n";
    let alice = "Content-Type: application/json\r\nX-Forwarded-User: alice\r\n";
    for target in [&b"//api/tokens/user"[..], b"/api/%74okens/./user"] {
        let refused = send(&gate, "POST", target, json, "{}");
        assert_eq!(
            refused.status,
            401,
            "{}: {}",
            show(target),
            refused.body_text()
        );
        let minted = send(&gate, "POST", target, alice, "{}");
        assert_eq!(
            minted.status,
            200,
            "{}: {}",
            show(target),
            minted.body_text()
        );
        let answer: Value = serde_json::from_slice(&minted.body).expect("JSON");
        assert_eq!(minted_user(&answer), "alice");
    }
    assert_eq!(app.requests().len(), 0);
}

#[test]
fn cors_preflights_find_token_routes_by_the_normalized_path() {
    let app = RecordingUpstream::start();
    let gate = gate(&app, "cors:\n  allowed_origins: [\"https://app.example\"]");
    let preflight = "Origin: https://app.example\r\nAccess-Control-Request-Method: POST\r\n";
    let response = send(&gate, "OPTIONS", b"//api/./tokens/user", preflight, "");
    assert_eq!(response.status, 204, "{}", response.head);
    assert_eq!(
        response.header("access-control-allow-origin").as_deref(),
        Some("https://app.example")
    );
    assert_eq!(app.requests().len(), 0);
}

#[test]
fn the_access_log_has_the_path_as_sent() {
    let app = RecordingUpstream::start();
    let gate = gate(&app, "");
    assert_eq!(get(&gate, b"/%69nternal/secret").status, 403);
    assert_eq!(get(&gate, b"/a%2Fb").status, 400);
    assert_eq!(get(&gate, b"/x/../y").status, 200);
    assert_eq!(app.last().target(), "/y");
    // Each line is written just after its answer: not necessarily in order.
    let lines = poll(Duration::from_secs(5), || {
        let lines: Vec<Value> = gate
            .stdout()
            .lines()
            .map(|l| serde_json::from_str(l).expect("every line is JSON"))
            .collect();
        (lines.len() >= 3).then_some(lines)
    })
    .expect("three access-log lines");
    let route_of = |path: &str| {
        lines
            .iter()
            .find(|line| line["path"] == path)
            .map(|line| line["route"].clone())
    };
    assert_eq!(
        route_of("/%69nternal/secret"),
        Some(json!("direct_response"))
    );
    assert_eq!(route_of("/a%2Fb"), Some(json!("path_refused")));
    assert_eq!(route_of("/x/../y"), Some(json!("proxy")));
}

/// Percent-encoding can make the normalized path longer than any request
/// target the app could be sent: that is a 414 naming it, never a 500.
#[test]
fn a_path_that_normalizes_past_the_target_limit_is_414() {
    let app = RecordingUpstream::start();
    let gate = gate(&app, "");
    // 21,900 raw `"` fit in the 32 KiB head but become 65,700 bytes as %22.
    let mut target = b"/".to_vec();
    target.extend(std::iter::repeat_n(b'"', 21_900));
    let response = get(&gate, &target);
    assert_eq!(response.status, 414, "{}", response.head);
    assert!(error_of(&response).starts_with("URI too long"));
    let mut fits = b"/".to_vec();
    fits.extend(std::iter::repeat_n(b'"', 1_000));
    assert_eq!(get(&gate, &fits).status, 200);
    assert_eq!(
        app.requests().len(),
        1,
        "only the one that fits reached the app"
    );
}
