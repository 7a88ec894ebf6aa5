//! The validators seen through [`Config::from_yaml`]: what a file says, what
//! the model holds, and the errors and warnings an operator reads.

use crate::config::{Config, ConfigError, RouteAction};
use crate::net::cors::AllowedOrigins;

const MINIMAL: &str = r#"
listen: ["127.0.0.1:3000"]
upstreams:
  app: { address: "127.0.0.1:8080" }
stream:
  api_key: key
  api_secret: a-secret
"#;

fn with_origins(origins: &str) -> String {
    format!("{MINIMAL}cors:\n  allowed_origins: {origins}\n")
}

fn load(text: &str) -> Result<Config, Vec<ConfigError>> {
    Config::from_yaml(text, &|_| None).map_err(|errors| errors.0)
}

/// The origins every token route allows.
fn allowed(config: &Config) -> Vec<AllowedOrigins> {
    config
        .routes
        .routes()
        .iter()
        .filter_map(|route| match &route.action {
            RouteAction::Mint(settings) => settings.cors.as_ref().map(|c| c.origins.clone()),
            _ => None,
        })
        .collect()
}

fn list(origins: &[&str]) -> AllowedOrigins {
    AllowedOrigins::List(origins.iter().map(ToString::to_string).collect())
}

#[test]
fn cors_origins_are_kept_as_browsers_send_them() {
    let config =
        load(&with_origins(r#"["https://Admin.Example.com:443", "http://localhost:8080", "https://Bücher.example", "http://[::1]:80"]"#))
            .unwrap();
    let expected = list(&[
        "https://admin.example.com",
        "http://localhost:8080",
        "https://xn--bcher-kva.example",
        "http://[::1]",
    ]);
    // Both default token routes get the same list.
    assert_eq!(allowed(&config), vec![expected.clone(), expected]);
    assert!(
        !config.warnings().iter().any(|w| w.contains("cors.")),
        "{:?}",
        config.warnings()
    );
}

#[test]
fn a_cors_origin_with_a_path_is_used_without_it_and_warns() {
    let config = load(&with_origins(
        r#"["https://app.example.com/", "https://admin.example.com/app"]"#,
    ))
    .unwrap();
    assert_eq!(
        allowed(&config)[0],
        list(&["https://app.example.com", "https://admin.example.com"])
    );
    let warnings = config.warnings();
    let about = |key: &str| {
        warnings
            .iter()
            .find(|w| w.starts_with(key))
            .unwrap_or_else(|| panic!("no warning about {key} in {warnings:?}"))
    };
    let slash = about("cors.allowed_origins[0]: ");
    assert!(
        slash.contains("read as the origin https://app.example.com:")
            && slash.contains("browsers never send a path (\"/\")"),
        "{slash}"
    );
    let path = about("cors.allowed_origins[1]: ");
    assert!(
        path.contains("read as the origin https://admin.example.com:")
            && path.contains("(\"/app\")"),
        "{path}"
    );
}

#[test]
fn an_origin_listed_twice_is_kept_once_and_warns() {
    let config = load(&with_origins(
        r#"["https://app.example.com", "http://other.example", "HTTPS://App.Example.com:443"]"#,
    ))
    .unwrap();
    assert_eq!(
        allowed(&config)[0],
        list(&["https://app.example.com", "http://other.example"])
    );
    let warnings = config.warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("cors.allowed_origins[2]: ")
                && w.contains("already allowed by cors.allowed_origins[0]")),
        "{warnings:?}"
    );
}

#[test]
fn every_entry_that_is_not_an_origin_is_an_error_naming_it() {
    let errors = load(&with_origins(
        r#"["https://ok.example", "ftp://files.example", "https://user@app.example", "null", "app.example.com", "https://app.example/?q=1"]"#,
    ))
    .unwrap_err();
    let found: Vec<(&str, &str)> = errors
        .iter()
        .map(|e| (e.key.as_str(), e.reason.as_str()))
        .collect();
    for (key, reason) in [
        ("cors.allowed_origins[1]", "only http and https"),
        ("cors.allowed_origins[2]", "a user name or password"),
        ("cors.allowed_origins[3]", "cannot be allowed"),
        ("cors.allowed_origins[4]", "is not an origin"),
        ("cors.allowed_origins[5]", "has a query"),
    ] {
        assert!(
            found.iter().any(|(k, r)| *k == key && r.contains(reason)),
            "{key}: {reason:?} missing from {found:?}"
        );
    }
    assert_eq!(errors.len(), 5, "{found:?}");
}

