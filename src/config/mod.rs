//! Configuration: one YAML file, read and checked once at start.
//!
//! In layers, as river does: [`env`] expands `${VAR}` inside the string values
//! of the parsed YAML, [`raw`] holds the serde shapes of the file (the public
//! surface, one per section; `tokens`, `access_log` and `server` reuse the type
//! their owner runs with), `validate/` turns each section into the typed
//! [`model`] and records every problem with its key path, and [`resolve`] does
//! the I/O that checking needs (DNS for upstream addresses, reading key files).
//! The result is a [`Config`]; nothing after it re-validates a string.
//! [`schema()`] is the file's JSON Schema, derived from the `raw` shapes.

use std::path::Path;
use std::sync::Arc;

mod dump;
mod env;
mod error;
mod model;
mod openapi;
mod raw;
mod resolve;
mod schema;
mod validate;

pub use error::{ConfigError, ConfigErrors};
pub use model::{
    AdminSettings, HttpSettings, Listener, ListenerTls, RateLimitSetting, RateLimitSettings,
    ReadinessProbe, RedisSettings, RouteAction, SecretSource, ServerSettings, StreamApp,
    StreamCredentials, TokenRouteSettings, UpstreamProtocol, UpstreamSettings,
};
pub use schema::schema;

use crate::dev_jwt::is_development_key;
use crate::identity::{IdentitySource, JwksKeys, JwtKeys};
use crate::net::TrustedNetworks;
use crate::reload::WatchedFile;
use crate::routing::RouteTable;
use crate::telemetry::access_log::AccessLogSettings;
use crate::telemetry::trace::TracingSettings;
use crate::token::TokenPolicy;
use error::Errors;

/// The secret shipped in `conf/streamgate.yaml` for `make run`. Seeing it at start
/// means the deployment forgot to provide a real one.
pub const DEV_SECRET: &str = "dev-secret-do-not-use-in-production";

/// The subject of the development certificate in `conf/tls/`, whose private
/// key is in the repository: served, it warns at every start like [`DEV_SECRET`].
const DEV_CERTIFICATE_SUBJECT: &str = "CN=streamgate development (localhost)";

/// The validated configuration streamgate runs with.
#[derive(Debug)]
pub struct Config {
    pub listen: Vec<Listener>,
    pub upstreams: Vec<UpstreamSettings>,
    /// The Stream apps, at least one; token routes name theirs.
    pub apps: Vec<StreamApp>,
    pub tokens: TokenPolicy,
    pub routes: RouteTable<RouteAction>,
    pub trusted_cidrs: TrustedNetworks,
    pub rate_limits: RateLimitSettings,
    pub admin: AdminSettings,
    pub access_log: AccessLogSettings,
    pub server: ServerSettings,
    pub http: HttpSettings,
    pub tracing: TracingSettings,
    /// Key files the running server follows (JWKS), already read once here.
    pub watched_files: Vec<Arc<WatchedFile>>,
    /// Key sets `jwt` mode fetches from identity providers, one per origin.
    pub key_sets: Vec<Arc<JwksKeys>>,
    /// What the validators allowed but an operator likely did not mean (a
    /// CORS origin with a path), in file order; part of [`Config::warnings`].
    load_warnings: Vec<String>,
}

