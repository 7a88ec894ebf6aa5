use std::time::Duration;

use http::Method;

use super::*;
use crate::net::headers::UnderscoresAction;
use crate::net::path::EscapedSlashesAction;
use crate::telemetry::access_log::AccessLogFormat;
use crate::token::MintKind;

const MINIMAL: &str = r#"
listen: ["127.0.0.1:3000"]
upstreams:
  app: { address: "127.0.0.1:8080" }
stream:
  api_key: key
  api_secret: "${SECRET}"
"#;

fn env(name: &str) -> Option<String> {
    match name {
        "SECRET" => Some("s3cr3t \"#: value".to_string()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

/// The configuration, or its first error.
fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_yaml(text, &env).map_err(|errors| errors.0[0].clone())
}

#[test]
fn every_error_is_reported_at_once() {
    let text = r#"
listen: ["nowhere"]
upstreams:
  app: { address: "127.0.0.1:8080", read_timeout: soon }
stream: { api_key: "", api_secret: "${NOPE}" }
tokens: { max_body_bytes: 0 }
colour: blue
"#;
    let errors = Config::from_yaml(text, &env).unwrap_err().0;
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    for expected in [
        "stream.api_secret",
        "colour",
        "listen[0]",
        "upstreams.app.read_timeout",
        "stream.api_key",
        "tokens.max_body_bytes",
    ] {
        assert!(keys.contains(&expected), "{expected} missing from {keys:?}");
    }
}

#[test]
fn route_errors_are_each_reported() {
    let text = format!(
        "{MINIMAL}routes:\n  - {{ match: {{ path: x }}, upstream: app }}\n  - {{ match: {{ path_prefix: / }}, upstream: web }}\n"
    );
    let errors = Config::from_yaml(&text, &env).unwrap_err().0;
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["routes[0].match", "routes[1].upstream"]);
}

#[test]
fn minimal_config_gets_documented_defaults() {
    let config = load(MINIMAL).expect("valid");
    assert!(config.stream.api_secret == SecretSource::Inline("s3cr3t \"#: value".into()));
    assert_eq!(config.admin.listen, "0.0.0.0:9901".parse().unwrap());
    assert_eq!(config.access_log.format, AccessLogFormat::Json);
    assert_eq!(config.tokens, TokenPolicy::default());
    assert_eq!(config.routes.routes().len(), 3);
    assert_eq!(config.token_routes().count(), 2);
    assert_eq!(config.server.grace_period_seconds, 5);
    assert_eq!(config.http, HttpSettings::default());
    assert_eq!(config.http.max_request_headers_bytes, 32 * 1024);
    assert_eq!(config.http.max_downstream_connections, 512);
    assert_eq!(config.upstreams[0].connect_timeout, Duration::from_secs(5));
    assert_eq!(config.upstreams[0].sni, "127.0.0.1");
}

#[test]
fn unset_variable_names_the_key() {
    let err = load(&MINIMAL.replace("${SECRET}", "${NOPE}")).unwrap_err();
    assert_eq!(err.key, "stream.api_secret");
    assert!(err.reason.contains("NOPE is not set"), "{err}");
}

#[test]
fn empty_secret_is_rejected() {
    let err = load(&MINIMAL.replace("${SECRET}", "${EMPTY:-}")).unwrap_err();
    assert_eq!(err.to_string(), "stream.api_secret: must not be empty");
}

#[test]
fn unknown_upstream_in_route_is_rejected() {
    let text = format!("{MINIMAL}routes:\n  - {{ match: {{ path_prefix: / }}, upstream: web }}\n");
    let err = load(&text).unwrap_err();
    assert_eq!(err.key, "routes[0].upstream");
    assert!(err.reason.contains("unknown upstream \"web\""), "{err}");
}

#[test]
fn empty_upstreams_are_rejected() {
    let text = MINIMAL
        .replace("  app: { address: \"127.0.0.1:8080\" }\n", "")
        .replace("upstreams:", "upstreams: {}");
    let err = load(&text).unwrap_err();
    assert_eq!(err.key, "upstreams");
}

#[test]
fn typo_names_the_key() {
    let err = load(&MINIMAL.replace("api_key", "apikey")).unwrap_err();
    assert_eq!(err.key, "stream.apikey");
    assert!(err.reason.contains("unknown field `apikey`"), "{err}");
}

#[test]
fn bad_duration_names_the_key() {
    let err = load(&MINIMAL.replace(
        "address: \"127.0.0.1:8080\"",
        "address: \"127.0.0.1:8080\", read_timeout: soon",
    ))
    .unwrap_err();
    assert_eq!(err.key, "upstreams.app.read_timeout");
}

#[test]
fn default_validity_above_max_is_rejected() {
    let text =
        format!("{MINIMAL}tokens: {{ default_validity_seconds: 10, max_validity_seconds: 5 }}\n");
    assert_eq!(
        load(&text).unwrap_err().key,
        "tokens.default_validity_seconds"
    );
}

#[test]
fn secret_never_in_debug_output() {
    let config = load(MINIMAL).unwrap();
    assert!(!format!("{config:?}").contains("s3cr3t"));
}

#[test]
fn dev_secret_and_open_mint_route_warn() {
    let config = load(&MINIMAL.replace("${SECRET}", DEV_SECRET)).unwrap();
    let warnings = config.warnings();
    assert!(warnings.iter().any(|w| w.contains("DEVELOPMENT secret")));
    assert!(warnings
        .iter()
        .any(|w| w.contains("POST /api/tokens/user") && w.contains("ANY userId")));
}

/// What a request leads to in a config's table: the token kind, the upstream
/// name, or "direct".
fn action_of(config: &Config, method: Method, path: &str) -> Option<String> {
    config
        .routes
        .find(&method, path)
        .map(|route| match &route.action {
            RouteAction::Mint(settings) => format!("{:?}", settings.kind),
            RouteAction::Proxy(upstream) => upstream.clone(),
            RouteAction::Respond(_) => "direct".into(),
        })
}

#[test]
fn default_table_mints_only_post_on_exact_paths() {
    let config = load(MINIMAL).unwrap();
    let action = |m: Method, p: &str| action_of(&config, m, p);
    let user = format!("{:?}", MintKind::UserToken);
    let call = format!("{:?}", MintKind::CallToken);
    assert_eq!(action(Method::POST, "/api/tokens/user"), Some(user));
    assert_eq!(action(Method::POST, "/api/tokens/call"), Some(call));
    for (method, path) in [
        (Method::GET, "/api/tokens/user"),
        (Method::POST, "/api/tokens/user/x"),
        (Method::POST, "/api/tokens/users"),
        (Method::DELETE, "/anything"),
    ] {
        assert_eq!(action(method, path), Some("app".into()), "{path}");
    }
    let descriptions: Vec<String> = config.token_routes().map(|(d, _)| d).collect();
    assert_eq!(
        descriptions,
        ["POST /api/tokens/user", "POST /api/tokens/call"]
    );
}

#[test]
fn zero_timeouts_are_rejected_and_ttls_may_be_zero() {
    let err = load(&MINIMAL.replace(
        "address: \"127.0.0.1:8080\"",
        "address: \"127.0.0.1:8080\", connect_timeout: 0s",
    ))
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "upstreams.app.connect_timeout: must be greater than zero"
    );
    let text = format!(
        "{MINIMAL}identity:\n  mode: forward_auth\n  forward_auth: {{ path: /me, user_id_pointer: /id, cache_ttl: 0s }}\n"
    );
    assert!(load(&text).is_ok());
}

