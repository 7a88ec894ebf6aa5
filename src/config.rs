//! Configuration: one YAML file, read and checked once at start.
//!
//! Every value is parsed into a type here, so the rest of streamgate never sees
//! a raw string it would have to re-validate on the request path. Errors name the
//! key path (`upstreams.app.address`) and the reason, because the person reading
//! them is a platform engineer looking at a crash-looping pod, not at our source.
//!
//! `${VAR}` and `${VAR:-default}` are expanded inside string values after the YAML
//! is parsed, never in the raw text: a secret containing `"`, `#` or `: ` cannot
//! change the structure of the document it is substituted into.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cors::{AllowedOrigins, CorsPolicy};
use crate::identity::{
    decoding_key_from_pem, ForwardAuth, HeaderIdentity, IdentitySource, JwksFile, JwtIdentity,
    JwtKeys, TrustedNetworks, UserIdLocation, UserIdTemplate,
};
use crate::routing::{Action, DirectResponse, MintKind, PathMatch, Route, RouteTable};
use crate::token_contract::{is_name, TokenPolicy, NAME_RULE};

/// The secret shipped in `conf/streamgate.yaml` for `make run`. Seeing it at start
/// means the deployment forgot to provide a real one.
pub const DEV_SECRET: &str = "dev-secret-do-not-use-in-production";

/// A configuration problem, located by the dotted key path it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.key, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a configuration, so that one `streamgate -t` run
/// lists them all instead of one per edit-and-retry cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors(vec![error])
    }
}

/// Keeps the value of a check that passed, records the error of one that failed.
fn keep<T>(result: Result<T, ConfigError>, errors: &mut Vec<ConfigError>) -> Option<T> {
    result.map_err(|e| errors.push(e)).ok()
}

/// The validated configuration streamgate runs with.
#[derive(Debug)]
pub struct Config {
    pub listen: Vec<SocketAddr>,
    pub upstreams: Vec<Upstream>,
    pub stream: StreamCredentials,
    pub tokens: TokenPolicy,
    pub routes: RouteTable,
    /// Access settings of each token route, indexed by `Action::Mint::access`.
    pub access: Vec<RouteAccess>,
    pub trusted_cidrs: TrustedNetworks,
    pub rate_limits: RateLimitSettings,
    pub admin: AdminSettings,
    pub access_log: AccessLogSettings,
    pub server: ServerSettings,
}

/// The admin listener: probes and metrics, never proxied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    /// When set, `/readyz` also requires the app to answer this path with 2xx.
    pub readiness_probe: Option<ReadinessProbe>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadinessProbe {
    pub upstream: usize,
    pub path: String,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessLogFormat {
    Json,
    Text,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogSettings {
    pub format: AccessLogFormat,
    /// Query strings often carry tokens and signed URLs, so they are left out
    /// unless asked for.
    pub include_query: bool,
}

impl Default for AccessLogSettings {
    fn default() -> Self {
        AccessLogSettings {
            format: AccessLogFormat::Json,
            include_query: false,
        }
    }
}

/// Who may use one token route, and from which web origins.
#[derive(Debug)]
pub struct RouteAccess {
    /// `POST /api/tokens/user`, for messages.
    pub route: String,
    pub identity: IdentitySource,
    pub cors: Option<CorsPolicy>,
}

/// `requests` per sliding `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitSetting {
    pub requests: u32,
    pub window: Duration,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// Keyed by the Stream user a token is for.
    pub per_identity: Option<RateLimitSetting>,
    /// Keyed by the client IP (see `trusted_cidrs`).
    pub per_client_ip: Option<RateLimitSetting>,
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    pub address: SocketAddr,
    pub tls: bool,
    /// Server name sent in TLS SNI and checked against the certificate.
    pub sni: String,
    pub verify_cert: bool,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
}

#[derive(Clone)]
pub struct StreamCredentials {
    pub api_key: String,
    pub api_secret: SecretSource,
}

/// Where the signing secret comes from. A file is read when the server starts
/// and again whenever it changes (see [`crate::secret`]), so it is not read
/// here: a Secret that is not mounted yet makes streamgate not ready, not dead.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    Inline(String),
    File(PathBuf),
}

// Hand-written so that `{:?}` of a Config can never print the secret.
impl fmt::Debug for StreamCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamCredentials")
            .field("api_key", &self.api_key)
            .field("api_secret", &"<redacted>")
            .finish()
    }
}

/// The part of Pingora's `ServerConf` that streamgate exposes, with defaults fit
/// for a sidecar (Pingora's own grace period of 300 s outlives any pod).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    pub threads: usize,
    /// `None`: on when there is more than one thread. With one thread there is
    /// nothing to steal from, and Pingora's no-steal runtime is cheaper: small
    /// proxied requests measured about 10% faster with it (README, Performance).
    pub work_stealing: Option<bool>,
    /// On SIGTERM, `/readyz` answers 503 at once while streamgate keeps serving
    /// this long, so that endpoints are removed before connections are refused.
    pub drain_seconds: u64,
    pub grace_period_seconds: u64,
    pub graceful_shutdown_timeout_seconds: u64,
    pub upstream_keepalive_pool_size: usize,
    /// PEM bundle of CAs that upstream TLS certificates must chain to, instead
    /// of the system's roots (an internal CA).
    pub ca_file: Option<String>,
    pub pid_file: String,
    pub upgrade_sock: String,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            threads: 1,
            work_stealing: None,
            drain_seconds: 5,
            grace_period_seconds: 5,
            graceful_shutdown_timeout_seconds: 5,
            upstream_keepalive_pool_size: 128,
            ca_file: None,
            pid_file: "/tmp/streamgate.pid".into(),
            upgrade_sock: "/tmp/streamgate_upgrade.sock".into(),
        }
    }
}

