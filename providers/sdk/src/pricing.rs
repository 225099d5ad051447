//! Building the contract's [`Pricing`]: base prices, tiers by prompt
//! length and off-peak windows, all in exact micro-dollars per million
//! tokens.
//!
//! ```
//! use llmhost_provider_sdk::pricing::{self, prices, tier, utc, window};
//! use llmhost_provider_sdk::types::Pricing;
//! use llmhost_provider_sdk::usd;
//!
//! let base = prices(usd(2, 0), usd(10, 0), Some(usd(0, 200_000)), None);
//! let long = pricing::scaled(&base, 2, 1);
//! let night = pricing::scaled(&base, 1, 2);
//! let pricing = Pricing {
//!     base,
//!     tiers: vec![tier(272_000, long)],
//!     off_peak: vec![window(utc(16, 30), utc(0, 30), night)],
//! };
//! assert_eq!(pricing::applicable(&pricing, 300_000, utc(12, 0)).input, usd(4, 0));
//! assert_eq!(pricing::applicable(&pricing, 1_000, utc(23, 0)).input, usd(1, 0));
//! assert_eq!(pricing::applicable(&pricing, 1_000, utc(12, 0)).input, usd(2, 0));
//! ```

use crate::types::{PriceTier, PriceWindow, Prices, Pricing};

/// Minutes in a day: window minutes are below this.
pub const MINUTES_PER_DAY: u16 = 24 * 60;

/// Prices per million tokens for input, output, cache reads and cache
/// writes (with the vendor's default time to live); no separate price for
/// one-hour cache writes.
pub const fn prices(
    input: u64,
    output: u64,
    cache_read: Option<u64>,
    cache_write: Option<u64>,
) -> Prices {
    Prices {
        input,
        output,
        cache_read,
        cache_write,
        cache_write_hour: None,
    }
}

/// One set of prices for every request.
pub fn flat(base: Prices) -> Pricing {
    Pricing {
        base,
        tiers: Vec::new(),
        off_peak: Vec::new(),
    }
}

/// Prices for requests whose prompt (cached tokens included) is above
/// `above_input_tokens`: a prompt of exactly that many tokens still pays
/// the lower prices.
pub const fn tier(above_input_tokens: u32, prices: Prices) -> PriceTier {
    PriceTier {
        above_input_tokens,
        prices,
    }
}

/// Prices for requests made from `start_minute` (included) to
/// `end_minute` (excluded), in minutes after midnight UTC (see [`utc`]); a
/// window whose start is after its end runs over midnight.
pub const fn window(start_minute: u16, end_minute: u16, prices: Prices) -> PriceWindow {
    PriceWindow {
        start_minute,
        end_minute,
        prices,
    }
}

/// The minute of the day at `hour:minute` UTC: `utc(16, 30)` is 990.
pub const fn utc(hour: u16, minute: u16) -> u16 {
    hour * 60 + minute
}

/// Every price of `prices` times `numerator / denominator`, rounded to
/// the nearest micro-dollar (halves up). Vendors state their tiers and
/// discounts as such ratios (2x, 1.5x, half), which keep published prices
/// exact.
pub fn scaled(prices: &Prices, numerator: u64, denominator: u64) -> Prices {
    let scale = |price: u64| scale(price, numerator, denominator);
    Prices {
        input: scale(prices.input),
        output: scale(prices.output),
        cache_read: prices.cache_read.map(scale),
        cache_write: prices.cache_write.map(scale),
        cache_write_hour: prices.cache_write_hour.map(scale),
    }
}

/// One price times `numerator / denominator`, rounded half up; a zero
/// denominator gives zero rather than a panic.
pub fn scale(price: u64, numerator: u64, denominator: u64) -> u64 {
    if denominator == 0 {
        return 0;
    }
    let product = u128::from(price) * u128::from(numerator);
    let denominator = u128::from(denominator);
    let rounded = (product + denominator / 2) / denominator;
    u64::try_from(rounded).unwrap_or(u64::MAX)
}

/// The prices that apply to a request with `input_tokens` of prompt made
/// at `minute` after midnight UTC, as the contract defines them: the
/// highest tier the prompt is above wins, then an off-peak window the
/// minute falls in, then the base prices.
pub fn applicable(pricing: &Pricing, input_tokens: u32, minute: u16) -> &Prices {
    if let Some(tier) = pricing
        .tiers
        .iter()
        .filter(|tier| input_tokens > tier.above_input_tokens)
        .max_by_key(|tier| tier.above_input_tokens)
    {
        return &tier.prices;
    }
    let minute = minute % MINUTES_PER_DAY;
    pricing
        .off_peak
        .iter()
        .find(|w| in_window(w, minute))
        .map_or(&pricing.base, |w| &w.prices)
}

fn in_window(window: &PriceWindow, minute: u16) -> bool {
    if window.start_minute <= window.end_minute {
        (window.start_minute..window.end_minute).contains(&minute)
    } else {
        minute >= window.start_minute || minute < window.end_minute
    }
}

