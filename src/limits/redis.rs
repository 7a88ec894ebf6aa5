//! Rate limits shared by every replica: the state lives in Redis, and each
//! decision is one Lua script run atomically there (GCRA, below), so that
//! twenty pods enforce one "30 per minute" together and a restarted pod
//! finds the counts where it left them.
//!
//! GCRA (the generic cell rate algorithm) rather than a sliding-window log:
//! one key per limited thing holding one number (the theoretical arrival
//! time), where a log holds a member per request; and the wait it answers is
//! exact, so `Retry-After` names the moment a request will pass. A limit of
//! `requests` per `window` lets `requests` through at once (the burst) and
//! then one every `window / requests`. The clock is Redis's (`TIME`), one
//! for all replicas, whatever their own clocks say.
//!
//! The client is the `redis` crate's [`ConnectionManager`]: one multiplexed
//! connection per process shared by all requests, reconnected in the
//! background after a failure. Each call is bounded by the configured
//! timeout; what an error or a timeout means is the caller's `on_error`.

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script, TlsCertificates};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::sync::OnceCell;

/// `KEYS[1]`: the limited thing. `ARGV[1]`: the emission interval
/// (`window / requests`), `ARGV[2]`: the window, both in microseconds.
/// Returns 0 when the request passes (and counts it), else how many
/// microseconds until one would. Microseconds since the epoch fit a Lua
/// number (a double) exactly; `%.0f` writes them without an exponent.
const GCRA: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local next_tat = tat + interval
local allowed_at = next_tat - window
if now < allowed_at then
  return allowed_at - now
end
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.ceil((next_tat - now) / 1000))
return 0
";

/// What a token request gets when Redis cannot be asked (down, slow past
/// `timeout`, refusing the password): `rate_limits.redis.on_error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// This process's own limiter decides, as with `backend: local`: the
    /// limit holds per replica until Redis is back.
    #[default]
    Local,
    /// Every request passes the limit.
    Allow,
    /// Every request is refused with 503.
    Deny,
}

impl OnError {
    /// The name as configured, for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            OnError::Local => "local",
            OnError::Allow => "allow",
            OnError::Deny => "deny",
        }
    }
}

/// A Redis URL (`redis://[user:password@]host:port[/db]`, `rediss://` for
/// TLS), checked when the configuration is read; its
/// [`Display`](fmt::Display) hides the password.
#[derive(Clone)]
pub struct RedisUrl {
    client: Client,
    shown: String,
    tls: bool,
}

impl RedisUrl {
    /// Errors say why the text is not a URL the client can connect to
    /// (never repeating it: it may hold the password). A `rediss://` server's
    /// certificate is verified against the system's roots (see
    /// [`Self::trusting`]); the crate's `#insecure`, which turns that off, is
    /// refused.
    pub fn parse(text: &str) -> Result<RedisUrl, String> {
        let parsed = url::Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
        let tls = match parsed.scheme() {
            "redis" | "redis+unix" | "unix" => false,
            "rediss" => true,
            other => {
                return Err(format!(
                    "scheme {other:?} is not supported: use redis://, or rediss:// for TLS"
                ))
            }
        };
        if parsed.fragment().is_some() {
            return Err(
                "a #fragment is not supported: #insecure would accept any certificate; \
                 give the server's CA as rate_limits.redis.ca_file instead"
                    .into(),
            );
        }
        let client = Client::open(text).map_err(|e| e.to_string())?;
        Ok(RedisUrl {
            client,
            shown: redacted(parsed),
            tls,
        })
    }

    /// Whether the connection is TLS (`rediss://`).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// This `rediss://` URL, its server's certificate verified against the
    /// CA certificates in `ca_pem` (PEM) instead of the system's roots.
    pub fn trusting(self, ca_pem: Vec<u8>) -> Result<RedisUrl, String> {
        let certificates = TlsCertificates {
            client_tls: None,
            root_cert: Some(ca_pem),
        };
        let client =
            Client::build_with_tls(self.client.get_connection_info().clone(), certificates)
                .map_err(|e| e.to_string())?;
        Ok(RedisUrl { client, ..self })
    }
}

