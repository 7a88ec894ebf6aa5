//! The file as written: one serde shape per section, public names and
//! defaults exactly as documented in README's configuration reference.
//!
//! Each section is deserialized on its own ([`RawConfig::from_document`]) so
//! that a mistake in one does not hide the mistakes in the others, and every
//! shape denies unknown fields: a typo is an error naming the key, never a
//! silent default. Durations are `humantime` strings (`"500ms"`, `"5s"`).
//!
//! The shapes also derive the file's JSON Schema (see [`super::schema`]):
//! their doc comments are the schema's descriptions, so they are written for
//! whoever edits the file (units, defaults), and a shape the schema should see
//! differently from how it is held here says so with `#[schemars(...)]`.
//!
//! Files: [`listen`] (the `listen:` entries), [`identity`] (the identity
//! modes' shapes), [`limits`] (`rate_limits`); the other sections are here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_yaml_ng::Value;

use super::error::{ConfigError, Errors};
use super::model::{HttpSettings, ServerSettings, UpstreamProtocol};
use crate::net::headers::UnderscoresAction;
use crate::net::path::EscapedSlashesAction;
use crate::telemetry::access_log::AccessLogSettings;
use crate::telemetry::trace::TracingSettings;
use crate::token::{MintKind, TokenPolicy};

mod identity;
mod limits;
mod listen;

pub(super) use identity::{
    IdentityMode, RawForwardAuth, RawIdentity, RawJwksFetch, RawJwt, RawUserIdMap, UserIdHash,
};
pub(super) use limits::{RateLimitBackend, RawRateLimit, RawRateLimits, RawRedis};
pub(super) use listen::{RawListen, RawListener, RawListenerTls};

