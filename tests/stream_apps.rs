//! Several Stream apps behind one sidecar (issue 17): token routes pick an
//! app by route and by host, each token verifies with its own app's secret
//! only and carries its app's key, each app's secret file is followed on its
//! own, and readiness waits for every app.

mod common;

use std::net::SocketAddr;

use common::*;
use serde_json::{json, Value};

const EU_KEY: &str = "eu-api-key";
const EU_SECRET: &str = "eu-secret-0123456789abcdefghijklmnopqrstuvwxyz";
const US_KEY: &str = "us-api-key";
const US_SECRET: &str = "us-secret-0123456789abcdefghijklmnopqrstuvwxyz";

/// Two apps: `eu` for the host `eu.example.com`, `us` for any host under
/// `us.example.com`, and `us` for call tokens by route, whatever the host.
/// `eu_secret` and `us_secret` are YAML for each app's secret.
fn two_apps(app: SocketAddr, eu_secret: &str, us_secret: &str) -> String {
    format!(
        r#"
listen: ["127.0.0.1:{{port}}"]
upstreams:
  app: {{ address: "{app}" }}
stream_apps:
  eu: {{ api_key: "{EU_KEY}", {eu_secret} }}
  us: {{ api_key: "{US_KEY}", {us_secret} }}
routes:
  - {{ match: {{ host: eu.example.com, method: POST, path: /api/tokens/user }}, mint: user_token, app: eu }}
  - {{ match: {{ host: "*.us.example.com", method: POST, path: /api/tokens/user }}, mint: user_token, app: us }}
  - {{ match: {{ method: POST, path: /api/tokens/call }}, mint: call_token, app: us }}
  - {{ match: {{ path_prefix: / }}, upstream: app }}
admin: {{ listen: "127.0.0.1:{{admin_port}}" }}
access_log: {{ format: json }}
server: {{ threads: 2, pid_file: "{{dir}}/streamgate.pid", upgrade_sock: "{{dir}}/upgrade.sock", drain_seconds: 1, grace_period_seconds: 1, graceful_shutdown_timeout_seconds: 1 }}
"#
    )
}

async fn mint_at(gate: &Streamgate, host: &str, path: &str, body: Value) -> (u16, Value) {
    let (status, answer, _) = mint(gate, path, body, &[("host", host)]).await;
    (status, answer)
}

/// The user token minted for `host`, checked to verify with `secret` only.
async fn token_for(gate: &Streamgate, host: &str, secret: &str, other: &str) -> Value {
    let (status, answer) = mint_at(gate, host, USER_TOKEN_PATH, json!({"userId": "ada"})).await;
    assert_eq!(status, 200, "{host}: {answer}");
    let token = token_in(&answer);
    assert!(
        verifies_with(token, secret),
        "{host}: signed with its app's secret"
    );
    assert!(
        !verifies_with(token, other),
        "{host}: not with the other app's"
    );
    answer
}

