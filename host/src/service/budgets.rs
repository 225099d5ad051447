//! Budgets of virtual keys and agents: what was spent in the current
//! window against what may be.
//!
//! A budget is spent once the spend *reaches* it (`spent >= budget`): a
//! $10 budget lets requests through while less than $10 is spent, and
//! refuses the next one as soon as $10 is. A request's cost is known only
//! after it ran, so the last request let through may go past the budget by
//! its own cost. Usage of models without a known price adds tokens but no
//! cost ([`Spend::unpriced`] counts it).

use crate::error::Error;
use crate::service::VirtualKey;
use crate::store::{Agent, AgentBudget, BudgetPeriod, Spend, Store};
use llmhost_registry::rust_decimal::Decimal;
use std::time::SystemTime;

/// Spend in a budget's current window, and the budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetUsage {
    /// `None`: no budget; then `spent` is everything ever spent.
    pub period: Option<BudgetPeriod>,
    /// The UTC start of the window (`None` for `total` and for no budget).
    pub window_start: Option<String>,
    pub budget_usd: Option<Decimal>,
    pub budget_tokens: Option<u64>,
    /// Spent since `window_start`.
    pub spent: Spend,
}

impl BudgetUsage {
    /// USD left in the window, never below 0; `None` without a USD budget.
    pub fn remaining_usd(&self) -> Option<Decimal> {
        self.budget_usd
            .map(|budget| (budget - self.spent.cost_usd).max(Decimal::ZERO))
    }

    /// Tokens left in the window; `None` without a token budget.
    pub fn remaining_tokens(&self) -> Option<u64> {
        self.budget_tokens
            .map(|budget| budget.saturating_sub(self.spent.tokens()))
    }

    /// Whether the spend has reached the USD or the token budget, so the
    /// next request must be refused.
    pub fn exhausted(&self) -> bool {
        self.budget_usd
            .is_some_and(|budget| self.spent.cost_usd >= budget)
            || self
                .budget_tokens
                .is_some_and(|budget| self.spent.tokens() >= budget)
    }
}

/// Budgets over a [`Store`]. Cheap to clone.
///
/// Each report reads the window's usage rows of one key or agent through
/// the `(virtual_key_id, created_at)` or `(agent_id, created_at)` index,
/// so its cost grows with the requests of the window, not with the table.
#[derive(Debug, Clone)]
pub struct Budgets {
    store: Store,
}

impl Budgets {
    /// Budgets of the keys and agents in `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// What `key` spent in its budget's window holding `now` (all time
    /// without a budget).
    pub async fn of_virtual_key(
        &self,
        key: &VirtualKey,
        now: SystemTime,
    ) -> Result<BudgetUsage, Error> {
        let window_start = key.budget_period.and_then(|p| p.window_start(now));
        let spent = self
            .store
            .spend_of_virtual_key(key.id, window_start.clone())
            .await?;
        Ok(BudgetUsage {
            period: key.budget_period,
            window_start,
            budget_usd: key.budget_usd,
            budget_tokens: None,
            spent,
        })
    }

    /// What was spent for `agent` in its budget's window holding `now`
    /// (all time without a budget), by any caller.
    pub async fn of_agent(&self, agent: &Agent, now: SystemTime) -> Result<BudgetUsage, Error> {
        let window_start = agent.budget_period.and_then(|p| p.window_start(now));
        let spent = self
            .store
            .spend_of_agent(agent.id, window_start.clone())
            .await?;
        Ok(BudgetUsage {
            period: agent.budget_period,
            window_start,
            budget_usd: agent.budget_usd,
            budget_tokens: agent.budget_tokens,
            spent,
        })
    }

    /// Replaces the budget of the agent named `agent`: a USD amount, a
    /// token count or both (each more than 0), per period.
    pub async fn set_agent_budget(&self, agent: &str, budget: AgentBudget) -> Result<Agent, Error> {
        let invalid = |field, message: String| Error::Validation { field, message };
        match (budget.usd, budget.tokens) {
            (None, None) => {
                return Err(invalid(
                    "budget",
                    "give a USD amount, a token count or both".into(),
                ));
            }
            (Some(usd), _) if usd <= Decimal::ZERO => {
                return Err(invalid("budget_usd", format!("{usd} is not more than 0")));
            }
            (_, Some(0)) => return Err(invalid("budget_tokens", "must be more than 0".into())),
            (_, Some(tokens)) if i64::try_from(tokens).is_err() => {
                return Err(invalid("budget_tokens", format!("{tokens} is too large")));
            }
            _ => {}
        }
        let budget = AgentBudget {
            usd: budget.usd.map(|usd| usd.normalize()),
            ..budget
        };
        self.store
            .set_agent_budget(agent, Some(budget))
            .await?
            .ok_or_else(|| not_found(agent))
    }