impl Config {
    /// Reads, expands and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("", format!("cannot read {}: {e}", path.display())))?;
        Config::from_yaml(&text, &|name| std::env::var(name).ok())
    }

    /// Parses configuration text; `env` looks up variables for `${VAR}` expansion.
    pub fn from_yaml(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        let mut document: serde_yaml::Value = serde_yaml::from_str(text)
            .map_err(|e| ConfigError::new("", format!("invalid YAML: {e}")))?;
        if document.is_null() {
            return Err(ConfigError::new("", "the file is empty").into());
        }
        let mut errors = Vec::new();
        expand_env(&mut document, &mut String::new(), env, &mut errors);
        let config = RawConfig::from_sections(document, &mut errors)
            .and_then(|raw| raw.validate(&mut errors));
        match config {
            Some(config) if errors.is_empty() => Ok(config),
            _ => Err(ConfigErrors(errors)),
        }
    }

    /// Things that are allowed but that an operator must hear about at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        match &self.stream.api_secret {
            SecretSource::Inline(secret) if secret == DEV_SECRET => {
                warnings.push(
                    "stream.api_secret is the DEVELOPMENT secret from conf/streamgate.yaml: \
                 tokens signed with it are rejected by Stream and anyone can forge them. \
                 Set STREAM_API_SECRET or stream.api_secret_file before deploying."
                        .to_string(),
                );
            }
            SecretSource::File(path) => {
                if let Err(reason) = crate::secret::read_secret(path) {
                    warnings.push(format!(
                        "stream.api_secret_file: {reason}; streamgate will run but stay not ready, \
                         answering 503 on token routes, until the file holds a secret"
                    ));
                }
            }
            SecretSource::Inline(_) => {}
        }
        for access in &self.access {
            if let IdentitySource::None = access.identity {
                warnings.push(format!(
                    "route {} has no identity check (identity.mode: none): anyone who can reach {} \
                     can mint a Stream token for ANY userId",
                    access.route,
                    self.listen_description()
                ));
            }
        }
        warnings
    }

    fn listen_description(&self) -> String {
        let addresses: Vec<String> = self.listen.iter().map(ToString::to_string).collect();
        addresses.join(", ")
    }
}

/// Deserializes the section `section` of the file, turning serde's error into
/// one that names the full key path.
fn deserialize_section<T: serde::de::DeserializeOwned>(
    section: &str,
    value: serde_yaml::Value,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let key = match path.as_str() {
            "." => section.to_string(),
            p if p.starts_with('[') => format!("{section}{p}"),
            p => format!("{section}.{p}"),
        };
        ConfigError::new(key, e.into_inner().to_string())
    })
}

fn expand_env(
    value: &mut serde_yaml::Value,
    key: &mut String,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) {
    match value {
        serde_yaml::Value::String(s) if s.contains("${") => match expand_string(s, env) {
            Ok(expanded) => *s = expanded,
            Err(reason) => errors.push(ConfigError::new(key.clone(), reason)),
        },
        serde_yaml::Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = key.len();
                key.push_str(&format!("[{i}]"));
                expand_env(item, key, env, errors);
                key.truncate(len);
            }
        }
        serde_yaml::Value::Mapping(map) => {
            for (k, item) in map.iter_mut() {
                let len = key.len();
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(k.as_str().unwrap_or("?"));
                expand_env(item, key, env, errors);
                key.truncate(len);
            }
        }
        _ => {}
    }
}

/// Shell-style expansion of `${VAR}` and `${VAR:-default}`; like the shell, the
/// default also applies when the variable is set but empty.
fn expand_string(input: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated '${{' in {input:?}"))?;
        let expression = &after[..end];
        let (name, default) = match expression.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (expression, None),
        };
        let valid_name = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid_name {
            return Err(format!(
                "'${{{expression}}}' is not a valid environment variable reference"
            ));
        }
        match (env(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                "environment variable {name} is not set (use ${{{name}:-default}} for a fallback)"
            ))
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The file's sections, each deserialized on its own so that a mistake in one
/// does not hide the mistakes in the others.
struct RawConfig {
    listen: Vec<String>,
    upstreams: BTreeMap<String, RawUpstream>,
    stream: RawStream,
    tokens: RawTokens,
    routes: Option<Vec<RawRoute>>,
    trusted_cidrs: Option<Vec<String>>,
    identity: Option<RawIdentity>,
    cors: Option<RawCors>,
    rate_limits: RawRateLimits,
    admin: Option<RawAdmin>,
    access_log: AccessLogSettings,
    server: ServerSettings,
}

const SECTIONS: [&str; 12] = [
    "listen",
    "upstreams",
    "stream",
    "tokens",
    "routes",
    "trusted_cidrs",
    "identity",
    "cors",
    "rate_limits",
    "admin",
    "access_log",
    "server",
];