/// The URL with its password (in the authority or a `pass` query pair)
/// replaced by `***`.
fn redacted(mut url: url::Url) -> String {
    if url.password().is_some() {
        // Only URLs without a host refuse a password, and those have none.
        let _ = url.set_password(Some("***"));
    }
    if url.query_pairs().any(|(name, _)| name == "pass") {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(name, value)| {
                let value = if name == "pass" { "***".into() } else { value };
                (name.into_owned(), value.into_owned())
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({})", self.shown)
    }
}

/// Why Redis gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum RedisFailure {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
}

/// The shared limiter: one connection, one script, every limit's keys.
pub struct RedisLimiter {
    client: Client,
    connection: OnceCell<ConnectionManager>,
    script: Script,
    key_prefix: String,
    timeout: Duration,
}

impl RedisLimiter {
    /// Connects on first use, from inside the runtime serving the request
    /// (the connection's task needs one): nothing is dialled here, and a
    /// Redis that is down at start only means `on_error` until it is up.
    pub fn new(url: &RedisUrl, key_prefix: String, timeout: Duration) -> RedisLimiter {
        RedisLimiter {
            client: url.client.clone(),
            connection: OnceCell::new(),
            script: Script::new(GCRA),
            key_prefix,
            timeout,
        }
    }

    /// Counts one request under `{key_prefix}{limit}:{key}` against
    /// `requests` per `window`. `Ok(Ok(()))`: it passes; `Ok(Err(s))`: over
    /// the limit, retry in `s` whole seconds (at least 1); `Err`: Redis did
    /// not answer within the timeout.
    pub async fn check(
        &self,
        limit: &str,
        key: &str,
        requests: u32,
        window: Duration,
    ) -> Result<Result<(), u64>, RedisFailure> {
        let window_us = window.as_micros();
        let interval_us = (window_us / u128::from(requests.max(1))).max(1);
        let key = format!("{}{limit}:{key}", self.key_prefix);
        let call = async {
            let mut connection = self.connection().await?.clone();
            self.script
                .key(key)
                .arg(interval_us.to_string())
                .arg(window_us.to_string())
                .invoke_async::<u64>(&mut connection)
                .await
        };
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => Err(RedisFailure::Timeout(self.timeout)),
            Ok(Err(e)) => Err(e.into()),
            Ok(Ok(0)) => Ok(Ok(())),
            Ok(Ok(wait_us)) => Ok(Err(wait_us.div_ceil(1_000_000).max(1))),
        }
    }

    async fn connection(&self) -> redis::RedisResult<&ConnectionManager> {
        self.connection
            .get_or_try_init(|| async {
                // Reconnecting is retried briefly: each request has its own
                // deadline, and the next request after a failure tries again.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(200));
                ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_never_shown() {
        let url = RedisUrl::parse("redis://:s3cret@127.0.0.1:6379/0").unwrap();
        assert_eq!(url.to_string(), "redis://:***@127.0.0.1:6379/0");
        assert!(!format!("{url:?}").contains("s3cret"));
        let url = RedisUrl::parse("redis://user:s3cret@redis:6380").unwrap();
        assert_eq!(url.to_string(), "redis://user:***@redis:6380");
        let url = RedisUrl::parse("redis+unix:///run/redis.sock?db=1&pass=s3cret").unwrap();
        assert!(!url.to_string().contains("s3cret"), "{url}");
        assert!(url.to_string().contains("db=1"), "{url}");
        assert_eq!(
            RedisUrl::parse("redis://127.0.0.1").unwrap().to_string(),
            "redis://127.0.0.1"
        );
        let url = RedisUrl::parse("rediss://:s3cret@redis.internal:6380").unwrap();
        assert_eq!(url.to_string(), "rediss://:***@redis.internal:6380");
        assert!(url.is_tls());
    }

    #[test]
    fn what_is_not_a_redis_url_is_refused_without_repeating_it() {
        for bad in [
            "http://:s3cret@x",
            "rediss://:s3cret@x/#insecure",
            "s3cret",
            "redis://:s3cret@",
        ] {
            let error = RedisUrl::parse(bad).expect_err(bad);
            assert!(!error.contains("s3cret"), "{error}");
        }
    }
}
