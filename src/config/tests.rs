use std::time::Duration;

use http::Method;

use super::*;
use crate::net::headers::UnderscoresAction;
use crate::net::path::EscapedSlashesAction;
use crate::telemetry::access_log::AccessLogFormat;
use crate::token::MintKind;

pub(super) const MINIMAL: &str = r#"
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
pub(super) fn load(text: &str) -> Result<Config, ConfigError> {
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
    assert!(
        config.apps[0].credentials.api_secret == SecretSource::Inline("s3cr3t \"#: value".into())
    );
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
        .find(&method, None, path)
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
        ("/a/..;/b", "is refused"),
        ("/app;v=1/", "write \"/app/\""),
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
    assert!(route("/app;v=1/", "http: { normalize_path: false }\n").is_ok());
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

/// A certificate pair and a CA bundle written to a temporary directory, and
/// `MINIMAL` with a second listener `tls` on port 3443 (the YAML of its `tls`
/// map; `{dir}` is the directory).
struct TlsFiles {
    dir: tempfile::TempDir,
}

impl TlsFiles {
    fn new() -> TlsFiles {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, content: String| std::fs::write(dir.path().join(name), content);
        let ours = rcgen::generate_simple_self_signed(vec!["app.example".into()]).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["other.example".into()]).unwrap();
        write("tls.crt", ours.cert.pem()).unwrap();
        write("tls.key", ours.signing_key.serialize_pem()).unwrap();
        write("other.key", other.signing_key.serialize_pem()).unwrap();
        write("ca.pem", other.cert.pem()).unwrap();
        write("garbage.pem", "not a certificate\n".into()).unwrap();
        TlsFiles { dir }
    }

    fn config(&self, tls: &str) -> String {
        let tls = tls.replace("{dir}", self.dir.path().to_str().unwrap());
        MINIMAL.replace(
            "listen: [\"127.0.0.1:3000\"]",
            &format!(
                "listen:\n  - \"127.0.0.1:3000\"\n  - {{ address: \"127.0.0.1:3443\", tls: {tls} }}"
            ),
        )
    }
}

#[test]
fn listen_entries_are_addresses_or_maps_with_tls() {
    let files = TlsFiles::new();
    let config = load(&files.config(
        "{ cert_file: \"{dir}/tls.crt\", key_file: \"{dir}/tls.key\", client_ca_file: \"{dir}/ca.pem\" }",
    ))
    .unwrap();
    assert_eq!(config.listen.len(), 2);
    assert!(config.listen[0].tls.is_none());
    let tls = config.listen[1].tls.as_ref().unwrap();
    assert_eq!(config.listen[1].address, "127.0.0.1:3443".parse().unwrap());
    assert_eq!(tls.certificate.subject, "CN=rcgen self signed cert");
    assert!(tls.client_verifier.is_some());
    let plain_map = MINIMAL.replace("[\"127.0.0.1:3000\"]", "[{ address: \"127.0.0.1:3000\" }]");
    assert!(load(&plain_map).unwrap().listen[0].tls.is_none());
}

#[test]
fn an_unusable_tls_listener_names_the_key_at_fault() {
    let files = TlsFiles::new();
    for (tls, key, reason) in [
        (
            "{ cert_file: \"{dir}/missing.crt\", key_file: \"{dir}/tls.key\" }",
            "listen[1].tls.cert_file",
            "cannot read",
        ),
        (
            "{ cert_file: \"{dir}/garbage.pem\", key_file: \"{dir}/tls.key\" }",
            "listen[1].tls.cert_file",
            "holds no PEM certificate",
        ),
        (
            "{ cert_file: \"{dir}/tls.crt\", key_file: \"{dir}/garbage.pem\" }",
            "listen[1].tls.key_file",
            "holds no PEM private key",
        ),
        (
            "{ cert_file: \"{dir}/tls.crt\", key_file: \"{dir}/other.key\" }",
            "listen[1].tls.key_file",
            "is not the private key of the certificate",
        ),
        (
            "{ cert_file: \"{dir}/tls.crt\", key_file: \"{dir}/tls.key\", client_ca_file: \"{dir}/garbage.pem\" }",
            "listen[1].tls.client_ca_file",
            "holds no PEM certificate",
        ),
        (
            "{ cert_file: \"{dir}/tls.crt\", key_file: \"{dir}/tls.key\", ca_file: x }",
            "listen[1].tls.ca_file",
            "unknown field `ca_file`",
        ),
        (
            "{ cert_file: \"{dir}/tls.crt\" }",
            "listen[1].tls",
            "missing field `key_file`",
        ),
    ] {
        let err = load(&files.config(tls)).unwrap_err();
        assert_eq!(err.key, key, "{tls}: {err}");
        assert!(err.reason.contains(reason), "{tls}: {err}");
    }
}

