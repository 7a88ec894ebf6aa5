//! The `rate_limits` section: the limits, and where they count.

use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::duration;
use crate::limits::OnError;

/// Abuse limits on token requests, each off when absent; a request over one
/// is 429 with `Retry-After`.
#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RateLimits")]
pub(in crate::config) struct RawRateLimits {
    /// Where the limits count: `local` (default; each process on its
    /// own) or `redis` (one count for every process using the same Redis and
    /// `redis.key_prefix`).
    #[serde(default)]
    pub backend: RateLimitBackend,
    /// The shared Redis: required with `backend: redis`, refused without it.
    pub redis: Option<RawRedis>,
    /// Per Stream user a token is for.
    pub per_identity: Option<RawRateLimit>,
    /// Per client IP (see `trusted_cidrs`).
    pub per_client_ip: Option<RawRateLimit>,
}

/// Where the limits count.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(in crate::config) enum RateLimitBackend {
    /// Each streamgate process counts on its own: with N replicas a limit
    /// is up to N times as much.
    #[default]
    Local,
    /// One count in Redis for every process using the same Redis and key
    /// prefix (`rate_limits.redis`).
    Redis,
}

/// The Redis that `backend: redis` counts in.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Redis")]
pub(in crate::config) struct RawRedis {
    /// `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS
    /// (the server's certificate always verified); the password is a
    /// secret: usually `${REDIS_URL}`. Shown as `***` in logs and
    /// `/config_dump`.
    pub url: String,
    /// PEM bundle of the CA(s) a `rediss://` server's certificate must chain
    /// to (default: the system's trusted roots). Relative to the
    /// configuration file's directory.
    pub ca_file: Option<PathBuf>,
    /// Put before every key (default `streamgate:`): deployments sharing a
    /// Redis count together with the same prefix, apart with different ones.
    #[serde(default = "default_key_prefix")]
    #[schemars(length(min = 1))]
    pub key_prefix: String,
    /// Longest wait for one Redis answer, connecting included (default
    /// `100ms`); past it, `on_error` decides.
    #[serde(with = "humantime_serde", default = "default_redis_timeout")]
    #[schemars(schema_with = "duration")]
    pub timeout: Duration,
    /// What a token request gets while Redis cannot answer (default `local`).
    #[serde(default)]
    pub on_error: OnError,
}

fn default_key_prefix() -> String {
    "streamgate:".into()
}

fn default_redis_timeout() -> Duration {
    Duration::from_millis(100)
}

/// `requests` per sliding `window`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RateLimit")]
pub(in crate::config) struct RawRateLimit {
    /// Requests allowed per window, at least 1.
    #[schemars(range(min = 1))]
    pub requests: u32,
    /// The sliding window.
    #[serde(with = "humantime_serde")]
    #[schemars(schema_with = "duration")]
    pub window: Duration,
}
