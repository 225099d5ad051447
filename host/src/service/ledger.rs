//! Budgets enforced before a call: each request reserves its worst-case
//! cost (its prompt counted, `max_tokens` or the model's output limit) in
//! every budget it falls under, and the reservation is settled with the
//! real cost when the call ends. A request is admitted only if what is
//! spent, what is reserved by requests in flight and its own worst case
//! fit in the budget, so concurrent requests cannot overspend at all when
//! the worst case holds; the real cost of an answer is never above it.
//!
//! Spend is kept in memory per budget and window, loaded once from the
//! usage rows when a window is first used (or a new one starts), then
//! advanced by every settlement: the ledger does not scan the usage table
//! per request, and it does not wait for the batched usage writer.
//!
//! With shared state ([`crate::shared`]), spend and reservations are kept
//! in Redis instead, for every replica at once; the in-process windows
//! serve only when Redis is unavailable and `on_unavailable = "open"`.

use crate::error::{Error, ErrorKind};
use crate::host::Host;
use crate::router::Plan;
use crate::store::{Agent, BudgetPeriod, Store};
use crate::types::{ChatRequest, Usage};
use llmhost_registry::rust_decimal::Decimal;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Whose budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Scope {
    VirtualKey(i64),
    Agent(i64),
}

/// A budget a request falls under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limit {
    pub scope: Scope,
    pub period: BudgetPeriod,
    pub usd: Option<Decimal>,
    pub tokens: Option<u64>,
}

/// The worst a request can cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Worst {
    pub usd: Decimal,
    pub tokens: u64,
}

#[derive(Debug, Default)]
struct Window {
    /// Whether `spent_*` were read from the usage rows for `start`.
    loaded: bool,
    /// UTC start of the window the figures are for (`None`: all time).
    start: Option<String>,
    spent_usd: Decimal,
    spent_tokens: u64,
    reserved_usd: Decimal,
    reserved_tokens: u64,
}

impl Limit {
    /// The agent's budget, if it has one.
    pub(crate) fn of_agent(agent: &Agent) -> Option<Self> {
        let period = agent.budget_period?;
        (agent.budget_usd.is_some() || agent.budget_tokens.is_some()).then_some(Self {
            scope: Scope::Agent(agent.id),
            period,
            usd: agent.budget_usd,
            tokens: agent.budget_tokens,
        })
    }
}

