//! The per-request shared-state operations, for `benches/shared_state.rs`
//! (hidden from the docs; not an API to build on): a budget reservation
//! settled at once, through the same ledger the gateway uses, with its
//! spend in this process or in Redis.

use crate::error::Error;
use crate::service::ledger::{Ledger, Limit, Scope, Worst};
use crate::store::{BudgetPeriod, Store};
use rust_decimal::Decimal;
use std::sync::Arc;
use std::time::SystemTime;

/// A daily budget of one virtual key, kept by a ledger in this process
/// (`shared` is `None`) or in Redis.
pub struct BudgetProbe {
    ledger: Arc<Ledger>,
    limits: [Limit; 1],
}

impl BudgetProbe {
    /// The budget of virtual key `key` (its spend read from `store` once),
    /// large enough never to be exceeded.
    pub fn new(store: Store, shared: Option<Arc<super::Redis>>, key: i64) -> Self {
        Self {
            ledger: Ledger::with_shared(store, shared),
            limits: [Limit {
                scope: Scope::VirtualKey(key),
                period: BudgetPeriod::Day,
                usd: Some(Decimal::from(1_000_000_000)),
                tokens: None,
            }],
        }
    }

    /// Reserves a request's worst case and settles it with its real cost,
    /// as one gateway request does.
    pub async fn reserve_and_settle(&self) -> Result<(), Error> {
        let worst = Worst {
            usd: Decimal::new(20, 4),
            tokens: 100,
        };
        match self
            .ledger
            .reserve(&self.limits, worst, SystemTime::now())
            .await?
        {
            Ok(reservation) => {
                reservation.settle(Some(Decimal::new(5, 4)), 40);
                Ok(())
            }
            Err(exceeded) => Err(Error::InvalidConfig(format!(
                "the probe's budget is exceeded: {}",
                exceeded.message
            ))),
        }
    }
}

/// The revocation epoch every authentication of a virtual key reads when
/// the state is shared.
pub async fn revocation_epoch(redis: &super::Redis) -> Result<i64, Error> {
    redis.revocation_epoch().await
}
