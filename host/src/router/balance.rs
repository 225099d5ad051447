//! Load balancing among routes of one priority: an agent's configs of
//! equal priority form a group, and its [`Strategy`] orders the group at
//! the start of each call, from what the router's shared state knows now
//! (calls in flight, latency learned from completed attempts, open
//! circuits, spent rate limits).
//!
//! The router keeps, per provider, base URL and model, the calls in
//! flight (a [`Load`] guard held by each attempt from its start until it
//! ends, fails, is cancelled or its stream is dropped) and two
//! exponentially weighted moving averages (weight [`EWMA_WEIGHT`] for the
//! newest sample): time to first token of streams, latency of answers that
//! are not streamed.

use super::{Plan, Route, Router, RoutingState, bucket_key};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How a call picks among the routes of one priority group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The configs' own order (priority, then position): no balancing.
    #[default]
    Priority,
    /// Weighted random by the configs' `weight`.
    Weighted,
    /// The route with the fewest calls in flight now.
    LeastInFlight,
    /// The route with the lowest moving average of time to first token
    /// (streams) or latency (other calls); a route not measured yet (or
    /// not for [`MEASURE_AGAIN_AFTER`]) is tried first, by one call at a
    /// time.
    LowestLatency,
}

impl Strategy {
    /// Every strategy.
    pub const ALL: [Strategy; 4] = [
        Strategy::Priority,
        Strategy::Weighted,
        Strategy::LeastInFlight,
        Strategy::LowestLatency,
    ];

    /// The name stored and shown (`least_in_flight`).
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Priority => "priority",
            Strategy::Weighted => "weighted",
            Strategy::LeastInFlight => "least_in_flight",
            Strategy::LowestLatency => "lowest_latency",
        }
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Strategy {
    type Err = crate::Error;

    /// A strategy's name, with `-` or `_` (`least-in-flight`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let name = text.trim().replace('-', "_");
        Strategy::ALL
            .into_iter()
            .find(|s| s.as_str() == name)
            .ok_or_else(|| crate::Error::Validation {
                field: "balance",
                message: format!(
                    "`{text}` is not a strategy (one of: {})",
                    Strategy::ALL.map(Strategy::as_str).join(", ")
                ),
            })
    }
}

/// A short, stable name for why a route was chosen, for metrics labels:
/// the `choice_reason` text of usage rows carries figures (weights, calls
/// in flight, milliseconds) that would make a label per value.
///
/// `circuit_open` / `rate_limit_spent`: another route of the group was
/// passed over for that; `unusable`: this route was, and is tried last;
/// `fallback_pair`: the fallback pair of a chosen config; then by
/// strategy `weight` / `weight_left`, `fewest_in_flight` / `in_flight`,
/// `lowest_latency` / `not_measured` / `probe_in_flight` / `slower`,
/// `window_too_small` (context window), else `priority`.
pub fn reason_label(choice: &str, reason: &str) -> &'static str {
    if reason.starts_with("fallback pair") {
        "fallback_pair"
    } else if reason.contains("tried last") {
        "unusable"
    } else if reason.contains("skipped: circuit open") {
        "circuit_open"
    } else if reason.contains("skipped: rate limit spent") {
        "rate_limit_spent"
    } else {
        match choice {
            "weighted" if reason.contains(" left") => "weight_left",
            "weighted" => "weight",
            "least_in_flight" if reason.contains("the fewest") => "fewest_in_flight",
            "least_in_flight" => "in_flight",
            "lowest_latency" if reason.contains("the lowest") => "lowest_latency",
            "lowest_latency" if reason.contains("tried first") => "not_measured",
            "lowest_latency" if reason.contains("probe is in flight") => "probe_in_flight",
            "lowest_latency" => "slower",
            "context_window" => "window_too_small",
            _ => "priority",
        }
    }
}

/// Weight of the newest sample in the moving averages.
pub const EWMA_WEIGHT: f64 = 0.3;

/// A latency sample older than this no longer counts: the route is probed
/// again, so that one that was slow gets the chance to show it recovered.
pub const MEASURE_AGAIN_AFTER: Duration = Duration::from_secs(30);

/// A group of a plan's routes of one priority, balanced by `strategy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub strategy: Strategy,
    pub members: Vec<Member>,
}

/// One config of a [`Group`]: the index of its route in the plan, its
/// weight, and the index of its fallback pair's route, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub route: usize,
    pub weight: u32,
    pub pair: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct LoadKey {
    provider: String,
    base_url: String,
    model: String,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    ewma_ms: f64,
    at: Instant,
}

