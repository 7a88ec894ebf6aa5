//! `POST /api/tokens/user` through the real server: the seed's examples, every
//! error status with its exact envelope, and tokens verified with the secret.

mod common;

use std::time::UNIX_EPOCH;

use common::*;
use serde_json::{json, Value};

/// A token request with a JSON Content-Type, over HTTP/1.1.
async fn post(gate: &Streamgate, body: impl Into<reqwest::Body>) -> reqwest::Response {
    post_over(Http::One, gate, Some("application/json"), body).await
}

/// A token request over `http` with the given Content-Type, or none.
async fn post_over(
    http: Http,
    gate: &Streamgate,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut request = client_for(http).post(gate.url(USER_TOKEN_PATH)).body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = request.send().await.expect("request");
    assert_eq!(response.version(), http.version());
    response
}

/// Checks the 200 envelope and returns `data`.
async fn success_data(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["cache-control"], "no-store");
    let length: usize = headers["content-length"].to_str().unwrap().parse().unwrap();
    let body = response.bytes().await.unwrap();
    assert_eq!(body.len(), length);
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["success"], json!(true));
    assert_eq!(json.as_object().unwrap().len(), 2, "{json}");
    json["data"].clone()
}

async fn assert_error(response: reqwest::Response, status: u16, message: &str) {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["content-type"], "application/json");
    let json: Value = response.json().await.unwrap();
    assert_eq!(json, json!({"success": false, "error": message}));
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_example_basic_user_token() {
    let app = start_app().await;
    let gate = Streamgate::start(&default_config(app.addr));
    let before = now();
    let data = success_data(post(&gate, r#"{"userId": "john_doe"}"#).await).await;
    assert_eq!(data["userId"], "john_doe");
    assert_eq!(data["apiKey"], API_KEY);
    assert_eq!(data["callType"], "default");
    assert_eq!(data["validityInSeconds"], 3600);
    assert!(data.get("callId").is_none(), "{data}");
    let claims = claims(data["token"].as_str().unwrap(), API_SECRET);
    let keys: Vec<&String> = claims.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["exp", "iat", "user_id"], "no other claims");
    assert_eq!(claims["user_id"], "john_doe");
    let iat = claims["iat"].as_u64().unwrap();
    let exp = claims["exp"].as_u64().unwrap();
    assert_eq!(exp - iat, 3600 + 5, "exp - iat = validity + leeway");
    assert!(iat + 5 >= before && iat + 5 <= now(), "iat is now - 5");
    let expires_at = humantime::parse_rfc3339(data["expiresAt"].as_str().unwrap()).unwrap();
    assert_eq!(
        expires_at.duration_since(UNIX_EPOCH).unwrap().as_secs(),
        exp
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_example_custom_validity() {
    let app = start_app().await;
    let gate = Streamgate::start(&default_config(app.addr));
    let data = success_data(
        post(
            &gate,
            r#"{"userId": "john_doe", "validityInSeconds": 86400}"#,
        )
        .await,
    )
    .await;
    assert_eq!(data["validityInSeconds"], 86400);
    let claims = claims(data["token"].as_str().unwrap(), API_SECRET);
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        86400 + 5
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_example_call_restricted_token() {
    let app = start_app().await;
    let gate = Streamgate::start(&default_config(app.addr));
    let data = success_data(
        post(
            &gate,
            r#"{"userId": "john_doe", "callId": "meeting-123", "callType": "default"}"#,
        )
        .await,
    )
    .await;
    assert_eq!(data["callId"], "meeting-123");
    assert_eq!(data["callType"], "default");
    let claims = claims(data["token"].as_str().unwrap(), API_SECRET);
    assert_eq!(claims["call_cids"], json!(["default:meeting-123"]));
    assert_eq!(claims.as_object().unwrap().len(), 4, "{claims}");
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_alive_connection_serves_many_tokens() {
    let app = start_app().await;
    let gate = Streamgate::start(&default_config(app.addr));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    for i in 0..20 {
        let response = client
            .post(gate.url(USER_TOKEN_PATH))
            .json(&json!({"userId": format!("user-{i}"), "validityInSeconds": 7200.0}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response
                .headers()
                .get("connection")
                .map(|v| v.to_str().unwrap()),
            Some("keep-alive")
        );
        let data = success_data(response).await;
        assert_eq!(data["validityInSeconds"], 7200);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_error_status_has_the_exact_envelope() {
    let app = start_app().await;
    let gate = Streamgate::start(&default_config(app.addr));
    for http in HTTP_VERSIONS {
        error_statuses_over(http, &gate).await;
    }
}

/// The hostile bodies of the contract, over HTTP/1.1 or HTTP/2: the same
/// statuses and envelopes whichever the client speaks.
async fn error_statuses_over(http: Http, gate: &Streamgate) {
    let post = |body: String| post_over(http, gate, Some("application/json"), body);

    let bad_json = post(r#"{"userId": "#.into()).await;
    assert_eq!(bad_json.status(), 400);
    let message: Value = bad_json.json().await.unwrap();
    assert!(
        message["error"]
            .as_str()
            .unwrap()
            .starts_with("Invalid JSON body: "),
        "{message}"
    );

    assert_error(
        post(r#"["john_doe"]"#.into()).await,
        400,
        "Invalid JSON body: expected a JSON object",
    )
    .await;

    let too_large = post(format!(
        r#"{{"userId":"u","pad":"{}"}}"#,
        "x".repeat(16_384)
    ))
    .await;
    assert_error(
        too_large,
        413,
        "Request body too large: the limit is 16384 bytes",
    )
    .await;

    // Chunked: no Content-Length to judge from, so the limit applies while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|_| Ok(vec![b' '; 1024])).collect();
    let chunked = post_over(
        http,
        gate,
        Some("application/json"),
        reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)),
    )
    .await;
    assert!(chunked.headers().get("content-length").is_some());
    assert_error(
        chunked,
        413,
        "Request body too large: the limit is 16384 bytes",
    )
    .await;

    for (body, message) in [
        ("{}", "Validation failed: userId is required"),
        (
            r#"{"userId":"u","validityInSeconds":86401}"#,
            "Validation failed: validityInSeconds must be an integer between 1 and 86400",
        ),
        (
            r#"{"userId":"u","validityInSeconds":"7200"}"#,
            "Validation failed: validityInSeconds must be an integer between 1 and 86400",
        ),
        (
            r#"{"userId":"no spaces"}"#,
            "Validation failed: userId must be 1 to 255 characters from A-Z a-z 0-9 @ _ -",
        ),
        (
            r#"{"userId":"u","callId":"a/b"}"#,
            "Validation failed: callId must be 1 to 64 characters from A-Z a-z 0-9 _ -",
        ),
        (
            r#"{"userId":"u","callType":["x"]}"#,
            "Validation failed: callType must be a string",
        ),
    ] {
        assert_error(post(body.into()).await, 422, message).await;
    }
}

/// JSON with any parameters, or no Content-Type at all (curl's default for
/// `-d` aside); anything else is a 415 naming what was sent.
#[tokio::test(flavor = "multi_thread")]
async fn content_type_must_be_json_when_given() {
    let app = start_app().await;
    let gate = Streamgate::start(&default_config(app.addr));
    for http in HTTP_VERSIONS {
        content_types_over(http, &gate).await;
    }
}

async fn content_types_over(http: Http, gate: &Streamgate) {
    let post_as = |content_type, body| post_over(http, gate, content_type, body);
    let wrong_type = post_as(Some("text/plain"), r#"{"userId":"u"}"#).await;
    assert_error(
        wrong_type,
        415,
        r#"Unsupported Content-Type "text/plain": send application/json"#,
    )
    .await;

    let with_charset = post_as(Some("application/json; charset=utf-8"), r#"{"userId":"u"}"#).await;
    assert_eq!(with_charset.status(), 200);

    let no_content_type = post_as(None, r#"{"userId":"u"}"#).await;
    assert_eq!(no_content_type.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn configured_limits_apply() {
    let app = start_app().await;
    let config = default_config(app.addr)
        + "tokens: { default_validity_seconds: 60, max_validity_seconds: 120, iat_leeway_seconds: 0, max_body_bytes: 64 }\n";
    let gate = Streamgate::start(&config);
    let data = success_data(post(&gate, r#"{"userId":"u"}"#).await).await;
    let claims = claims(data["token"].as_str().unwrap(), API_SECRET);
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        60
    );
    assert_error(
        post(&gate, r#"{"userId":"u","validityInSeconds":121}"#).await,
        422,
        "Validation failed: validityInSeconds must be an integer between 1 and 120",
    )
    .await;
    assert_error(
        post(
            &gate,
            r#"{"userId":"u","padding":"..................................................."}"#,
        )
        .await,
        413,
        "Request body too large: the limit is 64 bytes",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn other_methods_on_the_token_path_reach_the_app() {
    let app = start_app().await;
    let gate = Streamgate::start(&default_config(app.addr));
    let echoed: Value = get_json(gate.url("/api/tokens/user")).await;
    assert_eq!(echoed["method"], "GET");
    assert_eq!(echoed["path"], "/api/tokens/user");
}

#[tokio::test(flavor = "multi_thread")]
async fn unmatched_request_gets_a_json_404() {
    let app = start_app().await;
    let config = default_config(app.addr)
        + "routes:\n  - { match: { method: POST, path: /api/tokens/user }, mint: user_token }\n  - { match: { path_prefix: /app/ }, upstream: app }\n";
    let gate = Streamgate::start(&config);
    assert_error(
        get(gate.url("/elsewhere?q=1")).await,
        404,
        "Not found: no route matches GET /elsewhere",
    )
    .await;
    let echoed: Value = get_json(gate.url("/app/x")).await;
    assert_eq!(echoed["path"], "/app/x");
}

#[tokio::test(flavor = "multi_thread")]
async fn direct_response_route_answers_without_the_app() {
    let config = config_with(
        "127.0.0.1:1".parse().unwrap(),
        "routes:\n  - { match: { path: /ping }, direct_response: { status: 200, body: pong } }\n  - { match: { path_prefix: / }, upstream: app }",
    );
    let gate = Streamgate::start(&config);
    let response = get(gate.url("/ping")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    assert_eq!(response.text().await.unwrap(), "pong");
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_never_contain_the_secret_or_a_token() {
    let app = start_app().await;
    let gate = Streamgate::start_with_env(&default_config(app.addr), &[("RUST_LOG", "trace")]);
    let mut tokens = Vec::new();
    for body in [
        r#"{"userId":"john_doe"}"#,
        r#"{"userId":"john_doe","callId":"meeting-123"}"#,
    ] {
        let data = success_data(post(&gate, body).await).await;
        tokens.push(data["token"].as_str().unwrap().to_string());
    }
    // Errors and proxied requests, including a token in a query string and an
    // Authorization header, must not be logged either.
    assert_eq!(post(&gate, "{").await.status(), 400);
    let proxied = get_with(
        gate.url(&format!("/api/profile?token={}", tokens[0])),
        &[("authorization", &format!("Bearer {}", tokens[1]))],
    )
    .await;
    assert_eq!(proxied.status(), 200);
    // Wait for the access-log lines of all four requests, written just after
    // each answer, so that they are part of what is checked (the count is
    // asserted below).
    eventually(|| async { gate.stdout().lines().count() >= 4 }).await;
    let logs = gate.logs();
    assert_eq!(
        gate.stdout().lines().count(),
        4,
        "one access-log line per request"
    );
    assert!(
        logs.contains("listening"),
        "the capture saw streamgate's logs: {logs}"
    );
    assert!(!logs.contains(API_SECRET), "secret in logs");
    for token in &tokens {
        let signature = token.rsplit('.').next().unwrap();
        assert!(
            !logs.contains(signature),
            "token signature in logs:\n{logs}"
        );
        let payload = token.split('.').nth(1).unwrap();
        assert!(!logs.contains(payload), "token payload in logs:\n{logs}");
    }
}