impl RawConfig {
    fn from_sections(
        document: serde_yaml::Value,
        errors: &mut Vec<ConfigError>,
    ) -> Option<RawConfig> {
        let serde_yaml::Value::Mapping(mut map) = document else {
            errors.push(ConfigError::new(
                "",
                "the file must be a mapping of sections (listen, upstreams, stream, …)",
            ));
            return None;
        };
        for key in map.keys() {
            let name = key.as_str().unwrap_or("?");
            if !SECTIONS.contains(&name) {
                errors.push(ConfigError::new(
                    name,
                    format!("unknown section, expected one of {}", SECTIONS.join(", ")),
                ));
            }
        }
        let mut take = |name: &str| map.remove(name);
        let mut required = |name: &str, value: Option<serde_yaml::Value>| {
            if value.is_none() {
                errors.push(ConfigError::new(name, "is required"));
            }
            value
        };
        let listen = required("listen", take("listen"));
        let upstreams = required("upstreams", take("upstreams"));
        let stream = required("stream", take("stream"));
        fn parse<T: serde::de::DeserializeOwned>(
            name: &str,
            value: Option<serde_yaml::Value>,
            errors: &mut Vec<ConfigError>,
        ) -> Option<Option<T>> {
            match value {
                None => Some(None),
                Some(value) => keep(deserialize_section(name, value), errors).map(Some),
            }
        }
        let raw = (
            parse::<Vec<String>>("listen", listen, errors),
            parse::<BTreeMap<String, RawUpstream>>("upstreams", upstreams, errors),
            parse::<RawStream>("stream", stream, errors),
            parse::<RawTokens>("tokens", take("tokens"), errors),
            parse::<Vec<RawRoute>>("routes", take("routes"), errors),
            parse::<Vec<String>>("trusted_cidrs", take("trusted_cidrs"), errors),
            parse::<RawIdentity>("identity", take("identity"), errors),
            parse::<RawCors>("cors", take("cors"), errors),
            parse::<RawRateLimits>("rate_limits", take("rate_limits"), errors),
            parse::<RawAdmin>("admin", take("admin"), errors),
            parse::<AccessLogSettings>("access_log", take("access_log"), errors),
            parse::<ServerSettings>("server", take("server"), errors),
        );
        let (
            Some(Some(listen)),
            Some(Some(upstreams)),
            Some(Some(stream)),
            Some(tokens),
            Some(routes),
            Some(trusted_cidrs),
            Some(identity),
            Some(cors),
            Some(rate_limits),
            Some(admin),
            Some(access_log),
            Some(server),
        ) = raw
        else {
            return None;
        };
        Some(RawConfig {
            listen,
            upstreams,
            stream,
            tokens: tokens.unwrap_or_default(),
            routes,
            trusted_cidrs,
            identity,
            cors,
            rate_limits: rate_limits.unwrap_or_default(),
            admin,
            access_log: access_log.unwrap_or_default(),
            server: server.unwrap_or_default(),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<String>,
    readiness_probe: Option<RawReadinessProbe>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReadinessProbe {
    upstream: Option<String>,
    path: String,
    timeout: Option<String>,
}

const DEFAULT_ADMIN_LISTEN: &str = "0.0.0.0:9901";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    address: String,
    #[serde(default)]
    tls: bool,
    sni: Option<String>,
    #[serde(default = "default_true")]
    verify_cert: bool,
    connect_timeout: Option<String>,
    read_timeout: Option<String>,
    write_timeout: Option<String>,
    idle_timeout: Option<String>,
}

fn default_true() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStream {
    api_key: String,
    api_secret: Option<String>,
    api_secret_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTokens {
    default_validity_seconds: u64,
    max_validity_seconds: u64,
    iat_leeway_seconds: u64,
    max_body_bytes: usize,
    anyone_roles: Vec<String>,
    allowed_call_types: Option<Vec<String>>,
}

impl Default for RawTokens {
    fn default() -> Self {
        let policy = TokenPolicy::default();
        RawTokens {
            default_validity_seconds: policy.default_validity_seconds,
            max_validity_seconds: policy.max_validity_seconds,
            iat_leeway_seconds: policy.iat_leeway_seconds,
            max_body_bytes: policy.max_body_bytes,
            anyone_roles: policy.anyone_roles,
            allowed_call_types: policy.allowed_call_types,
        }
    }
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum IdentityMode {
    None,
    Header,
    ForwardAuth,
    Jwt,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    mode: IdentityMode,
    header: Option<RawHeaderIdentity>,
    forward_auth: Option<RawForwardAuth>,
    jwt: Option<RawJwt>,
    user_id_template: Option<String>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawHeaderIdentity {
    #[serde(default = "default_user_header")]
    user: String,
    roles: Option<String>,
}

fn default_user_header() -> String {
    "X-Forwarded-User".into()
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawForwardAuth {
    upstream: Option<String>,
    #[serde(default = "default_get")]
    method: String,
    path: String,
    user_id_header: Option<String>,
    user_id_pointer: Option<String>,
    roles_pointer: Option<String>,
    timeout: Option<String>,
    cache_ttl: Option<String>,
}

fn default_get() -> String {
    "GET".into()
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawJwt {
    hs256_secret: Option<String>,
    hs256_secret_file: Option<PathBuf>,
    public_key_file: Option<PathBuf>,
    jwks_file: Option<PathBuf>,
    algorithms: Option<Vec<String>>,
    issuer: Option<String>,
    audience: Option<String>,
    #[serde(default = "default_user_claim")]
    user_claim: String,
    roles_claim: Option<String>,
    leeway: Option<String>,
}

fn default_user_claim() -> String {
    "sub".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCors {
    allowed_origins: Vec<String>,
    #[serde(default)]
    allow_credentials: bool,
    #[serde(default = "default_cors_methods")]
    allowed_methods: Vec<String>,
    #[serde(default = "default_cors_headers")]
    allowed_headers: Vec<String>,
    max_age: Option<String>,
}

fn default_cors_methods() -> Vec<String> {
    vec!["POST".into()]
}

fn default_cors_headers() -> Vec<String> {
    vec!["Content-Type".into(), "Authorization".into()]
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRateLimits {
    per_identity: Option<RawRateLimit>,
    per_client_ip: Option<RawRateLimit>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    requests: u32,
    window: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    #[serde(rename = "match")]
    matcher: RawMatch,
    mint: Option<MintKind>,
    upstream: Option<String>,
    direct_response: Option<RawDirectResponse>,
    /// Overrides the top-level `identity` for this token route.
    identity: Option<RawIdentity>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDirectResponse {
    status: u16,
    #[serde(default)]
    body: String,
    #[serde(default = "default_direct_content_type")]
    content_type: String,
}

fn default_direct_content_type() -> String {
    "text/plain; charset=utf-8".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    method: Option<String>,
    path: Option<String>,
    path_prefix: Option<String>,
}

impl RawConfig {
    /// Checks every section, recording each problem; `None` if there was any.
    fn validate(self, errors: &mut Vec<ConfigError>) -> Option<Config> {
        if self.listen.is_empty() {
            errors.push(ConfigError::new(
                "listen",
                "at least one address is required",
            ));
        }
        let listen: Vec<SocketAddr> = self
            .listen
            .iter()
            .enumerate()
            .filter_map(|(i, address)| {
                let parsed = address.parse::<SocketAddr>().map_err(|_| {
                    ConfigError::new(
                        format!("listen[{i}]"),
                        format!("{address:?} is not an IP:port address (e.g. \"0.0.0.0:3000\")"),
                    )
                });
                keep(parsed, errors)
            })
            .collect();

        if self.upstreams.is_empty() {
            errors.push(ConfigError::new(
                "upstreams",
                "at least one upstream is required (the application streamgate sits in front of)",
            ));
        }
        let upstream_count = self.upstreams.len();
        let upstreams: Vec<Upstream> = self
            .upstreams
            .into_iter()
            .filter_map(|(name, raw)| keep(raw.validate(name), errors))
            .collect();
        let upstreams_valid = upstream_count > 0 && upstreams.len() == upstream_count;

        let stream = keep(self.stream.validate(), errors);
        let tokens = keep(self.tokens.validate(), errors);
        let trusted_cidrs = match self.trusted_cidrs {
            None => TrustedNetworks::default(),
            Some(list) => TrustedNetworks::new(
                list.iter()
                    .enumerate()
                    .filter_map(|(i, cidr)| {
                        keep(
                            parse_cidr(cidr).map_err(|reason| {
                                ConfigError::new(format!("trusted_cidrs[{i}]"), reason)
                            }),
                            errors,
                        )
                    })
                    .collect(),
            ),
        };
        let cors = self.cors.and_then(|raw| keep(validate_cors(raw), errors));
        let rate_limits = RateLimitSettings {
            per_identity: self
                .rate_limits
                .per_identity
                .and_then(|r| keep(r.validate("rate_limits.per_identity"), errors)),
            per_client_ip: self
                .rate_limits
                .per_client_ip
                .and_then(|r| keep(r.validate("rate_limits.per_client_ip"), errors)),
        };
        let server = keep(validate_server(self.server), errors);
        // Routes, identities and the admin probe name upstreams: checking them
        // against a list with a broken entry would only add confusing errors.
        if !upstreams_valid {
            return None;
        }
        let admin = keep(validate_admin(self.admin, &upstreams), errors);
        let default_identity = self.identity.unwrap_or(RawIdentity {
            mode: IdentityMode::None,
            header: None,
            forward_auth: None,
            jwt: None,
            user_id_template: None,
        });
        let mut access = AccessBuilder {
            default_identity,
            cors,
            upstreams: &upstreams,
            built: Vec::new(),
        };
        let routes = match self.routes {
            Some(routes) => validate_routes(routes, &upstreams, &mut access, errors),
            None if upstreams.len() == 1 => {
                let table = RouteTable::default_for(0);
                for route in table
                    .routes()
                    .iter()
                    .filter(|r| matches!(r.action, Action::Mint { .. }))
                {
                    keep(access.add(route, None, "routes"), errors);
                }
                Some(table)
            }
            None => {
                errors.push(ConfigError::new(
                    "routes",
                    "is required when more than one upstream is defined, to say which one gets which paths",
                ));
                None
            }
        };
        let access = access.built;
        if !errors.is_empty() {
            return None;
        }
        Some(Config {
            listen,
            upstreams,
            stream: stream?,
            tokens: tokens?,
            routes: routes?,
            access,
            trusted_cidrs,
            rate_limits,
            admin: admin?,
            access_log: self.access_log,
            server: server?,
        })
    }
}

impl RawUpstream {
    fn validate(self, name: String) -> Result<Upstream, ConfigError> {
        let key = |field: &str| format!("upstreams.{name}.{field}");
        if self.address.trim().is_empty() {
            return Err(ConfigError::new(key("address"), "must not be empty"));
        }
        let address = self
            .address
            .to_socket_addrs()
            .map_err(|e| {
                ConfigError::new(
                    key("address"),
                    format!("cannot resolve {:?} as host:port: {e}", self.address),
                )
            })?
            .next()
            .ok_or_else(|| {
                ConfigError::new(
                    key("address"),
                    format!("{:?} resolves to no address", self.address),
                )
            })?;
        let host = self
            .address
            .rsplit_once(':')
            .map_or(self.address.as_str(), |(host, _)| host)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let sni = self.sni.unwrap_or_else(|| host.to_string());
        let duration =
            |field: &str, value: Option<String>, default: u64| -> Result<Duration, ConfigError> {
                match value {
                    None => Ok(Duration::from_secs(default)),
                    Some(text) => parse_duration(&key(field), &text, false),
                }
            };
        Ok(Upstream {
            connect_timeout: duration("connect_timeout", self.connect_timeout, 5)?,
            read_timeout: duration("read_timeout", self.read_timeout, 60)?,
            write_timeout: duration("write_timeout", self.write_timeout, 60)?,
            idle_timeout: duration("idle_timeout", self.idle_timeout, 60)?,
            name,
            address,
            tls: self.tls,
            sni,
            verify_cert: self.verify_cert,
        })
    }
}

impl RawStream {
    fn validate(self) -> Result<StreamCredentials, ConfigError> {
        if self.api_key.trim().is_empty() {
            return Err(ConfigError::new("stream.api_key", "must not be empty"));
        }
        let api_secret = match (self.api_secret, self.api_secret_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "stream",
                    "set either api_secret or api_secret_file, not both",
                ))
            }
            (None, None) => {
                return Err(ConfigError::new(
                    "stream.api_secret",
                    "is required (or stream.api_secret_file)",
                ))
            }
            (Some(secret), None) => {
                if secret.is_empty() {
                    return Err(ConfigError::new("stream.api_secret", "must not be empty"));
                }
                secret
            }
            (None, Some(file)) => {
                return Ok(StreamCredentials {
                    api_key: self.api_key,
                    api_secret: SecretSource::File(file),
                })
            }
        };
        Ok(StreamCredentials {
            api_key: self.api_key,
            api_secret: SecretSource::Inline(api_secret),
        })
    }
}

impl RawTokens {
    fn validate(self) -> Result<TokenPolicy, ConfigError> {
        if self.max_validity_seconds == 0 {
            return Err(ConfigError::new(
                "tokens.max_validity_seconds",
                "must be at least 1",
            ));
        }
        if self.default_validity_seconds == 0
            || self.default_validity_seconds > self.max_validity_seconds
        {
            return Err(ConfigError::new(
                "tokens.default_validity_seconds",
                format!(
                    "must be between 1 and tokens.max_validity_seconds ({})",
                    self.max_validity_seconds
                ),
            ));
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError::new(
                "tokens.max_body_bytes",
                "must be at least 1",
            ));
        }
        for (i, role) in self.anyone_roles.iter().enumerate() {
            if !is_name(role) {
                return Err(ConfigError::new(
                    format!("tokens.anyone_roles[{i}]"),
                    format!("{role:?} {NAME_RULE}"),
                ));
            }
        }
        if let Some(types) = &self.allowed_call_types {
            for (i, call_type) in types.iter().enumerate() {
                if !is_name(call_type) {
                    return Err(ConfigError::new(
                        format!("tokens.allowed_call_types[{i}]"),
                        format!("{call_type:?} {NAME_RULE}"),
                    ));
                }
            }
        }
        Ok(TokenPolicy {
            default_validity_seconds: self.default_validity_seconds,
            max_validity_seconds: self.max_validity_seconds,
            iat_leeway_seconds: self.iat_leeway_seconds,
            max_body_bytes: self.max_body_bytes,
            anyone_roles: self.anyone_roles,
            allowed_call_types: self.allowed_call_types,
        })
    }
}

/// The route table; each broken route is recorded in `errors`.
fn validate_routes(
    raw: Vec<RawRoute>,
    upstreams: &[Upstream],
    access: &mut AccessBuilder,
    errors: &mut Vec<ConfigError>,
) -> Option<RouteTable> {
    if raw.is_empty() {
        errors.push(ConfigError::new(
            "routes",
            "must list at least one route (omit the key to use the default routes)",
        ));
        return None;
    }
    let count = raw.len();
    let routes: Vec<Route> = raw
        .into_iter()
        .enumerate()
        .map(|(i, route)| {
            let key = format!("routes[{i}]");
            let method = match route.matcher.method {
                None => None,
                Some(m) => Some(
                    http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
                        ConfigError::new(
                            format!("{key}.match.method"),
                            format!("{m:?} is not an HTTP method"),
                        )
                    })?,
                ),
            };
            let path = match (route.matcher.path, route.matcher.path_prefix) {
                (Some(p), None) => PathMatch::Exact(p),
                (None, Some(p)) => PathMatch::Prefix(p),
                _ => {
                    return Err(ConfigError::new(
                        format!("{key}.match"),
                        "needs exactly one of path or path_prefix",
                    ))
                }
            };
            let (PathMatch::Exact(p) | PathMatch::Prefix(p)) = &path;
            if !p.starts_with('/') {
                return Err(ConfigError::new(
                    format!("{key}.match"),
                    format!("path {p:?} must start with '/'"),
                ));
            }
            let action = match (route.mint, route.upstream, route.direct_response) {
                (Some(kind), None, None) => Action::Mint { kind, access: 0 },
                (None, Some(name), None) => Action::Proxy {
                    upstream: upstream_index(&format!("{key}.upstream"), Some(&name), upstreams)?,
                },
                (None, None, Some(direct)) => {
                    if !(200..=599).contains(&direct.status) {
                        return Err(ConfigError::new(
                            format!("{key}.direct_response.status"),
                            "must be an HTTP status from 200 to 599",
                        ));
                    }
                    Action::Respond(DirectResponse {
                        status: direct.status,
                        content_type: direct.content_type,
                        body: direct.body.into(),
                    })
                }
                _ => return Err(ConfigError::new(
                    key,
                    "needs exactly one of mint (a token kind), upstream (a name from upstreams) \
                         or direct_response",
                )),
            };
            if route.identity.is_some() && !matches!(action, Action::Mint { .. }) {
                return Err(ConfigError::new(
                    format!("{key}.identity"),
                    "only token routes (mint) have an identity",
                ));
            }
            let mut route_value = Route {
                method,
                path,
                action,
            };
            if let Action::Mint { kind, .. } = route_value.action {
                let index = access.add(&route_value, route.identity, &key)?;
                route_value.action = Action::Mint {
                    kind,
                    access: index,
                };
            }
            Ok(route_value)
        })
        .filter_map(|route| keep(route, errors))
        .collect();
    (routes.len() == count).then(|| RouteTable::new(routes))
}

/// Collects the access settings of token routes as the route table is built;
/// a route's own `identity` replaces the top-level one.
struct AccessBuilder<'a> {
    default_identity: RawIdentity,
    cors: Option<CorsPolicy>,
    upstreams: &'a [Upstream],
    built: Vec<RouteAccess>,
}

impl AccessBuilder<'_> {
    fn add(
        &mut self,
        route: &Route,
        identity: Option<RawIdentity>,
        route_key: &str,
    ) -> Result<usize, ConfigError> {
        let (identity, key) = match identity {
            Some(identity) => (identity, format!("{route_key}.identity")),
            None => (self.default_identity.clone(), "identity".to_string()),
        };
        self.built.push(RouteAccess {
            route: route.describe(),
            identity: validate_identity(identity, &key, self.upstreams)?,
            cors: self.cors.clone(),
        });
        Ok(self.built.len() - 1)
    }
}

/// The index of the upstream `name`; without a name, the only upstream there is.
fn upstream_index(
    key: &str,
    name: Option<&str>,
    upstreams: &[Upstream],
) -> Result<usize, ConfigError> {
    match name {
        Some(name) => upstreams
            .iter()
            .position(|u| u.name == name)
            .ok_or_else(|| {
                let known: Vec<&str> = upstreams.iter().map(|u| u.name.as_str()).collect();
                ConfigError::new(
                    key,
                    format!("unknown upstream {name:?} (defined: {})", known.join(", ")),
                )
            }),
        None if upstreams.len() == 1 => Ok(0),
        None => Err(ConfigError::new(
            key,
            "is required when more than one upstream is defined",
        )),
    }
}

/// `"10.0.0.0/8"`, or a bare address meaning just that host.
fn parse_cidr(text: &str) -> Result<ipnet::IpNet, String> {
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{text:?} is not a CIDR range like \"10.0.0.0/8\" or an IP address"))
}

/// A duration such as `"500ms"` or `"5s"`; zero only where `allow_zero`.
fn parse_duration(key: &str, text: &str, allow_zero: bool) -> Result<Duration, ConfigError> {
    match humantime::parse_duration(text) {
        Ok(d) if allow_zero || !d.is_zero() => Ok(d),
        Ok(_) => Err(ConfigError::new(key, "must be greater than zero")),
        Err(e) => Err(ConfigError::new(
            key,
            format!("{text:?} is not a duration like \"500ms\" or \"5s\": {e}"),
        )),
    }
}

fn header_name(key: &str, name: &str) -> Result<http::HeaderName, ConfigError> {
    http::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| ConfigError::new(key, format!("{name:?} is not a valid HTTP header name")))
}

