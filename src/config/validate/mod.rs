//! From the file's sections to the [`Config`] model, recording every problem
//! with its key path instead of stopping at the first: one file per group of
//! sections, and the helpers they share here.

use std::sync::Arc;
use std::time::Duration;

use super::error::{ConfigError, Errors};
use super::raw::RawConfig;
use super::{Config, HttpSettings, UpstreamSettings};
use crate::identity::JwksKeys;
use crate::net::TrustedNetworks;
use crate::reload::WatchedFile;

mod apps;
mod identity;
mod listeners;
mod routes;
mod tokens;

#[cfg(test)]
mod tests;

/// Checks every section; `None` if any problem was recorded.
pub(super) fn config(raw: RawConfig, errors: &mut Errors) -> Option<Config> {
    let listen = raw.listen.map(|listen| listeners::listen(listen, errors));
    let upstreams = raw
        .upstreams
        .and_then(|upstreams| listeners::upstreams(upstreams, errors));
    let apps = match (raw.stream, raw.stream_apps) {
        (Some(stream), Some(stream_apps)) => apps::apps(stream, stream_apps, errors),
        _ => None,
    };
    let tokens = raw.tokens.and_then(|t| errors.keep(tokens::policy(t)));
    let trusted_cidrs =
        raw.trusted_cidrs.map(|list| match list {
            None => TrustedNetworks::default(),
            Some(list) => TrustedNetworks::new(
                list.iter()
                    .enumerate()
                    .filter_map(|(i, cidr)| {
                        errors.keep(parse_cidr(cidr).map_err(|reason| {
                            ConfigError::new(format!("trusted_cidrs[{i}]"), reason)
                        }))
                    })
                    .collect(),
            ),
        });
    let mut warnings = Vec::new();
    let cors = raw
        .cors
        .map(|cors| cors.and_then(|cors| tokens::cors(cors, errors, &mut warnings)));
    let rate_limits = raw
        .rate_limits
        .map(|limits| tokens::rate_limits(limits, errors));
    let server = raw.server.and_then(|s| errors.keep(listeners::server(s)));
    let http = raw.http.and_then(|h| errors.keep(listeners::http(h)));
    // Routes, identities and the admin probe name upstreams: checking them
    // against a list with a broken entry would only add confusing errors.
    let upstreams = upstreams?;
    let admin = raw
        .admin
        .and_then(|admin| errors.keep(listeners::admin(admin, &upstreams)));
    let mut followed = Followed::default();
    let routes = routes::table(
        raw.routes?,
        &routes::Defaults {
            identity: raw.identity?,
            cors: cors?,
            upstreams: &upstreams,
            apps: apps.as_deref(),
            paths: http.as_ref().map(HttpSettings::path_rules),
        },
        &mut followed,
        errors,
    );
    if let (Some(routes), Some(http)) = (&routes, &http) {
        errors.keep(identity::header_names_survive(routes, http));
    }
    if !errors.is_empty() {
        return None;
    }
    Some(Config {
        listen: listen?,
        upstreams,
        apps: apps?,
        tokens: tokens?,
        routes: routes?,
        trusted_cidrs: trusted_cidrs?,
        rate_limits: rate_limits?,
        admin: admin?,
        access_log: raw.access_log?,
        server: server?,
        http: http?,
        tracing: raw.tracing?,
        watched_files: followed.files,
        key_sets: followed.key_sets,
        load_warnings: warnings,
    })
}

/// What the running server keeps up to date, gathered while checking: files
/// to follow, and key sets to fetch from identity providers (one per
/// distinct origin, shared by the routes that name it).
#[derive(Default)]
pub(super) struct Followed {
    pub files: Vec<Arc<WatchedFile>>,
    pub key_sets: Vec<Arc<JwksKeys>>,
}

impl Followed {
    /// `keys`, or the key set already gathered with the same origin.
    fn key_set(&mut self, keys: Arc<JwksKeys>) -> Arc<JwksKeys> {
        if let Some(known) = self
            .key_sets
            .iter()
            .find(|known| known.origin() == keys.origin())
        {
            return Arc::clone(known);
        }
        self.key_sets.push(Arc::clone(&keys));
        keys
    }
}

/// The upstream `name`, checked to exist; without a name, the only upstream.
fn upstream_name(
    key: &str,
    name: Option<&str>,
    upstreams: &[UpstreamSettings],
) -> Result<String, ConfigError> {
    match name {
        Some(name) if upstreams.iter().any(|u| u.name == name) => Ok(name.to_string()),
        Some(name) => {
            let known: Vec<&str> = upstreams.iter().map(|u| u.name.as_str()).collect();
            Err(ConfigError::new(
                key,
                format!("unknown upstream {name:?} (defined: {})", known.join(", ")),
            ))
        }
        None => match upstreams {
            [only] => Ok(only.name.clone()),
            _ => Err(ConfigError::new(
                key,
                "is required when more than one upstream is defined",
            )),
        },
    }
}

/// `"10.0.0.0/8"`, or a bare address meaning just that host.
fn parse_cidr(text: &str) -> Result<ipnet::IpNet, String> {
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{text:?} is not a CIDR range like \"10.0.0.0/8\" or an IP address"))
}

/// Durations that must not be zero (timeouts, windows).
fn nonzero(key: &str, duration: Duration) -> Result<Duration, ConfigError> {
    if duration.is_zero() {
        Err(ConfigError::new(key, "must be greater than zero"))
    } else {
        Ok(duration)
    }
}

fn header_name(key: &str, name: &str) -> Result<http::HeaderName, ConfigError> {
    http::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| ConfigError::new(key, format!("{name:?} is not a valid HTTP header name")))
}

/// An HTTP method name, case-insensitive (`get` is `GET`).
fn method(key: &str, name: &str) -> Result<http::Method, ConfigError> {
    http::Method::from_bytes(name.to_ascii_uppercase().as_bytes())
        .map_err(|_| ConfigError::new(key, format!("{name:?} is not an HTTP method")))
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