/// The most `request` can cost along any of the plan's routes: its prompt
/// counted with each model's tokenizer, and its `max_tokens` (else the
/// route's, else the model's output limit) all used. With `priced`, a
/// route without a known price is refused: a USD budget cannot be kept
/// on it.
pub(crate) fn worst_case(
    host: &Host,
    plan: &Plan,
    request: &ChatRequest,
    priced: bool,
) -> Result<Worst, Error> {
    let mut worst = Worst::default();
    for route in &plan.routes {
        let provider = &route.target.provider;
        let entry = host.catalogue().get(provider, &route.model);
        let encoding = entry.map_or("o200k_base", |e| e.tokenizer.as_str());
        let prompt: u64 = request
            .messages
            .iter()
            .map(|m| {
                let text = m.text_content();
                crate::tokenizer::count(encoding, &text).unwrap_or(text.len().div_ceil(4)) as u64
                    + 4
            })
            .sum();
        let output = request
            .max_tokens
            .or(route.defaults.max_tokens)
            .or(entry.map(|e| e.max_output_tokens).filter(|n| *n > 0))
            .unwrap_or(4096);
        let usage = Usage::new(u32::try_from(prompt).unwrap_or(u32::MAX), output);
        let usd = match &route.prices {
            Some(prices) => Some(prices.cost(&usage.billed())),
            None => host.cost(provider, &route.model, &usage),
        };
        let usd = match usd {
            Some(usd) => usd,
            None if priced => {
                return Err(Error::Budget {
                    kind: ErrorKind::BudgetUnpriced,
                    message: format!(
                        "`{provider}/{}` has no known price, so a USD budget cannot be kept on \
                         it (add its price to the model overrides file)",
                        route.model
                    ),
                });
            }
            None => Decimal::ZERO,
        };
        worst.usd = worst.usd.max(usd);
        worst.tokens = worst.tokens.max(prompt + u64::from(output));
    }
    Ok(worst)
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Exceeded {
    pub scope: Scope,
    pub message: String,
}

/// Budgets in memory over the usage rows of a [`Store`].
pub(crate) struct Ledger {
    store: Store,
    windows: Mutex<HashMap<Scope, Window>>,
    /// Spend and reservations in Redis, shared by the replicas.
    shared: Option<Arc<crate::shared::Redis>>,
}

/// What was spent in `scope`'s window starting at `start`, from the usage
/// rows of `store`.
pub(crate) async fn spend_in(
    store: &Store,
    scope: Scope,
    start: Option<String>,
) -> Result<(Decimal, u64), Error> {
    let spend = match scope {
        Scope::VirtualKey(id) => store.spend_of_virtual_key(id, start).await?,
        Scope::Agent(id) => store.spend_of_agent(id, start).await?,
    };
    Ok((spend.cost_usd, spend.tokens()))
}

/// Reserved amounts, released or settled exactly once. Dropped unsettled
/// (the request was cancelled before any cost was known), it releases the
/// reservation and charges nothing, as its usage row records no cost.
pub(crate) struct Reservation {
    ledger: Arc<Ledger>,
    held: Vec<(Scope, Option<String>)>,
    worst: Worst,
    settled: bool,
    /// The reservation in Redis, when the budgets are shared.
    shared: Option<crate::shared::BudgetHold>,
}

impl Ledger {
    pub(crate) fn new(store: Store) -> Arc<Self> {
        Self::with_shared(store, None)
    }

    /// A ledger that keeps spend and reservations in `shared` (Redis) when
    /// given.
    pub(crate) fn with_shared(
        store: Store,
        shared: Option<Arc<crate::shared::Redis>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            windows: Mutex::new(HashMap::new()),
            shared,
        })
    }

    /// What was spent in `scope`'s window starting at `start`, from the
    /// usage rows.
    async fn load(&self, scope: Scope, start: Option<String>) -> Result<(Decimal, u64), Error> {
        spend_in(&self.store, scope, start).await
    }

    /// Reserves `worst` under every limit, or refuses with the first that
    /// it does not fit.
    pub(crate) async fn reserve(
        self: &Arc<Self>,
        limits: &[Limit],
        worst: Worst,
        now: SystemTime,
    ) -> Result<Result<Reservation, Exceeded>, Error> {
        if let Some(redis) = &self.shared {
            match crate::shared::reserve_budget(redis, &self.store, limits, worst, now).await {
                Ok(Ok(hold)) => {
                    return Ok(Ok(Reservation {
                        ledger: self.clone(),
                        held: Vec::new(),
                        worst,
                        settled: false,
                        shared: Some(hold),
                    }));
                }
                Ok(Err(exceeded)) => return Ok(Err(exceeded)),
                // Fail open: this process's own windows keep the budget
                // as well as one replica can.
                Err(Error::SharedUnavailable { .. })
                    if redis.on_unavailable() == crate::shared::OnUnavailable::Open => {}
                Err(err) => return Err(err),
            }
        }
        // Windows seen for the first time are loaded before the lock is
        // taken; a race between two loads keeps the first.
        for limit in limits {
            let start = limit.period.window_start(now);
            let known = {
                let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
                windows
                    .get(&limit.scope)
                    .is_some_and(|w| w.loaded && w.start == start)
            };
            if !known {
                let (usd, tokens) = self.load(limit.scope, start.clone()).await?;
                let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
                let window = windows.entry(limit.scope).or_default();
                if !(window.loaded && window.start == start) {
                    // A new window: what is reserved stays reserved.
                    window.loaded = true;
                    window.start = start;
                    window.spent_usd = usd;
                    window.spent_tokens = tokens;
                }
            }
        }
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        for limit in limits {
            let window = windows.entry(limit.scope).or_default();
            if let Some(budget) = limit.usd
                && window.spent_usd + window.reserved_usd + worst.usd > budget
            {
                return Ok(Err(Exceeded {
                    scope: limit.scope,
                    message: format!(
                        "budget exceeded: ${} of ${budget} per {} spent, ${} reserved by requests \
                         in flight, and this request may cost up to ${}",
                        window.spent_usd.normalize(),
                        limit.period.as_str(),
                        window.reserved_usd.normalize(),
                        worst.usd.normalize()
                    ),
                }));
            }
            if let Some(budget) = limit.tokens
                && window.spent_tokens + window.reserved_tokens + worst.tokens > budget
            {
                return Ok(Err(Exceeded {
                    scope: limit.scope,
                    message: format!(
                        "token budget exceeded: {} of {budget} tokens per {} used, {} reserved by \
                         requests in flight, and this request may use up to {}",
                        window.spent_tokens,
                        limit.period.as_str(),
                        window.reserved_tokens,
                        worst.tokens
                    ),
                }));
            }
        }
        let mut held = Vec::with_capacity(limits.len());
        for limit in limits {
            let window = windows.entry(limit.scope).or_default();
            window.reserved_usd += worst.usd;
            window.reserved_tokens += worst.tokens;
            held.push((limit.scope, window.start.clone()));
        }
        Ok(Ok(Reservation {
            ledger: self.clone(),
            held,
            worst,
            settled: false,
            shared: None,
        }))
    }

    /// Reserves `request`'s worst case along `plan` under `limits`:
    /// `Ok(None)` with no limits, an [`Error::Budget`] when it does not
    /// fit.
    pub(crate) async fn admit(
        self: &Arc<Self>,
        host: &Host,
        limits: &[Limit],
        plan: &Plan,
        request: &ChatRequest,
    ) -> Result<Option<Reservation>, Error> {
        if limits.is_empty() {
            return Ok(None);
        }
        let priced = limits.iter().any(|limit| limit.usd.is_some());
        let worst = worst_case(host, plan, request, priced)?;
        match self.reserve(limits, worst, SystemTime::now()).await? {
            Ok(reservation) => Ok(Some(reservation)),
            Err(exceeded) => Err(Error::Budget {
                kind: ErrorKind::BudgetExceeded,
                message: exceeded.message,
            }),
        }
    }

    fn release(&self, held: &[(Scope, Option<String>)], worst: Worst, usd: Decimal, tokens: u64) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        for (scope, start) in held {
            let Some(window) = windows.get_mut(scope) else {
                continue;
            };
            window.reserved_usd = (window.reserved_usd - worst.usd).max(Decimal::ZERO);
            window.reserved_tokens = window.reserved_tokens.saturating_sub(worst.tokens);
            // Spend of a window that has since ended is not carried over.
            if window.start == *start {
                window.spent_usd += usd;
                window.spent_tokens += tokens;
            }
        }
    }

    /// What `scope` has spent in its current window, as the ledger holds
    /// it (reported by the admin views).
    #[cfg(test)]
    fn spent(&self, scope: Scope) -> Option<(Decimal, Decimal)> {
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        windows.get(&scope).map(|w| (w.spent_usd, w.reserved_usd))
    }
}

