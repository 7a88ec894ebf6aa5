//! Running it like a platform team would: probes, metrics, access logs,
//! request ids, secret rotation, graceful shutdown and graceful upgrade.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};

/// Parses the Prometheus text exposition into `series -> value`, where a
/// series is `name{label="value",…}` exactly as exposed.
async fn scrape(gate: &Streamgate) -> BTreeMap<String, f64> {
    let text = client()
        .get(gate.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The value of the series named `name` whose labels include all of `labels`.
fn metric(samples: &BTreeMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(series, _)| {
            let (series_name, rest) = series.split_once('{').unwrap_or((series.as_str(), ""));
            series_name == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, value)| *value)
        .sum()
}

async fn status_of(url: String) -> u16 {
    get(url).await.status().as_u16()
}

async fn mint(gate: &Streamgate, body: Value) -> (u16, Value) {
    let response = client()
        .post(gate.url("/api/tokens/user"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

fn verifies_with(answer: &Value, secret: &str) -> bool {
    let token = answer["data"]["token"].as_str().unwrap();
    jsonwebtoken::decode::<Value>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &Validation::new(Algorithm::HS256),
    )
    .is_ok()
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
    let config = default_config(app.addr).replace(
        "admin: { listen: \"127.0.0.1:{admin_port}\" }",
        "admin: { listen: \"127.0.0.1:{admin_port}\", readiness_probe: { path: /health } }",
    );
    let gate = Streamgate::start(&config);
    assert_eq!(status_of(gate.admin_url("/readyz")).await, 200);

    let closed = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = default_config(closed).replace(
        "admin: { listen: \"127.0.0.1:{admin_port}\" }",
        "admin: { listen: \"127.0.0.1:{admin_port}\", readiness_probe: { path: /health } }",
    );
    let gate = Streamgate::start(&config);
    let not_ready = client()
        .get(gate.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(not_ready.status(), 503);
    let body: Value = not_ready.json().await.unwrap();
    assert_eq!(body["reason"], "upstream 'app' is unavailable");
}

/// Lays out a secret the way the kubelet mounts one: `api_secret` is a symlink
/// into `..data`, itself a symlink to a timestamped directory, swapped by rename.
struct SecretMount {
    dir: tempfile::TempDir,
    version: AtomicUsize,
}

impl SecretMount {
    fn new() -> SecretMount {
        let mount = SecretMount {
            dir: tempfile::tempdir().unwrap(),
            version: AtomicUsize::new(0),
        };
        std::os::unix::fs::symlink("..data/api_secret", mount.path()).unwrap();
        mount
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("api_secret")
    }

    fn write(&self, secret: &str) {
        let version = format!("..v{}", self.version.fetch_add(1, Ordering::SeqCst));
        let target = self.dir.path().join(&version);
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("api_secret"), secret).unwrap();
        let tmp = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&version, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("..data")).unwrap();
    }
}

fn with_secret_file(config: String, path: &std::path::Path) -> String {
    config.replace(
        &format!("api_secret: \"{API_SECRET}\""),
        &format!("api_secret_file: {}", path.display()),
    )
}

/// Waits until the metric `name{labels}` satisfies `wanted`; counters that
/// Pingora updates when it logs a request land just after the answer.
async fn metric_reaches(
    gate: &Streamgate,
    name: &str,
    labels: &[(&str, &str)],
    wanted: impl Fn(f64) -> bool,
) -> bool {
    eventually(|| async { wanted(metric(&scrape(gate).await, name, labels)) }).await
}

async fn eventually<F: std::future::Future<Output = bool>>(mut check: impl FnMut() -> F) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn not_ready_until_the_secret_loads_then_rotates_like_kubernetes() {
    let app = start_app().await;
    let mount = SecretMount::new();
    let gate = Streamgate::start(&with_secret_file(default_config(app.addr), &mount.path()));

    // Before the secret exists: alive, not ready, and no token.
    assert_eq!(status_of(gate.admin_url("/healthz")).await, 200);
    let not_ready = client()
        .get(gate.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(not_ready.status(), 503);
    assert_eq!(
        not_ready.json::<Value>().await.unwrap()["reason"],
        "no Stream API secret loaded yet"
    );
    let (status, answer) = mint(&gate, json!({"userId": "u"})).await;
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
    let (status, answer) = mint(&gate, json!({"userId": "u"})).await;
    assert_eq!(status, 200);
    assert!(verifies_with(&answer, "first-secret"));

    mount.write("second-secret");
    assert!(
        eventually(|| async {
            let (_, answer) = mint(&gate, json!({"userId": "u"})).await;
            verifies_with(&answer, "second-secret")
        })
        .await,
        "the rotated secret is used"
    );
    // Never a mix: every token verifies with exactly one of the two keys.
    for _ in 0..20 {
        let (_, answer) = mint(&gate, json!({"userId": "u"})).await;
        assert!(verifies_with(&answer, "second-secret") && !verifies_with(&answer, "first-secret"));
    }

    let failures_before = metric(
        &scrape(&gate).await,
        "streamgate_secret_reload_failures_total",
        &[],
    );
    mount.write("");
    assert!(
        metric_reaches(&gate, "streamgate_secret_reload_failures_total", &[], |v| v
            > failures_before)
        .await,
        "the failure is counted"
    );
    let (status, answer) = mint(&gate, json!({"userId": "u"})).await;
    assert_eq!(status, 200);
    assert!(
        verifies_with(&answer, "second-secret"),
        "the last good key still signs"
    );
    assert_eq!(status_of(gate.admin_url("/readyz")).await, 200);
    assert!(metric(&scrape(&gate).await, "streamgate_secret_reloads_total", &[]) >= 2.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_tokens_refusals_and_proxied_requests() {
    let app = start_app().await;
    let config = default_config(app.addr).replace(
        "server:",
        "rate_limits:\n  per_identity: { requests: 2, window: 60s }\nserver:",
    );
    let gate = Streamgate::start(&config);
    let before = scrape(&gate).await;
    let route = [("route", "POST /api/tokens/user")];
    assert_eq!(
        metric(&before, "streamgate_tokens_issued_total", &route),
        0.0
    );

    for _ in 0..2 {
        assert_eq!(mint(&gate, json!({"userId": "alice"})).await.0, 200);
    }
    assert_eq!(mint(&gate, json!({"userId": "alice"})).await.0, 429);
    assert_eq!(mint(&gate, json!({})).await.0, 422);
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
    assert_eq!(
        metric(&after, "streamgate_tokens_issued_total", &route),
        2.0
    );
    assert_eq!(
        metric(
            &after,
            "streamgate_tokens_refused_total",
            &[route[0], ("reason", "validation")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &after,
            "streamgate_tokens_refused_total",
            &[route[0], ("reason", "rate_limited")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &after,
            "streamgate_rate_limited_total",
            &[route[0], ("limit", "identity")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &after,
            "streamgate_token_request_duration_seconds_count",
            &route
        ),
        4.0
    );
    assert_eq!(
        metric(
            &after,
            "streamgate_proxied_requests_total",
            &[("upstream", "app"), ("status_class", "2xx")]
        ),
        2.0
    );
    assert_eq!(
        metric(
            &after,
            "streamgate_upstream_response_duration_seconds_count",
            &[("upstream", "app")]
        ),
        2.0
    );
    assert_eq!(metric(&after, "streamgate_secret_loaded", &[]), 1.0);
    assert_eq!(metric(&after, "streamgate_build_info", &[]), 1.0);
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
    let (status, answer) = mint(&gate, json!({"userId": "alice", "callId": "c1"})).await;
    assert_eq!(status, 200);
    let token = answer["data"]["token"].as_str().unwrap().to_string();
    let proxied = client()
        .get(gate.url("/api/users?session=query-secret"))
        .header("authorization", "Bearer authorization-secret")
        .header("cookie", "session=cookie-secret")
        .header("x-request-id", "trace-123")
        .send()
        .await
        .unwrap();
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

#[tokio::test(flavor = "multi_thread")]
async fn request_ids_are_generated_and_returned() {
    let app = start_app().await;
    let gate = Streamgate::start(&default_config(app.addr));
    let response = client().get(gate.url("/x")).send().await.unwrap();
    let returned = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let echoed: Value = response.json().await.unwrap();
    assert_eq!(echoed["headers"]["x-request-id"], json!([returned.clone()]));
    assert_eq!(returned.len(), 36, "a UUID: {returned}");
    let token = client()
        .post(gate.url("/api/tokens/user"))
        .json(&json!({"userId": "u"}))
        .send()
        .await
        .unwrap();
    assert!(token.headers().contains_key("x-request-id"));
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
    let readiness = client()
        .get(gate.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
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
    let url = old.url("/api/tokens/user");
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
    let mut new = old.start_upgrade(&config.replace(
        "server:",
        "tokens: { default_validity_seconds: 60 }\nserver:",
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

    let (status, answer) = mint(&new, json!({"userId": "u"})).await;
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
