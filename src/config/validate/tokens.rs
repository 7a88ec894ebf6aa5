//! What token routes may grant, and to whom: `tokens`, `cors` and
//! `rate_limits` (what they sign with is [`super::apps`]).

use super::nonzero;
use crate::config::error::{ConfigError, Errors};
use crate::config::raw::{RateLimitBackend, RawCors, RawRateLimit, RawRateLimits, RawRedis};
use crate::config::resolve;
use crate::config::{RateLimitSetting, RateLimitSettings, RedisSettings};
use crate::limits::RedisUrl;
use crate::net::cors::{configured_origin, AllowedOrigins, CorsPolicy};
use crate::token::{is_name, TokenPolicy, NAME_RULE};

/// The `tokens` section, checked: validities in order, a body limit, names
/// that the contract's own rule accepts.
pub(super) fn policy(raw: TokenPolicy) -> Result<TokenPolicy, ConfigError> {
    if raw.max_validity_seconds == 0 {
        return Err(ConfigError::new(
            "tokens.max_validity_seconds",
            "must be at least 1",
        ));
    }
    if raw.default_validity_seconds == 0 || raw.default_validity_seconds > raw.max_validity_seconds
    {
        return Err(ConfigError::new(
            "tokens.default_validity_seconds",
            format!(
                "must be between 1 and tokens.max_validity_seconds ({})",
                raw.max_validity_seconds
            ),
        ));
    }
    if raw.max_body_bytes == 0 {
        return Err(ConfigError::new(
            "tokens.max_body_bytes",
            "must be at least 1",
        ));
    }
    names("tokens.anyone_roles", &raw.anyone_roles)?;
    if let Some(types) = &raw.allowed_call_types {
        names("tokens.allowed_call_types", types)?;
    }
    Ok(raw)
}

/// Role and call-type names, checked by the token contract's own rule.
fn names(key: &str, list: &[String]) -> Result<(), ConfigError> {
    match list.iter().position(|name| !is_name(name)) {
        Some(i) => Err(ConfigError::new(
            format!("{key}[{i}]"),
            format!("{:?} {NAME_RULE}", list[i]),
        )),
        None => Ok(()),
    }
}

/// The `cors` section; `None` once its problems are in `errors`. What is
/// allowed but likely not meant (an origin with a path, an origin listed
/// twice) goes into `warnings`, for [`Config::warnings`](crate::config::Config::warnings).
pub(super) fn cors(
    raw: RawCors,
    errors: &mut Errors,
    warnings: &mut Vec<String>,
) -> Option<CorsPolicy> {
    let origins = if raw.allowed_origins.iter().any(|o| o == "*") {
        if raw.allowed_origins.len() > 1 {
            errors.push(ConfigError::new(
                "cors.allowed_origins",
                "\"*\" cannot be combined with other origins",
            ));
            return None;
        }
        if raw.allow_credentials {
            errors.push(ConfigError::new(
                "cors.allowed_origins",
                "\"*\" cannot be used with allow_credentials: true (browsers refuse it); list the origins",
            ));
            return None;
        }
        AllowedOrigins::Any
    } else if raw.allowed_origins.is_empty() {
        errors.push(ConfigError::new(
            "cors.allowed_origins",
            "must list at least one origin",
        ));
        return None;
    } else {
        AllowedOrigins::List(origins(&raw.allowed_origins, errors, warnings)?)
    };
    Some(CorsPolicy {
        origins,
        allow_credentials: raw.allow_credentials,
        allowed_methods: raw.allowed_methods.join(", "),
        allowed_headers: raw.allowed_headers.join(", "),
        max_age_seconds: raw.max_age.as_secs(),
    })
}

/// `cors.allowed_origins` as browsers send origins ([`configured_origin`]),
/// each once; every entry that is not an origin is an error of its own.
fn origins(
    list: &[String],
    errors: &mut Errors,
    warnings: &mut Vec<String>,
) -> Option<Vec<String>> {
    // Each origin with the index of the entry that first named it.
    let mut origins: Vec<(usize, String)> = Vec::with_capacity(list.len());
    let mut valid = true;
    for (i, text) in list.iter().enumerate() {
        let key = format!("cors.allowed_origins[{i}]");
        let read = match configured_origin(text) {
            Ok(read) => read,
            Err(reason) => {
                errors.push(ConfigError::new(key, reason));
                valid = false;
                continue;
            }
        };
        if let Some(path) = &read.dropped_path {
            warnings.push(format!(
                "{key}: {text:?} is read as the origin {}: browsers never send a path \
                 ({path:?}) in Origin, so only scheme, host and port are compared",
                read.origin
            ));
        }
        match origins.iter().find(|(_, origin)| *origin == read.origin) {
            Some((first, origin)) => warnings.push(format!(
                "{key}: {text:?} is the origin {origin}, already allowed by \
                 cors.allowed_origins[{first}]; it is listed once"
            )),
            None => origins.push((i, read.origin)),
        }
    }
    valid.then(|| origins.into_iter().map(|(_, origin)| origin).collect())
}

pub(super) fn rate_limits(raw: RawRateLimits, errors: &mut Errors) -> RateLimitSettings {
    let redis = match (raw.backend, raw.redis) {
        (RateLimitBackend::Local, None) => None,
        (RateLimitBackend::Redis, Some(redis)) => errors.keep(self::redis(redis)),
        (RateLimitBackend::Redis, None) => {
            errors.push(ConfigError::new(
                "rate_limits.redis",
                "is required with backend: redis ({ url, key_prefix, timeout, on_error })",
            ));
            None
        }
        (RateLimitBackend::Local, Some(_)) => {
            errors.push(ConfigError::new(
                "rate_limits.redis",
                "is set but backend is local (the default): set backend: redis to use it, or remove it",
            ));
            None
        }
    };
    RateLimitSettings {
        per_identity: raw
            .per_identity
            .and_then(|r| errors.keep(rate_limit(r, "rate_limits.per_identity"))),
        per_client_ip: raw
            .per_client_ip
            .and_then(|r| errors.keep(rate_limit(r, "rate_limits.per_client_ip"))),
        redis,
    }
}

fn redis(raw: RawRedis) -> Result<RedisSettings, ConfigError> {
    let mut url = RedisUrl::parse(&raw.url)
        .map_err(|reason| ConfigError::new("rate_limits.redis.url", reason))?;
    if let Some(path) = &raw.ca_file {
        const KEY: &str = "rate_limits.redis.ca_file";
        if !url.is_tls() {
            return Err(ConfigError::new(
                KEY,
                "is for TLS: the url must be rediss:// to use it",
            ));
        }
        let pem = resolve::ca_bundle(KEY, path)?;
        url = url
            .trusting(pem)
            .map_err(|reason| ConfigError::new(KEY, reason))?;
    }
    if raw.key_prefix.is_empty() {
        return Err(ConfigError::new(
            "rate_limits.redis.key_prefix",
            "must not be empty: it keeps streamgate's keys apart from the rest of the database",
        ));
    }
    Ok(RedisSettings {
        url,
        ca_file: raw.ca_file,
        key_prefix: raw.key_prefix,
        timeout: nonzero("rate_limits.redis.timeout", raw.timeout)?,
        on_error: raw.on_error,
    })
}

fn rate_limit(raw: RawRateLimit, key: &str) -> Result<RateLimitSetting, ConfigError> {
    if raw.requests == 0 {
        return Err(ConfigError::new(
            format!("{key}.requests"),
            "must be at least 1",
        ));
    }
    Ok(RateLimitSetting {
        requests: raw.requests,
        window: nonzero(&format!("{key}.window"), raw.window)?,
    })
}
