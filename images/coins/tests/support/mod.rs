//! What the tests share: a fake redis and waiting for a condition.

pub mod fake_redis;

use std::future::Future;
use std::time::Duration;

/// Asks `check` every 50 ms until it answers `Some`, for at most `secs` seconds, then fails
/// with `what` and the last thing seen.
pub async fn wait_for<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let last = match check().await {
            Ok(value) => return value,
            Err(last) => last,
        };
        if tokio::time::Instant::now() > deadline {
            panic!("waited {secs}s for {what}; last: {last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