/// The file's sections; `None` where a section could not be deserialized
/// (its error is recorded), so that the others are still checked.
///
/// For the schema, each field names the section's shape in the file
/// (`schemars(with)`), as [`RawConfig::from_document`] reads it: a section
/// whose keys are all optional may also be empty (`null`, read as `{}`);
/// `routes`, `identity` and `cors` may be absent but not empty (an empty one
/// is refused), `listen` and `upstreams` are required, and so is exactly one
/// of `stream` and `stream_apps`.
#[derive(JsonSchema)]
#[schemars(
    rename = "streamgate.yaml",
    deny_unknown_fields,
    extend("oneOf" = [{ "required": ["stream"] }, { "required": ["stream_apps"] }]),
    description = "The configuration of streamgate, a sidecar that mints Stream \
    (GetStream.io) tokens and proxies everything else to the app (README, \
    \"Configuration reference\"). Unknown keys are errors. `${VAR}` and \
    `${VAR:-default}` are expanded from the environment inside string values \
    only, so a string value may be any text holding `${`; numbers, booleans, \
    lists and maps cannot come from the environment. `streamgate -t -c FILE` \
    checks what this schema cannot: rules across keys (exactly one of \
    `api_secret` and `api_secret_file`, routes naming defined upstreams and \
    apps, addresses that parse and resolve) and the files the configuration names."
)]
pub(super) struct RawConfig {
    /// The addresses to accept traffic on (at least one): `"IP:port"`
    /// (plaintext) or `{ address, tls }`.
    #[schemars(with = "Vec<RawListen>", length(min = 1))]
    pub listen: Option<Vec<RawListen>>,
    /// The apps streamgate proxies to, by name (at least one); routes and
    /// error messages use the name.
    #[schemars(
        with = "BTreeMap<String, RawUpstream>",
        extend("minProperties" = 1)
    )]
    pub upstreams: Option<BTreeMap<String, RawUpstream>>,
    /// The Stream app tokens are signed for: its API key and secret.
    /// Exactly one of `stream` and `stream_apps`.
    #[schemars(with = "RawStream", default)]
    pub stream: Option<Option<RawStream>>,
    /// Several Stream apps instead of `stream`, by name (1 to 64 letters,
    /// digits, `-` or `_`), each with its own key and secret; each token
    /// route names its `app`.
    #[schemars(
        with = "BTreeMap<String, RawStream>",
        default,
        extend("minProperties" = 1)
    )]
    pub stream_apps: Option<Option<BTreeMap<String, RawStream>>>,
    /// Limits and defaults of the token routes (validities, body size,
    /// roles, call types).
    // The token contract's own policy type is the section's shape.
    #[schemars(with = "Option<TokenPolicy>")]
    pub tokens: Option<TokenPolicy>,
    /// Matched in order, the first match wins; each route has a `match` and
    /// exactly one action (`mint`, `upstream` or `direct_response`). Absent:
    /// `POST /api/tokens/user` mints user tokens, `POST /api/tokens/call` call
    /// tokens, everything else goes to the only upstream.
    #[schemars(with = "Vec<RawRoute>", default, length(min = 1))]
    pub routes: Option<Option<Vec<RawRoute>>>,
    /// Peers whose forwarding headers (`X-Forwarded-*`, `Forwarded`,
    /// `X-Real-IP`) and identity headers are believed: CIDRs or bare IPs.
    /// Default `["127.0.0.0/8", "::1/128"]`; `[]` when clients connect
    /// directly.
    #[schemars(with = "Option<Vec<String>>")]
    pub trusted_cidrs: Option<Option<Vec<String>>>,
    /// How token routes learn who is calling (default mode `none`);
    /// `routes[].identity` overrides it for one route.
    #[schemars(with = "RawIdentity", default)]
    pub identity: Option<RawIdentity>,
    /// CORS for browser callers of the token routes; off when absent.
    #[schemars(with = "RawCors", default)]
    pub cors: Option<Option<RawCors>>,
    /// Abuse limits on token requests; off when absent.
    #[schemars(with = "Option<RawRateLimits>")]
    pub rate_limits: Option<RawRateLimits>,
    /// The admin listener: probes, metrics, `/config_dump`, `/openapi.json`.
    #[schemars(with = "Option<RawAdmin>")]
    pub admin: Option<RawAdmin>,
    /// One line per request on stdout.
    #[schemars(with = "Option<AccessLogSettings>")]
    pub access_log: Option<AccessLogSettings>,
    /// Process settings (threads, shutdown timing, pid file).
    #[schemars(with = "Option<ServerSettings>")]
    pub server: Option<ServerSettings>,
    /// How requests from clients are read and shaped before routing.
    #[schemars(with = "Option<RawHttp>")]
    pub http: Option<RawHttp>,
    /// W3C trace context and OTLP span export.
    #[schemars(with = "Option<TracingSettings>")]
    pub tracing: Option<TracingSettings>,
}

