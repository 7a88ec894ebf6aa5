//! What an untrusted client can make the app believe: nothing about who it is
//! (identity headers, in any spelling a CGI-style app reads as the same name),
//! where it connects from or to (`X-Forwarded-*`, `Forwarded`, `X-Real-IP`),
//! nor which rate-limit bucket it falls in (`X-Forwarded-For` read from the
//! right). Asserted on the bytes the app receives, header names as spelled on
//! the wire.
//!
//! The default test config trusts loopback, so the test client on 127.0.0.1
//! acts as the trusted proxy; [`UNTRUSTED`] makes it an untrusted peer.

mod common;

use common::*;
use serde_json::Value;

const UNTRUSTED: &str = "trusted_cidrs: [\"10.255.255.0/24\"]";
const HEADER_MODE: &str =
    "identity:\n  mode: header\n  header: { user: X-Forwarded-User, roles: X-Forwarded-Groups }";
const ALLOW_UNDERSCORES: &str = "http: { headers_with_underscores_action: allow }";
const REJECT_UNDERSCORES: &str = "http: { headers_with_underscores_action: reject_request }";

/// Spellings of the identity headers that WSGI, Rack and PHP read as
/// `HTTP_X_FORWARDED_USER` / `HTTP_X_FORWARDED_GROUPS`.
const IDENTITY_SPELLINGS: [&str; 10] = [
    "X-Forwarded-User",
    "X_Forwarded_User",
    "x_forwarded_user",
    "X-Forwarded_User",
    "X_FORWARDED-USER",
    "X.Forwarded.User",
    "X-Forwarded-Groups",
    "X_Forwarded_Groups",
    "x-forwarded_groups",
    "X_FORWARDED_GROUPS",
];

