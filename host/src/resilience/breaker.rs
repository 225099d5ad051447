//! Circuit breakers per provider and base URL: after `threshold` failures
//! in a row that say the vendor is unwell (5xx, overloaded, timeouts,
//! network errors), calls skip it for `cooldown` and go straight to their
//! fallback; then one call probes it, and its outcome closes or reopens the
//! circuit (a streamed probe closes it with its first chunk).
//!
//! Admission hands out a [`Permit`] that the caller settles with the
//! call's outcome. A permit dropped unsettled (the call's future was
//! cancelled, its stream dropped) settles itself: a probe that never
//! answered reopens the circuit for another cool-down, so the next call
//! after it probes again. Without that, a cancelled probe would leave the
//! circuit half-open, refusing every call until the process restarts.
//!
//! With shared state ([`crate::shared`]), a circuit opened by one replica
//! is open on every replica (each then probes it after the cool-down), and
//! a successful probe closes it on all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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

/// How long a probe may stay out before it is forgotten and another call
/// may probe. Permits settle probes on every path, drops included, so this
/// only guards against a permit that is leaked or stuck in a call that
/// never ends. It is longer than the attempts of a call are given by
/// default (a 120 s request timeout within a 300 s deadline), so a live
/// probe is normally settled first; if one is not, the cost is a second
/// probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is out: the permit numbered `probe`, admitted at `since`.
    HalfOpen {
        probe: u64,
        since: Instant,
    },
}

type Key = (String, String);

#[derive(Debug, Default)]
struct Circuits {
    states: HashMap<Key, State>,
    /// The number of the next probe, so that only the permit that opened
    /// a half-open state can settle it as a probe.
    next_probe: u64,
}

/// Every circuit, by provider and base URL.
#[derive(Debug, Default)]
pub struct Breakers {
    policy: BreakerPolicy,
    circuits: Mutex<Circuits>,
    shared: Option<Arc<crate::shared::SharedCircuits>>,
}

/// The right to make one call to a provider at a base URL, to be settled
/// with its outcome: [`Permit::success`], [`Permit::failure`] or
/// [`Permit::neutral`]. Dropped unsettled, it counts as a call that never
/// answered: if it was the half-open probe, the circuit reopens for another
/// cool-down; otherwise nothing is recorded.
#[derive(Debug)]
#[must_use = "a permit settles the breaker with the call's outcome; dropping it unsettled reopens a probed circuit"]
pub struct Permit {
    /// `None` when breakers are off: settling does nothing.
    breakers: Option<Arc<Breakers>>,
    key: Key,
    /// The probe number if this call is the half-open probe.
    probe: Option<u64>,
}

impl Breakers {
    /// Breakers with `policy`.
    pub fn new(policy: BreakerPolicy) -> Self {
        Self::with_shared(policy, None)
    }