fn json_pointer(key: &str, pointer: String) -> Result<String, ConfigError> {
    if pointer.starts_with('/') {
        Ok(pointer)
    } else {
        Err(ConfigError::new(
            key,
            format!("{pointer:?} is not a JSON pointer; it starts with '/', e.g. \"/user/id\""),
        ))
    }
}

fn validate_identity(
    raw: RawIdentity,
    key: &str,
    upstreams: &[Upstream],
) -> Result<IdentitySource, ConfigError> {
    let template = match &raw.user_id_template {
        Some(t) => UserIdTemplate::parse(t)
            .map_err(|reason| ConfigError::new(format!("{key}.user_id_template"), reason))?,
        None => UserIdTemplate::default(),
    };
    let stray = [
        (
            "header",
            raw.header.is_some() && raw.mode != IdentityMode::Header,
        ),
        (
            "forward_auth",
            raw.forward_auth.is_some() && raw.mode != IdentityMode::ForwardAuth,
        ),
        ("jwt", raw.jwt.is_some() && raw.mode != IdentityMode::Jwt),
    ];
    if let Some((block, _)) = stray.iter().find(|(_, stray)| *stray) {
        return Err(ConfigError::new(
            format!("{key}.{block}"),
            format!("is set but identity.mode is not {block}"),
        ));
    }
    let required = |block: &str| {
        ConfigError::new(
            format!("{key}.{block}"),
            format!("is required when mode is {block}"),
        )
    };
    match raw.mode {
        IdentityMode::None => Ok(IdentitySource::None),
        IdentityMode::Header => {
            let block = raw.header.unwrap_or(RawHeaderIdentity {
                user: default_user_header(),
                roles: None,
            });
            Ok(IdentitySource::Header(HeaderIdentity {
                user_header: header_name(&format!("{key}.header.user"), &block.user)?,
                roles_header: block
                    .roles
                    .map(|r| header_name(&format!("{key}.header.roles"), &r))
                    .transpose()?,
                template,
            }))
        }
        IdentityMode::ForwardAuth => {
            let block = raw.forward_auth.ok_or_else(|| required("forward_auth"))?;
            let key = format!("{key}.forward_auth");
            let upstream = upstream_index(
                &format!("{key}.upstream"),
                block.upstream.as_deref(),
                upstreams,
            )?;
            if !block.path.starts_with('/') {
                return Err(ConfigError::new(
                    format!("{key}.path"),
                    "must start with '/'",
                ));
            }
            let user_id = match (block.user_id_header, block.user_id_pointer) {
                (Some(h), None) => {
                    UserIdLocation::Header(header_name(&format!("{key}.user_id_header"), &h)?)
                }
                (None, Some(p)) => {
                    UserIdLocation::JsonPointer(json_pointer(&format!("{key}.user_id_pointer"), p)?)
                }
                _ => {
                    return Err(ConfigError::new(
                        key,
                        "needs exactly one of user_id_header or user_id_pointer",
                    ))
                }
            };
            Ok(IdentitySource::ForwardAuth(ForwardAuth {
                upstream,
                method: http::Method::from_bytes(block.method.to_ascii_uppercase().as_bytes())
                    .map_err(|_| {
                        ConfigError::new(
                            format!("{key}.method"),
                            format!("{:?} is not an HTTP method", block.method),
                        )
                    })?,
                path: block.path,
                user_id,
                roles_pointer: block
                    .roles_pointer
                    .map(|p| json_pointer(&format!("{key}.roles_pointer"), p))
                    .transpose()?,
                timeout: match &block.timeout {
                    Some(t) => parse_duration(&format!("{key}.timeout"), t, false)?,
                    None => Duration::from_secs(2),
                },
                cache_ttl: match &block.cache_ttl {
                    Some(t) => parse_duration(&format!("{key}.cache_ttl"), t, true)?,
                    None => Duration::from_secs(5),
                },
                max_body_bytes: 64 * 1024,
                template,
            }))
        }
        IdentityMode::Jwt => {
            let block = raw.jwt.ok_or_else(|| required("jwt"))?;
            validate_jwt(block, &format!("{key}.jwt"), template)
                .map(|jwt| IdentitySource::Jwt(Box::new(jwt)))
        }
    }
}

