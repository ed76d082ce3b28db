//! When to try a failed call again (a tool call, a request to a remote backend, a download): exponential
//! backoff with full jitter, honouring `Retry-After`. The one backoff policy of Keel; callers differ only in
//! their constants.
//!
//! Pure arithmetic over the attempt number and a seed, so the orchestrator can record the delay it chose as an
//! event before sleeping, and tests can check the bounds. Full jitter (a uniform delay between 0 and the capped
//! exponential) keeps many clients from retrying in step, as AWS's architecture note on backoff recommends.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use ts_rs::TS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 means no retry).
    pub max_attempts: u32,
    #[ts(type = "number")]
    pub base_ms: u64,
    /// No computed delay exceeds this.
    #[ts(type = "number")]
    pub cap_ms: u64,
    /// A server's `Retry-After` longer than this is not waited for: the call counts as failed.
    #[ts(type = "number")]
    pub max_retry_after_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_attempts: 3, base_ms: 200, cap_ms: 5_000, max_retry_after_ms: 30_000 }
    }
}

impl RetryPolicy {
    /// The pause before attempt `next_attempt` (2 for the first retry), or `None` when no attempt is left or the
    /// server asked for a longer wait than the policy allows.
    pub fn delay(&self, next_attempt: u32, retry_after_ms: Option<u64>, seed: u64) -> Option<Duration> {
        if next_attempt < 2 || next_attempt > self.max_attempts {
            return None;
        }
        if let Some(after) = retry_after_ms {
            return (after <= self.max_retry_after_ms).then(|| Duration::from_millis(after));
        }
        let exp = self.base_ms.saturating_mul(1u64 << (next_attempt - 2).min(32)).min(self.cap_ms);
        let jitter = splitmix64(seed ^ u64::from(next_attempt).wrapping_mul(0x9E37_79B9_7F4A_7C15)) % (exp + 1);
        Some(Duration::from_millis(jitter))
    }
}

/// A seed from the clock, for callers that record no delay and need only keep clients apart.
pub fn clock_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// A small, well-mixed hash: enough randomness for jitter without a random number generator's state.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_within_the_capped_exponential_and_attempts_run_out() {
        let p = RetryPolicy { max_attempts: 5, base_ms: 100, cap_ms: 350, max_retry_after_ms: 1_000 };
        assert_eq!(p.delay(1, None, 7), None);
        assert_eq!(p.delay(6, None, 7), None);
        for seed in 0..500 {
            for (attempt, ceiling) in [(2, 100), (3, 200), (4, 350), (5, 350)] {
                let d = p.delay(attempt, None, seed).unwrap().as_millis() as u64;
                assert!(d <= ceiling, "attempt {attempt} waited {d} ms > {ceiling}");
            }
        }
        // Full jitter: the delays spread over the range instead of all being the maximum.
        let distinct: std::collections::HashSet<_> = (0..100).map(|s| p.delay(3, None, s)).collect();
        assert!(distinct.len() > 50);
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_policy_limit() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(2, Some(1_500), 1), Some(Duration::from_millis(1_500)));
        assert_eq!(p.delay(2, Some(60_000), 1), None);
    }
}