    /// Breakers with `policy` whose open circuits are shared with other
    /// replicas through `shared` (Redis) when given.
    pub fn with_shared(policy: BreakerPolicy, shared: Option<Arc<crate::shared::Redis>>) -> Self {
        Self {
            policy,
            circuits: Mutex::default(),
            shared: shared.map(crate::shared::SharedCircuits::new),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Circuits> {
        // The state is a plain value updated in one assignment: a panic
        // elsewhere while the lock was held cannot leave it half-written.
        self.circuits.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every circuit seen so far: provider, base URL and state (`closed`,
    /// `open`, `half_open`).
    pub fn states(&self) -> Vec<(String, String, &'static str)> {
        let now = Instant::now();
        self.lock()
            .states
            .iter()
            .map(|((provider, base_url), state)| {
                let state = match state {
                    State::Closed { .. } => "closed",
                    State::Open { until } if now < *until => "open",
                    // Cooled down: the next call probes it.
                    State::Open { .. } | State::HalfOpen { .. } => "half_open",
                };
                (provider.clone(), base_url.clone(), state)
            })
            .collect()
    }

    /// Whether a call may go to `provider` at `base_url`: a permit to
    /// settle with its outcome, or how long until the circuit is probed
    /// again.
    pub fn admit(self: &Arc<Self>, provider: &str, base_url: &str) -> Result<Permit, Duration> {
        let key = (provider.to_owned(), base_url.to_owned());
        if self.policy.threshold == 0 {
            return Ok(Permit {
                breakers: None,
                key,
                probe: None,
            });
        }
        let remote = self.shared.as_ref().and_then(|s| s.open_until(&key));
        let mut circuits = self.lock();
        let number = circuits.next_probe;
        let now = Instant::now();
        let state = circuits
            .states
            .entry(key.clone())
            .or_insert(State::Closed { failures: 0 });
        // Opened by another replica.
        if let (Some(until), State::Closed { .. }) = (remote, *state) {
            *state = State::Open { until };
        }
        let probe = match *state {
            State::Closed { .. } => None,
            State::Open { until } if now < until => return Err(until - now),
            State::Open { .. } => Some(number),
            State::HalfOpen { since, .. } if now >= since + PROBE_TIMEOUT => {
                tracing::warn!(
                    provider,
                    base_url,
                    "a circuit probe never settled; probing again"
                );
                Some(number)
            }
            // The probe is out; others keep skipping until it answers.
            State::HalfOpen { .. } => return Err(self.policy.cooldown),
        };
        if let Some(probe) = probe {
            *state = State::HalfOpen { probe, since: now };
            circuits.next_probe = number.wrapping_add(1);
        }
        Ok(Permit {
            breakers: Some(Arc::clone(self)),
            key,
            probe,
        })
    }

    fn fail(&self, key: &Key) {
        let mut circuits = self.lock();
        let state = circuits
            .states
            .entry(key.clone())
            .or_insert(State::Closed { failures: 0 });
        let open = State::Open {
            until: Instant::now() + self.policy.cooldown,
        };
        *state = match *state {
            State::Closed { failures } if failures + 1 >= self.policy.threshold => {
                tracing::warn!(
                    provider = key.0.as_str(),
                    base_url = key.1.as_str(),
                    "circuit opened after repeated failures"
                );
                if let Some(shared) = &self.shared {
                    shared.opened(key, self.policy.cooldown);
                }
                open
            }
            State::Closed { failures } => State::Closed {
                failures: failures + 1,
            },
            State::HalfOpen { .. } | State::Open { .. } => {
                if let Some(shared) = &self.shared {
                    shared.opened(key, self.policy.cooldown);
                }
                open
            }
        };
    }

    fn succeed(&self, key: &Key) {
        let before = self
            .lock()
            .states
            .insert(key.clone(), State::Closed { failures: 0 });
        if let (Some(shared), Some(State::HalfOpen { .. } | State::Open { .. })) =
            (&self.shared, before)
        {
            shared.closed(key);
        }
    }

    /// Moves the circuit from the half-open state of `probe` to open
    /// until `until`. A later state (another call's failure reopened or
    /// its success closed the circuit, or the probe was forgotten) is left
    /// alone.
    fn release(&self, key: &Key, probe: u64, until: Instant) {
        let mut circuits = self.lock();
        if let Some(state) = circuits.states.get_mut(key)
            && matches!(*state, State::HalfOpen { probe: p, .. } if p == probe)
        {
            *state = State::Open { until };
        }
    }
}

impl Permit {
    /// Whether this call is the probe of a half-open circuit.
    pub fn is_probe(&self) -> bool {
        self.probe.is_some()
    }

    /// The vendor has started answering (a stream's first chunk). A probe
    /// closes the circuit now, so that other calls need not wait for the
    /// whole stream; the permit is still settled with how the call ends,
    /// as any call's is.
    pub fn answered(&mut self) {
        if let (Some(breakers), Some(_)) = (&self.breakers, self.probe.take()) {
            breakers.succeed(&self.key);
        }
    }

    /// The call reached the vendor and was answered: the circuit closes.
    pub fn success(mut self) {
        if let Some(breakers) = self.breakers.take() {
            breakers.succeed(&self.key);
        }
    }

    /// The call failed in a way that says the vendor is unwell: counts
    /// towards opening the circuit, or reopens it after a probe.
    pub fn failure(mut self) {
        if let Some(breakers) = self.breakers.take() {
            breakers.fail(&self.key);
        }
    }

    /// The call ended without saying anything about the vendor's health
    /// (e.g. a 400, or it was never sent): a probe is released and the
    /// next call probes again.
    pub fn neutral(mut self) {
        if let (Some(breakers), Some(probe)) = (self.breakers.take(), self.probe) {
            breakers.release(&self.key, probe, Instant::now());
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        // Settled permits have given up `breakers`.
        let (Some(breakers), Some(probe)) = (self.breakers.take(), self.probe) else {
            return;
        };
        // A probe that never answered says nothing good about the vendor,
        // which was unwell when the circuit opened: skip it for another
        // cool-down, then probe again.
        tracing::info!(
            provider = self.key.0.as_str(),
            base_url = self.key.1.as_str(),
            "a circuit probe was dropped before it answered; reopening the circuit"
        );
        breakers.release(&self.key, probe, Instant::now() + breakers.policy.cooldown);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "claude";
    const U: &str = "https://api.anthropic.com";

    fn breakers(threshold: u32) -> Arc<Breakers> {
        Arc::new(Breakers::new(BreakerPolicy {
            threshold,
            cooldown: Duration::from_secs(10),
        }))
    }

    /// Opens the circuit of `P` at `U` with failures.
    fn open(breakers: &Arc<Breakers>) {
        for _ in 0..breakers.policy.threshold {
            breakers.admit(P, U).unwrap().failure();
        }
        assert!(breakers.admit(P, U).is_err(), "open");
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_repeated_failures_and_probes_after_the_cooldown() {
        let breakers = breakers(3);
        for _ in 0..2 {
            breakers.admit(P, U).unwrap().failure();
            let permit = breakers.admit(P, U).unwrap();
            assert!(!permit.is_probe());
            // Dropping a call that is not a probe records nothing.
            drop(permit);
        }
        breakers.admit(P, U).unwrap().failure();
        let wait = breakers.admit(P, U).unwrap_err();
        assert_eq!(wait, Duration::from_secs(10));
        assert!(breakers.admit(P, "http://other").is_ok(), "per base URL");

        tokio::time::advance(Duration::from_secs(10)).await;
        let probe = breakers.admit(P, U).unwrap();
        assert!(probe.is_probe(), "one probe");
        assert!(breakers.admit(P, U).is_err(), "only one");
        probe.failure();
        assert_eq!(
            breakers.admit(P, U).unwrap_err(),
            Duration::from_secs(10),
            "a failed probe reopens for a full cool-down"
        );

        tokio::time::advance(Duration::from_secs(10)).await;
        breakers.admit(P, U).unwrap().success();
        let permit = breakers.admit(P, U).unwrap();
        assert!(!permit.is_probe(), "closed again");
        assert!(breakers.admit(P, U).is_ok(), "closed again");
        drop(permit);
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_dropped_unsettled_reopens_and_the_circuit_recovers() {
        let breakers = breakers(2);
        open(&breakers);
        tokio::time::advance(Duration::from_secs(10)).await;

        // The probe's call is cancelled before it answers.
        let probe = breakers.admit(P, U).unwrap();
        assert!(probe.is_probe());
        drop(probe);
        assert_eq!(
            breakers.admit(P, U).unwrap_err(),
            Duration::from_secs(10),
            "open for another cool-down"
        );

        tokio::time::advance(Duration::from_secs(10)).await;
        let probe = breakers.admit(P, U).unwrap();
        assert!(probe.is_probe(), "probed again after the cool-down");
        assert!(breakers.admit(P, U).is_err(), "one probe at a time");
        probe.success();
        assert!(!breakers.admit(P, U).unwrap().is_probe(), "closed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_stream_closes_the_circuit_at_its_first_chunk() {
        let breakers = breakers(2);
        open(&breakers);
        tokio::time::advance(Duration::from_secs(10)).await;
        let mut probe = breakers.admit(P, U).unwrap();
        probe.answered();
        assert!(!probe.is_probe());
        assert!(
            !breakers.admit(P, U).unwrap().is_probe(),
            "closed while the stream goes on"
        );
        // Dropped after that (the caller stopped reading): still closed.
        drop(probe);
        assert!(breakers.admit(P, U).is_ok());

        // A stream cut later counts as one failure, like any call's.
        open(&breakers);
        tokio::time::advance(Duration::from_secs(10)).await;
        let mut probe = breakers.admit(P, U).unwrap();
        probe.answered();
        probe.failure();
        assert!(breakers.admit(P, U).is_ok(), "one failure of two");
        breakers.admit(P, U).unwrap().failure();
        assert!(breakers.admit(P, U).is_err(), "two in a row");
    }

    #[tokio::test(start_paused = true)]
    async fn a_neutral_probe_lets_the_next_call_probe_at_once() {
        let breakers = breakers(2);
        open(&breakers);
        tokio::time::advance(Duration::from_secs(10)).await;
        breakers.admit(P, U).unwrap().neutral();
        let probe = breakers.admit(P, U).unwrap();
        assert!(probe.is_probe());
        probe.failure();
        assert!(breakers.admit(P, U).is_err(), "reopened");
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_probe_settles_the_half_open_state() {
        let breakers = breakers(2);
        // Calls admitted while the circuit was closed, still out when it
        // opens.
        let (slow, slower) = (breakers.admit(P, U).unwrap(), breakers.admit(P, U).unwrap());
        open(&breakers);
        tokio::time::advance(Duration::from_secs(10)).await;
        let probe = breakers.admit(P, U).unwrap();
        // An old call ends with a 400: the probe is still the only one out.
        slow.neutral();
        assert!(breakers.admit(P, U).is_err(), "still one probe");

        // Another old call fails, reopening the circuit; the probe is
        // forgotten, and dropping it later leaves the newer state alone.
        slower.failure();
        tokio::time::advance(Duration::from_secs(10)).await;
        let second = breakers.admit(P, U).unwrap();
        assert!(second.is_probe());
        drop(probe);
        assert!(breakers.admit(P, U).is_err(), "the second probe is out");
        second.success();
        assert!(breakers.admit(P, U).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_that_never_settles_is_forgotten() {
        let breakers = breakers(2);
        open(&breakers);
        tokio::time::advance(Duration::from_secs(10)).await;
        let stuck = breakers.admit(P, U).unwrap();
        tokio::time::advance(PROBE_TIMEOUT - Duration::from_secs(1)).await;
        assert!(breakers.admit(P, U).is_err(), "still out");
        tokio::time::advance(Duration::from_secs(1)).await;
        let probe = breakers.admit(P, U).unwrap();
        assert!(probe.is_probe(), "a new probe");
        // The stuck one ending now leaves the new probe's state alone.
        stuck.neutral();
        assert!(breakers.admit(P, U).is_err(), "the new probe is still out");
        probe.success();
        assert!(breakers.admit(P, U).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn breakers_off_admit_everything() {
        let breakers = breakers(0);
        for _ in 0..10 {
            breakers.admit(P, U).unwrap().failure();
        }
        let permit = breakers.admit(P, U).unwrap();
        assert!(!permit.is_probe());
        drop(permit);
        assert!(breakers.lock().states.is_empty());
    }
}
