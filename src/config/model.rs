//! The checked configuration streamgate runs with: every value parsed into a
//! type, so the rest of streamgate never sees a raw string it would have to
//! re-validate on the request path. Apart from [`ServerSettings`], which is
//! also the `server:` section's serde shape, this model is not the public
//! surface (the shapes in `raw` are) and can change shape freely.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::identity::IdentitySource;
use crate::limits::{OnError, RedisUrl};
use crate::net::cors::CorsPolicy;
use crate::net::headers::UnderscoresAction;
use crate::net::path::{EscapedSlashesAction, PathRules};
use crate::routing::DirectResponse;
use crate::tls::{ClientVerifier, ServerCertificate};
use crate::token::MintKind;

/// One proxy listener: an address, plaintext or TLS.
#[derive(Debug)]
pub struct Listener {
    pub address: SocketAddr,
    pub tls: Option<ListenerTls>,
}

/// A TLS listener's certificate and, for mutual TLS, whom it accepts.
pub struct ListenerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// The pair as read and checked with the configuration: what the listener
    /// serves until the files change.
    pub certificate: Arc<ServerCertificate>,
    /// With `client_ca_file`: a client must present a certificate from it.
    pub client_verifier: Option<ClientVerifier>,
}

// Hand-written: the verifier prints its whole root store.
impl fmt::Debug for ListenerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerTls")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("certificate", &self.certificate)
            .field("mutual", &self.client_verifier.is_some())
            .finish()
    }
}

/// Where a route leads, as configured.
#[derive(Debug)]
pub enum RouteAction {
    /// Answer in the request filter, no upstream hop.
    Mint(Box<TokenRouteSettings>),
    /// Proxy to the upstream of that name (checked to exist).
    Proxy(String),
    Respond(DirectResponse),
}

/// What one token route mints, for which app, who may use it, and from
/// which web origins.
#[derive(Debug)]
pub struct TokenRouteSettings {
    pub kind: MintKind,
    /// The name of the [`StreamApp`] it signs for (checked to exist).
    pub app: String,
    /// The route's own identity, or the top-level one.
    pub identity: IdentitySource,
    pub cors: Option<CorsPolicy>,
}

/// The `http:` section: how requests from clients are read and shaped before
/// routing, named after Envoy's `HttpConnectionManager` settings where one
/// exists. A sidecar in front of an app that was never exposed must be stricter
/// than Envoy's defaults, so these default to the safe choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpSettings {
    /// RFC 3986 §6 normalization of the path before routing (percent-encoded
    /// unreserved characters decoded, dot segments removed); the app receives
    /// the normalized path.
    pub normalize_path: bool,
    /// `//a///b` is `/a/b` for routing and for the app.
    pub merge_slashes: bool,
    /// What a path with `%2F`, `%5C` (or a NUL, `%00`) gets.
    pub path_with_escaped_slashes_action: EscapedSlashesAction,
    /// What a request header whose name contains `_` gets: CGI-style apps
    /// (WSGI, Rack, PHP) read `X_Forwarded_User` as `X-Forwarded-User`.
    pub headers_with_underscores_action: UnderscoresAction,
    /// Largest request head (request line, headers and the empty line that
    /// ends them), in bytes; beyond: 431, or 414 when the request line alone
    /// is longer.
    pub max_request_headers_bytes: usize,
    /// How long a client may take to send its request head; beyond: 408. It
    /// runs from accept for a connection's first request (a connection that
    /// sends nothing is closed unanswered), and from the first byte of each
    /// later one: the idle time between keep-alive requests (up to 60 s) is
    /// not head time.
    pub request_headers_timeout: Duration,
    /// Client connections served at once, at most; as many more wait for a
    /// free one, and past that a new connection is closed unserved. Each
    /// costs up to about 12 KiB plus its request head: the default keeps a
    /// pod full of slow clients under its 64 MiB (bench/slow_clients.sh).
    pub max_downstream_connections: usize,
}

impl HttpSettings {
    /// How request paths are read before routing.
    pub fn path_rules(&self) -> PathRules {
        PathRules::new(
            self.normalize_path,
            self.merge_slashes,
            self.path_with_escaped_slashes_action,
        )
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            normalize_path: true,
            merge_slashes: true,
            path_with_escaped_slashes_action: EscapedSlashesAction::RejectRequest,
            headers_with_underscores_action: UnderscoresAction::DropHeader,
            max_request_headers_bytes: 32 * 1024,
            request_headers_timeout: Duration::from_secs(10),
            max_downstream_connections: 512,
        }
    }
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
    /// Name of the upstream asked (checked to exist).
    pub upstream: String,
    pub path: String,
    pub timeout: Duration,
}