pub(super) const SECTIONS: [&str; 15] = [
    "listen",
    "upstreams",
    "stream",
    "stream_apps",
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
    "tracing",
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
        let apps = self.stream.iter_mut().flatten().chain(
            self.stream_apps
                .iter_mut()
                .flatten()
                .flat_map(BTreeMap::values_mut),
        );
        for app in apps {
            app.api_secret_file.as_mut().map(fix);
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
        if let Some(redis) = self.rate_limits.as_mut().and_then(|r| r.redis.as_mut()) {
            redis.ca_file.as_mut().map(fix);
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
        let stream_apps = take("stream_apps");
        let (tokens, routes, trusted_cidrs) =
            (take("tokens"), take("routes"), take("trusted_cidrs"));
        let (identity, cors, rate_limits) = (take("identity"), take("cors"), take("rate_limits"));
        let (admin, access_log, server) = (take("admin"), take("access_log"), take("server"));
        let (http, tracing) = (take("http"), take("tracing"));
        let listen = required("listen", listen, errors);
        let upstreams = required("upstreams", upstreams, errors);
        let stream = optional("stream", stream, errors);
        let stream_apps = optional("stream_apps", stream_apps, errors);
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
        let tracing = optional("tracing", tracing, errors);
        Some(RawConfig {
            listen,
            upstreams,
            stream,
            stream_apps,
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
            tracing: tracing.map(Option::unwrap_or_default),
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

/// A duration as `humantime` reads it: a number and a unit, several
/// possibly (`500ms`, `5s`, `1m 30s`, `1h`); never a bare number.
fn duration(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "examples": ["500ms", "5s", "1m 30s"],
    })
}

/// The `http:` section: how requests from clients are read and shaped before
/// routing, named after Envoy's `HttpConnectionManager` settings; the defaults
/// are stricter than Envoy's.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(rename = "Http")]
pub(super) struct RawHttp {
    /// RFC 3986 §6 normalization of the path before routing (default true);
    /// the app receives the normalized path, routes match it without path
    /// parameters (`;x`), and a dot segment with parameters (`..;`) is refused.
    pub normalize_path: bool,
    /// `//a///b` is `/a/b`, for routing and for the app (default true).
    pub merge_slashes: bool,
    /// What a path with `%2F`, `%5C` or a raw `\\` gets (default
    /// `reject_request`).
    pub path_with_escaped_slashes_action: EscapedSlashesAction,
    /// What a request header whose name contains `_` gets (default
    /// `drop_header`).
    pub headers_with_underscores_action: UnderscoresAction,
    /// Largest request head (request line, headers, final empty line), in KiB
    /// (default 32, 1 to 1024): larger is 431, a request line alone larger 414.
    #[schemars(range(min = 1, max = 1024))]
    pub max_request_headers_kb: usize,
    /// Time a client has to send its request head (default `10s`): from
    /// accept for the first request, from the first byte for later ones;
    /// slower is 408.
    #[serde(with = "humantime_serde")]
    #[schemars(schema_with = "duration")]
    pub request_headers_timeout: Duration,
    /// Client connections served at once (default 512); as many more wait,
    /// and past that a new connection is closed unserved.
    #[schemars(range(min = 1))]
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

/// The admin listener: `/healthz`, `/readyz`, `/metrics`, `/config_dump` and
/// `/openapi.json`, never proxied.
#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Admin")]
pub(super) struct RawAdmin {
    /// `IP:port` of the admin listener (default `0.0.0.0:9901`).
    pub listen: Option<String>,
    /// Makes `/readyz` also require the app to answer `GET path` with 2xx.
    pub readiness_probe: Option<RawReadinessProbe>,
}

/// `/readyz` asks the app too.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ReadinessProbe")]
pub(super) struct RawReadinessProbe {
    /// The upstream asked; absent: the only one.
    pub upstream: Option<String>,
    /// The path asked with `GET`.
    pub path: String,
    /// Longest wait for the answer (default `1s`).
    #[serde(with = "humantime_serde", default = "seconds::<1>")]
    #[schemars(schema_with = "duration")]
    pub timeout: Duration,
}

/// One app streamgate proxies to.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Upstream")]
pub(super) struct RawUpstream {
    /// `host:port` of the app, resolved once at start.
    pub address: String,
    /// Connect with TLS (default false).
    #[serde(default)]
    pub tls: bool,
    /// TLS server name, also checked against the certificate; absent: the
    /// host part of `address`.
    pub sni: Option<String>,
    /// Verify the app's certificate and host name (default true; only with
    /// `tls`); an unverifiable certificate is a 502.
    #[serde(default = "default_true")]
    pub verify_cert: bool,
    /// The HTTP version spoken to the app (default `http1`).
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    /// Give up connecting after this (default `5s`).
    #[serde(with = "humantime_serde", default = "seconds::<5>")]
    #[schemars(schema_with = "duration")]
    pub connect_timeout: Duration,
    /// Longest wait for the app between two reads (default `60s`): a 504 if
    /// no response started. Also closes idle WebSockets.
    #[serde(with = "humantime_serde", default = "seconds::<60>")]
    #[schemars(schema_with = "duration")]
    pub read_timeout: Duration,
    /// Longest wait while writing to the app (default `60s`).
    #[serde(with = "humantime_serde", default = "seconds::<60>")]
    #[schemars(schema_with = "duration")]
    pub write_timeout: Duration,
    /// How long an idle keep-alive connection to the app is kept for reuse
    /// (default `60s`).
    #[serde(with = "humantime_serde", default = "seconds::<60>")]
    #[schemars(schema_with = "duration")]
    pub idle_timeout: Duration,
}

fn default_true() -> bool {
    true
}

/// A serde default of `N` seconds.
fn seconds<const N: u64>() -> Duration {
    Duration::from_secs(N)
}

/// The Stream credentials: exactly one of `api_secret` and `api_secret_file`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Stream")]
pub(super) struct RawStream {
    /// Stream API key, returned to clients as `apiKey`; not empty.
    pub api_key: String,
    /// Stream API secret the tokens are signed with; not empty, never logged.
    pub api_secret: Option<String>,
    /// Instead of `api_secret`: a file holding the secret (a mounted
    /// Kubernetes Secret), watched and reloaded on change; trailing CR and LF
    /// are ignored.
    pub api_secret_file: Option<PathBuf>,
}

/// CORS for browser callers of the token routes.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Cors")]
pub(super) struct RawCors {
    /// Origins as browsers send them (`https://app.example.com`), or `["*"]`
    /// without credentials; at least one.
    #[schemars(length(min = 1))]
    pub allowed_origins: Vec<String>,
    /// Send `Access-Control-Allow-Credentials: true`, needed for cookies
    /// (default false).
    #[serde(default)]
    pub allow_credentials: bool,
    /// Default `[POST]`.
    #[serde(default = "default_cors_methods")]
    pub allowed_methods: Vec<String>,
    /// Default `[Content-Type, Authorization]`.
    #[serde(default = "default_cors_headers")]
    pub allowed_headers: Vec<String>,
    /// How long browsers may cache the preflight (default `10m`).
    #[serde(with = "humantime_serde", default = "seconds::<600>")]
    #[schemars(schema_with = "duration")]
    pub max_age: Duration,
}

fn default_cors_methods() -> Vec<String> {
    vec!["POST".into()]
}

fn default_cors_headers() -> Vec<String> {
    vec!["Content-Type".into(), "Authorization".into()]
}

/// A route: a `match` and exactly one of `mint`, `upstream` and
/// `direct_response`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Route")]
pub(super) struct RawRoute {
    /// Which requests the route takes.
    #[serde(rename = "match")]
    pub matcher: RawMatch,
    /// Answer with a Stream token.
    pub mint: Option<MintKind>,
    /// Proxy to the upstream of this name.
    pub upstream: Option<String>,
    /// Answer with a fixed response without touching the app.
    pub direct_response: Option<RawDirectResponse>,
    /// Overrides the top-level `identity` for this token route.
    pub identity: Option<RawIdentity>,
    /// For a token route: the `stream_apps` entry it signs for; optional
    /// with one app.
    pub app: Option<String>,
}

/// A fixed answer (Envoy's `direct_response`).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "DirectResponse")]
pub(super) struct RawDirectResponse {
    /// The HTTP status.
    pub status: u16,
    /// The body (default empty).
    #[serde(default)]
    pub body: String,
    /// Default `text/plain; charset=utf-8`.
    #[serde(default = "default_direct_content_type")]
    pub content_type: String,
}

fn default_direct_content_type() -> String {
    "text/plain; charset=utf-8".into()
}

/// What a route matches: exactly one of `path` and `path_prefix`, in normal
/// form (the normalized path is matched; another spelling is an error).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Match")]
pub(super) struct RawMatch {
    /// Only requests for this host match (the `Host` header, or HTTP/2's
    /// `:authority`): `eu.example.com` exactly, or `*.example.com` for any
    /// name under it; without case, port or trailing dot. Absent: any host.
    pub host: Option<String>,
    /// Only this HTTP method matches; absent: any.
    pub method: Option<String>,
    /// The path equals this (query string not included).
    pub path: Option<String>,
    /// The path starts with this.
    pub path_prefix: Option<String>,
}
