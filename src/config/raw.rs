//! The file as written: one serde shape per section, public names and
//! defaults exactly as documented in README's configuration reference.
//!
//! Each section is deserialized on its own ([`RawConfig::from_document`]) so
//! that a mistake in one does not hide the mistakes in the others, and every
//! shape denies unknown fields: a typo is an error naming the key, never a
//! silent default. Durations are `humantime` strings (`"500ms"`, `"5s"`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_yaml_ng::Value;

use super::error::{ConfigError, Errors};
use super::model::{HttpSettings, ServerSettings, UpstreamProtocol};
use crate::net::headers::UnderscoresAction;
use crate::net::path::EscapedSlashesAction;
use crate::telemetry::access_log::AccessLogSettings;
use crate::token::{MintKind, TokenPolicy};

/// The file's sections; `None` where a section could not be deserialized
/// (its error is recorded), so that the others are still checked.
pub(super) struct RawConfig {
    pub listen: Option<Vec<RawListen>>,
    pub upstreams: Option<BTreeMap<String, RawUpstream>>,
    pub stream: Option<RawStream>,
    /// The token contract's own policy type is the section's shape.
    pub tokens: Option<TokenPolicy>,
    pub routes: Option<Option<Vec<RawRoute>>>,
    pub trusted_cidrs: Option<Option<Vec<String>>>,
    pub identity: Option<RawIdentity>,
    pub cors: Option<Option<RawCors>>,
    pub rate_limits: Option<RawRateLimits>,
    pub admin: Option<RawAdmin>,
    pub access_log: Option<AccessLogSettings>,
    pub server: Option<ServerSettings>,
    pub http: Option<RawHttp>,
}

const SECTIONS: [&str; 13] = [
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
    "http",
];

impl RawConfig {
    /// Splits the document into sections and deserializes each; `None` when
    /// any failed (each failure is in `errors`).
    /// Makes the relative paths of files streamgate reads (certificates,
    /// keys, secrets, key sets, CAs) relative to `dir`, the configuration
    /// file's directory, as nginx and Envoy read theirs: a config then means
    /// the same files whatever directory streamgate is started from.
    pub fn rebase(&mut self, dir: &Path) {
        let fix = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = dir.join(&*path);
            }
        };
        for listen in self.listen.iter_mut().flatten() {
            if let RawListen::Listener(RawListener { tls: Some(tls), .. }) = listen {
                fix(&mut tls.cert_file);
                fix(&mut tls.key_file);
                tls.client_ca_file.as_mut().map(fix);
            }
        }
        if let Some(stream) = &mut self.stream {
            stream.api_secret_file.as_mut().map(fix);
        }
        let identities = self.identity.iter_mut().chain(
            self.routes
                .iter_mut()
                .flatten()
                .flatten()
                .filter_map(|route| route.identity.as_mut()),
        );
        for jwt in identities.filter_map(|identity| identity.jwt.as_mut()) {
            for path in [
                &mut jwt.hs256_secret_file,
                &mut jwt.public_key_file,
                &mut jwt.jwks_file,
            ] {
                path.as_mut().map(fix);
            }
            if let Some(fetch) = &mut jwt.jwks_fetch {
                fetch.ca_file.as_mut().map(fix);
            }
        }
        if let Some(server) = &mut self.server {
            if let Some(ca_file) = &mut server.ca_file {
                if Path::new(ca_file.as_str()).is_relative() {
                    *ca_file = dir.join(&*ca_file).to_string_lossy().into_owned();
                }
            }
        }
    }

    pub fn from_document(document: Value, errors: &mut Errors) -> Option<RawConfig> {
        let Value::Mapping(mut map) = document else {
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
        let (listen, upstreams, stream) = (take("listen"), take("upstreams"), take("stream"));
        let (tokens, routes, trusted_cidrs) =
            (take("tokens"), take("routes"), take("trusted_cidrs"));
        let (identity, cors, rate_limits) = (take("identity"), take("cors"), take("rate_limits"));
        let (admin, access_log, server) = (take("admin"), take("access_log"), take("server"));
        let http = take("http");
        let listen = required("listen", listen, errors);
        let upstreams = required("upstreams", upstreams, errors);
        let stream = required("stream", stream, errors);
        let tokens = optional("tokens", tokens, errors);
        let routes = optional("routes", routes, errors);
        let trusted_cidrs = optional("trusted_cidrs", trusted_cidrs, errors);
        let identity = optional("identity", identity, errors);
        let cors = optional("cors", cors, errors);
        let rate_limits = optional("rate_limits", rate_limits, errors);
        let admin = optional("admin", admin, errors);
        let access_log = optional("access_log", access_log, errors);
        let server = optional("server", server, errors);
        let http = optional("http", http, errors);
        Some(RawConfig {
            listen,
            upstreams,
            stream,
            tokens: tokens.map(Option::unwrap_or_default),
            routes,
            trusted_cidrs,
            identity: identity.map(Option::unwrap_or_default),
            cors,
            rate_limits: rate_limits.map(Option::unwrap_or_default),
            admin: admin.map(Option::unwrap_or_default),
            access_log: access_log.map(Option::unwrap_or_default),
            server: server.map(Option::unwrap_or_default),
            http: http.map(Option::unwrap_or_default),
        })
    }
}