#[test]
fn every_tls_problem_and_a_repeated_address_are_reported_at_once() {
    let files = TlsFiles::new();
    let text = files
        .config("{ cert_file: \"{dir}/garbage.pem\", key_file: \"{dir}/tls.key\", client_ca_file: \"{dir}/missing\" }")
        .replace("- \"127.0.0.1:3000\"", "- \"127.0.0.1:3000\"\n  - \"127.0.0.1:3000\"");
    let errors = Config::from_yaml(&text, &env).unwrap_err().0;
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "listen[1]",
            "listen[2].tls.cert_file",
            "listen[2].tls.client_ca_file"
        ]
    );
    assert_eq!(errors[0].reason, "127.0.0.1:3000 is already listen[0]");
    let not_an_entry = MINIMAL.replace("[\"127.0.0.1:3000\"]", "[[\"127.0.0.1:3000\"]]");
    let err = load(&not_an_entry).unwrap_err();
    assert_eq!(err.key, "listen[0]");
    assert!(
        err.reason.contains("an \"IP:port\" string or a map"),
        "{err}"
    );
}

#[test]
fn an_expired_certificate_is_announced() {
    let files = TlsFiles::new();
    let mut params = rcgen::CertificateParams::new(vec!["app.example".to_string()]).unwrap();
    params.not_after = rcgen::date_time_ymd(2001, 2, 3);
    let key = rcgen::KeyPair::generate().unwrap();
    let expired = params.self_signed(&key).unwrap();
    let dir = files.dir.path();
    std::fs::write(dir.join("expired.crt"), expired.pem()).unwrap();
    std::fs::write(dir.join("expired.key"), key.serialize_pem()).unwrap();
    let config = load(
        &files.config("{ cert_file: \"{dir}/expired.crt\", key_file: \"{dir}/expired.key\" }"),
    )
    .expect("an expired certificate is served: the files are followed");
    let warnings = config.warnings();
    assert!(
        warnings.iter().any(
            |w| w.starts_with("listen[1].tls.cert_file: the certificate")
                && w.contains("expired at 2001-02-03T00:00:00Z")
        ),
        "{warnings:?}"
    );
    let fresh =
        load(&files.config("{ cert_file: \"{dir}/tls.crt\", key_file: \"{dir}/tls.key\" }"));
    assert!(!fresh
        .unwrap()
        .warnings()
        .iter()
        .any(|w| w.contains("expired")));
}

/// `/config_dump` shows every key of the sections it covers: each property
/// the JSON Schema gives those sections is in the dump, defaults filled in.
#[test]
fn the_dump_has_every_key_of_its_sections() {
    let config = load(&format!(
        "{MINIMAL}admin: {{ readiness_probe: {{ upstream: app, path: /healthz }} }}\n\
         rate_limits:\n  backend: redis\n  redis: {{ url: \"redis://r\" }}\n\
         tracing: {{ otlp: {{ endpoint: \"http://127.0.0.1:4318/v1/traces\" }} }}\n"
    ))
    .unwrap();
    let dump = config.dump();
    let schema = serde_json::to_value(super::schema::schema()).unwrap();
    for (definition, at) in [
        ("Http", "/http"),
        ("Server", "/server"),
        ("Tokens", "/tokens"),
        ("AccessLog", "/access_log"),
        ("Tracing", "/tracing"),
        ("Otlp", "/tracing/otlp"),
        ("Admin", "/admin"),
        ("ReadinessProbe", "/admin/readiness_probe"),
        ("RateLimits", "/rate_limits"),
        ("Redis", "/rate_limits/redis"),
        ("Upstream", "/upstreams/0"),
    ] {
        let properties = schema["$defs"][definition]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{definition} has properties in the schema"));
        let shown = dump
            .pointer(at)
            .and_then(|v| v.as_object())
            .unwrap_or_else(|| panic!("{at} in the dump: {dump}"));
        let missing: Vec<&String> = properties
            .keys()
            .filter(|key| !shown.contains_key(*key))
            .collect();
        assert!(missing.is_empty(), "{at} lacks {missing:?}: {shown:?}");
    }
}