#[test]
fn a_wildcard_keeps_its_rules() {
    let any = load(&with_origins(r#"["*"]"#)).unwrap();
    assert_eq!(allowed(&any)[0], AllowedOrigins::Any);
    for (origins, extra, reason) in [
        (
            r#"["*", "https://app.example.com"]"#,
            "",
            "cannot be combined",
        ),
        (
            r#"["*"]"#,
            "  allow_credentials: true\n",
            "allow_credentials",
        ),
        ("[]", "", "at least one origin"),
    ] {
        let errors = load(&format!("{}{extra}", with_origins(origins))).unwrap_err();
        assert_eq!(errors[0].key, "cors.allowed_origins", "{origins}");
        assert!(errors[0].reason.contains(reason), "{:?}", errors[0]);
    }
}

fn with_limits(limits: &str) -> String {
    format!("{MINIMAL}rate_limits:\n{limits}\n")
}

/// Each problem's key and the start of its reason.
fn problems(text: &str) -> Vec<(String, String)> {
    load(text)
        .expect_err("refused")
        .into_iter()
        .map(|e| (e.key, e.reason))
        .collect()
}

#[test]
fn a_redis_backend_is_read_into_types_with_defaults() {
    let config = load(&with_limits(
        "  backend: redis\n  redis: { url: \"redis://:pw@redis:6379/2\" }\n  per_identity: { requests: 3, window: 1m }",
    ))
    .unwrap();
    let redis = config.rate_limits.redis.expect("shared");
    assert_eq!(redis.url.to_string(), "redis://:***@redis:6379/2");
    assert_eq!(redis.key_prefix, "streamgate:");
    assert_eq!(redis.timeout, std::time::Duration::from_millis(100));
    assert_eq!(redis.on_error, crate::limits::OnError::Local);
    let config = load(&with_limits(
        "  backend: redis\n  redis: { url: \"redis://r\", key_prefix: \"eu:\", timeout: 1s, on_error: deny }",
    ))
    .unwrap();
    let redis = config.rate_limits.redis.expect("shared");
    assert_eq!(
        (redis.key_prefix.as_str(), redis.on_error),
        ("eu:", crate::limits::OnError::Deny)
    );
    assert!(
        load(MINIMAL).unwrap().rate_limits.redis.is_none(),
        "local by default"
    );
}

#[test]
fn redis_mistakes_name_their_key() {
    for (limits, key, reason) in [
        (
            "  backend: redis",
            "rate_limits.redis",
            "is required with backend: redis",
        ),
        (
            "  redis: { url: \"redis://r\" }",
            "rate_limits.redis",
            "is set but backend is local",
        ),
        (
            "  backend: memcached",
            "rate_limits.backend",
            "unknown variant",
        ),
        (
            "  backend: redis\n  redis: { url: \"http://:pw@r\" }",
            "rate_limits.redis.url",
            "scheme \"http\"",
        ),
        (
            "  backend: redis\n  redis: { url: \"redis://r\", timeout: 0s }",
            "rate_limits.redis.timeout",
            "must be greater",
        ),
        (
            "  backend: redis\n  redis: { url: \"redis://r\", key_prefix: \"\" }",
            "rate_limits.redis.key_prefix",
            "must not be empty",
        ),
        (
            "  backend: redis\n  redis: { url: \"redis://r\", on_error: fail }",
            "rate_limits.redis.on_error",
            "unknown variant",
        ),
        (
            "  backend: redis\n  redis: { url: \"redis://r\", password: x }",
            "rate_limits.redis.password",
            "unknown field",
        ),
    ] {
        let found = problems(&with_limits(limits));
        assert!(
            found.iter().any(|(k, m)| k == key && m.contains(reason)),
            "{limits}: {found:?}"
        );
    }
}

#[test]
fn redis_tls_settings_are_checked_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not-a-ca.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let not_pem = not_pem.display();
    for (redis, key, reason) in [
        (
            "url: \"rediss://:pw@r:6380/#insecure\"".to_string(),
            "rate_limits.redis.url",
            "a #fragment is not supported",
        ),
        (
            format!("url: \"redis://:pw@r\", ca_file: \"{not_pem}\""),
            "rate_limits.redis.ca_file",
            "is for TLS: the url must be rediss://",
        ),
        (
            format!("url: \"rediss://:pw@r\", ca_file: \"{not_pem}\""),
            "rate_limits.redis.ca_file",
            "no PEM certificate in it",
        ),
        (
            "url: \"rediss://:pw@r\", ca_file: /nonexistent/ca.pem".to_string(),
            "rate_limits.redis.ca_file",
            "cannot read /nonexistent/ca.pem",
        ),
    ] {
        let found = problems(&with_limits(&format!(
            "  backend: redis\n  redis: {{ {redis} }}"
        )));
        assert!(
            found.iter().any(|(k, m)| k == key && m.contains(reason)),
            "{redis}: {found:?}"
        );
        assert!(
            found.iter().all(|(_, m)| !m.contains(":pw@")),
            "the password is not repeated: {found:?}"
        );
    }
    let config = load(&with_limits(
        "  backend: redis\n  redis: { url: \"rediss://:pw@redis.internal:6380\" }",
    ))
    .unwrap();
    let redis = config.rate_limits.redis.expect("shared");
    assert!(redis.url.is_tls(), "the system's roots by default");
    assert_eq!(redis.ca_file, None);
}

const TWO_APPS: &str = r#"
listen: ["127.0.0.1:3000"]
upstreams:
  app: { address: "127.0.0.1:8080" }
stream_apps:
  eu: { api_key: eu-key, api_secret: eu-secret }
  us: { api_key: us-key, api_secret_file: /run/secrets/us }
"#;

fn with_routes(base: &str, routes: &str) -> String {
    format!("{base}routes:\n{routes}\n")
}

#[test]
fn stream_apps_name_several_apps_and_routes_pick_one() {
    let config = load(&with_routes(
        TWO_APPS,
        "  - { match: { host: \"*.EU.example.com\", path: /t }, mint: user_token, app: eu }\n  - { match: { path: /t }, mint: user_token, app: us }",
    ))
    .unwrap();
    let apps: Vec<(&str, &str, &str)> = config
        .apps
        .iter()
        .map(|a| {
            (
                a.name.as_str(),
                a.key.as_str(),
                a.credentials.api_key.as_str(),
            )
        })
        .collect();
    assert_eq!(
        apps,
        [
            ("eu", "stream_apps.eu", "eu-key"),
            ("us", "stream_apps.us", "us-key")
        ]
    );
    let routes: Vec<(String, String)> = config
        .routes
        .routes()
        .iter()
        .filter_map(|route| match &route.action {
            RouteAction::Mint(settings) => Some((route.describe(), settings.app.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        routes,
        [
            ("* *.eu.example.com/t".into(), "eu".into()),
            ("* /t".into(), "us".into())
        ]
    );
    let stream = load(MINIMAL).unwrap();
    assert_eq!(
        (stream.apps[0].name.as_str(), stream.apps[0].key.as_str()),
        ("default", "stream")
    );
    assert!(
        config
            .warnings()
            .iter()
            .any(|w| w.starts_with("stream_apps.us.api_secret_file: ")),
        "{:?}",
        config.warnings()
    );
}

#[test]
fn app_mistakes_name_their_key() {
    let both = format!("{MINIMAL}stream_apps:\n  eu: {{ api_key: k, api_secret: s }}\n");
    let neither = TWO_APPS.replace("stream_apps:\n  eu: { api_key: eu-key, api_secret: eu-secret }\n  us: { api_key: us-key, api_secret_file: /run/secrets/us }\n", "");
    let mint = |extra: &str| {
        with_routes(
            TWO_APPS,
            &format!("  - {{ match: {{ path: /t }}, mint: user_token{extra} }}"),
        )
    };
    for (text, key, reason) in [
        (both, "stream_apps", "set either stream (one app) or stream_apps"),
        (neither, "stream", "is required (or stream_apps"),
        (TWO_APPS.to_string(), "routes", "is required when stream_apps names several apps"),
        (mint(""), "routes[0].app", "is required: stream_apps names several apps (eu, us)"),
        (mint(", app: asia"), "routes[0].app", "unknown app \"asia\" (stream_apps: eu, us)"),
        (
            with_routes(TWO_APPS, "  - { match: { path: /t }, upstream: app, app: eu }"),
            "routes[0].app",
            "only token routes (mint) have an app",
        ),
        (
            with_routes(TWO_APPS, "  - { match: { host: \"eu.example.com:443\", path: /t }, mint: user_token, app: eu }"),
            "routes[0].match.host",
            "is not a host name",
        ),
        (TWO_APPS.replace("  eu:", "  \"e u\":"), "stream_apps.e u", "an app name is"),
        (TWO_APPS.replace("eu-key", "\"\""), "stream_apps.eu.api_key", "must not be empty"),
        (
            TWO_APPS.replace("api_secret: eu-secret", "api_secret: eu-secret, api_secret_file: /x"),
            "stream_apps.eu",
            "set either api_secret or api_secret_file",
        ),
        (TWO_APPS.replace("stream_apps:\n  eu: { api_key: eu-key, api_secret: eu-secret }\n  us: { api_key: us-key, api_secret_file: /run/secrets/us }", "stream_apps: {}"), "stream_apps", "must name at least one app"),
    ] {
        let found = problems(&text);
        assert!(
            found.iter().any(|(k, m)| k == key && m.contains(reason)),
            "{text}\n{key}: {found:?}"
        );
    }
}