fn validate_jwt(
    block: RawJwt,
    key: &str,
    template: UserIdTemplate,
) -> Result<JwtIdentity, ConfigError> {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    let sources = [
        block.hs256_secret.is_some(),
        block.hs256_secret_file.is_some(),
        block.public_key_file.is_some(),
        block.jwks_file.is_some(),
    ];
    if sources.iter().filter(|s| **s).count() != 1 {
        return Err(ConfigError::new(
            key,
            "needs exactly one of hs256_secret, hs256_secret_file, public_key_file or jwks_file",
        ));
    }
    let read = |field: &str, path: &Path| {
        std::fs::read(path).map_err(|e| {
            ConfigError::new(
                format!("{key}.{field}"),
                format!("cannot read {}: {e}", path.display()),
            )
        })
    };
    let (keys, default_algorithms) = if let Some(secret) = block.hs256_secret {
        if secret.is_empty() {
            return Err(ConfigError::new(
                format!("{key}.hs256_secret"),
                "must not be empty",
            ));
        }
        (
            JwtKeys::Static(DecodingKey::from_secret(secret.as_bytes())),
            vec![Algorithm::HS256],
        )
    } else if let Some(path) = block.hs256_secret_file {
        let secret = crate::secret::read_secret(&path)
            .map_err(|reason| ConfigError::new(format!("{key}.hs256_secret_file"), reason))?;
        (
            JwtKeys::Static(DecodingKey::from_secret(&secret)),
            vec![Algorithm::HS256],
        )
    } else if let Some(path) = block.public_key_file {
        let pem = read("public_key_file", &path)?;
        let (decoding_key, algorithm) = decoding_key_from_pem(&pem).map_err(|reason| {
            ConfigError::new(
                format!("{key}.public_key_file"),
                format!("{}: {reason}", path.display()),
            )
        })?;
        (JwtKeys::Static(decoding_key), vec![algorithm])
    } else if let Some(path) = block.jwks_file {
        let file = JwksFile::load(&path)
            .map_err(|reason| ConfigError::new(format!("{key}.jwks_file"), reason))?;
        (
            JwtKeys::JwksFile(file),
            vec![Algorithm::RS256, Algorithm::ES256],
        )
    } else {
        unreachable!("exactly one key source was checked above")
    };
    let algorithms = match block.algorithms {
        None => default_algorithms,
        Some(names) => names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                name.parse::<Algorithm>().map_err(|_| {
                    ConfigError::new(
                        format!("{key}.algorithms[{i}]"),
                        format!("{name:?} is not a JWT algorithm"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    // An HMAC algorithm beside a public key is the classic algorithm-confusion
    // hole (the public key used as an HMAC secret); refuse any mix outright.
    let key_is_secret = sources[0] || sources[1];
    let is_hmac =
        |a: &Algorithm| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512);
    if algorithms.is_empty() || algorithms.iter().any(|a| is_hmac(a) != key_is_secret) {
        return Err(ConfigError::new(
            format!("{key}.algorithms"),
            "HS256/HS384/HS512 go with hs256_secret(_file) only, and public keys with RS*/PS*/ES*/EdDSA only",
        ));
    }
    let mut validation = Validation::new(algorithms[0]);
    validation.algorithms = algorithms;
    validation.validate_nbf = true;
    validation.leeway = match &block.leeway {
        Some(text) => parse_duration(&format!("{key}.leeway"), text, true)?.as_secs(),
        None => 30,
    };
    if let Some(issuer) = &block.issuer {
        validation.set_issuer(&[issuer]);
    }
    match &block.audience {
        Some(audience) => validation.set_audience(&[audience]),
        None => validation.validate_aud = false,
    }
    Ok(JwtIdentity::new(
        keys,
        validation,
        block.user_claim,
        block.roles_claim,
        template,
    ))
}

fn validate_cors(raw: RawCors) -> Result<CorsPolicy, ConfigError> {
    let origins = if raw.allowed_origins.iter().any(|o| o == "*") {
        if raw.allowed_origins.len() > 1 {
            return Err(ConfigError::new(
                "cors.allowed_origins",
                "\"*\" cannot be combined with other origins",
            ));
        }
        if raw.allow_credentials {
            return Err(ConfigError::new(
                "cors.allowed_origins",
                "\"*\" cannot be used with allow_credentials: true (browsers refuse it); list the origins",
            ));
        }
        AllowedOrigins::Any
    } else if raw.allowed_origins.is_empty() {
        return Err(ConfigError::new(
            "cors.allowed_origins",
            "must list at least one origin",
        ));
    } else {
        for (i, origin) in raw.allowed_origins.iter().enumerate() {
            let valid = (origin.starts_with("https://") || origin.starts_with("http://"))
                && !origin.ends_with('/');
            if !valid {
                return Err(ConfigError::new(
                    format!("cors.allowed_origins[{i}]"),
                    format!("{origin:?} is not an origin like \"https://app.example.com\" (scheme and host, no path)"),
                ));
            }
        }
        AllowedOrigins::List(raw.allowed_origins)
    };
    Ok(CorsPolicy {
        origins,
        allow_credentials: raw.allow_credentials,
        allowed_methods: raw.allowed_methods.join(", "),
        allowed_headers: raw.allowed_headers.join(", "),
        max_age_seconds: match &raw.max_age {
            Some(text) => parse_duration("cors.max_age", text, true)?.as_secs(),
            None => 600,
        },
    })
}

impl RawRateLimit {
    fn validate(self, key: &str) -> Result<RateLimitSetting, ConfigError> {
        if self.requests == 0 {
            return Err(ConfigError::new(
                format!("{key}.requests"),
                "must be at least 1",
            ));
        }
        Ok(RateLimitSetting {
            requests: self.requests,
            window: parse_duration(&format!("{key}.window"), &self.window, false)?,
        })
    }
}

fn validate_admin(
    raw: Option<RawAdmin>,
    upstreams: &[Upstream],
) -> Result<AdminSettings, ConfigError> {
    let raw = raw.unwrap_or(RawAdmin {
        listen: None,
        readiness_probe: None,
    });
    let text = raw.listen.as_deref().unwrap_or(DEFAULT_ADMIN_LISTEN);
    let listen = text.parse::<SocketAddr>().map_err(|_| {
        ConfigError::new(
            "admin.listen",
            format!("{text:?} is not an IP:port address (e.g. \"0.0.0.0:9901\")"),
        )
    })?;
    let readiness_probe = match raw.readiness_probe {
        None => None,
        Some(probe) => {
            let upstream = upstream_index(
                "admin.readiness_probe.upstream",
                probe.upstream.as_deref(),
                upstreams,
            )?;
            if !probe.path.starts_with('/') {
                return Err(ConfigError::new(
                    "admin.readiness_probe.path",
                    "must start with '/'",
                ));
            }
            Some(ReadinessProbe {
                upstream,
                path: probe.path,
                timeout: match &probe.timeout {
                    Some(t) => parse_duration("admin.readiness_probe.timeout", t, false)?,
                    None => Duration::from_secs(1),
                },
            })
        }
    };
    Ok(AdminSettings {
        listen,
        readiness_probe,
    })
}

fn validate_server(server: ServerSettings) -> Result<ServerSettings, ConfigError> {
    if server.threads == 0 {
        return Err(ConfigError::new("server.threads", "must be at least 1"));
    }
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(config.access.len(), 2);
        assert_eq!(config.server.grace_period_seconds, 5);
        assert_eq!(config.upstreams[0].connect_timeout, Duration::from_secs(5));
        assert_eq!(config.upstreams[0].sni, "127.0.0.1");
    }

    #[test]
    fn env_expansion_follows_shell_rules() {
        assert_eq!(
            expand_string("a${SECRET:-x}b", &env).unwrap(),
            "as3cr3t \"#: valueb"
        );
        assert_eq!(expand_string("${MISSING:-dev}", &env).unwrap(), "dev");
        assert_eq!(expand_string("${EMPTY:-dev}", &env).unwrap(), "dev");
        assert_eq!(expand_string("plain", &env).unwrap(), "plain");
        assert!(expand_string("${MISSING}", &env)
            .unwrap_err()
            .contains("MISSING is not set"));
        assert!(expand_string("${OPEN", &env)
            .unwrap_err()
            .contains("unterminated"));
        assert!(expand_string("${1BAD}", &env)
            .unwrap_err()
            .contains("not a valid"));
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
        let text =
            format!("{MINIMAL}routes:\n  - {{ match: {{ path_prefix: / }}, upstream: web }}\n");
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
        let text = format!(
            "{MINIMAL}tokens: {{ default_validity_seconds: 10, max_validity_seconds: 5 }}\n"
        );
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
}