/// A header name as a CGI-style app sees it (every non-alphanumeric as `_`).
fn cgi(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn start(extra: &[&str]) -> (RecordingUpstream, Streamgate) {
    let upstream = RecordingUpstream::start();
    let gate = Streamgate::start(&config_with(upstream.addr, &extra.join("\n")));
    (upstream, gate)
}

/// `GET /page` with `headers` (`Name: value` lines); what the app received.
fn proxied(upstream: &RecordingUpstream, gate: &Streamgate, headers: &[&str]) -> RecordedRequest {
    let before = upstream.requests().len();
    let mut client = RawClient::connect(gate.port);
    client.send(format!(
        "GET /page HTTP/1.1\r\nHost: shop.example\r\n{}\r\n",
        lines(headers)
    ));
    let response = client.response();
    assert_eq!(response.status, 200, "{}", response.head);
    let requests = upstream.requests();
    assert_eq!(requests.len(), before + 1, "one request reached the app");
    requests[before].clone()
}

fn lines(headers: &[&str]) -> String {
    headers.iter().map(|h| format!("{h}\r\n")).collect()
}

/// `POST /api/tokens/user` with body `body` and `headers`: status and answer.
fn mint_raw(gate: &Streamgate, body: &str, headers: &[&str]) -> (u16, Value) {
    let mut client = RawClient::connect(gate.port);
    client.send(format!(
        "POST {USER_TOKEN_PATH} HTTP/1.1\r\nHost: shop.example\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n{body}",
        body.len(),
        lines(headers)
    ));
    let response = client.response();
    let answer = serde_json::from_slice(&response.body)
        .unwrap_or_else(|e| panic!("a JSON answer ({e}): {}", response.body_text()));
    (response.status, answer)
}

/// Header names the app received that it reads as `name`, as spelled.
fn read_as(request: &RecordedRequest, name: &str) -> Vec<String> {
    request
        .header_names()
        .into_iter()
        .filter(|n| cgi(n) == cgi(name))
        .collect()
}

// ---- 1. identity headers in other spellings ------------------------------------

#[test]
fn identity_headers_in_no_spelling_reach_the_app_from_an_untrusted_peer() {
    // With underscores allowed, so that only the identity rule can remove them.
    for underscores in [ALLOW_UNDERSCORES, ""] {
        let (upstream, gate) = start(&[UNTRUSTED, HEADER_MODE, underscores]);
        let sent: Vec<String> = IDENTITY_SPELLINGS
            .iter()
            .map(|n| format!("{n}: admin"))
            .collect();
        let sent: Vec<&str> = sent.iter().map(String::as_str).collect();
        let request = proxied(&upstream, &gate, &sent);
        for name in ["X-Forwarded-User", "X-Forwarded-Groups"] {
            assert_eq!(
                read_as(&request, name),
                Vec::<String>::new(),
                "{underscores:?}: {}",
                request.head
            );
        }
    }
}

#[test]
fn a_trusted_peer_passes_the_identity_headers_in_their_exact_spelling_only() {
    let (upstream, gate) = start(&[HEADER_MODE, ALLOW_UNDERSCORES]);
    let request = proxied(
        &upstream,
        &gate,
        &[
            "X-Forwarded-User: alice",
            "X_Forwarded_User: admin",
            "x-forwarded_user: admin",
            "X.Forwarded.User: admin",
            "X-Forwarded-Groups: staff",
            "X_FORWARDED_GROUPS: admin",
            "X_Custom_Header: kept",
        ],
    );
    assert_eq!(read_as(&request, "X-Forwarded-User"), ["X-Forwarded-User"]);
    assert_eq!(request.headers("x-forwarded-user"), ["alice"]);
    assert_eq!(
        read_as(&request, "X-Forwarded-Groups"),
        ["X-Forwarded-Groups"]
    );
    assert_eq!(request.headers("x-forwarded-groups"), ["staff"]);
    assert_eq!(
        request.headers("x_custom_header"),
        ["kept"],
        "allow keeps other names"
    );
}

#[test]
fn token_routes_take_no_identity_from_an_untrusted_peer_in_any_spelling() {
    let (_upstream, gate) = start(&[UNTRUSTED, HEADER_MODE, ALLOW_UNDERSCORES]);
    for name in &IDENTITY_SPELLINGS[..6] {
        let (status, answer) = mint_raw(&gate, "{}", &[&format!("{name}: alice")]);
        assert_eq!(status, 401, "{name}: {answer}");
        assert_eq!(answer["success"], false);
    }
}

#[test]
fn token_routes_refuse_an_identity_sent_beside_another_spelling_of_it() {
    let (_upstream, gate) = start(&[HEADER_MODE, ALLOW_UNDERSCORES]);
    let (status, answer) = mint_raw(&gate, "{}", &["X-Forwarded-User: alice"]);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(minted_user(&answer), "alice");
    for other in [
        "X_Forwarded_User: admin",
        "x_forwarded_user: admin",
        "X-Forwarded_User: admin",
        "X_FORWARDED-USER: admin",
        "X.Forwarded.User: admin",
        "X_Forwarded_Groups: admin",
    ] {
        let (status, answer) = mint_raw(&gate, "{}", &["X-Forwarded-User: alice", other]);
        assert_eq!(status, 401, "{other}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains("also sent as"),
            "{answer}"
        );
    }
    // Only a spelling CGI-style apps read the same way is a second spelling.
    for name in ["X_Forwarded_User", "X_Forwarded_Users"] {
        let (status, _) = mint_raw(&gate, "{}", &[&format!("{name}: admin")]);
        assert_eq!(status, 401, "{name} alone is no identity");
    }
}

/// With the default `drop_header`, a name with `_` is gone before the token
/// route reads anything (as in Envoy's codec); other spellings still refuse.
#[test]
fn token_routes_under_drop_header_never_see_underscored_spellings() {
    let (_upstream, gate) = start(&[HEADER_MODE]);
    let (status, answer) = mint_raw(
        &gate,
        "{}",
        &["X-Forwarded-User: alice", "X_Forwarded_User: admin"],
    );
    assert_eq!((status, minted_user(&answer)), (200, "alice".to_string()));
    let (status, _) = mint_raw(&gate, "{}", &["X_Forwarded_User: admin"]);
    assert_eq!(status, 401, "the underscored spelling alone is no identity");
    let (status, _) = mint_raw(
        &gate,
        "{}",
        &["X-Forwarded-User: alice", "X.Forwarded.User: admin"],
    );
    assert_eq!(status, 401);
}

// ---- headers_with_underscores_action --------------------------------------------

#[test]
fn underscored_header_names_are_dropped_by_default() {
    let (upstream, gate) = start(&[]);
    let request = proxied(
        &upstream,
        &gate,
        &[
            "X_Custom: 1",
            "x_lower: 2",
            "Trailing_: 3",
            "X-Custom: kept",
        ],
    );
    let underscored: Vec<String> = request
        .header_names()
        .into_iter()
        .filter(|n| n.contains('_'))
        .collect();
    assert_eq!(underscored, Vec::<String>::new(), "{}", request.head);
    assert_eq!(request.headers("x-custom"), ["kept"]);
}

#[test]
fn underscored_header_names_are_kept_when_allowed() {
    let (upstream, gate) = start(&[ALLOW_UNDERSCORES]);
    let request = proxied(&upstream, &gate, &["X_Custom: 1", "X-Custom: 2"]);
    assert!(
        request.header_names().contains(&"X_Custom".to_string()),
        "{}",
        request.head
    );
    assert_eq!(request.headers("x_custom"), ["1"]);
    assert_eq!(request.headers("x-custom"), ["2"]);
}

#[test]
fn underscored_header_names_are_refused_with_reject_request() {
    let (upstream, gate) = start(&[REJECT_UNDERSCORES]);
    for path in ["/page", USER_TOKEN_PATH] {
        let mut client = RawClient::connect(gate.port);
        client.send(format!(
            "GET {path} HTTP/1.1\r\nHost: shop.example\r\nX_Custom: 1\r\n\r\n"
        ));
        let response = client.response();
        assert_eq!(response.status, 400, "{path}: {}", response.head);
        let answer: Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(answer["success"], false);
        assert!(
            answer["error"].as_str().unwrap().contains("x_custom"),
            "{answer}"
        );
        assert!(response.header("x-request-id").is_some());
    }
    assert!(upstream.requests().is_empty(), "nothing reached the app");
    let request = proxied(&upstream, &gate, &["X-Custom: 1"]);
    assert_eq!(request.headers("x-custom"), ["1"], "other requests pass");
}

// ---- 2. forwarded headers -------------------------------------------------------

/// What a client (or a proxy in front) claims about the connection.
const CLAIMS: [&str; 12] = [
    "X-Forwarded-For: 203.0.113.1",
    "X-Forwarded-Host: evil.example",
    "X-Forwarded-Proto: https",
    "X-Forwarded-Port: 443",
    "Forwarded: for=203.0.113.1;proto=https;host=evil.example",
    "X-Real-IP: 203.0.113.1",
    "X_Forwarded_For: 198.51.100.9",
    "X_Forwarded_Host: evil.example",
    "x-forwarded_proto: https",
    "X_Real_IP: 198.51.100.9",
    "X-Forwarded-Prefix: /admin",
    "True-Client-IP: 203.0.113.1",
];

#[test]
fn from_an_untrusted_peer_the_app_learns_only_what_streamgate_saw() {
    for underscores in [ALLOW_UNDERSCORES, ""] {
        let (upstream, gate) = start(&[UNTRUSTED, underscores]);
        let request = proxied(&upstream, &gate, &CLAIMS);
        let port = gate.port.to_string();
        let expected = [
            ("X-Forwarded-For", "127.0.0.1"),
            ("X-Forwarded-Host", "shop.example"),
            ("X-Forwarded-Proto", "http"),
            ("X-Forwarded-Port", port.as_str()),
        ];
        for (name, value) in expected {
            assert_eq!(
                read_as(&request, name).len(),
                1,
                "{name} once: {}",
                request.head
            );
            assert_eq!(request.headers(name), [value], "{name}");
        }
        for gone in [
            "Forwarded",
            "X-Real-IP",
            "X-Forwarded-Prefix",
            "True-Client-IP",
        ] {
            assert_eq!(
                read_as(&request, gone),
                Vec::<String>::new(),
                "{gone}: {}",
                request.head
            );
        }
    }
}

#[test]
fn from_a_trusted_peer_the_app_gets_its_claims_in_their_plain_spelling() {
    let (upstream, gate) = start(&[ALLOW_UNDERSCORES]);
    let request = proxied(&upstream, &gate, &CLAIMS);
    let kept = [
        ("X-Forwarded-For", "203.0.113.1, 127.0.0.1"),
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Port", "443"),
        ("Forwarded", "for=203.0.113.1;proto=https;host=evil.example"),
        ("X-Real-IP", "203.0.113.1"),
        ("X-Forwarded-Prefix", "/admin"),
        ("True-Client-IP", "203.0.113.1"),
    ];
    for (name, value) in kept {
        let spelled = read_as(&request, name);
        assert_eq!(spelled.len(), 1, "{name} once: {}", request.head);
        // The chain is rewritten (appended to); the others arrive as sent.
        if name != "X-Forwarded-For" {
            assert_eq!(spelled, [name], "{name} as spelled");
        }
        assert_eq!(request.headers(name), [value], "{name}");
    }
}

#[test]
fn a_trusted_peer_gets_the_forwarded_headers_it_did_not_send() {
    let (upstream, gate) = start(&[]);
    let request = proxied(
        &upstream,
        &gate,
        &["X-Forwarded-For: 203.0.113.1", "X-Forwarded-For: 10.0.0.1"],
    );
    let port = gate.port.to_string();
    assert_eq!(
        request.headers("x-forwarded-for"),
        ["203.0.113.1, 10.0.0.1, 127.0.0.1"]
    );
    assert_eq!(request.headers("x-forwarded-host"), ["shop.example"]);
    assert_eq!(request.headers("x-forwarded-proto"), ["http"]);
    assert_eq!(request.headers("x-forwarded-port"), [port]);
    assert!(request.headers("forwarded").is_empty() && request.headers("x-real-ip").is_empty());
}

// ---- 3. client IP from X-Forwarded-For -------------------------------------------

/// Behind a trusted proxy (the test client), each client has its own bucket,
/// and what a client prepends to the chain does not give it another.
#[test]
fn per_client_ip_limit_is_not_escaped_by_prepending_to_the_chain() {
    let (_upstream, gate) = start(&["rate_limits:\n  per_client_ip: { requests: 2, window: 60s }"]);
    let body = r#"{"userId":"u"}"#;
    let mint_as = |chain: &str| mint_raw(&gate, body, &[&format!("X-Forwarded-For: {chain}")]).0;
    assert_eq!(mint_as("203.0.113.1"), 200);
    assert_eq!(
        mint_as("203.0.113.1:5555"),
        200,
        "the same client, with a port"
    );
    for escape in [
        "203.0.113.1",
        "junk, 203.0.113.1",
        "198.51.100.7, 203.0.113.1",
        "unknown,203.0.113.1",
        "[2001:db8::1]:443, 203.0.113.1",
    ] {
        assert_eq!(mint_as(escape), 429, "X-Forwarded-For: {escape}");
    }
    let (status, _) = mint_raw(
        &gate,
        body,
        &[
            "X-Forwarded-For: 198.51.100.7",
            "X-Forwarded-For: 203.0.113.1",
        ],
    );
    assert_eq!(status, 429, "two lines are one list: the last is nearest");
    assert_eq!(mint_as("203.0.113.2"), 200, "another client is unaffected");
    assert_eq!(
        mint_as("[2001:db8::1]:443"),
        200,
        "bracketed IPv6 is its own client"
    );
    assert_eq!(mint_as("2001:db8::1"), 200, "and the same client bare");
    assert_eq!(mint_as("2001:db8::1"), 429);
}