impl Config {
    /// Reads, expands and validates the file at `path`.
    /// Relative paths of files it names are relative to the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("", format!("cannot read {}: {e}", path.display())))?;
        let dir = path.parent().unwrap_or(Path::new(""));
        Config::from_yaml_in(&text, &|name| std::env::var(name).ok(), dir)
    }

    /// Parses configuration text; `env` looks up variables for `${VAR}`
    /// expansion, and relative file paths stay relative to the working directory.
    pub fn from_yaml(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        Config::from_yaml_in(text, env, Path::new(""))
    }

    /// [`Config::from_yaml`] with relative file paths relative to `dir`.
    pub fn from_yaml_in(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
        dir: &Path,
    ) -> Result<Config, ConfigErrors> {
        let mut document: serde_yaml_ng::Value = serde_yaml_ng::from_str(text)
            .map_err(|e| ConfigError::new("", format!("invalid YAML: {e}")))?;
        if document.is_null() {
            return Err(ConfigError::new("", "the file is empty").into());
        }
        let mut errors = Errors::default();
        env::expand_env(&mut document, &mut String::new(), env, &mut errors);
        let config = raw::RawConfig::from_document(document, &mut errors).and_then(|mut raw| {
            raw.rebase(dir);
            validate::config(raw, &mut errors)
        });
        match config {
            Some(config) if errors.is_empty() => Ok(config),
            _ => Err(ConfigErrors(errors.into_inner())),
        }
    }

    /// The token routes with their settings, in table order, each with the
    /// route's description (`POST /api/tokens/user`).
    fn token_routes(&self) -> impl Iterator<Item = (String, &TokenRouteSettings)> {
        self.routes
            .routes()
            .iter()
            .filter_map(|route| match &route.action {
                RouteAction::Mint(settings) => Some((route.describe(), settings.as_ref())),
                _ => None,
            })
    }

    /// Things that are allowed but that an operator must hear about at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for app in &self.apps {
            let key = &app.key;
            match &app.credentials.api_secret {
                SecretSource::Inline(secret) if secret == DEV_SECRET => warnings.push(format!(
                    "{key}.api_secret is the DEVELOPMENT secret the example configs in conf/ \
                     fall back to: tokens signed with it are rejected by Stream and anyone can \
                     forge them. Set STREAM_API_SECRET or {key}.api_secret_file before deploying."
                )),
                SecretSource::File(path) => {
                    if let Err(reason) = crate::reload::read_secret(path) {
                        warnings.push(format!(
                            "{key}.api_secret_file: {reason}; streamgate will run but stay not \
                             ready, answering 503 on its token routes, until the file holds a secret"
                        ));
                    }
                }
                SecretSource::Inline(_) => {}
            }
        }
        warnings.extend(self.untrusted_front_warning());
        warnings.extend(self.certificate_warnings());
        warnings.extend(self.merged_user_ids_warning());
        for (route, settings) in self.token_routes() {
            match &settings.identity {
                IdentitySource::None => warnings.push(format!(
                    "route {route} has no identity check (identity.mode: none): anyone who can reach {} \
                     can mint a Stream token for ANY userId",
                    self.listen_description()
                )),
                IdentitySource::Jwt(jwt) if !jwt.checks_audience() => warnings.push(format!(
                    "route {route} accepts JWTs for any audience (identity.jwt.audience is not set): \
                     a token the identity provider issued to ANY other application (another \
                     client of the same Google, Auth0 or Keycloak) mints Stream tokens here too; \
                     set audience to the one your clients' tokens carry"
                )),
                _ => {}
            }
        }
        warnings.extend(self.development_key_warnings());
        warnings.extend(self.load_warnings.iter().cloned());
        warnings
    }

    /// `user_id_map: { replace_invalid }` is not one-to-one: two provider
    /// ids that differ only in replaced characters become one Stream user,
    /// which is impersonation if the provider can issue both. Allowed (most
    /// providers cannot), but said once for all the routes that use it.
    fn merged_user_ids_warning(&self) -> Option<String> {
        let routes: Vec<String> = self
            .token_routes()
            .filter(|(_, settings)| {
                settings
                    .identity
                    .user_id_mapping()
                    .is_some_and(|mapping| mapping.map().merges_ids())
            })
            .map(|(route, _)| route)
            .collect();
        if routes.is_empty() {
            return None;
        }
        Some(format!(
            "route(s) {} map user ids with identity.user_id_map.replace_invalid, which gives \
             one Stream user to ids that differ only in replaced characters (a.b@x.com and \
             a_b@x.com): if your identity provider can issue two such ids to different \
             people, use user_id_map: {{ hash: sha256 }} instead",
            routes.join(", ")
        ))
    }

    /// Listening beyond loopback with the default `trusted_cidrs` (loopback
    /// only): whatever sits in front (an ingress, a load balancer) is not
    /// trusted, so the app is told streamgate's side of that hop (the proxy's
    /// address, `http`) and loses what the proxy said about the client.
    fn untrusted_front_warning(&self) -> Option<String> {
        if self.trusted_cidrs != TrustedNetworks::default() {
            return None;
        }
        let exposed: Vec<String> = self
            .listen
            .iter()
            .map(|listener| listener.address)
            .filter(|address| !address.ip().to_canonical().is_loopback())
            .map(|address| address.to_string())
            .collect();
        if exposed.is_empty() {
            return None;
        }
        Some(format!(
            "streamgate listens on {} but trusts only loopback peers (trusted_cidrs is the default): \
             a proxy or ingress in front is not believed, so the app gets X-Forwarded-For, \
             -Proto, -Host and -Port describing the proxy's connection to streamgate (its \
             address, http, this port) instead of the client's, and rate limits per client IP \
             count the proxy. If requests come through a proxy, set trusted_cidrs to its \
             addresses (e.g. the ingress controller's pod network); if clients connect \
             directly, set trusted_cidrs: [] to say so",
            exposed.join(", ")
        ))
    }

    /// A certificate past its expiry is still served (it is what the files
    /// hold, and the files are followed), but every client will refuse it.
    fn certificate_warnings(&self) -> Vec<String> {
        let now = std::time::SystemTime::now();
        let tls = || {
            self.listen
                .iter()
                .enumerate()
                .filter_map(|(i, listener)| Some((i, &listener.tls.as_ref()?.certificate)))
        };
        let development = tls()
            .filter(|(_, certificate)| certificate.subject.contains(DEV_CERTIFICATE_SUBJECT))
            .map(|(i, _)| {
                format!(
                    "listen[{i}].tls.cert_file is the DEVELOPMENT certificate from conf/tls/: its \
                     private key is public, so the connection is not private. Mount your own pair \
                     (TLS_CERT_FILE, TLS_KEY_FILE) before deploying."
                )
            });
        let expired = tls().filter_map(|(i, certificate)| {
            let expiry = u64::try_from(certificate.not_after)
                .map(|secs| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
                .unwrap_or(std::time::UNIX_EPOCH);
            (expiry < now).then(|| {
                format!(
                    "listen[{i}].tls.cert_file: the certificate ({}) expired at {}; clients \
                         refuse it until the file holds a valid one",
                    certificate.subject,
                    humantime::format_rfc3339_seconds(expiry)
                )
            })
        });
        development.chain(expired).collect()
    }

    /// `jwt` mode trusting the key of `conf/dev-idp/`, whose private half is
    /// in the repository: like [`DEV_SECRET`], allowed for trying things out
    /// and announced at every start.
    fn development_key_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for (route, settings) in self.token_routes() {
            let IdentitySource::Jwt(jwt) = &settings.identity else {
                continue;
            };
            let source = match jwt.keys() {
                JwtKeys::Static(_) => "public_key_file",
                // Fetched from the provider after start: nothing to compare yet.
                JwtKeys::Jwks(set) if set.origin().is_some() => continue,
                JwtKeys::Jwks(_) => "jwks_file",
            };
            if is_development_key(jwt.keys()) {
                warnings.push(format!(
                    "route {route} accepts JWTs signed with the DEVELOPMENT key of conf/dev-idp/ \
                     (its jwt.{source} holds that key's public half): the private half is public, \
                     so anyone can sign a JWT it accepts and mint a Stream token for ANY user. \
                     Point {source} at your identity provider's keys before deploying."
                ));
            }
        }
        warnings
    }

    fn listen_description(&self) -> String {
        let addresses: Vec<String> = self
            .listen
            .iter()
            .map(|listener| listener.address.to_string())
            .collect();
        addresses.join(", ")
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_jwt;
