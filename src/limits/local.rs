//! A sliding-window request rate per key in this process (the
//! client IP, or the user a token is minted for).
//!
//! Built on `pingora-limits`, whose count-min sketch has a fixed memory cost no
//! matter how many distinct keys an attacker invents, so there is no table to
//! grow or to clean up. The sliding window is the usual two-window estimate:
//! the previous window's count weighted by how much of it still overlaps.

use std::hash::Hash;
use std::time::Duration;

use pingora_limits::rate::Rate;

pub struct RateLimit {
    requests: u32,
    rate: Rate,
}

impl RateLimit {
    pub fn new(requests: u32, window: Duration) -> Self {
        RateLimit {
            requests,
            rate: Rate::new(window),
        }
    }

    /// Counts one request for `key`. Over the limit, returns how many whole
    /// seconds to wait, for `Retry-After`.
    pub fn check<K: Hash>(&self, key: &K) -> Result<(), u64> {
        self.rate.observe(key, 1);
        let (estimate, remaining) = self.rate.rate_with(key, |c| {
            let overlap = 1.0 - c.current_interval_fraction;
            (
                c.prev_samples as f64 * overlap + c.curr_samples as f64,
                c.interval.mul_f64(overlap),
            )
        });
        if estimate <= f64::from(self.requests) {
            Ok(())
        } else {
            Err(remaining.as_secs_f64().ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_after_the_limit_is_refused_with_a_wait() {
        let limit = RateLimit::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert_eq!(limit.check(&"alice"), Ok(()));
        }
        let wait = limit.check(&"alice").unwrap_err();
        assert!((1..=60).contains(&wait), "{wait}");
        assert_eq!(limit.check(&"bob"), Ok(()), "another key is unaffected");
    }

    #[test]
    fn the_window_slides() {
        let limit = RateLimit::new(2, Duration::from_millis(100));
        assert!(limit.check(&1).is_ok());
        assert!(limit.check(&1).is_ok());
        assert!(limit.check(&1).is_err());
        std::thread::sleep(Duration::from_millis(250));
        assert!(
            limit.check(&1).is_ok(),
            "two windows later the count is gone"
        );
    }
}
