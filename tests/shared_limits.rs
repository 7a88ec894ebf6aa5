//! Rate limits shared through Redis (issue 17): replicas enforce one limit
//! together, the count outlives a streamgate restart, and a Redis that is
//! gone, slow or refusing gets `on_error`'s answer within the timeout, never
//! a hang. Against a real `redis-server` with a password.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const BACKEND_ERRORS: &str = "streamgate_rate_limit_backend_errors_total";

/// Anyone mints for any user (identity `none`), `requests` per `window` per
/// user, counted in the Redis at `url`.
fn shared_config(app: std::net::SocketAddr, url: &str, limit: &str, redis_extra: &str) -> String {
    config_with(
        app,
        &format!(
            "rate_limits:\n  backend: redis\n  redis: {{ url: \"{url}\", timeout: 300ms{redis_extra} }}\n  per_identity: {limit}"
        ),
    )
}

async fn mint_for(gate: &Streamgate, user: &str) -> (u16, Value, reqwest::header::HeaderMap) {
    mint_user(gate, json!({ "userId": user }), &[]).await
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> u64 {
    headers["retry-after"]
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("whole seconds")
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_sharing_redis_enforce_one_limit() {
    let app = start_app().await;
    let redis = Redis::start();
    // Three at once, then one every 5 s.
    let config = shared_config(app.addr, &redis.url(), "{ requests: 3, window: 15s }", "");
    let (a, b) = (Streamgate::start(&config), Streamgate::start(&config));

    let first = Instant::now();
    for gate in [&a, &b, &a] {
        let (status, answer, _) = mint_for(gate, "alice").await;
        assert_eq!(status, 200, "{answer}");
    }
    let (status, answer, headers) = mint_for(&b, "alice").await;
    assert_eq!(status, 429, "the fourth across both replicas: {answer}");
    assert_eq!(answer["success"], false);
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .starts_with("Too many requests: retry in "));
    // The next slot opens 5 s after the first request: the wait names it,
    // less whatever has passed since (whole seconds, rounded up).
    let wait = retry_after(&headers);
    let passed = first.elapsed().as_secs();
    assert!(
        (5u64.saturating_sub(passed + 1).max(1)..=5).contains(&wait),
        "Retry-After {wait} after {passed} s"
    );
    let (status, _, _) = mint_for(&a, "alice").await;
    assert_eq!(status, 429, "the other replica agrees");
    let (status, _, _) = mint_for(&a, "bob").await;
    assert_eq!(status, 200, "another user has a count of their own");

    // Retry-After is a promise: once it has passed, a request gets through.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let (status, answer, _) = mint_for(&b, "alice").await;
    assert_eq!(status, 200, "after Retry-After: {answer}");

    let ttl: i64 = redis
        .cli(&["PTTL", "streamgate:identity:default:alice"])
        .parse()
        .unwrap();
    assert!(
        ttl > 0 && ttl <= 15_000,
        "the key expires by itself: PTTL {ttl}"
    );
    let samples = scrape(&a).await;
    assert_eq!(
        metric(
            &samples,
            "streamgate_rate_limited_total",
            &[("limit", "identity")]
        ),
        1.0
    );
    assert_eq!(metric(&samples, BACKEND_ERRORS, &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_count_outlives_a_streamgate_restart() {
    let app = start_app().await;
    let redis = Redis::start();
    let config = shared_config(app.addr, &redis.url(), "{ requests: 2, window: 600s }", "");
    let gate = Streamgate::start(&config);
    for _ in 0..2 {
        assert_eq!(mint_for(&gate, "carol").await.0, 200);
    }
    assert_eq!(mint_for(&gate, "carol").await.0, 429);
    drop(gate);

    let gate = Streamgate::start(&config);
    let (status, _, headers) = mint_for(&gate, "carol").await;
    assert_eq!(status, 429, "a new process finds the count in Redis");
    let wait = retry_after(&headers);
    assert!(
        (200..=300).contains(&wait),
        "one slot per 300 s: Retry-After {wait}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_killed_mid_run_falls_back_to_the_local_limit_and_comes_back() {
    let app = start_app().await;
    let mut redis = Redis::start();
    let config = shared_config(app.addr, &redis.url(), "{ requests: 2, window: 600s }", "");
    let gate = Streamgate::start(&config);
    assert_eq!(mint_for(&gate, "dave").await.0, 200, "counted in Redis");

    redis.kill();
    // The default on_error: this process's own limiter, which has not seen
    // dave yet: two pass, the third is refused, each answered promptly.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let asked = Instant::now();
        statuses.push(mint_for(&gate, "dave").await.0);
        assert!(
            asked.elapsed() < Duration::from_secs(3),
            "answered after {:?}",
            asked.elapsed()
        );
    }
    assert_eq!(statuses, [200, 200, 429]);
    let errors = metric_now(
        &gate,
        BACKEND_ERRORS,
        &[("limit", "identity"), ("on_error", "local")],
    )
    .await;
    assert_eq!(errors, 3.0);
    assert!(
        gate.logs()
            .contains("on_error: local until it answers again"),
        "{}",
        gate.logs()
    );

    // Back (empty: no persistence): the shared count is used again.
    redis.restart();
    assert!(
        eventually(|| async {
            mint_for(&gate, "erin").await.0 == 200
                && redis.cli(&["EXISTS", "streamgate:identity:default:erin"]) == "1"
        })
        .await,
        "Redis is used again once it is back"
    );
    let before = metric_now(&gate, BACKEND_ERRORS, &[]).await;
    assert_eq!(mint_for(&gate, "erin").await.0, 200);
    assert_eq!(
        mint_for(&gate, "erin").await.0,
        429,
        "two per window, counted in Redis"
    );
    assert_eq!(metric_now(&gate, BACKEND_ERRORS, &[]).await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn on_error_allow_and_deny_answer_within_the_timeout() {
    let app = start_app().await;
    // A Redis that accepts connections and never answers: each call can only
    // end by its timeout (300 ms).
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("redis://:pw@{}", silent.local_addr().unwrap());
    // And one where nothing listens at all.
    let gone_url = format!("redis://:pw@127.0.0.1:{}", free_port());
    for url in [&silent_url, &gone_url] {
        let allow = Streamgate::start(&shared_config(
            app.addr,
            url,
            "{ requests: 1, window: 60s }",
            ", on_error: allow",
        ));
        let deny = Streamgate::start(&shared_config(
            app.addr,
            url,
            "{ requests: 1, window: 60s }",
            ", on_error: deny",
        ));
        for _ in 0..3 {
            let asked = Instant::now();
            let (status, answer, _) = mint_for(&allow, "frank").await;
            assert_eq!(status, 200, "{url}: allow lets everyone through: {answer}");
            assert!(
                asked.elapsed() < Duration::from_secs(3),
                "{url}: answered after {:?}",
                asked.elapsed()
            );

            let asked = Instant::now();
            let (status, answer, _) = mint_for(&deny, "frank").await;
            assert_eq!(status, 503, "{url}: deny refuses: {answer}");
            assert!(
                answer["error"]
                    .as_str()
                    .unwrap()
                    .contains("rate limiter cannot be reached"),
                "{answer}"
            );
            assert!(
                asked.elapsed() < Duration::from_secs(3),
                "{url}: answered after {:?}",
                asked.elapsed()
            );
        }
        assert_eq!(
            metric_now(&allow, BACKEND_ERRORS, &[("on_error", "allow")]).await,
            3.0
        );
        assert_eq!(
            metric_now(&deny, BACKEND_ERRORS, &[("on_error", "deny")]).await,
            3.0
        );
        assert_eq!(
            metric_now(
                &deny,
                "streamgate_tokens_refused_total",
                &[("reason", "unavailable")]
            )
            .await,
            3.0
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_redis_password_is_never_shown() {
    let app = start_app().await;
    let redis = Redis::start();
    let config = shared_config(app.addr, &redis.url(), "{ requests: 5, window: 60s }", "");
    let gate = Streamgate::start(&config);
    assert_eq!(mint_for(&gate, "grace").await.0, 200);
    let dump = get_json(gate.admin_url("/config_dump")).await;
    let shown = dump["rate_limits"]["redis"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(shown, format!("redis://:***@127.0.0.1:{}/0", redis.port));
    assert!(!dump.to_string().contains(REDIS_PASSWORD));
    let logs = gate.logs();
    assert!(
        logs.contains(&shown),
        "the start-up summary names the Redis: {logs}"
    );
    assert!(!logs.contains(REDIS_PASSWORD), "{logs}");

    // A wrong password is a Redis that cannot answer: on_error, logged
    // without the password tried.
    let wrong = redis.url().replace(REDIS_PASSWORD, "not-the-pa55word");
    let config = shared_config(app.addr, &wrong, "{ requests: 5, window: 60s }", "");
    let gate = Streamgate::start(&config);
    assert_eq!(mint_for(&gate, "grace").await.0, 200, "on_error: local");
    assert_eq!(
        metric_now(&gate, BACKEND_ERRORS, &[("on_error", "local")]).await,
        1.0
    );
    let logs = gate.logs();
    assert!(logs.contains("rate limits: Redis failed"), "{logs}");
    assert!(!logs.contains("not-the-pa55word"), "{logs}");
}

/// `rediss://`: the limit is counted in a Redis that speaks TLS only, whose
/// certificate is verified against `ca_file`; without it (the system's
/// roots), the test CA is not trusted and nothing is counted: `on_error`.
#[tokio::test(flavor = "multi_thread")]
async fn a_tls_redis_is_verified_against_its_ca() {
    let app = start_app().await;
    let ca = TestCa::new("redis test CA");
    let redis = Redis::start_tls(&ca);
    let limit = "{ requests: 2, window: 60s }";
    let trusting = format!(
        ", on_error: deny, ca_file: \"{}\"",
        redis.ca_file().display()
    );
    let gate = Streamgate::start(&shared_config(app.addr, &redis.url(), limit, &trusting));
    for _ in 0..2 {
        let (status, answer, _) = mint_for(&gate, "heidi").await;
        assert_eq!(status, 200, "{answer}");
    }
    let (status, answer, _) = mint_for(&gate, "heidi").await;
    assert_eq!(
        status, 429,
        "the third, counted in Redis over TLS: {answer}"
    );
    assert_eq!(
        redis.cli(&["EXISTS", "streamgate:identity:default:heidi"]),
        "1",
        "the key is in the TLS Redis"
    );
    assert_eq!(metric_now(&gate, BACKEND_ERRORS, &[]).await, 0.0);
    let dump = get_json(gate.admin_url("/config_dump")).await;
    assert_eq!(
        dump["rate_limits"]["redis"]["url"],
        format!("rediss://:***@127.0.0.1:{}/0", redis.port)
    );

    let untrusting = Streamgate::start(&shared_config(
        app.addr,
        &redis.url(),
        limit,
        ", on_error: deny",
    ));
    let (status, answer, _) = mint_for(&untrusting, "ivan").await;
    assert_eq!(status, 503, "an unverified server is not asked: {answer}");
    assert_eq!(
        metric_now(&untrusting, BACKEND_ERRORS, &[("on_error", "deny")]).await,
        1.0
    );
}