/// `requests` per sliding `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitSetting {
    pub requests: u32,
    pub window: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct RateLimitSettings {
    /// Keyed by the Stream user a token is for.
    pub per_identity: Option<RateLimitSetting>,
    /// Keyed by the client IP (see `trusted_cidrs`).
    pub per_client_ip: Option<RateLimitSetting>,
    /// `backend: redis`; `None`: each process counts on its own.
    pub redis: Option<RedisSettings>,
}

/// `rate_limits.redis`: the limits shared through one Redis.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub url: RedisUrl,
    /// The CA bundle a `rediss://` server is verified against, when not the
    /// system's roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Put before every key (`{key_prefix}identity:{app}:{user}`,
    /// `{key_prefix}client_ip:{ip}`), so that deployments sharing a Redis
    /// keep apart or, with the same prefix, count together.
    pub key_prefix: String,
    /// Longest wait for one answer (connecting included).
    pub timeout: Duration,
    pub on_error: OnError,
}

#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub name: String,
    pub address: SocketAddr,
    pub tls: bool,
    /// Server name sent in TLS SNI and checked against the certificate.
    pub sni: String,
    pub verify_cert: bool,
    pub protocol: UpstreamProtocol,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
}

/// The HTTP version streamgate speaks to an upstream (`upstreams.<name>.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// HTTP/1.1, whatever the client spoke.
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge over plaintext (RFC 9113 §3.3): what
    /// in-pod gRPC servers speak. Needs `tls: false`.
    H2c,
    /// HTTP/2 over TLS when the app's ALPN agrees, HTTP/1.1 when it only
    /// offers that (RFC 9113 §3.2). Needs `tls: true`.
    H2,
}

/// One Stream app: `stream:` (named `default`) or an entry of `stream_apps:`.
#[derive(Debug, Clone)]
pub struct StreamApp {
    /// The `app` label of metrics; part of per-user rate-limit keys.
    pub name: String,
    /// Where it is configured (`stream`, `stream_apps.eu`): how warnings,
    /// readiness and the dump name it.
    pub key: String,
    pub credentials: StreamCredentials,
}

#[derive(Clone)]
pub struct StreamCredentials {
    pub api_key: String,
    pub api_secret: SecretSource,
}

/// Where the signing secret comes from. A file is read when the server starts
/// and again whenever it changes (see [`crate::reload`]), so it is not read
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

/// The `server:` section: the part of Pingora's `ServerConf` that streamgate
/// exposes, with defaults fit for a sidecar (Pingora's own grace period of
/// 300 s outlives any pod).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(rename = "Server")]
pub struct ServerSettings {
    /// Worker threads per listening service (default 1).
    #[schemars(range(min = 1))]
    pub threads: usize,
    /// Let idle threads take work from busy ones; absent: on when there is
    /// more than one thread. With one thread there is nothing to steal from,
    /// and Pingora's no-steal runtime is cheaper: small proxied requests
    /// measured about 10% faster with it (README, Performance).
    pub work_stealing: Option<bool>,
    /// On SIGTERM, `/readyz` answers 503 at once while streamgate keeps serving
    /// this long, in seconds (default 5), so that endpoints are removed before
    /// connections are refused.
    pub drain_seconds: u64,
    /// Then, no longer accepting, in-flight requests get this long, in seconds
    /// (default 5; Pingora's own 300 s is far beyond Kubernetes' 30 s grace
    /// period).
    pub grace_period_seconds: u64,
    /// Then the runtimes get at most this long to exit, in seconds (default 5).
    pub graceful_shutdown_timeout_seconds: u64,
    /// Idle connections to the app kept for reuse (default 128).
    pub upstream_keepalive_pool_size: usize,
    /// PEM bundle of CAs that upstream TLS certificates must chain to, instead
    /// of the system's roots (an internal CA); relative to the configuration
    /// file's directory.
    pub ca_file: Option<String>,
    /// Written once the listeners are bound, removed at a normal exit
    /// (default `/tmp/streamgate.pid`).
    pub pid_file: String,
    /// Socket of Pingora's graceful binary upgrade (`-u`; default
    /// `/tmp/streamgate_upgrade.sock`).
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