#[derive(Debug, Default)]
struct RouteLoad {
    in_flight: AtomicU32,
    /// Time to first token of streams, latency of the other calls.
    ttft: Mutex<Option<Sample>>,
    latency: Mutex<Option<Sample>>,
}

fn observe(cell: &Mutex<Option<Sample>>, took: Duration) {
    let ms = took.as_secs_f64() * 1000.0;
    let mut sample = cell.lock().unwrap_or_else(|e| e.into_inner());
    let ewma_ms = match *sample {
        Some(old) => EWMA_WEIGHT * ms + (1.0 - EWMA_WEIGHT) * old.ewma_ms,
        None => ms,
    };
    *sample = Some(Sample {
        ewma_ms,
        at: Instant::now(),
    });
}

fn current(cell: &Mutex<Option<Sample>>) -> Option<f64> {
    let sample = *cell.lock().unwrap_or_else(|e| e.into_inner());
    sample
        .filter(|s| s.at.elapsed() < MEASURE_AGAIN_AFTER)
        .map(|s| s.ewma_ms)
}

/// Calls in flight and learned latency of every route seen.
#[derive(Debug, Default)]
pub(crate) struct Loads {
    routes: Mutex<HashMap<LoadKey, Arc<RouteLoad>>>,
}

impl Loads {
    fn entry(&self, provider: &str, base_url: &str, model: &str) -> Arc<RouteLoad> {
        let key = LoadKey {
            provider: provider.to_owned(),
            base_url: base_url.to_owned(),
            model: model.to_owned(),
        };
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_default()
            .clone()
    }

    /// One more call in flight on the route, until the guard is dropped.
    pub(super) fn start(&self, provider: &str, base_url: &str, model: &str) -> Load {
        let route = self.entry(provider, base_url, model);
        route.in_flight.fetch_add(1, Ordering::SeqCst);
        Load { route }
    }
}

/// A call in flight on a route: counted until dropped.
#[derive(Debug)]
pub(super) struct Load {
    route: Arc<RouteLoad>,
}

impl Load {
    /// A stream's first content chunk came after `ttft`.
    pub(super) fn first_token(&self, ttft: Duration) {
        observe(&self.route.ttft, ttft);
    }

    /// An answer that is not streamed came after `latency`.
    pub(super) fn answered(&self, latency: Duration) {
        observe(&self.route.latency, latency);
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.route.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the balancer knows of one member's route now.
struct Candidate {
    member: Member,
    label: String,
    in_flight: u32,
    latency_ms: Option<f64>,
    /// Why the route cannot take a call now (open circuit, spent rate
    /// limit).
    unusable: Option<&'static str>,
}

impl Router {
    /// The calls in flight now on `provider`'s `model` at `base_url`.
    pub fn in_flight(&self, provider: &str, base_url: &str, model: &str) -> u32 {
        self.state
            .loads
            .entry(provider, base_url, model)
            .in_flight
            .load(Ordering::SeqCst)
    }

    /// `plan` with each balanced group's routes in the order its strategy
    /// picks now: the chosen config first, the group's other configs after
    /// it as fallbacks, then their fallback pairs in the same order. Each
    /// route of a group records the choice and why. A plan without groups
    /// is returned as it is.
    pub(super) fn arrange<'p>(&self, plan: &'p Plan, streamed: bool) -> Cow<'p, Plan> {
        if plan.balance.is_empty() {
            return Cow::Borrowed(plan);
        }
        let mut arranged = plan.clone();
        for group in &plan.balance {
            if group.strategy == Strategy::Priority || group.members.is_empty() {
                continue;
            }
            let Some(order) = self.order(plan, group, streamed) else {
                continue;
            };
            let mut slots: Vec<usize> = group
                .members
                .iter()
                .flat_map(|m| std::iter::once(m.route).chain(m.pair))
                .filter(|&i| i < plan.routes.len())
                .collect();
            slots.sort_unstable();
            let sequence: Vec<(usize, Option<(String, String)>)> = order
                .iter()
                .map(|(m, reason)| {
                    (
                        m.route,
                        Some((group.strategy.as_str().into(), reason.clone())),
                    )
                })
                .chain(order.iter().filter_map(|(m, reason)| {
                    m.pair.map(|pair| {
                        let reason = format!("fallback pair of a config chosen by: {reason}");
                        (pair, Some((group.strategy.as_str().into(), reason)))
                    })
                }))
                .collect();
            if sequence.len() != slots.len() {
                continue;
            }
            for (slot, (from, choice)) in slots.iter().zip(sequence) {
                let mut route = plan.routes[from].clone();
                route.choice = choice;
                arranged.routes[*slot] = route;
            }
        }
        for (i, route) in arranged.routes.iter_mut().enumerate() {
            route.fallback = i != 0;
        }
        Cow::Owned(arranged)
    }