#[tokio::test(flavor = "multi_thread")]
async fn two_apps_by_host_and_by_route() {
    let app = start_app().await;
    let config = two_apps(
        app.addr,
        &format!("api_secret: \"{EU_SECRET}\""),
        &format!("api_secret: \"{US_SECRET}\""),
    );
    let gate = Streamgate::start(&config);

    let eu = token_for(&gate, "eu.example.com", EU_SECRET, US_SECRET).await;
    assert_eq!(eu["data"]["apiKey"], EU_KEY);
    let eu = token_for(&gate, "EU.Example.com:443", EU_SECRET, US_SECRET).await;
    assert_eq!(
        eu["data"]["apiKey"], EU_KEY,
        "host names compare without case or port"
    );
    for host in ["app.us.example.com", "a.b.us.example.com"] {
        let us = token_for(&gate, host, US_SECRET, EU_SECRET).await;
        assert_eq!(us["data"]["apiKey"], US_KEY);
    }

    // By route: call tokens are `us`'s from any host.
    let body = json!({"userId": "ada", "callId": "standup", "callType": "default"});
    let (status, answer) = mint_at(&gate, "eu.example.com", CALL_TOKEN_PATH, body).await;
    assert_eq!(status, 200, "{answer}");
    assert!(verifies_with(token_in(&answer), US_SECRET));
    assert_eq!(answer["data"]["apiKey"], US_KEY);

    // A host no token route names is proxied, as any other unmatched request.
    for host in ["us.example.com", "eu.example.com.evil.test", "other.test"] {
        let response = post_json(
            gate.url(USER_TOKEN_PATH),
            &json!({"userId": "ada"}),
            &[("host", host)],
        )
        .await;
        let answer: Value = response.json().await.unwrap();
        assert_eq!(
            answer["path"], USER_TOKEN_PATH,
            "{host}: the app answers: {answer}"
        );
        assert!(answer.get("data").is_none(), "{host}: no token: {answer}");
    }

    let samples = scrape(&gate).await;
    let issued = |app: &str| metric(&samples, "streamgate_tokens_issued_total", &[("app", app)]);
    assert_eq!((issued("eu"), issued("us")), (2.0, 3.0));
    assert_eq!(
        metric(&samples, "streamgate_secret_loaded", &[("app", "eu")]),
        1.0
    );
    assert_eq!(
        metric(&samples, "streamgate_secret_loaded", &[("app", "us")]),
        1.0
    );
    let dump = get_json(gate.admin_url("/config_dump")).await;
    assert_eq!(dump["stream_apps"]["eu"]["api_key"], EU_KEY);
    assert_eq!(dump["stream_apps"]["us"]["api_secret"], "<redacted>");
    assert!(!dump.to_string().contains(EU_SECRET) && !dump.to_string().contains(US_SECRET));

    // The OpenAPI document has one operation per path: the first route's
    // (eu's user tokens), and us's call tokens.
    let openapi = get_json(gate.admin_url("/openapi.json")).await.to_string();
    assert!(
        openapi.contains(USER_TOKEN_PATH) && openapi.contains(CALL_TOKEN_PATH),
        "{openapi}"
    );
    assert!(
        openapi.contains(EU_KEY) && openapi.contains(US_KEY),
        "{openapi}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_apps_secret_rotates_on_its_own_and_readiness_waits_for_all() {
    let app = start_app().await;
    let (eu_mount, us_mount) = (Mount::new("eu_secret"), Mount::new("us_secret"));
    eu_mount.write("eu-first");
    let config = two_apps(
        app.addr,
        &format!("api_secret_file: {}", eu_mount.path().display()),
        &format!("api_secret_file: {}", us_mount.path().display()),
    );
    let gate = Streamgate::start(&config);

    // us has no secret yet: not ready, naming it; eu already mints.
    let not_ready = get(gate.admin_url("/readyz")).await;
    assert_eq!(not_ready.status(), 503);
    let reason = not_ready.json::<Value>().await.unwrap()["reason"].clone();
    assert_eq!(reason, "no Stream API secret loaded yet (stream_apps.us)");
    token_for(&gate, "eu.example.com", "eu-first", "us-first").await;
    let (status, answer) = mint_at(
        &gate,
        "x.us.example.com",
        USER_TOKEN_PATH,
        json!({"userId": "ada"}),
    )
    .await;
    assert_eq!(status, 503, "{answer}");

    us_mount.write("us-first\n");
    assert!(
        eventually(|| async { status_of(gate.admin_url("/readyz")).await == 200 }).await,
        "ready once every app has a secret"
    );
    token_for(&gate, "x.us.example.com", "us-first", "eu-first").await;

    let reloads = |app: &'static str| {
        let gate = &gate;
        async move { metric_now(gate, "streamgate_secret_reloads_total", &[("app", app)]).await }
    };
    let us_reloads = reloads("us").await;
    eu_mount.write("eu-second");
    assert!(
        eventually(|| async {
            let (_, answer) = mint_at(
                &gate,
                "eu.example.com",
                USER_TOKEN_PATH,
                json!({"userId": "ada"}),
            )
            .await;
            verifies_with(token_in(&answer), "eu-second")
        })
        .await,
        "eu's new secret is used"
    );
    token_for(&gate, "x.us.example.com", "us-first", "eu-second").await;
    assert_eq!(reloads("us").await, us_reloads, "us was not reloaded");
    assert_eq!(reloads("eu").await, 2.0);
}