/// Why a [`Pricing`] is not what the contract allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PricingError {
    /// Tiers must come by strictly ascending threshold.
    TiersNotAscending {
        /// The threshold that is not above the one before it.
        above_input_tokens: u32,
    },
    /// A window minute is not below [`MINUTES_PER_DAY`].
    MinuteOutOfRange {
        /// The minute given.
        minute: u16,
    },
    /// A window that starts where it ends covers nothing.
    EmptyWindow {
        /// Its start (and end) minute.
        minute: u16,
    },
}

impl std::fmt::Display for PricingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TiersNotAscending { above_input_tokens } => write!(
                f,
                "the tier above {above_input_tokens} input tokens is not above the tier before it"
            ),
            Self::MinuteOutOfRange { minute } => {
                write!(f, "minute {minute} is not within a day (0 to 1439)")
            }
            Self::EmptyWindow { minute } => {
                write!(
                    f,
                    "the window starting and ending at minute {minute} is empty"
                )
            }
        }
    }
}

impl std::error::Error for PricingError {}

/// Checks that tiers ascend and windows are within a day and not empty,
/// for a catalogue's tests.
pub fn check(pricing: &Pricing) -> Result<(), PricingError> {
    for pair in pricing.tiers.windows(2) {
        if pair[1].above_input_tokens <= pair[0].above_input_tokens {
            return Err(PricingError::TiersNotAscending {
                above_input_tokens: pair[1].above_input_tokens,
            });
        }
    }
    for w in &pricing.off_peak {
        for minute in [w.start_minute, w.end_minute] {
            if minute >= MINUTES_PER_DAY {
                return Err(PricingError::MinuteOutOfRange { minute });
            }
        }
        if w.start_minute == w.end_minute {
            return Err(PricingError::EmptyWindow {
                minute: w.start_minute,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usd;

    fn base() -> Prices {
        prices(usd(2, 0), usd(10, 0), Some(usd(0, 200_000)), None)
    }

    #[test]
    fn scaling_keeps_prices_exact() {
        let doubled = scaled(&base(), 2, 1);
        assert_eq!(
            (doubled.input, doubled.output, doubled.cache_read),
            (4_000_000, 20_000_000, Some(400_000))
        );
        assert_eq!(scale(usd(0, 500_000), 3, 2), 750_000);
        assert_eq!(scale(usd(0, 6_000), 1, 2), 3_000);
        assert_eq!(scale(3, 1, 2), 2, "halves round up");
        assert_eq!(scale(7, 1, 0), 0);
        assert_eq!(scale(u64::MAX, 2, 1), u64::MAX);
        assert_eq!(scaled(&base(), 1, 2).cache_write, None);
    }

    #[test]
    fn a_tier_starts_above_its_threshold() {
        let pricing = Pricing {
            base: base(),
            tiers: vec![
                tier(128_000, scaled(&base(), 2, 1)),
                tier(200_000, scaled(&base(), 3, 1)),
            ],
            off_peak: vec![window(utc(0, 0), utc(6, 0), scaled(&base(), 1, 2))],
        };
        assert_eq!(check(&pricing), Ok(()));
        assert_eq!(applicable(&pricing, 128_000, utc(12, 0)).input, usd(2, 0));
        assert_eq!(applicable(&pricing, 128_001, utc(12, 0)).input, usd(4, 0));
        assert_eq!(applicable(&pricing, 200_001, utc(12, 0)).input, usd(6, 0));
        assert_eq!(
            applicable(&pricing, 200_001, utc(1, 0)).input,
            usd(6, 0),
            "a tier wins over a window"
        );
        assert_eq!(applicable(&pricing, 10, utc(1, 0)).input, usd(1, 0));
    }

    #[test]
    fn windows_over_midnight_include_their_start_not_their_end() {
        let pricing = Pricing {
            base: base(),
            tiers: Vec::new(),
            off_peak: vec![window(utc(16, 30), utc(0, 30), scaled(&base(), 1, 2))],
        };
        let input = |minute| applicable(&pricing, 10, minute).input;
        assert_eq!(input(utc(16, 29)), usd(2, 0));
        assert_eq!(input(utc(16, 30)), usd(1, 0));
        assert_eq!(input(utc(23, 59)), usd(1, 0));
        assert_eq!(input(utc(0, 0)), usd(1, 0));
        assert_eq!(input(utc(0, 29)), usd(1, 0));
        assert_eq!(input(utc(0, 30)), usd(2, 0));
        assert_eq!(input(MINUTES_PER_DAY + utc(17, 0)), usd(1, 0));
        assert_eq!(flat(base()).base, base());
    }

    #[test]
    fn check_names_what_is_wrong() {
        let mut pricing = flat(base());
        pricing.tiers = vec![tier(200_000, base()), tier(100_000, base())];
        assert_eq!(
            check(&pricing),
            Err(PricingError::TiersNotAscending {
                above_input_tokens: 100_000
            })
        );
        pricing.tiers.clear();
        pricing.off_peak = vec![window(utc(23, 0), MINUTES_PER_DAY, base())];
        assert_eq!(
            check(&pricing),
            Err(PricingError::MinuteOutOfRange { minute: 1440 })
        );
        pricing.off_peak = vec![window(60, 60, base())];
        assert!(check(&pricing).unwrap_err().to_string().contains("empty"));
    }
}