    /// The group's members in the strategy's order, each with its reason.
    fn order(&self, plan: &Plan, group: &Group, streamed: bool) -> Option<Vec<(Member, String)>> {
        let state = &self.state;
        let open: Vec<(String, String)> = state
            .breakers
            .states()
            .into_iter()
            .filter(|(_, _, s)| *s == "open")
            .map(|(p, b, _)| (p, b))
            .collect();
        let mut candidates = Vec::with_capacity(group.members.len());
        for member in &group.members {
            let route = plan.routes.get(member.route)?;
            candidates.push(self.candidate(state, *member, route, &open, streamed));
        }
        let (mut usable, unusable): (Vec<_>, Vec<_>) =
            candidates.into_iter().partition(|c| c.unusable.is_none());
        let skipped: Vec<String> = unusable
            .iter()
            .map(|c| format!("{} skipped: {}", c.label, c.unusable.unwrap_or_default()))
            .collect();
        let mut rest = unusable;
        if usable.is_empty() {
            // Nothing can take the call now: the router's own checks will
            // say why, in the strategy's order.
            usable = std::mem::take(&mut rest);
        }
        let mut ordered = self.rank(group.strategy, usable, streamed);
        let tail = self.rank(group.strategy, rest, streamed);
        if !skipped.is_empty()
            && let Some(first) = ordered.first_mut()
        {
            first.1 = format!("{}; {}", first.1, skipped.join(", "));
        }
        ordered.extend(
            tail.into_iter()
                .map(|(m, reason)| (m, format!("{reason}; tried last: unusable when planned"))),
        );
        Some(ordered)
    }

    fn candidate(
        &self,
        state: &RoutingState,
        member: Member,
        route: &Route,
        open: &[(String, String)],
        streamed: bool,
    ) -> Candidate {
        let provider = &route.target.provider;
        let base_url = self.host.base_url_of(&route.target).unwrap_or_default();
        let load = state.loads.entry(provider, &base_url, &route.model);
        let latency_ms = if streamed {
            current(&load.ttft)
        } else {
            current(&load.latency)
        };
        let limits = self
            .host
            .catalogue()
            .get(provider, &route.model)
            .map(|m| m.rate_limits)
            .unwrap_or_default();
        let unusable = if open.iter().any(|(p, b)| p == provider && *b == base_url) {
            Some("circuit open")
        } else if state
            .limiter
            .is_spent(&bucket_key(route, &route.target), limits)
        {
            Some("rate limit spent")
        } else {
            None
        };
        Candidate {
            member,
            label: format!("{provider}/{} at {base_url}", route.model),
            in_flight: load.in_flight.load(Ordering::SeqCst),
            latency_ms,
            unusable,
        }
    }

    /// Candidates in the strategy's order, with the reason of each.
    fn rank(
        &self,
        strategy: Strategy,
        mut candidates: Vec<Candidate>,
        streamed: bool,
    ) -> Vec<(Member, String)> {
        match strategy {
            Strategy::Priority => candidates
                .into_iter()
                .map(|c| (c.member, "priority order".to_owned()))
                .collect(),
            Strategy::Weighted => weighted(candidates),
            Strategy::LeastInFlight => {
                // Stable: ties keep the configs' order.
                candidates.sort_by_key(|c| c.in_flight);
                candidates
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let reason = if i == 0 {
                            format!("{} in flight, the fewest", c.in_flight)
                        } else {
                            format!("{} in flight", c.in_flight)
                        };
                        (c.member, reason)
                    })
                    .collect()
            }
            Strategy::LowestLatency => lowest_latency(candidates, streamed),
        }
    }
}

/// Weighted random order, sampling without replacement.
fn weighted(mut candidates: Vec<Candidate>) -> Vec<(Member, String)> {
    let mut ordered = Vec::with_capacity(candidates.len());
    let mut first = true;
    while !candidates.is_empty() {
        let total: u64 = candidates
            .iter()
            .map(|c| u64::from(c.member.weight.max(1)))
            .sum();
        // Modulo bias is at most total / 2^64: nothing a test can see.
        let mut ticket = getrandom::u64().unwrap_or(0) % total;
        let mut pick = 0;
        for (i, c) in candidates.iter().enumerate() {
            let weight = u64::from(c.member.weight.max(1));
            if ticket < weight {
                pick = i;
                break;
            }
            ticket -= weight;
        }
        let chosen = candidates.remove(pick);
        let weight = chosen.member.weight.max(1);
        let reason = if first {
            format!("weight {weight} of {total}")
        } else {
            format!("weight {weight} of {total} left")
        };
        first = false;
        ordered.push((chosen.member, reason));
    }
    ordered
}