impl Reservation {
    /// Charges the real cost and tokens, releasing the reservation.
    pub(crate) fn settle(mut self, usd: Option<Decimal>, tokens: u64) {
        self.settled = true;
        if let Some(hold) = self.shared.take() {
            hold.settle(usd.unwrap_or_default(), tokens);
        }
        self.ledger
            .release(&self.held, self.worst, usd.unwrap_or_default(), tokens);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(hold) = self.shared.take() {
            hold.settle(Decimal::ZERO, 0);
        }
        if !self.settled {
            self.ledger
                .release(&self.held, self.worst, Decimal::ZERO, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn ledger() -> (tempfile::TempDir, Arc<Ledger>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("b.db")).await.unwrap();
        (dir, Ledger::new(store))
    }

    fn limit(usd: &str) -> Limit {
        Limit {
            scope: Scope::VirtualKey(1),
            period: BudgetPeriod::Total,
            usd: Some(usd.parse().unwrap()),
            tokens: None,
        }
    }

    fn worst(usd: &str) -> Worst {
        Worst {
            usd: usd.parse().unwrap(),
            tokens: 10,
        }
    }

    #[tokio::test]
    async fn reservations_in_flight_count_against_the_budget() {
        let (_dir, ledger) = ledger().await;
        let now = SystemTime::now();
        let limits = [limit("1.00")];
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(
                ledger
                    .reserve(&limits, worst("0.25"), now)
                    .await
                    .unwrap()
                    .expect("fits"),
            );
        }
        // Exactly at the budget: the fifth does not fit.
        let Err(refused) = ledger.reserve(&limits, worst("0.25"), now).await.unwrap() else {
            panic!("a fifth reservation fitted");
        };
        assert!(refused.message.contains("budget exceeded"), "{refused:?}");
        // Settling below the worst case frees the difference.
        held.pop().unwrap().settle(Some("0.05".parse().unwrap()), 3);
        held.pop().unwrap().settle(Some("0.05".parse().unwrap()), 3);
        assert_eq!(
            ledger.spent(Scope::VirtualKey(1)),
            Some(("0.10".parse().unwrap(), "0.50".parse().unwrap()))
        );
        assert!(
            ledger
                .reserve(&limits, worst("0.25"), now)
                .await
                .unwrap()
                .is_ok()
        );
        // A dropped reservation releases without charging.
        drop(held);
        assert_eq!(
            ledger.spent(Scope::VirtualKey(1)).unwrap().0,
            "0.10".parse::<Decimal>().unwrap()
        );
    }

    #[tokio::test]
    async fn token_budgets_refuse_like_usd_budgets() {
        let (_dir, ledger) = ledger().await;
        let limits = [Limit {
            scope: Scope::Agent(7),
            period: BudgetPeriod::Day,
            usd: None,
            tokens: Some(25),
        }];
        let now = SystemTime::now();
        let first = ledger
            .reserve(&limits, worst("0"), now)
            .await
            .unwrap()
            .unwrap();
        let _second = ledger
            .reserve(&limits, worst("0"), now)
            .await
            .unwrap()
            .unwrap();
        assert!(
            ledger
                .reserve(&limits, worst("0"), now)
                .await
                .unwrap()
                .is_err()
        );
        first.settle(None, 2);
        assert!(
            ledger
                .reserve(&limits, worst("0"), now)
                .await
                .unwrap()
                .is_ok()
        );
    }
}
