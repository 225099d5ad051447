//! Circuit breakers per provider and base URL: after `threshold` failures
//! in a row that say the vendor is unwell (5xx, overloaded, timeouts,
//! network errors), calls skip it for `cooldown` and go straight to their
//! fallback; then one call probes it, and its outcome closes or reopens the
//! circuit.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Breaker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Failures in a row that open the circuit; 0 turns breakers off.
    pub threshold: u32,
    /// How long an open circuit is skipped before a probe.
    pub cooldown: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            threshold: 5,
            cooldown: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is out.
    HalfOpen,
}

/// Every circuit, by provider and base URL.
#[derive(Debug, Default)]
pub struct Breakers {
    policy: BreakerPolicy,
    circuits: Mutex<HashMap<(String, String), State>>,
}

impl Breakers {
    /// Breakers with `policy`.
    pub fn new(policy: BreakerPolicy) -> Self {
        Self {
            policy,
            circuits: Mutex::default(),
        }
    }

    /// Whether a call may go to `provider` at `base_url`; if not, how long
    /// until the circuit is probed again.
    pub fn admit(&self, provider: &str, base_url: &str) -> Result<(), Duration> {
        if self.policy.threshold == 0 {
            return Ok(());
        }
        let mut circuits = self.circuits.lock().unwrap_or_else(|e| e.into_inner());
        let key = (provider.to_owned(), base_url.to_owned());
        let state = circuits.entry(key).or_insert(State::Closed { failures: 0 });
        match *state {
            State::Closed { .. } => Ok(()),
            State::Open { until } => {
                let now = Instant::now();
                if now >= until {
                    *state = State::HalfOpen;
                    Ok(())
                } else {
                    Err(until - now)
                }
            }
            // The probe is out; others keep skipping until it answers.
            State::HalfOpen => Err(self.policy.cooldown),
        }
    }

    /// Records a call that reached the vendor and was answered.
    pub fn success(&self, provider: &str, base_url: &str) {
        let mut circuits = self.circuits.lock().unwrap_or_else(|e| e.into_inner());
        circuits.insert(
            (provider.to_owned(), base_url.to_owned()),
            State::Closed { failures: 0 },
        );
    }

    /// Records a failure that says the vendor is unwell.
    pub fn failure(&self, provider: &str, base_url: &str) {
        if self.policy.threshold == 0 {
            return;
        }
        let mut circuits = self.circuits.lock().unwrap_or_else(|e| e.into_inner());
        let key = (provider.to_owned(), base_url.to_owned());
        let state = circuits.entry(key).or_insert(State::Closed { failures: 0 });
        let open = State::Open {
            until: Instant::now() + self.policy.cooldown,
        };
        *state = match *state {
            State::Closed { failures } if failures + 1 >= self.policy.threshold => {
                tracing::warn!(provider, base_url, "circuit opened after repeated failures");
                open
            }
            State::Closed { failures } => State::Closed {
                failures: failures + 1,
            },
            State::HalfOpen | State::Open { .. } => open,
        };
    }

    /// Releases a probe that ended without saying anything about the
    /// vendor's health (e.g. a 400): the next call probes again.
    pub fn neutral(&self, provider: &str, base_url: &str) {
        let mut circuits = self.circuits.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(state) = circuits.get_mut(&(provider.to_owned(), base_url.to_owned()))
            && *state == State::HalfOpen
        {
            *state = State::Open {
                until: Instant::now(),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_repeated_failures_and_probes_after_the_cooldown() {
        let breakers = Breakers::new(BreakerPolicy {
            threshold: 3,
            cooldown: Duration::from_secs(10),
        });
        let (p, u) = ("claude", "https://api.anthropic.com");
        for _ in 0..2 {
            breakers.failure(p, u);
            assert!(breakers.admit(p, u).is_ok());
        }
        breakers.failure(p, u);
        let wait = breakers.admit(p, u).unwrap_err();
        assert_eq!(wait, Duration::from_secs(10));
        assert!(
            breakers.admit("claude", "http://other").is_ok(),
            "per base URL"
        );

        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(breakers.admit(p, u).is_ok(), "one probe");
        assert!(breakers.admit(p, u).is_err(), "only one");
        breakers.failure(p, u);
        assert!(breakers.admit(p, u).is_err(), "a failed probe reopens");

        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(breakers.admit(p, u).is_ok());
        breakers.success(p, u);
        assert!(breakers.admit(p, u).is_ok());
        assert!(breakers.admit(p, u).is_ok(), "closed again");
    }
}
