//! Policy for calls that fail: retries with backoff, client-side rate
//! limits, circuit breakers. One layer, in the host: plugins never sleep
//! or retry. The config service applies it to calls made for agents,
//! together with fallbacks.

mod breaker;
mod limiter;
mod policy;

pub use breaker::{BreakerPolicy, Breakers, Permit};
pub use limiter::{BucketKey, RateLimiter, Refusal, Reservation};
pub use policy::{Next, RetryPolicy, next_step};

use std::time::Duration;

/// Everything the host does about failing calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resilience {
    pub retry: RetryPolicy,
    pub breaker: BreakerPolicy,
    /// Time budget of one attempt (for streams: the longest wait for each
    /// chunk); `None` uses the host's default timeout.
    pub attempt_timeout: Option<Duration>,
}
