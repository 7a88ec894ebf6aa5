//! Waiting for something that happens a little after the action that causes
//! it (a process listening or exiting, a counter updated when Pingora logs a
//! request, a rotated file picked up), with a deadline instead of a sleep.
//! In the spirit of linkerd's `assert_eventually!`: the caller asserts on the
//! result, so a timeout fails the test with the caller's message.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long [`eventually`] keeps trying.
pub const EVENTUALLY: Duration = Duration::from_secs(5);

/// Runs `check` every 50 ms until it is true, for at most [`EVENTUALLY`];
/// whether it became true.
pub async fn eventually<F: Future<Output = bool>>(mut check: impl FnMut() -> F) -> bool {
    let deadline = Instant::now() + EVENTUALLY;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The blocking counterpart, for code outside the async runtime: calls `check`
/// every 20 ms until it returns `Some`, for at most `limit` (at least once).
pub fn poll<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(found) = check() {
            return Some(found);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}
