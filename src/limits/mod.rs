//! Abuse limits for token routes, on one of two backends
//! (`rate_limits.backend`): [`local`], per-process sliding windows, or
//! [`redis`], one count shared by every replica. With Redis, the local
//! limiter is kept beside it for `on_error: local`, so that an outage
//! weakens the limit to per replica instead of lifting it.

pub mod local;
pub mod redis;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use local::RateLimit;
pub use redis::{OnError, RedisFailure, RedisLimiter, RedisUrl};

/// The shared backend and what to do when it cannot answer.
pub struct Shared {
    pub redis: RedisLimiter,
    pub on_error: OnError,
    /// Whether the last call failed: the log says when Redis goes and comes
    /// back, not once per request in between.
    failing: AtomicBool,
}

impl Shared {
    /// One per process, shared by every limit that counts in Redis.
    pub fn new(redis: RedisLimiter, on_error: OnError) -> Shared {
        Shared {
            redis,
            on_error,
            failing: AtomicBool::new(false),
        }
    }
}

/// What a limit says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Over the limit: retry in this many whole seconds (at least 1).
    Limited {
        retry_after_seconds: u64,
    },
    /// The shared backend failed and `on_error: deny` refuses.
    Unavailable,
}

/// A verdict, and whether `on_error` gave it (Redis failed) rather than the
/// limit's own backend: the metrics count those.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    pub verdict: Verdict,
    pub fallback: Option<OnError>,
}

/// One configured limit (`per_identity`, `per_client_ip`): `requests` per
/// sliding `window`, on the configured backend.
pub struct Limit {
    /// `identity`, `client_ip`: the Redis key's middle part.
    name: &'static str,
    requests: u32,
    window: Duration,
    local: RateLimit,
    shared: Option<Arc<Shared>>,
}

impl Limit {
    /// `name` (`identity`, `client_ip`) keeps its keys apart from the other
    /// limit's; with `shared`, Redis counts and the local limiter stands by
    /// for `on_error: local`.
    pub fn new(
        name: &'static str,
        requests: u32,
        window: Duration,
        shared: Option<Arc<Shared>>,
    ) -> Limit {
        Limit {
            name,
            requests,
            window,
            local: RateLimit::new(requests, window),
            shared,
        }
    }

    /// Counts one request for `key` (`{app}:{user id}`, a client IP). Never
    /// waits longer than the Redis timeout.
    pub async fn check(&self, key: &str) -> Checked {
        let Some(shared) = &self.shared else {
            return Checked {
                verdict: self.check_locally(key),
                fallback: None,
            };
        };
        let answer = shared
            .redis
            .check(self.name, key, self.requests, self.window)
            .await;
        let failed = answer.is_err();
        let changed = shared.failing.swap(failed, Ordering::Relaxed) != failed;
        match answer {
            Ok(verdict) => {
                if changed {
                    log::info!("rate limits: Redis answers again; limits are shared again");
                }
                Checked {
                    verdict: match verdict {
                        Ok(()) => Verdict::Pass,
                        Err(retry_after_seconds) => Verdict::Limited {
                            retry_after_seconds,
                        },
                    },
                    fallback: None,
                }
            }
            Err(failure) => {
                if changed {
                    log::warn!(
                        "rate limits: Redis failed ({failure}); on_error: {} until it answers again",
                        shared.on_error.as_str()
                    );
                }
                Checked {
                    verdict: match shared.on_error {
                        OnError::Local => self.check_locally(key),
                        OnError::Allow => Verdict::Pass,
                        OnError::Deny => Verdict::Unavailable,
                    },
                    fallback: Some(shared.on_error),
                }
            }
        }
    }

    fn check_locally(&self, key: &str) -> Verdict {
        match self.local.check(&key) {
            Ok(()) => Verdict::Pass,
            Err(retry_after_seconds) => Verdict::Limited {
                retry_after_seconds,
            },
        }
    }
}
