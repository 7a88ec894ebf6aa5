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

use crate::routing::{Action, DirectResponse, MintKind, PathMatch, Route, RouteTable};
use crate::token_contract::TokenPolicy;

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

/// The validated configuration streamgate runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Vec<SocketAddr>,
    pub upstreams: Vec<Upstream>,
    pub stream: StreamCredentials,
    pub tokens: TokenPolicy,
    pub routes: RouteTable,
    pub server: ServerSettings,
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
    pub api_secret: String,
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
    pub work_stealing: bool,
    pub grace_period_seconds: u64,
    pub graceful_shutdown_timeout_seconds: u64,
    pub upstream_keepalive_pool_size: usize,
    pub pid_file: String,
    pub upgrade_sock: String,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            threads: 1,
            work_stealing: true,
            grace_period_seconds: 5,
            graceful_shutdown_timeout_seconds: 5,
            upstream_keepalive_pool_size: 128,
            pid_file: "/tmp/streamgate.pid".into(),
            upgrade_sock: "/tmp/streamgate_upgrade.sock".into(),
        }
    }
}

impl Config {
    /// Reads, expands and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("", format!("cannot read {}: {e}", path.display())))?;
        Config::from_yaml(&text, &|name| std::env::var(name).ok())
    }

    /// Parses configuration text; `env` looks up variables for `${VAR}` expansion.
    pub fn from_yaml(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut document: serde_yaml::Value = serde_yaml::from_str(text)
            .map_err(|e| ConfigError::new("", format!("invalid YAML: {e}")))?;
        if document.is_null() {
            return Err(ConfigError::new("", "the file is empty"));
        }
        expand_env(&mut document, &mut String::new(), env)?;
        let raw: RawConfig = deserialize_located(document)?;
        raw.validate()
    }

    /// Things that are allowed but that an operator must hear about at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.stream.api_secret == DEV_SECRET {
            warnings.push(
                "stream.api_secret is the DEVELOPMENT secret from conf/streamgate.yaml: \
                 tokens signed with it are rejected by Stream and anyone can forge them. \
                 Set STREAM_API_SECRET or stream.api_secret_file before deploying."
                    .to_string(),
            );
        }
        for route in self.routes.routes() {
            if let Action::Mint(_) = &route.action {
                warnings.push(format!(
                    "route {} has no identity check: anyone who can reach {} can mint a Stream \
                     token for ANY userId",
                    route.describe(),
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

/// Deserializes `value`, turning serde's error into one that names the key path.
fn deserialize_located<T: serde::de::DeserializeOwned>(
    value: serde_yaml::Value,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        ConfigError::new(key, e.into_inner().to_string())
    })
}

fn expand_env(
    value: &mut serde_yaml::Value,
    key: &mut String,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match value {
        serde_yaml::Value::String(s) if s.contains("${") => {
            *s = expand_string(s, env).map_err(|reason| ConfigError::new(key.clone(), reason))?;
        }
        serde_yaml::Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = key.len();
                key.push_str(&format!("[{i}]"));
                expand_env(item, key, env)?;
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
                expand_env(item, key, env)?;
                key.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Vec<String>,
    upstreams: BTreeMap<String, RawUpstream>,
    stream: RawStream,
    #[serde(default)]
    tokens: RawTokens,
    routes: Option<Vec<RawRoute>>,
    #[serde(default)]
    server: ServerSettings,
}

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
}

impl Default for RawTokens {
    fn default() -> Self {
        let policy = TokenPolicy::default();
        RawTokens {
            default_validity_seconds: policy.default_validity_seconds,
            max_validity_seconds: policy.max_validity_seconds,
            iat_leeway_seconds: policy.iat_leeway_seconds,
            max_body_bytes: policy.max_body_bytes,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    #[serde(rename = "match")]
    matcher: RawMatch,
    mint: Option<MintKind>,
    upstream: Option<String>,
    direct_response: Option<RawDirectResponse>,
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
    fn validate(self) -> Result<Config, ConfigError> {
        if self.listen.is_empty() {
            return Err(ConfigError::new(
                "listen",
                "at least one address is required",
            ));
        }
        let listen = self
            .listen
            .iter()
            .enumerate()
            .map(|(i, address)| {
                address.parse::<SocketAddr>().map_err(|_| {
                    ConfigError::new(
                        format!("listen[{i}]"),
                        format!("{address:?} is not an IP:port address (e.g. \"0.0.0.0:3000\")"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        if self.upstreams.is_empty() {
            return Err(ConfigError::new(
                "upstreams",
                "at least one upstream is required (the application streamgate sits in front of)",
            ));
        }
        let upstreams = self
            .upstreams
            .into_iter()
            .map(|(name, raw)| raw.validate(name))
            .collect::<Result<Vec<_>, _>>()?;

        let stream = self.stream.validate()?;
        let tokens = self.tokens.validate()?;
        let routes = match self.routes {
            Some(routes) => validate_routes(routes, &upstreams)?,
            None if upstreams.len() == 1 => RouteTable::default_for(0),
            None => {
                return Err(ConfigError::new(
                    "routes",
                    "is required when more than one upstream is defined, to say which one gets which paths",
                ))
            }
        };
        let server = validate_server(self.server)?;
        Ok(Config {
            listen,
            upstreams,
            stream,
            tokens,
            routes,
            server,
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
                    Some(text) => match humantime::parse_duration(&text) {
                        Ok(d) if !d.is_zero() => Ok(d),
                        Ok(_) => Err(ConfigError::new(key(field), "must be greater than zero")),
                        Err(e) => Err(ConfigError::new(
                            key(field),
                            format!("{text:?} is not a duration like \"500ms\" or \"5s\": {e}"),
                        )),
                    },
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
            (None, Some(file)) => read_secret_file(&file)?,
        };
        Ok(StreamCredentials {
            api_key: self.api_key,
            api_secret,
        })
    }
}

/// Secret files written by `kubectl create secret --from-file` or an editor often
/// end in a newline that is not part of the secret.
fn read_secret_file(file: &Path) -> Result<String, ConfigError> {
    let key = "stream.api_secret_file";
    let text = std::fs::read_to_string(file)
        .map_err(|e| ConfigError::new(key, format!("cannot read {}: {e}", file.display())))?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err(ConfigError::new(
            key,
            format!("{} is empty", file.display()),
        ));
    }
    Ok(secret.to_string())
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
        Ok(TokenPolicy {
            default_validity_seconds: self.default_validity_seconds,
            max_validity_seconds: self.max_validity_seconds,
            iat_leeway_seconds: self.iat_leeway_seconds,
            max_body_bytes: self.max_body_bytes,
        })
    }
}

fn validate_routes(raw: Vec<RawRoute>, upstreams: &[Upstream]) -> Result<RouteTable, ConfigError> {
    if raw.is_empty() {
        return Err(ConfigError::new(
            "routes",
            "must list at least one route (omit the key to use the default routes)",
        ));
    }
    let routes = raw
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
                (Some(kind), None, None) => Action::Mint(kind),
                (None, Some(name), None) => {
                    let index = upstreams
                        .iter()
                        .position(|u| u.name == name)
                        .ok_or_else(|| {
                            let known: Vec<&str> =
                                upstreams.iter().map(|u| u.name.as_str()).collect();
                            ConfigError::new(
                                format!("{key}.upstream"),
                                format!(
                                    "unknown upstream {name:?} (defined: {})",
                                    known.join(", ")
                                ),
                            )
                        })?;
                    Action::Proxy { upstream: index }
                }
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
            Ok(Route {
                method,
                path,
                action,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RouteTable::new(routes))
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

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(text, &env)
    }

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let config = load(MINIMAL).expect("valid");
        assert_eq!(config.stream.api_secret, "s3cr3t \"#: value");
        assert_eq!(config.tokens, TokenPolicy::default());
        assert_eq!(config.routes.routes().len(), 2);
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
