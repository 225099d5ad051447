//! Properties of [`cost`] over arbitrary pricings, counts and times: it
//! never panics, and more tokens of any kind never cost less.

use crate::{MINUTES_PER_DAY, PriceTier, PriceWindow, Prices, Pricing, TokenUsage, cost};
use proptest::prelude::*;
use rust_decimal::Decimal;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Token counts by kind, each billed once: the usage they make up
/// reports them the way a vendor does (input holds every cached token,
/// writes hold the one-hour ones).
#[derive(Debug, Clone, Copy)]
struct Counts {
    uncached: u64,
    cache_read: u64,
    cache_write_short: u64,
    cache_write_hour: u64,
    output: u64,
}

impl Counts {
    fn usage(self) -> TokenUsage {
        let cache_write = self.cache_write_short + self.cache_write_hour;
        TokenUsage {
            input: self.uncached + self.cache_read + cache_write,
            output: self.output,
            cache_read: self.cache_read,
            cache_write,
            cache_write_hour: self.cache_write_hour,
        }
    }

    fn with(mut self, kind: usize, more: u64) -> Self {
        let count = match kind {
            0 => &mut self.uncached,
            1 => &mut self.cache_read,
            2 => &mut self.cache_write_short,
            3 => &mut self.cache_write_hour,
            _ => &mut self.output,
        };
        *count += more;
        self
    }
}

const MAX_COUNT: u64 = 1 << 40;

fn counts() -> impl Strategy<Value = Counts> {
    (
        0..MAX_COUNT,
        0..MAX_COUNT,
        0..MAX_COUNT,
        0..MAX_COUNT,
        0..MAX_COUNT,
    )
        .prop_map(
            |(uncached, cache_read, cache_write_short, cache_write_hour, output)| Counts {
                uncached,
                cache_read,
                cache_write_short,
                cache_write_hour,
                output,
            },
        )
}

fn prices() -> impl Strategy<Value = Prices> {
    let price = 0..100_000_000u64;
    (
        price.clone(),
        price.clone(),
        proptest::option::of(price.clone()),
        proptest::option::of(price.clone()),
        proptest::option::of(price),
    )
        .prop_map(
            |(input, output, cache_read, cache_write, cache_write_hour)| Prices {
                input,
                output,
                cache_read,
                cache_write,
                cache_write_hour,
            },
        )
}

/// The same prices, each effective one raised by `more`.
fn dearer(prices: Prices, more: [u64; 5]) -> Prices {
    let [input, output, read, write, hour] = more;
    Prices {
        input: prices.input + input,
        output: prices.output + output,
        cache_read: Some(prices.effective_cache_read() + read),
        cache_write: Some(prices.effective_cache_write() + write),
        cache_write_hour: Some(prices.effective_cache_write_hour() + hour),
    }
}

/// The same prices, each effective one halved.
fn cheaper(prices: Prices) -> Prices {
    Prices {
        input: prices.input / 2,
        output: prices.output / 2,
        cache_read: Some(prices.effective_cache_read() / 2),
        cache_write: Some(prices.effective_cache_write() / 2),
        cache_write_hour: Some(prices.effective_cache_write_hour() / 2),
    }
}

/// Pricings as vendors make them: every tier costs at least as much as
/// what lies below it, and the off-peak window (anywhere in the day)
/// less than the base.
fn rising_pricing() -> impl Strategy<Value = Pricing> {
    let steps = proptest::collection::vec((1..MAX_COUNT, any::<[u8; 5]>()), 0..4);
    (prices(), steps, 0..MINUTES_PER_DAY, 0..MINUTES_PER_DAY).prop_map(
        |(base, steps, start, end)| {
            let mut tiers = Vec::new();
            let (mut threshold, mut prices) = (0u64, base);
            for (gap, more) in steps {
                threshold += gap;
                prices = dearer(prices, more.map(u64::from));
                tiers.push(PriceTier {
                    above_input_tokens: threshold,
                    prices,
                });
            }
            Pricing {
                base,
                tiers,
                off_peak: vec![PriceWindow {
                    start_minute: start,
                    end_minute: end,
                    prices: cheaper(base),
                }],
            }
        },
    )
}

fn any_time() -> impl Strategy<Value = SystemTime> {
    (any::<bool>(), 0..(1u64 << 40)).prop_map(|(before, nanos)| {
        let offset = Duration::from_nanos(nanos) * 1000;
        if before {
            UNIX_EPOCH - offset
        } else {
            UNIX_EPOCH + offset
        }
    })
}

proptest! {
    #[test]
    fn more_tokens_of_any_kind_never_cost_less(
        pricing in rising_pricing(),
        counts in counts(),
        kind in 0..5usize,
        more in 1..MAX_COUNT,
        at in any_time(),
    ) {
        let before = cost(&pricing, &counts.usage(), at);
        let after = cost(&pricing, &counts.with(kind, more).usage(), at);
        prop_assert!(after >= before, "{before} then {after}");
    }

    #[test]
    fn any_pricing_and_usage_give_a_cost(
        base in prices(),
        tiers in proptest::collection::vec((any::<u64>(), prices()), 0..4),
        windows in proptest::collection::vec((any::<u16>(), any::<u16>(), prices()), 0..4),
        usage in any::<[u64; 5]>(),
        at in any_time(),
    ) {
        let pricing = Pricing {
            base,
            tiers: tiers
                .into_iter()
                .map(|(above_input_tokens, prices)| PriceTier { above_input_tokens, prices })
                .collect(),
            off_peak: windows
                .into_iter()
                .map(|(start_minute, end_minute, prices)| PriceWindow { start_minute, end_minute, prices })
                .collect(),
        };
        let [input, output, cache_read, cache_write, cache_write_hour] = usage;
        let usage = TokenUsage { input, output, cache_read, cache_write, cache_write_hour };
        let _ = pricing.validate();
        prop_assert!(cost(&pricing, &usage, at) >= Decimal::ZERO);
    }
}