#[test]
fn direct_response_content_type_is_checked_at_load() {
    let text = format!(
        "{MINIMAL}routes:\n  - {{ match: {{ path: /ok }}, direct_response: {{ status: 200, content_type: \"text/plain\\u0001\" }} }}\n"
    );
    let err = load(&text).unwrap_err();
    assert_eq!(err.key, "routes[0].direct_response.content_type");
}

#[test]
fn http_section_reads_envoy_style_keys() {
    let text = format!(
        "{MINIMAL}http:\n  merge_slashes: false\n  path_with_escaped_slashes_action: keep_unchanged\n  headers_with_underscores_action: allow\n  max_request_headers_kb: 8\n  request_headers_timeout: 2s\n"
    );
    let http = load(&text).unwrap().http;
    assert!(!http.merge_slashes && http.normalize_path);
    assert_eq!(
        http.path_with_escaped_slashes_action,
        EscapedSlashesAction::KeepUnchanged
    );
    assert_eq!(
        http.headers_with_underscores_action,
        UnderscoresAction::Allow
    );
    assert_eq!(http.max_request_headers_bytes, 8 * 1024);
    assert_eq!(http.request_headers_timeout, Duration::from_secs(2));
    for (bad, key) in [
        ("max_request_headers_kb: 0", "http.max_request_headers_kb"),
        (
            "request_headers_timeout: 0s",
            "http.request_headers_timeout",
        ),
        (
            "max_downstream_connections: 0",
            "http.max_downstream_connections",
        ),
        (
            "headers_with_underscores_action: maybe",
            "http.headers_with_underscores_action",
        ),
    ] {
        let err = load(&format!("{MINIMAL}http: {{ {bad} }}\n")).unwrap_err();
        assert_eq!(err.key, key, "{bad}");
    }
}