    /// Removes the budget of the agent named `agent`.
    pub async fn clear_agent_budget(&self, agent: &str) -> Result<Agent, Error> {
        self.store
            .set_agent_budget(agent, None)
            .await?
            .ok_or_else(|| not_found(agent))
    }
}

fn not_found(agent: &str) -> Error {
    Error::NotFound {
        what: "agent",
        key: agent.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(
        usd: Option<&str>,
        tokens: Option<u64>,
        spent_usd: &str,
        spent_tokens: u64,
    ) -> BudgetUsage {
        BudgetUsage {
            period: Some(BudgetPeriod::Month),
            window_start: BudgetPeriod::Month.window_start(SystemTime::now()),
            budget_usd: usd.map(|u| u.parse().unwrap()),
            budget_tokens: tokens,
            spent: Spend {
                cost_usd: spent_usd.parse().unwrap(),
                input_tokens: spent_tokens,
                ..Spend::default()
            },
        }
    }

    #[test]
    fn a_budget_is_spent_once_the_spend_reaches_it() {
        let below = usage(Some("1"), None, "0.999999", 0);
        assert!(!below.exhausted());
        assert_eq!(below.remaining_usd().unwrap().to_string(), "0.000001");
        let at = usage(Some("1.00"), None, "1", 0);
        assert!(at.exhausted(), "reaching the budget spends it");
        assert_eq!(at.remaining_usd(), Some(Decimal::ZERO));
        let over = usage(Some("1"), None, "1.5", 0);
        assert!(over.exhausted());
        assert_eq!(over.remaining_usd(), Some(Decimal::ZERO));

        assert!(!usage(None, Some(100), "50", 99).exhausted());
        assert!(usage(None, Some(100), "0", 100).exhausted());
        assert_eq!(usage(None, Some(100), "0", 150).remaining_tokens(), Some(0));
        // Either limit spends the budget.
        assert!(usage(Some("10"), Some(100), "0", 100).exhausted());
        assert!(usage(Some("10"), Some(100), "10", 0).exhausted());
        let none = usage(None, None, "99", 99);
        assert!(!none.exhausted());
        assert_eq!(
            (none.remaining_usd(), none.remaining_tokens()),
            (None, None)
        );
    }

    #[tokio::test]
    async fn agent_budgets_are_checked_before_they_are_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("b.db")).await.unwrap();
        store.create_agent("bot", None).await.unwrap();
        let budgets = Budgets::new(store);
        let month = |usd: Option<&str>, tokens| AgentBudget {
            usd: usd.map(|u| u.parse().unwrap()),
            tokens,
            period: BudgetPeriod::Month,
        };
        for (budget, field) in [
            (month(None, None), "budget"),
            (month(Some("0"), None), "budget_usd"),
            (month(Some("-1"), Some(5)), "budget_usd"),
            (month(None, Some(0)), "budget_tokens"),
            (month(None, Some(u64::MAX)), "budget_tokens"),
        ] {
            match budgets.set_agent_budget("bot", budget).await {
                Err(Error::Validation { field: f, .. }) => assert_eq!(f, field, "{budget:?}"),
                other => panic!("{budget:?}: {other:?}"),
            }
        }
        match budgets
            .set_agent_budget("nobody", month(Some("1"), None))
            .await
        {
            Err(Error::NotFound { what, .. }) => assert_eq!(what, "agent"),
            other => panic!("{other:?}"),
        }
        let agent = budgets
            .set_agent_budget("bot", month(Some("3.10"), None))
            .await
            .unwrap();
        assert_eq!(agent.budget_usd.unwrap().to_string(), "3.1");
        let report = budgets.of_agent(&agent, SystemTime::now()).await.unwrap();
        assert_eq!(report.period, Some(BudgetPeriod::Month));
        assert_eq!(report.remaining_usd().unwrap().to_string(), "3.1");
        assert_eq!(
            budgets
                .clear_agent_budget("bot")
                .await
                .unwrap()
                .budget_period,
            None
        );
    }
}