fn required<T: DeserializeOwned>(
    name: &str,
    value: Option<Value>,
    errors: &mut Errors,
) -> Option<T> {
    match value {
        None => {
            errors.push(ConfigError::new(name, "is required"));
            None
        }
        Some(value) => errors.keep(deserialize_section(name, value)),
    }
}

/// `Some(None)` when absent, `None` when present but invalid.
fn optional<T: DeserializeOwned>(
    name: &str,
    value: Option<Value>,
    errors: &mut Errors,
) -> Option<Option<T>> {
    match value {
        None => Some(None),
        Some(value) => errors.keep(deserialize_section(name, value)).map(Some),
    }
}

/// Deserializes the section `section`, turning serde's error into one that
/// names the full key path.
fn deserialize_section<T: DeserializeOwned>(section: &str, value: Value) -> Result<T, ConfigError> {
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

/// One `listen` entry: `"IP:port"` (plaintext), or a map with the address
/// and what the listener speaks (`tls`).
pub(super) enum RawListen {
    Plain(String),
    Listener(RawListener),
}

// By hand rather than `#[serde(untagged)]`: an untagged enum answers every
// mistake with "did not match any variant", where a map must report its
// unknown or missing key by name, like every other section.
impl<'de> Deserialize<'de> for RawListen {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entry;
        impl<'de> Visitor<'de> for Entry {
            type Value = RawListen;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an \"IP:port\" string or a map { address, tls }")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<RawListen, E> {
                Ok(RawListen::Plain(text.to_string()))
            }

            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<RawListen, M::Error> {
                RawListener::deserialize(MapAccessDeserializer::new(map)).map(RawListen::Listener)
            }
        }
        deserializer.deserialize_any(Entry)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    pub address: String,
    pub tls: Option<RawListenerTls>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListenerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
}

/// The `http:` section; see [`HttpSettings`] for what each key means.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawHttp {
    pub normalize_path: bool,
    pub merge_slashes: bool,
    pub path_with_escaped_slashes_action: EscapedSlashesAction,
    pub headers_with_underscores_action: UnderscoresAction,
    pub max_request_headers_kb: usize,
    #[serde(with = "humantime_serde")]
    pub request_headers_timeout: Duration,
    pub max_downstream_connections: usize,
}