#[test]
fn identity_header_with_underscore_must_survive_the_underscores_action() {
    let header_mode = "identity: { mode: header, header: { user: X_Remote_User } }\n";
    let err = load(&format!("{MINIMAL}{header_mode}")).unwrap_err();
    assert_eq!(err.key, "http.headers_with_underscores_action");
    assert!(err.reason.contains("x_remote_user"), "{}", err.reason);
    let refused = format!(
        "{MINIMAL}{header_mode}http: {{ headers_with_underscores_action: reject_request }}\n"
    );
    assert_eq!(
        load(&refused).unwrap_err().key,
        "http.headers_with_underscores_action"
    );
    let allowed =
        format!("{MINIMAL}{header_mode}http: {{ headers_with_underscores_action: allow }}\n");
    assert!(load(&allowed).is_ok());
    let dashed = "identity: { mode: header, header: { user: X-Remote-User } }\n";
    assert!(load(&format!("{MINIMAL}{dashed}")).is_ok());
}

#[test]
fn listening_beyond_loopback_with_only_loopback_trusted_warns() {
    let warns = |text: &str| {
        load(text)
            .unwrap()
            .warnings()
            .iter()
            .any(|w| w.contains("trusts only loopback peers") && w.contains("trusted_cidrs"))
    };
    assert!(!warns(MINIMAL), "loopback listener");
    let exposed = MINIMAL.replace("127.0.0.1:3000", "0.0.0.0:3000");
    assert!(warns(&exposed));
    let exposed_v6 = MINIMAL.replace("\"127.0.0.1:3000\"", "\"[::]:3000\", \"[::1]:3001\"");
    assert!(warns(&exposed_v6));
    assert!(!warns(&format!(
        "{exposed}trusted_cidrs: [\"10.0.0.0/8\", \"127.0.0.0/8\"]\n"
    )));
    assert!(
        !warns(&format!("{exposed}trusted_cidrs: []\n")),
        "clients connect directly"
    );
}

#[test]
fn route_paths_must_be_normalized_or_they_could_never_match() {
    let route = |path: &str, http: &str| {
        load(&format!(
            "{MINIMAL}{http}routes:\n  - {{ match: {{ path_prefix: \"{path}\" }}, upstream: app }}\n"
        ))
    };
    for (path, hint) in [
        ("/a/./b", "write \"/a/b\""),
        ("//a", "write \"/a\""),
        ("/%7Euser/", "write \"/~user/\""),
        ("/a%3f", "write \"/a%3F\""),
        ("/a%2Fb", "is refused"),
        ("/a\\\\b", "is refused"),
        ("/a%zz", "is refused"),
    ] {
        let err = route(path, "").unwrap_err();
        assert_eq!(err.key, "routes[0].match", "{path}");
        assert!(err.to_string().contains(hint), "{path}: {err}");
    }
    assert!(route("/a/b.c/", "").is_ok());
    // Checked against the rules requests are read by.
    let keep = "http: { path_with_escaped_slashes_action: keep_unchanged }\n";
    assert!(route("/a%2Fb", keep).is_ok());
    assert!(route("/a/./b", "http: { normalize_path: false }\n").is_ok());
    assert!(route("//a", "http: { merge_slashes: false }\n").is_ok());
    // A broken http section is reported alone: the rules to check against are unknown.
    let text = format!(
        "{MINIMAL}http: {{ normalize_path: maybe }}\nroutes:\n  - {{ match: {{ path: /a/./b }}, upstream: app }}\n"
    );
    let errors = Config::from_yaml(&text, &env).unwrap_err().0;
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["http.normalize_path"]);
}

#[test]
fn upstream_protocol_must_fit_its_transport() {
    let with = |upstream: &str| MINIMAL.replace(r#"{ address: "127.0.0.1:8080" }"#, upstream);
    let config = load(MINIMAL).expect("valid");
    assert_eq!(config.upstreams[0].protocol, UpstreamProtocol::Http1);
    let h2c = load(&with(r#"{ address: "127.0.0.1:8080", protocol: h2c }"#)).expect("valid");
    assert_eq!(h2c.upstreams[0].protocol, UpstreamProtocol::H2c);
    let h2 = load(&with(
        r#"{ address: "127.0.0.1:8443", tls: true, protocol: h2 }"#,
    ))
    .expect("valid");
    assert_eq!(h2.upstreams[0].protocol, UpstreamProtocol::H2);

    for (upstream, says) in [
        (
            r#"{ address: "127.0.0.1:8080", protocol: h2 }"#,
            "needs `tls: true`",
        ),
        (
            r#"{ address: "127.0.0.1:8443", tls: true, protocol: h2c }"#,
            "use `protocol: h2`",
        ),
    ] {
        let error = load(&with(upstream)).unwrap_err();
        assert_eq!(error.key, "upstreams.app.protocol");
        assert!(error.reason.contains(says), "{}", error.reason);
    }
    let error = load(&with(r#"{ address: "127.0.0.1:8080", protocol: http2 }"#)).unwrap_err();
    assert!(error.key.starts_with("upstreams"), "{}", error.key);
    assert!(error.reason.contains("h2c"), "{}", error.reason);
}
