//! HTTP/2 on the plaintext port (issue 11): a client that speaks HTTP/2 with
//! prior knowledge (curl, a Rust client, every gRPC client) is served on the
//! same port as HTTP/1.1, its requests reach an HTTP/1.1 app as HTTP/1.1, and
//! what streamgate answers itself reads right to it: JSON to an HTTP client,
//! `grpc-status` to a gRPC call.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// `curl --http2-prior-knowledge` with `args`: the response head, body, and
/// the HTTP version curl spoke.
fn curl_h2(url: &str, args: &[&str]) -> (String, String, String) {
    let answer = curl(&[&["--http2-prior-knowledge"], args, &[url]].concat());
    (answer.head, answer.body, answer.version)
}

/// The value of header `name` (lower-case) in `head`.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (found, value) = line.split_once(": ")?;
        found.eq_ignore_ascii_case(name).then_some(value)
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_with_prior_knowledge_is_proxied_to_an_http1_app() {
    let app = RecordingUpstream::start();
    let gate = Streamgate::start(&default_config(app.addr));
    let (head, body, version) = curl_h2(&gate.url("/orders/7?page=2"), &[]);
    assert_eq!(version, "2");
    assert!(head.starts_with("HTTP/2 200"), "{head}");
    assert_eq!(body, "ok");
    assert!(header(&head, "x-request-id").is_some(), "{head}");

    // The app, on HTTP/1.1, gets an HTTP/1.1 request: origin-form target,
    // Host from :authority, no pseudo-header, the forwarded headers.
    let received = app.last();
    assert_eq!(received.request_line(), "GET /orders/7?page=2 HTTP/1.1");
    let authority = format!("127.0.0.1:{}", gate.port);
    assert_eq!(received.header("host").as_deref(), Some(authority.as_str()));
    assert_eq!(
        received.header("x-forwarded-proto").as_deref(),
        Some("http")
    );
    assert_eq!(
        received.header("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert!(
        received
            .header_names()
            .iter()
            .all(|name| !name.starts_with(':')),
        "{:?}",
        received.header_names()
    );

    // HTTP/1.1 on the same port afterwards.
    let response = get(gate.url("/after")).await;
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(response.status(), 200);
    assert_eq!(app.last().target(), "/after");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_http2_connection_carries_many_requests_at_once() {
    let app = start_app().await;
    let gate = Streamgate::start(&default_config(app.addr));
    let client = client_for(Http::Two);
    let requests = (0..64).map(|i| {
        let client = client.clone();
        let url = gate.url(&format!("/item/{i}"));
        async move {
            let response = client.get(url).send().await.expect("GET over h2");
            assert_eq!(response.version(), reqwest::Version::HTTP_2);
            assert_eq!(response.status(), 200);
            let echoed: Value = response.json().await.expect("JSON echo");
            echoed["path"].as_str().map(str::to_owned)
        }
    });
    let paths = futures_util::future::join_all(requests).await;
    for (i, path) in paths.into_iter().enumerate() {
        assert_eq!(path, Some(format!("/item/{i}")));
    }
    // Counted as the request's log line is written, just after its answer
    // went out: the last one may land a moment after the client has it.
    assert!(
        metric_reaches(
            &gate,
            "streamgate_requests_total",
            &[("protocol", "h2c")],
            |n| n == 64.0
        )
        .await,
        "{} h2c requests counted",
        metric_now(&gate, "streamgate_requests_total", &[("protocol", "h2c")]).await
    );
    // One client connection carried them all.
    assert_eq!(
        metric_now(&gate, "streamgate_downstream_connections", &[]).await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_over_http2_is_the_same_token() {
    let app = start_app().await;
    let gate = Streamgate::start(&default_config(app.addr));
    let response = client_for(Http::Two)
        .post(gate.url(USER_TOKEN_PATH))
        .header("content-type", "application/json")
        .body(r#"{"userId":"john_doe","validityInSeconds":600}"#)
        .send()
        .await
        .expect("token over h2");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let json: Value = response.json().await.unwrap();
    assert_eq!(json["success"], true);
    let claims = claims(json["data"]["token"].as_str().unwrap(), API_SECRET);
    assert_eq!(claims["user_id"], "john_doe");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        600 + 5,
        "{claims}"
    );

    let log = gate.stdout();
    let line = log
        .lines()
        .find(|line| line.contains(USER_TOKEN_PATH))
        .expect("the token request is logged");
    let record: Value = serde_json::from_str(line).unwrap();
    assert_eq!(record["protocol"], "h2c");
    assert_eq!(record["user_id"], "john_doe");
}

/// What streamgate answers itself to a gRPC call is a Trailers-Only
/// response a gRPC client can read: HTTP 200, `grpc-status`,
/// `grpc-message`, no body; never a JSON error.
#[tokio::test(flavor = "multi_thread")]
async fn streamgate_answers_a_grpc_call_in_grpc_form() {
    // An app that is not there: every proxied call fails to connect.
    let gate = Streamgate::start(&config_with(
        "127.0.0.1:1".parse().unwrap(),
        "routes:\n  - { match: { path_prefix: /test.Echo/ }, upstream: app }\n  - { match: { path_prefix: /blocked/ }, direct_response: { status: 403, body: no } }",
    ));
    // One empty gRPC message: no compression, length 0.
    let message = gate.dir().join("empty-message");
    std::fs::write(&message, [0u8; 5]).unwrap();
    let data = format!("@{}", message.display());
    let grpc = |path: &str, extra: &[&str]| {
        let mut args = GRPC_CALL.to_vec();
        args.extend(["--data-binary", &data]);
        args.extend_from_slice(extra);
        curl_h2(&gate.url(path), &args)
    };
    let cases: [(&str, &[&str], &str, &str); 4] = [
        ("/test.Echo/Unary", &[], "14", "Bad gateway: upstream 'app' is unavailable"),
        ("/nowhere.Service/Call", &[], "12", "Not found: no route matches POST /nowhere.Service/Call"),
        ("/blocked/Call", &[], "7", "Forbidden"),
        (
            "/test.Echo/Unary",
            &["-H", "grpc-timeout: soon"],
            "3",
            "Bad request: grpc-timeout must be 1 to 8 digits and a unit (H, M, S, m, u or n), e.g. 300m",
        ),
    ];
    for (path, extra, status, message) in cases {
        let (head, body, _) = grpc(path, extra);
        assert!(head.starts_with("HTTP/2 200"), "{path}: {head}");
        assert_eq!(
            header(&head, "content-type"),
            Some("application/grpc"),
            "{head}"
        );
        assert_eq!(header(&head, "grpc-status"), Some(status), "{path}: {head}");
        assert_eq!(header(&head, "grpc-message"), Some(message), "{head}");
        assert!(
            body.is_empty(),
            "{path}: a body a gRPC client would misread: {body:?}"
        );
    }
    assert_eq!(
        metric_now(
            &gate,
            "streamgate_grpc_responses_total",
            &[("grpc_status", "14")]
        )
        .await,
        1.0
    );
    // Only the call that was sent on counts as proxied (its 14 is an HTTP 200);
    // the one refused for its grpc-timeout never reached the app.
    assert_eq!(
        metric_now(
            &gate,
            "streamgate_proxied_requests_total",
            &[("upstream", "app"), ("status_class", "2xx")]
        )
        .await,
        1.0
    );

    // The same failures to a plain HTTP/2 client are the JSON envelope.
    let (head, body, _) = curl_h2(&gate.url("/test.Echo/Unary"), &[]);
    assert!(head.starts_with("HTTP/2 502"), "{head}");
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["success"], false);
}

/// The request-head limit holds over HTTP/2 too: the header list a client
/// may send is capped by `SETTINGS_MAX_HEADER_LIST_SIZE`, and a request past
/// it never reaches the app.
#[tokio::test(flavor = "multi_thread")]
async fn an_http2_header_list_past_the_limit_never_reaches_the_app() {
    let app = RecordingUpstream::start();
    let gate = Streamgate::start(&default_config(app.addr));
    let big = format!("x-big: {}", "a".repeat(40 * 1024));
    let output = Command::new("curl")
        .args(["-s", "--http2-prior-knowledge", "--max-time", "10"])
        .args(["-o", "/dev/null", "-w", "%{http_code}", "-H", &big])
        .arg(gate.url("/big"))
        .output()
        .expect("curl runs");
    let status = String::from_utf8_lossy(&output.stdout).into_owned();
    // The h2 crate answers the stream itself with 431 (RFC 6585 §5).
    assert_eq!(status, "431", "a 40 KiB header list was not refused");
    std::thread::sleep(Duration::from_millis(200));
    assert!(app.requests().is_empty(), "{:?}", app.requests());
    // The connection's other requests, and new ones, are served.
    let (head, _, _) = curl_h2(&gate.url("/small"), &[]);
    assert!(head.starts_with("HTTP/2 200"), "{head}");
}

/// A client that stops midway through the HTTP/2 preface is held to the
/// header timeout like an HTTP/1.1 head: closed, its connection slot freed.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_http2_preface_is_closed_at_the_header_timeout() {
    let app = RecordingUpstream::start();
    let gate = Streamgate::start(&config_with(
        app.addr,
        "http: { request_headers_timeout: 1s }",
    ));
    let mut client = RawClient::connect(gate.port);
    client.send("PRI * HTTP/2.0\r\n\r\nS");
    let sent = std::time::Instant::now();
    assert!(
        client.closed_within(Duration::from_secs(4)),
        "a stalled preface kept its connection"
    );
    assert!(
        sent.elapsed() >= Duration::from_millis(900),
        "{:?}",
        sent.elapsed()
    );
    assert!(
        metric_reaches(&gate, "streamgate_downstream_connections", &[], |n| n
            == 0.0)
        .await,
        "the slot was not freed"
    );
}

/// What a client may not make streamgate or the app believe over HTTP/1.1,
/// it may not over HTTP/2 either: identity headers from an untrusted peer,
/// in any spelling, mint nothing and never reach the app.
#[tokio::test(flavor = "multi_thread")]
async fn identity_headers_from_an_untrusted_peer_are_not_believed_over_http2() {
    let app = start_app().await;
    let gate = Streamgate::start(&config_with(
        app.addr,
        "trusted_cidrs: [\"10.0.0.0/8\"]\nidentity:\n  mode: header\n  header: { user: X-Forwarded-User }",
    ));
    let client = client_for(Http::Two);
    let spoofed = [
        ("x-forwarded-user", "alice"),
        ("x_forwarded_user", "alice"),
        ("x-forwarded-host", "evil.example"),
    ];
    let mut token = client
        .post(gate.url(USER_TOKEN_PATH))
        .header("content-type", "application/json")
        .body(r#"{"userId":"alice"}"#);
    let mut proxied = client.get(gate.url("/api/profile"));
    for (name, value) in spoofed {
        token = token.header(name, value);
        proxied = proxied.header(name, value);
    }
    let token = token.send().await.expect("token over h2");
    assert_eq!(token.version(), reqwest::Version::HTTP_2);
    assert_eq!(token.status(), 401);

    let echoed: Value = proxied.send().await.unwrap().json().await.unwrap();
    let headers = &echoed["headers"];
    assert!(headers.get("x-forwarded-user").is_none(), "{headers}");
    assert!(headers.get("x_forwarded_user").is_none(), "{headers}");
    let authority = format!("127.0.0.1:{}", gate.port);
    assert_eq!(headers["x-forwarded-host"], serde_json::json!([authority]));
}