impl Default for RawHttp {
    fn default() -> Self {
        let settings = HttpSettings::default();
        RawHttp {
            normalize_path: settings.normalize_path,
            merge_slashes: settings.merge_slashes,
            path_with_escaped_slashes_action: settings.path_with_escaped_slashes_action,
            headers_with_underscores_action: settings.headers_with_underscores_action,
            max_request_headers_kb: settings.max_request_headers_bytes / 1024,
            request_headers_timeout: settings.request_headers_timeout,
            max_downstream_connections: settings.max_downstream_connections,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub listen: Option<String>,
    pub readiness_probe: Option<RawReadinessProbe>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReadinessProbe {
    pub upstream: Option<String>,
    pub path: String,
    #[serde(with = "humantime_serde", default = "seconds::<1>")]
    pub timeout: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    pub address: String,
    #[serde(default)]
    pub tls: bool,
    pub sni: Option<String>,
    #[serde(default = "default_true")]
    pub verify_cert: bool,
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    #[serde(with = "humantime_serde", default = "seconds::<5>")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde", default = "seconds::<60>")]
    pub read_timeout: Duration,
    #[serde(with = "humantime_serde", default = "seconds::<60>")]
    pub write_timeout: Duration,
    #[serde(with = "humantime_serde", default = "seconds::<60>")]
    pub idle_timeout: Duration,
}

fn default_true() -> bool {
    true
}

/// A serde default of `N` seconds.
fn seconds<const N: u64>() -> Duration {
    Duration::from_secs(N)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStream {
    pub api_key: String,
    pub api_secret: Option<String>,
    pub api_secret_file: Option<PathBuf>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub(super) enum IdentityMode {
    #[default]
    None,
    Header,
    ForwardAuth,
    Jwt,
}

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIdentity {
    pub mode: IdentityMode,
    pub header: Option<RawHeaderIdentity>,
    pub forward_auth: Option<RawForwardAuth>,
    pub jwt: Option<RawJwt>,
    pub user_id_map: Option<RawUserIdMap>,
    pub user_id_template: Option<String>,
}

/// `user_id_map`: exactly one of the two forms (checked in validation, which
/// names the key).
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUserIdMap {
    pub replace_invalid: Option<String>,
    pub hash: Option<UserIdHash>,
}

/// `user_id_map.hash`: the one hash offered.
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub(super) enum UserIdHash {
    Sha256,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHeaderIdentity {
    #[serde(default = "default_user_header")]
    pub user: String,
    pub roles: Option<String>,
}

impl Default for RawHeaderIdentity {
    fn default() -> Self {
        RawHeaderIdentity {
            user: default_user_header(),
            roles: None,
        }
    }
}

fn default_user_header() -> String {
    "X-Forwarded-User".into()
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawForwardAuth {
    pub upstream: Option<String>,
    #[serde(default = "default_get")]
    pub method: String,
    pub path: String,
    pub user_id_header: Option<String>,
    pub user_id_pointer: Option<String>,
    pub roles_pointer: Option<String>,
    #[serde(with = "humantime_serde", default = "seconds::<2>")]
    pub timeout: Duration,
    #[serde(with = "humantime_serde", default = "seconds::<5>")]
    pub cache_ttl: Duration,
}

fn default_get() -> String {
    "GET".into()
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJwt {
    pub hs256_secret: Option<String>,
    pub hs256_secret_file: Option<PathBuf>,
    pub public_key_file: Option<PathBuf>,
    pub jwks_file: Option<PathBuf>,
    /// OpenID Connect Discovery: the key set is the `jwks_uri` of
    /// `{issuer_url}/.well-known/openid-configuration`; also the `iss` required.
    pub issuer_url: Option<String>,
    pub jwks_url: Option<String>,
    /// How `issuer_url`/`jwks_url` are fetched.
    pub jwks_fetch: Option<RawJwksFetch>,
    /// The minted token's `exp` is at most the presented JWT's `exp`.
    #[serde(default = "default_true")]
    pub cap_exp_to_credential: bool,
    pub algorithms: Option<Vec<String>>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
    pub roles_claim: Option<String>,
    #[serde(with = "humantime_serde", default = "seconds::<30>")]
    pub leeway: Duration,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJwksFetch {
    #[serde(with = "humantime_serde", default = "seconds::<5>")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde", default = "seconds::<10>")]
    pub timeout: Duration,
    pub ca_file: Option<PathBuf>,
    #[serde(with = "humantime_serde", default = "seconds::<300>")]
    pub min_cache_duration: Duration,
    #[serde(with = "humantime_serde", default = "seconds::<3600>")]
    pub max_cache_duration: Duration,
    #[serde(with = "humantime_serde", default = "seconds::<30>")]
    pub unknown_kid_refetch_interval: Duration,
}

impl Default for RawJwksFetch {
    fn default() -> Self {
        RawJwksFetch {
            connect_timeout: seconds::<5>(),
            timeout: seconds::<10>(),
            ca_file: None,
            min_cache_duration: seconds::<300>(),
            max_cache_duration: seconds::<3600>(),
            unknown_kid_refetch_interval: seconds::<30>(),
        }
    }
}

fn default_user_claim() -> String {
    "sub".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCors {
    pub allowed_origins: Vec<String>,
    #[serde(default)]
    pub allow_credentials: bool,
    #[serde(default = "default_cors_methods")]
    pub allowed_methods: Vec<String>,
    #[serde(default = "default_cors_headers")]
    pub allowed_headers: Vec<String>,
    #[serde(with = "humantime_serde", default = "seconds::<600>")]
    pub max_age: Duration,
}

fn default_cors_methods() -> Vec<String> {
    vec!["POST".into()]
}

fn default_cors_headers() -> Vec<String> {
    vec!["Content-Type".into(), "Authorization".into()]
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRateLimits {
    pub per_identity: Option<RawRateLimit>,
    pub per_client_ip: Option<RawRateLimit>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRateLimit {
    pub requests: u32,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    #[serde(rename = "match")]
    pub matcher: RawMatch,
    pub mint: Option<MintKind>,
    pub upstream: Option<String>,
    pub direct_response: Option<RawDirectResponse>,
    /// Overrides the top-level `identity` for this token route.
    pub identity: Option<RawIdentity>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDirectResponse {
    pub status: u16,
    #[serde(default)]
    pub body: String,
    #[serde(default = "default_direct_content_type")]
    pub content_type: String,
}

fn default_direct_content_type() -> String {
    "text/plain; charset=utf-8".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMatch {
    pub method: Option<String>,
    pub path: Option<String>,
    pub path_prefix: Option<String>,
}