/// Unmeasured routes with no call in flight first (a probe), then by the
/// moving average, then unmeasured routes whose probe is out.
fn lowest_latency(mut candidates: Vec<Candidate>, streamed: bool) -> Vec<(Member, String)> {
    let measure = if streamed { "ttft" } else { "latency" };
    let class = |c: &Candidate| match c.latency_ms {
        None if c.in_flight == 0 => 0,
        Some(_) => 1,
        None => 2,
    };
    candidates.sort_by(|a, b| {
        class(a).cmp(&class(b)).then(
            a.latency_ms
                .unwrap_or(0.0)
                .total_cmp(&b.latency_ms.unwrap_or(0.0)),
        )
    });
    let measured: Vec<f64> = candidates.iter().filter_map(|c| c.latency_ms).collect();
    let lowest = candidates.iter().position(|c| c.latency_ms.is_some());
    candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let reason = match c.latency_ms {
                None if c.in_flight == 0 => format!("{measure} not measured yet: tried first"),
                None => format!("{measure} not measured yet, a probe is in flight"),
                Some(ms) if Some(i) == lowest && i == 0 => {
                    let others: Vec<String> = measured[1..]
                        .iter()
                        .map(|other| format!("{other:.0} ms"))
                        .collect();
                    if others.is_empty() {
                        format!("{measure} {ms:.0} ms, the lowest")
                    } else {
                        format!(
                            "{measure} {ms:.0} ms, the lowest (others {})",
                            others.join(", ")
                        )
                    }
                }
                Some(ms) => {
                    let others: Vec<String> = measured
                        .iter()
                        .filter(|&&other| other != ms)
                        .map(|other| format!("{other:.0} ms"))
                        .collect();
                    if others.is_empty() {
                        format!("{measure} {ms:.0} ms")
                    } else {
                        format!("{measure} {ms:.0} ms vs {}", others.join(", "))
                    }
                }
            };
            (c.member, reason)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{Strategy, reason_label};

    #[test]
    fn strategies_parse_with_dashes_or_underscores_and_refuse_others() {
        for strategy in Strategy::ALL {
            assert_eq!(strategy.as_str().parse::<Strategy>().unwrap(), strategy);
            let dashed = strategy.as_str().replace('_', "-");
            assert_eq!(dashed.parse::<Strategy>().unwrap(), strategy);
        }
        let err = "random".parse::<Strategy>().unwrap_err();
        assert_eq!(err.kind(), "validation");
        assert!(err.to_string().contains("least_in_flight"), "{err}");
    }

    #[test]
    fn reasons_get_short_stable_labels() {
        let cases = [
            ("weighted", "weight 3 of 4", "weight"),
            ("weighted", "weight 1 of 1 left", "weight_left"),
            (
                "least_in_flight",
                "0 in flight, the fewest",
                "fewest_in_flight",
            ),
            ("least_in_flight", "2 in flight", "in_flight"),
            (
                "least_in_flight",
                "0 in flight, the fewest; openai/m at http://x skipped: circuit open",
                "circuit_open",
            ),
            (
                "weighted",
                "weight 1 of 1; openai/m at http://x skipped: rate limit spent",
                "rate_limit_spent",
            ),
            (
                "weighted",
                "weight 1 of 1; tried last: unusable when planned",
                "unusable",
            ),
            (
                "lowest_latency",
                "ttft 12 ms, the lowest (others 80 ms)",
                "lowest_latency",
            ),
            (
                "lowest_latency",
                "ttft not measured yet: tried first",
                "not_measured",
            ),
            (
                "lowest_latency",
                "latency not measured yet, a probe is in flight",
                "probe_in_flight",
            ),
            ("lowest_latency", "ttft 80 ms vs 12 ms", "slower"),
            (
                "weighted",
                "fallback pair of a config chosen by: weight 3 of 4",
                "fallback_pair",
            ),
            (
                "context_window",
                "3,000 input + 100 max_tokens > 1,000 …",
                "window_too_small",
            ),
        ];
        for (choice, reason, label) in cases {
            assert_eq!(reason_label(choice, reason), label, "{reason}");
        }
    }
}
