//! Which failures are worth another attempt, and how long to wait first.

use crate::error::Error;
use crate::types::ProviderError;
use std::time::Duration;

/// Retry settings of a call. One layer only: plugins never retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per target (provider and model), the first included. A
    /// fallback target gets a budget of its own.
    pub max_attempts: u32,
    /// First backoff step; each retry doubles it, up to `max_delay`.
    pub base_delay: Duration,
    /// Longest single wait between attempts.
    pub max_delay: Duration,
    /// Budget of the whole call, fallbacks included.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(20),
            deadline: Duration::from_secs(300),
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try the same target again (if its budget allows), then fall back.
    Retry,
    /// Do not retry this target; go to the fallback.
    Fallback,
    /// Stop: the call fails with this error (no retry, no fallback).
    Stop,
}

/// Classifies a failed attempt. `streamed_to_caller` is true once a chunk
/// of a stream reached the caller: then nothing is retried.
pub fn next_step(error: &Error, streamed_to_caller: bool) -> Next {
    if streamed_to_caller {
        return Next::Stop;
    }
    match error {
        Error::Provider { error, .. } => match error.as_ref() {
            ProviderError::RateLimited(_)
            | ProviderError::Overloaded(_)
            | ProviderError::ServerError(_)
            | ProviderError::Timeout(_)
            | ProviderError::Network(_)
            | ProviderError::Protocol(_) => Next::Retry,
            ProviderError::ApiKeyMissing(_)
            | ProviderError::Authentication(_)
            | ProviderError::QuotaExhausted(_)
            | ProviderError::TokenLimitExceeded(_)
            | ProviderError::ModelNotSupported(_)
            | ProviderError::InvalidRequest(_) => Next::Stop,
        },
        Error::Timeout { .. } => Next::Retry,
        // A plugin that crashed or ran out of its limits will likely do it
        // again; another provider may not.
        Error::CpuLimitExceeded { .. }
        | Error::MemoryLimitExceeded { .. }
        | Error::PluginTrap { .. }
        | Error::RequestLimitExceeded { .. }
        | Error::TokenizerLimitExceeded { .. }
        | Error::ResponseTooLarge { .. }
        | Error::CircuitOpen { .. } => Next::Fallback,
        _ => Next::Stop,
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1 for the first retry): the
    /// vendor's `retry-after` when it gave one, else capped exponential
    /// backoff with full jitter.
    pub fn delay(&self, retry: u32, error: &Error) -> Duration {
        if let Some(asked) = error.retry_after() {
            return asked;
        }
        let exponent = retry.saturating_sub(1).min(30);
        let ceiling = self
            .base_delay
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay);
        ceiling.mul_f64(jitter())
    }
}

/// A uniform number in [0, 1).
fn jitter() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ErrorDetail;

    fn provider(error: ProviderError) -> Error {
        Error::Provider {
            provider: "p".into(),
            error: Box::new(error),
        }
    }

    fn detail(retry_after_ms: Option<u64>) -> ErrorDetail {
        ErrorDetail {
            message: "m".into(),
            status: Some(429),
            vendor_code: None,
            request_id: None,
            retry_after_ms,
        }
    }

    #[test]
    fn classification_follows_the_retry_rules() {
        assert_eq!(
            next_step(&provider(ProviderError::RateLimited(detail(None))), false),
            Next::Retry
        );
        assert_eq!(
            next_step(&provider(ProviderError::Overloaded(detail(None))), false),
            Next::Retry
        );
        assert_eq!(
            next_step(&provider(ProviderError::Network("reset".into())), false),
            Next::Retry
        );
        assert_eq!(
            next_step(&provider(ProviderError::Network("reset".into())), true),
            Next::Stop
        );
        for stop in [
            ProviderError::Authentication(detail(None)),
            ProviderError::QuotaExhausted(detail(None)),
            ProviderError::InvalidRequest(detail(None)),
            ProviderError::TokenLimitExceeded(detail(None)),
            ProviderError::ModelNotSupported(detail(None)),
        ] {
            assert_eq!(next_step(&provider(stop), false), Next::Stop);
        }
        let trap = Error::PluginTrap {
            provider: "p".into(),
            message: "m".into(),
        };
        assert_eq!(next_step(&trap, false), Next::Fallback);
    }

    #[test]
    fn waits_honour_retry_after_else_back_off_with_jitter() {
        let policy = RetryPolicy::default();
        let asked = provider(ProviderError::RateLimited(detail(Some(1500))));
        assert_eq!(policy.delay(1, &asked), Duration::from_millis(1500));
        let plain = provider(ProviderError::ServerError(detail(None)));
        for retry in 1..40 {
            let wait = policy.delay(retry, &plain);
            let ceiling = policy
                .base_delay
                .saturating_mul(1 << (retry - 1).min(30))
                .min(policy.max_delay);
            assert!(wait <= ceiling, "retry {retry}: {wait:?} > {ceiling:?}");
        }
        let waits: Vec<Duration> = (0..32).map(|_| policy.delay(3, &plain)).collect();
        assert!(waits.windows(2).any(|w| w[0] != w[1]), "jittered");
    }
}
