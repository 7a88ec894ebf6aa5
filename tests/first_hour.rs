//! What a new operator reads in the first hour: the summary streamgate logs at
//! start, the configuration it runs with (`/config_dump`, secrets left out),
//! each configuration error once, file paths relative to the config file, and
//! access-log durations without float noise.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

/// `streamgate -t -c config` run from `cwd`: its exit code and stderr.
fn check_from(cwd: &Path, config: &Path) -> (Option<i32>, String) {
    let output = Command::new(binary())
        .arg("-t")
        .arg("-c")
        .arg(config)
        .current_dir(cwd)
        .output()
        .expect("run streamgate -t");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_start_up_summary_says_what_listens_and_where_requests_go() {
    let app = start_app().await;
    let gate = Streamgate::start(&config_with(
        app.addr,
        "identity:\n  mode: header\nroutes:\n  - match: { method: POST, path: /api/tokens/user }\n    mint: user_token\n  - match: { path: /health }\n    direct_response: { status: 200 }\n  - match: { path_prefix: / }\n    upstream: app",
    ));
    let logs = gate.logs();
    let summary = logs
        .split("configuration in effect:")
        .nth(1)
        .unwrap_or_else(|| panic!("no summary in {logs}"));
    for line in [
        format!("listener http://127.0.0.1:{}", gate.port),
        format!("admin http://127.0.0.1:{}", gate.admin_port),
        format!("upstream app {} (http1)", app.addr),
        format!("stream api_key {API_KEY}, api_secret inline (redacted)"),
        "route POST /api/tokens/user → mints user tokens, identity header".to_string(),
        "route * /health → answered 200".to_string(),
        "route * /* → proxied to app".to_string(),
    ] {
        assert!(summary.contains(&line), "{line:?} not in {summary}");
    }
    assert!(!logs.contains(API_SECRET));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_config_dump_shows_the_configuration_in_effect_and_no_secret() {
    let app = start_app().await;
    let idp_secret = "idp-shared-secret-that-must-not-leak";
    let gate = Streamgate::start(&config_with(
        app.addr,
        &format!(
            "identity:\n  mode: jwt\n  user_id_map: {{ hash: sha256 }}\n  jwt: {{ hs256_secret: {idp_secret}, issuer: https://idp.example, audience: stream }}\nrate_limits:\n  per_identity: {{ requests: 3, window: 60s }}"
        ),
    ));
    let response = get(gate.admin_url("/config_dump")).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    for secret in [API_SECRET, idp_secret] {
        assert!(!text.contains(secret), "a secret in the dump: {text}");
    }
    let dump: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(dump["stream"]["api_key"], API_KEY);
    assert_eq!(dump["stream"]["api_secret"], "<redacted>");
    assert_eq!(dump["upstreams"][0]["address"], app.addr.to_string());
    assert_eq!(dump["rate_limits"]["per_identity"]["requests"], 3);
    let route = &dump["routes"][0];
    assert_eq!(route["match"], "POST /api/tokens/user");
    let identity = &route["action"]["identity"];
    assert_eq!(identity["mode"], "jwt");
    assert_eq!(identity["user_id_map"]["hash"], "sha256");
    assert_eq!(identity["jwt"]["issuer"][0], "https://idp.example");
    assert_eq!(identity["jwt"]["cap_exp_to_credential"], true);
    assert!(identity["jwt"]["keys"]
        .as_str()
        .is_some_and(|keys| keys.contains("fixed key")));
}

#[test]
fn an_error_in_a_block_two_routes_inherit_is_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("streamgate.yaml");
    std::fs::write(
        &config,
        "listen: [\"127.0.0.1:0\"]\nupstreams:\n  app: { address: \"127.0.0.1:1\" }\nstream: { api_key: k, api_secret: s }\nidentity:\n  mode: jwt\n  jwt: { issuer_url: \"http://idp.example\" }\n",
    )
    .unwrap();
    let (code, stderr) = check_from(dir.path(), &config);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(
        stderr.matches("identity.jwt.issuer_url:").count(),
        1,
        "{stderr}"
    );
}

#[test]
fn relative_paths_are_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    std::fs::copy(
        format!("{FIXTURES}/idp-key-1.jwks.json"),
        dir.path().join("keys/jwks.json"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("keys/redis-ca.pem"),
        TestCa::new("redis CA").pem,
    )
    .unwrap();
    let config = dir.path().join("streamgate.yaml");
    std::fs::write(
        &config,
        "listen: [\"127.0.0.1:0\"]\nupstreams:\n  app: { address: \"127.0.0.1:1\" }\nstream: { api_key: k, api_secret: s }\nidentity:\n  mode: jwt\n  jwt: { jwks_file: keys/jwks.json, audience: a }\nrate_limits:\n  backend: redis\n  redis: { url: \"rediss://127.0.0.1:6380\", ca_file: keys/redis-ca.pem }\n",
    )
    .unwrap();
    // From another directory, the file's neighbour is found…
    let elsewhere = tempfile::tempdir().unwrap();
    let (code, stderr) = check_from(elsewhere.path(), &config);
    assert_eq!(code, Some(0), "{stderr}");
    // …and a keys/jwks.json beside the working directory is not what is read.
    std::fs::remove_file(dir.path().join("keys/jwks.json")).unwrap();
    std::fs::create_dir(elsewhere.path().join("keys")).unwrap();
    std::fs::copy(
        format!("{FIXTURES}/idp-key-1.jwks.json"),
        elsewhere.path().join("keys/jwks.json"),
    )
    .unwrap();
    let (code, stderr) = check_from(elsewhere.path(), &config);
    assert_eq!(code, Some(2), "{stderr}");
    let expected = dir.path().join("keys/jwks.json");
    assert!(
        stderr.contains(&format!("cannot read {}", expected.display())),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn access_log_durations_are_to_the_microsecond() {
    let app = start_app().await;
    let gate = Streamgate::start(&default_config(app.addr));
    for i in 0..5 {
        let response = get_with(gate.url("/echo"), &[("x-request-id", &format!("d{i}"))]).await;
        assert_eq!(response.status(), 200);
        let line = gate.access_line(&format!("d{i}")).await;
        let written = line["duration_ms"].to_string();
        let decimals = written.split_once('.').map_or(0, |(_, d)| d.len());
        assert!(decimals <= 3, "duration_ms {written}");
    }
}
