//! Running it like a platform team would: probes, metrics, access logs,
//! request ids, secret rotation, graceful shutdown and graceful upgrade.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// The default config in front of `upstream`, with readiness tied to the
/// app's `/health`.
fn with_readiness_probe(upstream: std::net::SocketAddr) -> String {
    default_config(upstream).replace(
        "admin: { listen: \"127.0.0.1:{admin_port}\" }",
        "admin: { listen: \"127.0.0.1:{admin_port}\", readiness_probe: { path: /health } }",
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_answer_on_the_admin_listener() {
    let app = start_app().await;
    let gate = Streamgate::start(&default_config(app.addr));
    assert_eq!(status_of(gate.admin_url("/healthz")).await, 200);
    assert_eq!(
        get_json(gate.admin_url("/healthz")).await,
        json!({"status": "ok"})
    );
    assert_eq!(status_of(gate.admin_url("/readyz")).await, 200);
    assert_eq!(
        get_json(gate.admin_url("/readyz")).await,
        json!({"status": "ready"})
    );
    // The admin listener is never proxied, and the proxy port does not serve probes.
    assert_eq!(status_of(gate.admin_url("/api/users")).await, 404);
    let echoed: Value = get_json(gate.url("/readyz")).await;
    assert_eq!(
        echoed["path"], "/readyz",
        "the proxy port sends /readyz to the app"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_can_require_the_app() {
    let app = start_app().await;
    let gate = Streamgate::start(&with_readiness_probe(app.addr));
    assert_eq!(status_of(gate.admin_url("/readyz")).await, 200);

    let closed = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gate = Streamgate::start(&with_readiness_probe(closed));
    let not_ready = get(gate.admin_url("/readyz")).await;
    assert_eq!(not_ready.status(), 503);
    let body: Value = not_ready.json().await.unwrap();
    assert_eq!(body["reason"], "upstream 'app' is unavailable");
}

fn with_secret_file(config: String, path: &std::path::Path) -> String {
    config.replace(
        &format!("api_secret: \"{API_SECRET}\""),
        &format!("api_secret_file: {}", path.display()),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn not_ready_until_the_secret_loads_then_rotates_like_kubernetes() {
    let app = start_app().await;
    let mount = Mount::new("api_secret");
    let gate = Streamgate::start(&with_secret_file(default_config(app.addr), &mount.path()));

    // Before the secret exists: alive, not ready, and no token.
    assert_eq!(status_of(gate.admin_url("/healthz")).await, 200);
    let not_ready = get(gate.admin_url("/readyz")).await;
    assert_eq!(not_ready.status(), 503);
    assert_eq!(
        not_ready.json::<Value>().await.unwrap()["reason"],
        "no Stream API secret loaded yet"
    );
    let (status, answer, _) = mint_user(&gate, json!({"userId": "u"}), &[]).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(
        answer["error"],
        "Service unavailable: the Stream API secret is not loaded yet"
    );

    mount.write("first-secret\n");
    assert!(
        eventually(|| async { status_of(gate.admin_url("/readyz")).await == 200 }).await,
        "ready once loaded"
    );
    let (status, answer, _) = mint_user(&gate, json!({"userId": "u"}), &[]).await;
    assert_eq!(status, 200);
    assert!(verifies_with(token_in(&answer), "first-secret"));

    mount.write("second-secret");
    assert!(
        eventually(|| async {
            let (_, answer, _) = mint_user(&gate, json!({"userId": "u"}), &[]).await;
            verifies_with(token_in(&answer), "second-secret")
        })
        .await,
        "the rotated secret is used"
    );
    // Never a mix: every token verifies with exactly one of the two keys.
    for _ in 0..20 {
        let (_, answer, _) = mint_user(&gate, json!({"userId": "u"}), &[]).await;
        let token = token_in(&answer);
        assert!(verifies_with(token, "second-secret") && !verifies_with(token, "first-secret"));
    }

    let failures_before = metric_now(&gate, "streamgate_secret_reload_failures_total", &[]).await;
    mount.write("");
    assert!(
        metric_reaches(&gate, "streamgate_secret_reload_failures_total", &[], |v| v
            > failures_before)
        .await,
        "the failure is counted"
    );
    let (status, answer, _) = mint_user(&gate, json!({"userId": "u"}), &[]).await;
    assert_eq!(status, 200);
    assert!(
        verifies_with(token_in(&answer), "second-secret"),
        "the last good key still signs"
    );
    assert_eq!(status_of(gate.admin_url("/readyz")).await, 200);
    assert!(metric_now(&gate, "streamgate_secret_reloads_total", &[]).await >= 2.0);
}

/// A metric's label pairs.
type Labels<'a> = &'a [(&'a str, &'a str)];

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_tokens_refusals_and_proxied_requests() {
    let app = start_app().await;
    let config = config_with(
        app.addr,
        "rate_limits:\n  per_identity: { requests: 2, window: 60s }",
    );
    let gate = Streamgate::start(&config);
    let before = scrape(&gate).await;
    let route = [("route", "POST /api/tokens/user")];
    assert_eq!(
        metric(&before, "streamgate_tokens_issued_total", &route),
        0.0
    );

    for _ in 0..2 {
        assert_eq!(
            mint_user(&gate, json!({"userId": "alice"}), &[]).await.0,
            200
        );
    }
    assert_eq!(
        mint_user(&gate, json!({"userId": "alice"}), &[]).await.0,
        429
    );
    assert_eq!(mint_user(&gate, json!({}), &[]).await.0, 422);
    assert_eq!(status_of(gate.url("/api/users")).await, 200);
    assert_eq!(status_of(gate.url("/api/users/missing")).await, 200);

    // Proxied requests are counted when Pingora logs them, just after the
    // answer went out: wait for both.
    let proxied_2xx = [("upstream", "app"), ("status_class", "2xx")];
    assert!(
        metric_reaches(
            &gate,
            "streamgate_proxied_requests_total",
            &proxied_2xx,
            |v| v == 2.0
        )
        .await
    );
    let after = scrape(&gate).await;
    let expected: [(&str, Labels, f64); 9] = [
        ("streamgate_tokens_issued_total", &route, 2.0),
        (
            "streamgate_tokens_refused_total",
            &[route[0], ("reason", "validation")],
            1.0,
        ),
        (
            "streamgate_tokens_refused_total",
            &[route[0], ("reason", "rate_limited")],
            1.0,
        ),
        (
            "streamgate_rate_limited_total",
            &[route[0], ("limit", "identity")],
            1.0,
        ),
        (
            "streamgate_token_request_duration_seconds_count",
            &route,
            4.0,
        ),
        ("streamgate_proxied_requests_total", &proxied_2xx, 2.0),
        (
            "streamgate_upstream_response_duration_seconds_count",
            &[("upstream", "app")],
            2.0,
        ),
        ("streamgate_secret_loaded", &[], 1.0),
        ("streamgate_build_info", &[], 1.0),
    ];
    for (name, labels, value) in expected {
        assert_eq!(metric(&after, name, labels), value, "{name}{labels:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_errors_are_counted() {
    let closed = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gate = Streamgate::start(&default_config(closed));
    assert_eq!(status_of(gate.url("/x")).await, 502);
    let proxied_5xx = [("upstream", "app"), ("status_class", "5xx")];
    assert!(
        metric_reaches(
            &gate,
            "streamgate_proxied_requests_total",
            &proxied_5xx,
            |v| v == 1.0
        )
        .await
    );
    let samples = scrape(&gate).await;
    assert!(
        metric(
            &samples,
            "streamgate_upstream_connect_errors_total",
            &[("upstream", "app")]
        ) >= 1.0
    );
    assert_eq!(
        metric(
            &samples,
            "streamgate_proxied_requests_total",
            &[("upstream", "app"), ("status_class", "5xx")]
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn access_log_lines_are_json_without_credentials() {
    let app = start_app().await;
    let gate = Streamgate::start(&default_config(app.addr));
    let (status, answer, _) =
        mint_user(&gate, json!({"userId": "alice", "callId": "c1"}), &[]).await;
    assert_eq!(status, 200);
    let token = token_in(&answer).to_string();
    let proxied = get_with(
        gate.url("/api/users?session=query-secret"),
        &[
            ("authorization", "Bearer authorization-secret"),
            ("cookie", "session=cookie-secret"),
            ("x-request-id", "trace-123"),
        ],
    )
    .await;
    assert_eq!(proxied.headers()["x-request-id"], "trace-123");
    let echoed: Value = proxied.json().await.unwrap();
    assert_eq!(
        echoed["headers"]["x-request-id"],
        json!(["trace-123"]),
        "passed to the app"
    );

    // Each line is written when Pingora logs the request, just after the answer.
    assert!(eventually(|| async { gate.stdout().lines().count() >= 2 }).await);
    let log = gate.stdout();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect();
    let token_line = lines
        .iter()
        .find(|l| l["route"] == "POST /api/tokens/user")
        .expect("token line");
    for field in [
        "timestamp",
        "request_id",
        "method",
        "path",
        "status",
        "bytes",
        "duration_ms",
        "route",
        "client_ip",
    ] {
        assert!(
            token_line.get(field).is_some(),
            "{field} missing in {token_line}"
        );
    }
    assert_eq!(token_line["user_id"], "alice");
    assert_eq!(token_line["status"], 200);
    let proxied_line = lines
        .iter()
        .find(|l| l["request_id"] == "trace-123")
        .expect("proxied line");
    assert_eq!(proxied_line["upstream"], "app");
    assert_eq!(proxied_line["path"], "/api/users");
    assert!(
        proxied_line.get("query").is_none(),
        "no query string by default"
    );
    for secret in [
        token.as_str(),
        API_SECRET,
        "query-secret",
        "authorization-secret",
        "cookie-secret",
    ] {
        assert!(!log.contains(secret), "{secret} in the access log:\n{log}");
    }
}

/// A token request and its answer: path, content type, body, extra
/// headers, the status and the reason expected.
type Case<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a [(&'a str, &'a str)],
    u16,
    Option<&'a str>,
);

/// Every refusal a token route answers itself, 4xx or 5xx, names its reason
/// in the access log with the code the refused-tokens metric counts under.
#[tokio::test(flavor = "multi_thread")]
async fn refused_token_requests_log_the_reason_the_metric_counts() {
    let app = start_app().await;
    let routes = [
        "tokens: { max_body_bytes: 64 }",
        "rate_limits: { per_identity: { requests: 1, window: 60s } }",
        "routes:",
        "  - { match: { method: POST, path: /api/tokens/user }, mint: user_token }",
        "  - { match: { method: POST, path: /api/tokens/call }, mint: call_token }",
        "  - match: { method: POST, path: /api/tokens/signed-in }",
        "    mint: user_token",
        "    identity: { mode: header }",
        "  - { match: { path_prefix: / }, upstream: app }",
    ]
    .join("\n");
    let gate = Streamgate::start(&config_with(app.addr, &routes));
    let (user, call, signed_in) = (USER_TOKEN_PATH, CALL_TOKEN_PATH, "/api/tokens/signed-in");
    let json = "application/json";
    let long = format!(r#"{{"userId":"{}"}}"#, "a".repeat(100));
    let role = r#"{"userId":"u","callId":"c","role":"admin"}"#;
    let email = [("x-forwarded-user", "a.b@example.com")];
    // In order: the second request for rita is over the per-identity limit.
    let cases: [Case; 9] = [
        (user, json, r#"{"userId":"rita"}"#, &[], 200, None),
        (
            user,
            json,
            r#"{"userId":"rita"}"#,
            &[],
            429,
            Some("rate_limited"),
        ),
        (user, json, "{", &[], 400, Some("invalid_json")),
        (user, json, &long, &[], 413, Some("too_large")),
        (
            user,
            "text/plain",
            "userId=u",
            &[],
            415,
            Some("unsupported_media_type"),
        ),
        (user, json, "{}", &[], 422, Some("validation")),
        (call, json, role, &[], 403, Some("forbidden")),
        (signed_in, json, "{}", &[], 401, Some("missing_user_header")),
        (signed_in, json, "{}", &email, 403, Some("invalid_user_id")),
    ];
    for (i, (path, content_type, body, headers, status, _)) in cases.iter().enumerate() {
        let mut request = client()
            .post(gate.url(path))
            .header("x-request-id", format!("refusal-{i}"))
            .header("content-type", *content_type)
            .body(body.to_string());
        for (name, value) in *headers {
            request = request.header(*name, *value);
        }
        let answered = request.send().await.unwrap().status().as_u16();
        assert_eq!(answered, *status, "{path} {body}");
    }

    let samples = scrape(&gate).await;
    for (i, (.., status, reason)) in cases.iter().enumerate() {
        let line = gate.access_line(&format!("refusal-{i}")).await;
        assert_eq!(line["status"], *status, "{line}");
        let Some(reason) = reason else {
            assert!(line.get("reason").is_none(), "{line}");
            continue;
        };
        assert_eq!(line["reason"], *reason, "{line}");
        let counted = [
            ("route", line["route"].as_str().unwrap()),
            ("reason", reason),
        ];
        assert_eq!(
            metric(&samples, "streamgate_tokens_refused_total", &counted),
            1.0,
            "{counted:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn request_ids_are_generated_and_returned() {
    let app = start_app().await;
    let gate = Streamgate::start(&default_config(app.addr));
    let response = get(gate.url("/x")).await;
    let returned = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let echoed: Value = response.json().await.unwrap();
    assert_eq!(echoed["headers"]["x-request-id"], json!([returned.clone()]));
    assert_eq!(returned.len(), 36, "a UUID: {returned}");
    let (_, _, token_headers) = mint_user(&gate, json!({"userId": "u"}), &[]).await;
    assert!(token_headers.contains_key("x-request-id"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_turns_readiness_off_drains_and_exits_in_time() {
    let app = start_app().await;
    let config = default_config(app.addr)
        .replace("read_timeout: 1s", "read_timeout: 10s")
        .replace("grace_period_seconds: 1", "grace_period_seconds: 2");
    let mut gate = Streamgate::start(&config);
    let in_flight = tokio::spawn(client().get(gate.url("/slow?ms=2000")).send());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let signalled = Instant::now();
    gate.signal("TERM");

    tokio::time::sleep(Duration::from_millis(100)).await;
    let readiness = get(gate.admin_url("/readyz")).await;
    assert_eq!(readiness.status(), 503, "not ready at once");
    assert_eq!(
        readiness.json::<Value>().await.unwrap()["reason"],
        "shutting down"
    );
    assert_eq!(
        status_of(gate.url("/during-drain")).await,
        200,
        "still serving while draining"
    );

    let finished = in_flight
        .await
        .unwrap()
        .expect("in-flight request completes");
    assert_eq!(finished.status(), 200);
    assert_eq!(finished.text().await.unwrap(), "late");

    // drain 1 s, then no new connections are served.
    tokio::time::sleep(Duration::from_millis(1200).saturating_sub(signalled.elapsed())).await;
    let refused = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap()
        .get(gate.url("/after-drain"))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "a new connection after the drain is not served: {refused:?}"
    );

    let exit = gate.wait_exit(Duration::from_secs(8)).expect("exits");
    assert_eq!(exit, Some(0));
    // drain 1 + grace 2 + runtime shutdown 1: well inside the limit.
    assert!(
        signalled.elapsed() < Duration::from_secs(6),
        "took {:?}",
        signalled.elapsed()
    );
}

/// A bounded load on fresh connections while the process is replaced by a new
/// one with a changed configuration: no request may fail.
#[tokio::test(flavor = "multi_thread")]
async fn graceful_upgrade_under_load_loses_no_request() {
    let app = start_app().await;
    let config = default_config(app.addr);
    let old = Streamgate::start(&config);
    let url = old.url(USER_TOKEN_PATH);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (url, stop, ok, failed) = (
            url.clone(),
            Arc::clone(&stop),
            Arc::clone(&ok),
            Arc::clone(&failed),
        );
        workers.push(tokio::spawn(async move {
            let fresh = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            // Bounded: at most 50 000 requests per worker, and 30 s; normally
            // stopped right after the old process has exited.
            let deadline = Instant::now() + Duration::from_secs(30);
            for _ in 0..50_000 {
                if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                    break;
                }
                match fresh.post(&url).json(&json!({"userId": "u"})).send().await {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::SeqCst),
                    other => {
                        eprintln!("failed during the upgrade: {other:?}");
                        failed.fetch_add(1, Ordering::SeqCst)
                    }
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut new = old.start_upgrade(&config_with(
        app.addr,
        "tokens: { default_validity_seconds: 60 }",
    ));
    old.signal("QUIT");
    let mut old = old;
    let old_exit = tokio::task::spawn_blocking(move || old.wait_exit(Duration::from_secs(20)))
        .await
        .unwrap();
    assert!(
        old_exit.is_some(),
        "the old process exits after handing over"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    println!("graceful upgrade: {ok} requests succeeded, {failed} failed");
    assert!(ok > 100, "the load ran: {ok}");
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed during the upgrade",
        ok + failed
    );

    let (status, answer, _) = mint_user(&new, json!({"userId": "u"}), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer["data"]["validityInSeconds"], 60,
        "the new configuration is in effect"
    );
    assert!(
        new.wait_exit(Duration::from_millis(10)).is_none(),
        "the new process keeps running"
    );
}
