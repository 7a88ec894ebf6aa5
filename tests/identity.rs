//! Identity binding: once an identity mode is configured, a caller gets a token
//! for themselves only. Each mode against a real app with a session endpoint.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn assert_refused(status: u16, answer: &Value, expected_status: u16, prefix: &str) {
    assert_eq!(status, expected_status, "{answer}");
    assert_eq!(answer["success"], json!(false));
    assert!(
        answer["error"].as_str().unwrap().starts_with(prefix),
        "{answer}"
    );
}

const MISMATCH: &str = "Forbidden: userId does not match the authenticated user";

// ---- header mode -------------------------------------------------------------

const HEADER_MODE: &str =
    "identity:\n  mode: header\n  header: { user: X-Forwarded-User, roles: X-Forwarded-Groups }";

#[tokio::test(flavor = "multi_thread")]
async fn header_mode_mints_only_for_the_forwarded_user() {
    let app = start_app().await;
    let gate = Streamgate::start(&config_with(app.addr, HEADER_MODE));
    let alice = [("x-forwarded-user", "alice")];

    let (status, answer, _) = mint_user(&gate, json!({}), &alice).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(minted_user(&answer), "alice");
    let (status, answer, _) = mint_user(&gate, json!({"userId": "alice"}), &alice).await;
    assert_eq!((status, minted_user(&answer)), (200, "alice".to_string()));

    let (status, answer, _) = mint_user(&gate, json!({"userId": "mallory"}), &alice).await;
    assert_eq!((status, answer["error"].as_str().unwrap()), (403, MISMATCH));

    let (status, answer, _) = mint_user(&gate, json!({"userId": "alice"}), &[]).await;
    assert_refused(status, &answer, 401, "Unauthorized: ");
    assert!(
        !gate.logs().contains("mode: none"),
        "no 'anyone can mint' warning once a mode is set"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn header_mode_ignores_and_strips_identity_from_untrusted_peers() {
    let app = start_app().await;
    // Loopback is not trusted here, so the test client is an untrusted peer.
    let config = config_with(
        app.addr,
        &format!("trusted_cidrs: [\"10.0.0.0/8\"]\n{HEADER_MODE}"),
    );
    let gate = Streamgate::start(&config);
    let spoofed = [
        ("x-forwarded-user", "alice"),
        ("x-forwarded-groups", "admin"),
    ];

    let (status, answer, _) = mint_user(&gate, json!({}), &spoofed).await;
    assert_refused(status, &answer, 401, "Unauthorized: ");

    let echoed: Value = get_json_with(
        gate.url("/api/profile"),
        &[
            ("x-forwarded-user", "alice"),
            ("x-forwarded-groups", "admin"),
            ("x-other", "kept"),
        ],
    )
    .await;
    let headers = &echoed["headers"];
    assert!(
        headers.get("x-forwarded-user").is_none(),
        "spoofed user header reached the app: {headers}"
    );
    assert!(
        headers.get("x-forwarded-groups").is_none(),
        "spoofed roles header reached the app: {headers}"
    );
    assert_eq!(headers["x-other"], json!(["kept"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn header_mode_from_a_trusted_peer_passes_identity_to_the_app() {
    let app = start_app().await;
    let gate = Streamgate::start(&config_with(app.addr, HEADER_MODE));
    let echoed: Value =
        get_json_with(gate.url("/api/profile"), &[("x-forwarded-user", "alice")]).await;
    assert_eq!(echoed["headers"]["x-forwarded-user"], json!(["alice"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn call_role_is_granted_only_as_policy_says() {
    let app = start_app().await;
    let gate = Streamgate::start(&config_with(app.addr, HEADER_MODE));
    let plain = [("x-forwarded-user", "alice")];
    let admin = [
        ("x-forwarded-user", "alice"),
        ("x-forwarded-groups", "staff, admin"),
    ];

    let (status, answer, _) = mint(
        &gate,
        CALL_TOKEN_PATH,
        json!({"callId": "standup", "role": "user"}),
        &plain,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let claims = minted_claims(&answer);
    assert_eq!(claims["role"], "user");
    assert_eq!(claims["call_cids"], json!(["default:standup"]));
    assert_eq!(answer["data"]["role"], "user");

    // The escalation attempt: asking for admin without carrying it.
    let (status, answer, _) = mint(
        &gate,
        CALL_TOKEN_PATH,
        json!({"callId": "standup", "role": "admin"}),
        &plain,
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(
        answer["error"],
        "Forbidden: role \"admin\" is not granted to this user"
    );

    let (status, answer, _) = mint(
        &gate,
        CALL_TOKEN_PATH,
        json!({"callId": "standup", "role": "admin"}),
        &admin,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(minted_claims(&answer)["role"], "admin");

    let (status, answer, _) = mint(&gate, CALL_TOKEN_PATH, json!({"role": "user"}), &plain).await;
    assert_eq!(
        (status, answer["error"].as_str().unwrap()),
        (422, "Validation failed: callId is required")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn call_role_escalation_without_identity_mode() {
    let app = start_app().await;
    let gate = Streamgate::start(&default_config(app.addr));
    let (status, answer, _) = mint(
        &gate,
        CALL_TOKEN_PATH,
        json!({"userId": "u", "callId": "c", "role": "admin"}),
        &[],
    )
    .await;
    assert_eq!(status, 403, "{answer}");
}

// ---- forward_auth mode ------------------------------------------------------

fn forward_auth(extra: &str) -> String {
    format!(
        "identity:\n  mode: forward_auth\n  forward_auth: {{ path: /api/me, user_id_pointer: /user/id, roles_pointer: /user/roles{extra} }}"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_auth_asks_the_app_who_is_signed_in() {
    let app = start_app().await;
    let gate = Streamgate::start(&config_with(app.addr, &forward_auth(", cache_ttl: 0s")));
    let alice = [
        ("cookie", "theme=dark; session=alice"),
        ("x-not-forwarded", "secret-stuff"),
    ];

    let (status, answer, _) = mint_user(&gate, json!({}), &alice).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(minted_user(&answer), "alice");
    let (status, answer, _) = mint_user(&gate, json!({"userId": "bob"}), &alice).await;
    assert_eq!((status, answer["error"].as_str().unwrap()), (403, MISMATCH));

    let by_bearer = [("authorization", "Bearer app-bob")];
    let (status, answer, _) = mint_user(&gate, json!({"userId": "bob"}), &by_bearer).await;
    assert_eq!((status, minted_user(&answer)), (200, "bob".to_string()));

    let (status, answer, _) = mint_user(&gate, json!({"userId": "alice"}), &[]).await;
    assert_refused(status, &answer, 401, "Unauthorized: ");
    let (status, answer, _) = mint_user(
        &gate,
        json!({"userId": "alice"}),
        &[("cookie", "session=stolen-guess")],
    )
    .await;
    assert_refused(status, &answer, 401, "Unauthorized: ");

    // Roles from the session JSON: alice is a moderator, not an admin.
    let (status, _, _) = mint(
        &gate,
        CALL_TOKEN_PATH,
        json!({"callId": "c", "role": "moderator"}),
        &alice,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, _) = mint(
        &gate,
        CALL_TOKEN_PATH,
        json!({"callId": "c", "role": "admin"}),
        &alice,
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_auth_sends_only_cookie_and_authorization() {
    let app = start_app().await;
    let gate = Streamgate::start(&config_with(app.addr, &forward_auth("")));
    let before = app.session_checks();
    let (status, _, _) = mint_user(
        &gate,
        json!({}),
        &[
            ("cookie", "session=alice"),
            ("authorization", "Bearer app-alice"),
            ("x-not-forwarded", "1"),
            ("x-forwarded-user", "root"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(app.session_checks(), before + 1);
    let seen = app.sessions.last_headers.lock().unwrap().clone();
    assert!(
        seen.contains(&"cookie".to_string()) && seen.contains(&"authorization".to_string()),
        "{seen:?}"
    );
    for name in &seen {
        assert!(
            [
                "accept",
                "authorization",
                "content-length",
                "cookie",
                "host",
                // streamgate's own span of the check (tests/tracing.rs).
                "traceparent"
            ]
            .contains(&name.as_str()),
            "the session check carried {name}: {seen:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_auth_caches_per_credential() {
    let app = start_app().await;
    let gate = Streamgate::start(&config_with(app.addr, &forward_auth(", cache_ttl: 30s")));
    let before = app.session_checks();
    for _ in 0..3 {
        let (status, answer, _) = mint_user(&gate, json!({}), &[("cookie", "session=alice")]).await;
        assert_eq!((status, minted_user(&answer)), (200, "alice".to_string()));
    }
    assert_eq!(
        app.session_checks(),
        before + 1,
        "one check for three requests"
    );
    let (status, answer, _) = mint_user(&gate, json!({}), &[("cookie", "session=bob")]).await;
    assert_eq!(
        (status, minted_user(&answer)),
        (200, "bob".to_string()),
        "another credential is not served alice"
    );
    assert_eq!(app.session_checks(), before + 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_auth_with_the_app_down_or_slow_is_503_never_a_token() {
    let app = start_app().await;
    let closed = free_port();
    let down = format!(
        "upstreams:\n  app: {{ address: \"{}\" }}\n  auth: {{ address: \"127.0.0.1:{closed}\" }}\nroutes:\n  - {{ match: {{ method: POST, path: /api/tokens/user }}, mint: user_token }}\n  - {{ match: {{ path_prefix: / }}, upstream: app }}\n",
        app.addr
    );
    let config = default_config(app.addr)
        .replace(&format!("upstreams:\n  app: {{ address: \"{}\", connect_timeout: 1s, read_timeout: 1s }}\n", app.addr), &down)
        .replace(
            "server:",
            "identity:\n  mode: forward_auth\n  forward_auth: { upstream: auth, path: /api/me, user_id_pointer: /user/id }\nserver:",
        );
    let gate = Streamgate::start(&config);
    let (status, answer, _) = mint_user(&gate, json!({}), &[("cookie", "session=alice")]).await;
    assert_refused(status, &answer, 503, "Service unavailable: ");
    assert!(answer.get("data").is_none());

    let slow = config_with(
        app.addr,
        "identity:\n  mode: forward_auth\n  forward_auth: { path: /slow, user_id_pointer: /user/id, timeout: 300ms }",
    );
    let gate = Streamgate::start(&slow);
    let started = std::time::Instant::now();
    let (status, answer, _) = mint_user(&gate, json!({}), &[("cookie", "session=alice")]).await;
    assert_refused(status, &answer, 503, "Service unavailable: ");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

// ---- jwt mode -----------------------------------------------------------------

const JWT_HS: &str = "identity:\n  mode: jwt\n  jwt: { hs256_secret: idp-shared-secret, issuer: https://idp.example, audience: streamgate, roles_claim: roles }";

#[tokio::test(flavor = "multi_thread")]
async fn jwt_mode_accepts_only_valid_tokens_for_their_subject() {
    let app = start_app().await;
    let gate = Streamgate::start(&config_with(app.addr, JWT_HS));
    let claims = |sub: &str, iss: &str, exp: u64| json!({"sub": sub, "iss": iss, "aud": "streamgate", "exp": exp, "roles": ["user"]});
    let good = hs256(
        claims("alice", "https://idp.example", now() + 600),
        "idp-shared-secret",
    );
    let bearer = format!("Bearer {good}");

    let (status, answer, _) = mint_user(&gate, json!({}), &[("authorization", &bearer)]).await;
    assert_eq!(
        (status, minted_user(&answer)),
        (200, "alice".to_string()),
        "{answer}"
    );
    let (status, answer, _) = mint_user(
        &gate,
        json!({"userId": "root"}),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!((status, answer["error"].as_str().unwrap()), (403, MISMATCH));

    let (status, answer, headers) = mint_user(&gate, json!({"userId": "alice"}), &[]).await;
    assert_refused(status, &answer, 401, "Unauthorized: ");
    assert_eq!(headers["www-authenticate"], r#"Bearer realm="streamgate""#);

    // Roles come from the claim: "user" is not enough for an admin call token.
    let (status, _, _) = mint(
        &gate,
        CALL_TOKEN_PATH,
        json!({"callId": "c", "role": "admin"}),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(status, 403);
    let admin = hs256(
        json!({"sub": "root", "iss": "https://idp.example", "aud": "streamgate", "exp": now() + 600, "roles": ["admin"]}),
        "idp-shared-secret",
    );
    let (status, answer, _) = mint(
        &gate,
        CALL_TOKEN_PATH,
        json!({"callId": "c", "role": "admin"}),
        &[("authorization", &format!("Bearer {admin}"))],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(minted_claims(&answer)["role"], "admin");
}

/// Each way a bearer token can be wrong is a 401 with an `invalid_token`
/// challenge, words that name what is wrong (never jsonwebtoken's), and its
/// own reason in the refused-tokens metric and the access log.
#[tokio::test(flavor = "multi_thread")]
async fn jwt_mode_refuses_forged_expired_and_foreign_tokens() {
    let app = start_app().await;
    let gate = Streamgate::start(&config_with(app.addr, JWT_HS));
    let claims =
        |iss: &str, exp: u64| json!({"sub": "alice", "iss": iss, "aud": "streamgate", "exp": exp});
    let good = claims("https://idp.example", now() + 600);
    let idp = |claims: Value| hs256(claims, "idp-shared-secret");
    let bad_tokens = [
        (
            hs256(good.clone(), "guessed-secret"),
            "invalid_signature",
            "the JWT's signature does not verify: it was not signed by the identity provider's key, or it was altered",
        ),
        (
            idp(claims("https://idp.example", now() - 3600)),
            "token_expired",
            "the JWT has expired (exp is in the past); sign in again for a fresh one",
        ),
        (
            idp(claims("https://evil.example", now() + 600)),
            "wrong_issuer",
            "the JWT's issuer (iss) is not the configured identity provider: use a token from it",
        ),
        (
            rs256(good, "idp-key-1"),
            "algorithm_not_allowed",
            "the JWT is signed with RS256, which is not accepted here: use a token from the configured identity provider",
        ),
        // jsonwebtoken's own words for this one: "Base64 error: Invalid last symbol 116".
        (
            "not.a.jwt".into(),
            "malformed_token",
            "the JWT header (its first part) is not base64url",
        ),
        (
            "abc.def.ghi".into(),
            "malformed_token",
            "the JWT header (its first part) is not a JSON object",
        ),
    ];
    for (i, (token, reason, message)) in bad_tokens.iter().enumerate() {
        let (bearer, id) = (format!("Bearer {token}"), format!("jwt-{i}"));
        let request = [("authorization", bearer.as_str()), ("x-request-id", &id)];
        let (status, answer, headers) = mint_user(&gate, json!({}), &request).await;
        assert_eq!(status, 401, "{reason}: {answer}");
        let error = format!("Unauthorized: {message}");
        assert_eq!(
            answer,
            json!({"success": false, "error": error}),
            "{reason}"
        );
        let challenge = headers["www-authenticate"].to_str().unwrap();
        assert!(challenge.contains("invalid_token"), "{reason}");
        // The access log says why, with the same code, and holds no token.
        let line = gate.access_line(&id).await;
        assert_eq!(
            (&line["status"], &line["reason"]),
            (&json!(401), &json!(reason))
        );
        assert!(
            !gate.stdout().contains(token.as_str()),
            "{reason}: token logged"
        );
    }
    let samples = scrape(&gate).await;
    let refused = |reason| {
        let labels = [("route", "POST /api/tokens/user"), ("reason", reason)];
        metric(&samples, "streamgate_tokens_refused_total", &labels)
    };
    for (reason, count) in [
        ("invalid_signature", 1.0),
        ("token_expired", 1.0),
        ("wrong_issuer", 1.0),
        ("algorithm_not_allowed", 1.0),
        ("malformed_token", 2.0),
        // Counted under their own reasons, not the envelope's.
        ("unauthorized", 0.0),
    ] {
        assert_eq!(refused(reason), count, "{reason}");
    }
    let failures = [("mode", "jwt"), ("result", "unauthorized")];
    let failed = metric(&samples, "streamgate_identity_failures_total", &failures);
    assert_eq!(failed, 6.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn jwt_mode_with_a_pem_public_key() {
    let app = start_app().await;
    let config = config_with(
        app.addr,
        &format!(
            "identity:\n  mode: jwt\n  jwt: {{ public_key_file: {FIXTURES}/idp-key-1.pub.pem }}"
        ),
    );
    let gate = Streamgate::start(&config);
    let token = rs256(json!({"sub": "alice", "exp": now() + 600}), "idp-key-1");
    let (status, answer, _) = mint_user(
        &gate,
        json!({}),
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!((status, minted_user(&answer)), (200, "alice".to_string()));
    let other_key = rs256(json!({"sub": "alice", "exp": now() + 600}), "idp-key-2");
    let (status, _, _) = mint_user(
        &gate,
        json!({}),
        &[("authorization", &format!("Bearer {other_key}"))],
    )
    .await;
    assert_eq!(status, 401, "a token from another key is refused");
}

/// Rotates the JWKS the way Kubernetes updates a mounted ConfigMap: a new
/// timestamped directory, then an atomic rename of the `..data` symlink.
#[tokio::test(flavor = "multi_thread")]
async fn jwt_mode_picks_up_a_changed_jwks_file_without_restart() {
    let app = start_app().await;
    let mount = Mount::new("jwks.json");
    let install = |key: &str| {
        mount.write(std::fs::read(format!("{FIXTURES}/{key}.jwks.json")).unwrap());
    };
    install("idp-key-1");
    let config = config_with(
        app.addr,
        &format!(
            "identity:\n  mode: jwt\n  jwt: {{ jwks_file: {} }}",
            mount.path().display()
        ),
    );
    let gate = Streamgate::start(&config);
    let with_key = |key: &str| {
        format!(
            "Bearer {}",
            rs256(json!({"sub": "alice", "exp": now() + 600}), key)
        )
    };

    let mint_with = |key: &'static str| {
        let bearer = with_key(key);
        let gate = &gate;
        async move { mint_user(gate, json!({}), &[("authorization", &bearer)]).await }
    };
    let (status, answer, _) = mint_with("idp-key-1").await;
    assert_eq!(status, 200, "{answer}");
    let (status, _, _) = mint_with("idp-key-2").await;
    assert_eq!(status, 401, "key 2 is not published yet");

    install("idp-key-2");
    assert!(
        eventually(|| async { mint_with("idp-key-2").await.0 == 200 }).await,
        "rotated key accepted"
    );
    let (status, _, _) = mint_with("idp-key-1").await;
    assert_eq!(status, 401, "the retired key is no longer accepted");
}

// ---- rate limits and CORS ----------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn per_identity_rate_limit() {
    let app = start_app().await;
    let config = config_with(
        app.addr,
        &format!("{HEADER_MODE}\nrate_limits:\n  per_identity: {{ requests: 3, window: 60s }}"),
    );
    let gate = Streamgate::start(&config);
    for _ in 0..3 {
        let (status, _, _) = mint_user(&gate, json!({}), &[("x-forwarded-user", "alice")]).await;
        assert_eq!(status, 200);
    }
    let (status, answer, headers) =
        mint_user(&gate, json!({}), &[("x-forwarded-user", "alice")]).await;
    assert_refused(status, &answer, 429, "Too many requests: ");
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let (status, _, _) = mint_user(&gate, json!({}), &[("x-forwarded-user", "bob")]).await;
    assert_eq!(status, 200, "another user is unaffected");
}

#[tokio::test(flavor = "multi_thread")]
async fn per_client_ip_rate_limit_reads_forwarded_for_from_trusted_peers() {
    let app = start_app().await;
    let config = config_with(
        app.addr,
        "rate_limits:\n  per_client_ip: { requests: 2, window: 60s }",
    );
    let gate = Streamgate::start(&config);
    let first = [("x-forwarded-for", "203.0.113.1")];
    for _ in 0..2 {
        let (status, _, _) = mint_user(&gate, json!({"userId": "u"}), &first).await;
        assert_eq!(status, 200);
    }
    let (status, _, headers) = mint_user(&gate, json!({"userId": "u"}), &first).await;
    assert_eq!(status, 429);
    assert!(headers.contains_key("retry-after"));
    let (status, _, _) = mint_user(
        &gate,
        json!({"userId": "u"}),
        &[("x-forwarded-for", "203.0.113.2")],
    )
    .await;
    assert_eq!(status, 200, "another client is unaffected");
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_preflight_and_responses_for_token_routes_only() {
    let app = start_app().await;
    let config = config_with(
        app.addr,
        "cors:\n  allowed_origins: [\"https://app.example\"]\n  allow_credentials: true",
    );
    let gate = Streamgate::start(&config);
    let preflight = |origin: &'static str| {
        client()
            .request(reqwest::Method::OPTIONS, gate.url(USER_TOKEN_PATH))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let allowed = preflight("https://app.example").await.unwrap();
    assert_eq!(allowed.status(), 204);
    let h = allowed.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert!(h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
    assert!(h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase()
        .contains("content-type"));
    assert_eq!(h["vary"], "Origin");

    let refused = preflight("https://evil.example").await.unwrap();
    assert_eq!(refused.status(), 204);
    assert!(refused
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    assert_eq!(refused.headers()["vary"], "Origin");

    let (status, _, headers) = mint_user(
        &gate,
        json!({"userId": "u"}),
        &[("origin", "https://app.example")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example"
    );
    let (_, _, headers) = mint_user(
        &gate,
        json!({"userId": "u"}),
        &[("origin", "https://evil.example")],
    )
    .await;
    assert!(headers.get("access-control-allow-origin").is_none());

    // Proxied routes are untouched: the app answers its own OPTIONS.
    let proxied = client()
        .request(reqwest::Method::OPTIONS, gate.url("/api/users"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    let echoed: Value = proxied.json().await.unwrap();
    assert_eq!(echoed["method"], "OPTIONS");
}
