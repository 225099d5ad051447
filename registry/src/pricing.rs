//! What a model costs, as vendors charge it: a base price set, tiers that
//! replace it for long prompts, and daily off-peak windows that replace it
//! at certain hours, with the exact cost of one request at whichever set
//! applies.

use rust_decimal::Decimal;
use std::time::{SystemTime, UNIX_EPOCH};

/// Minutes in a day: every minute of a [`PriceWindow`] is below this.
pub const MINUTES_PER_DAY: u16 = 24 * 60;

/// One set of prices, in micro-dollars (1e-6 USD) per million tokens.
///
/// A cache price left `None` is the vendor's way of saying it charges the
/// normal rate: reads and writes fall back to `input`, and one-hour writes
/// to the default write price (so to `input` when both are `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Prices {
    /// Input tokens that touch no cache.
    pub input: u64,
    pub output: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read: Option<u64>,
    /// Input tokens written to the prompt cache with the vendor's default
    /// (short) time to live.
    pub cache_write: Option<u64>,
    /// Input tokens written to the prompt cache with the long (one-hour)
    /// time to live.
    pub cache_write_hour: Option<u64>,
}

impl Prices {
    /// Input and output prices, with no cache price of their own.
    pub const fn new(input: u64, output: u64) -> Self {
        Self {
            input,
            output,
            cache_read: None,
            cache_write: None,
            cache_write_hour: None,
        }
    }

    /// The price of a cache read: its own, else the input price.
    pub fn effective_cache_read(&self) -> u64 {
        self.cache_read.unwrap_or(self.input)
    }

    /// The price of a default cache write: its own, else the input price.
    pub fn effective_cache_write(&self) -> u64 {
        self.cache_write.unwrap_or(self.input)
    }

    /// The price of a one-hour cache write: its own, else the default
    /// write price, else the input price.
    pub fn effective_cache_write_hour(&self) -> u64 {
        self.cache_write_hour
            .unwrap_or_else(|| self.effective_cache_write())
    }

    /// The exact cost in dollars of `usage` at these prices, whatever the
    /// prompt's length or the time of day.
    ///
    /// Where a vendor's counts disagree, the specific ones are billed in
    /// full and the remainder shrinks: cache tokens beyond `input` leave no
    /// uncached input, one-hour writes beyond `cache_write` leave no
    /// default ones. A bill beyond Decimal's range (about 7.9e16 dollars)
    /// is [`Decimal::MAX`].
    pub fn cost(&self, usage: &TokenUsage) -> Decimal {
        let writes = usage.writes();
        let hour_writes = usage.cache_write_hour;
        let uncached = usage.input.saturating_sub(usage.cached());
        let bills = [
            (uncached, self.input),
            (usage.cache_read, self.effective_cache_read()),
            (writes - hour_writes, self.effective_cache_write()),
            (hour_writes, self.effective_cache_write_hour()),
            (usage.output, self.output),
        ];
        // A u64 count times a u64 price fits in u128; only the sum can
        // overflow, and only for absurd inputs.
        let micro_dollar_tokens = bills.iter().fold(0u128, |sum, &(tokens, price)| {
            sum.saturating_add(u128::from(tokens) * u128::from(price))
        });
        // Micro-dollars per million tokens: divide by 1e6 (micro) and 1e6
        // (per million) = 1e12, as a decimal scale.
        i128::try_from(micro_dollar_tokens)
            .ok()
            .and_then(|mantissa| Decimal::try_from_i128_with_scale(mantissa, 12).ok())
            .map_or(Decimal::MAX, |cost| cost.normalize())
    }
}

/// Prices that replace the base ones for a request whose prompt (input
/// tokens, cached ones included) is above a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PriceTier {
    /// The tier applies to prompts of strictly more input tokens than this.
    pub above_input_tokens: u64,
    pub prices: Prices,
}

/// Prices that replace the base ones for requests made inside a daily
/// window, in minutes after midnight UTC.
///
/// The start minute is inside the window and the end minute is not; a
/// window whose start is after its end runs over midnight (`16:30–00:30`
/// is `990..1440` and `0..30`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PriceWindow {
    pub start_minute: u16,
    pub end_minute: u16,
    pub prices: Prices,
}

impl PriceWindow {
    /// Whether `minute` (after midnight UTC) falls inside the window. A
    /// window that starts where it ends contains no minute.
    pub fn contains(&self, minute: u16) -> bool {
        let (start, end) = (self.start_minute, self.end_minute);
        if start <= end {
            start <= minute && minute < end
        } else {
            minute >= start || minute < end
        }
    }
}

/// Everything a model costs: base prices, prompt-length tiers and
/// off-peak windows.
///
/// ```
/// use llmhost_registry::{Prices, Pricing, PriceTier, TokenUsage, cost};
/// use std::time::SystemTime;
///
/// // $2 / $8 per million tokens; prompts above 200K tokens cost double.
/// let pricing = Pricing {
///     tiers: vec![PriceTier {
///         above_input_tokens: 200_000,
///         prices: Prices::new(4_000_000, 16_000_000),
///     }],
///     ..Pricing::flat(Prices::new(2_000_000, 8_000_000))
/// };
/// pricing.validate().expect("sane");
/// let long = TokenUsage { input: 250_000, output: 1_000, ..TokenUsage::default() };
/// assert_eq!(cost(&pricing, &long, SystemTime::now()).to_string(), "1.016");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pricing {
    /// The prices when no tier and no window applies.
    pub base: Prices,
    /// By strictly ascending threshold; the highest one a prompt is above
    /// wins.
    pub tiers: Vec<PriceTier>,
    /// Daily windows; the first one containing the time of a request wins,
    /// unless a tier applies.
    pub off_peak: Vec<PriceWindow>,
}

impl Pricing {
    /// One price set, whatever the prompt's length or the time of day.
    pub fn flat(base: Prices) -> Self {
        Self {
            base,
            tiers: Vec::new(),
            off_peak: Vec::new(),
        }
    }

    /// A price per million tokens in dollars, as a decimal.
    pub fn per_million_usd(micros: u64) -> Decimal {
        Decimal::from(micros) / Decimal::from(1_000_000u64)
    }

    /// The prices of a request whose prompt has `input_tokens` (cached
    /// ones included) made at `at`: the tier with the highest threshold
    /// the prompt is strictly above, else the first off-peak window holding
    /// `at`'s minute of the day in UTC, else the base prices.
    pub fn prices_for(&self, input_tokens: u64, at: SystemTime) -> &Prices {
        let tier = self
            .tiers
            .iter()
            .filter(|tier| input_tokens > tier.above_input_tokens)
            .max_by_key(|tier| tier.above_input_tokens);
        if let Some(tier) = tier {
            return &tier.prices;
        }
        let minute = minute_of_day_utc(at);
        self.off_peak
            .iter()
            .find(|window| window.contains(minute))
            .map_or(&self.base, |window| &window.prices)
    }

    /// Checks that the pricing means what it says: tier thresholds rise
    /// strictly, and every off-peak window has minutes inside a day and a
    /// start apart from its end. Whoever builds a catalogue entry from
    /// outside data calls this first.
    pub fn validate(&self) -> Result<(), PricingError> {
        validate_tiers(&self.tiers)?;
        validate_windows(&self.off_peak)
    }
}

/// Why a [`Pricing`] was refused. Indices count from 0; messages count
/// from 1, as a reader does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    #[error(
        "price tier #{} applies above {threshold} input tokens, not above tier #{}'s {previous}: thresholds must rise strictly",
        index + 1,
        index
    )]
    TiersNotAscending {
        index: usize,
        threshold: u64,
        previous: u64,
    },
    #[error(
        "off-peak window #{}: minute {minute} is not a time of day (0 to 1439 after midnight UTC)",
        index + 1
    )]
    MinuteOutOfDay { index: usize, minute: u16 },
    #[error(
        "off-peak window #{} starts and ends at minute {minute}, so it holds no time",
        index + 1
    )]
    EmptyWindow { index: usize, minute: u16 },
}

pub(crate) fn validate_tiers(tiers: &[PriceTier]) -> Result<(), PricingError> {
    for (index, pair) in tiers.windows(2).enumerate() {
        if let [previous, tier] = pair
            && tier.above_input_tokens <= previous.above_input_tokens
        {
            return Err(PricingError::TiersNotAscending {
                index: index + 1,
                threshold: tier.above_input_tokens,
                previous: previous.above_input_tokens,
            });
        }
    }
    Ok(())
}

pub(crate) fn validate_windows(windows: &[PriceWindow]) -> Result<(), PricingError> {
    for (index, window) in windows.iter().enumerate() {
        for minute in [window.start_minute, window.end_minute] {
            if minute >= MINUTES_PER_DAY {
                return Err(PricingError::MinuteOutOfDay { index, minute });
            }
        }
        if window.start_minute == window.end_minute {
            return Err(PricingError::EmptyWindow {
                index,
                minute: window.start_minute,
            });
        }
    }
    Ok(())
}

/// The minute of the day in UTC of `at`, from the Unix time (UTC has no
/// daylight saving; leap seconds do not exist in Unix time).
fn minute_of_day_utc(at: SystemTime) -> u16 {
    const SECONDS_PER_DAY: i128 = 86_400;
    let seconds = match at.duration_since(UNIX_EPOCH) {
        Ok(after) => i128::from(after.as_secs()),
        // Round down, towards the past, as after the epoch.
        Err(before) => {
            let before = before.duration();
            -i128::from(before.as_secs()) - i128::from(before.subsec_nanos() > 0)
        }
    };
    let minute = seconds.rem_euclid(SECONDS_PER_DAY) / 60;
    u16::try_from(minute).unwrap_or(0)
}

/// Token counts of one request, as billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenUsage {
    /// All input tokens, cached ones included.
    pub input: u64,
    pub output: u64,
    /// Of `input`, tokens read from the prompt cache.
    pub cache_read: u64,
    /// Of `input`, tokens written to the prompt cache (with either time to
    /// live).
    pub cache_write: u64,
    /// Of `cache_write`, tokens written with the long (one-hour) time to
    /// live.
    pub cache_write_hour: u64,
}

impl TokenUsage {
    /// The prompt's length for choosing a tier: `input`, or the cache
    /// counts where a vendor reports more of them than input tokens.
    pub fn prompt_tokens(&self) -> u64 {
        self.input.max(self.cached())
    }

    fn writes(&self) -> u64 {
        self.cache_write.max(self.cache_write_hour)
    }

    fn cached(&self) -> u64 {
        self.cache_read.saturating_add(self.writes())
    }
}

/// The exact cost in dollars of `usage` at the prices that apply to its
/// prompt's length and to the time `at` (see [`Pricing::prices_for`] and
/// [`Prices::cost`]).
pub fn cost(pricing: &Pricing, usage: &TokenUsage, at: SystemTime) -> Decimal {
    pricing.prices_for(usage.prompt_tokens(), at).cost(usage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;
    use std::time::Duration;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).expect("decimal")
    }

    /// `hh:mm` UTC on 2026-03-02 (a Monday; the date must not matter).
    fn utc(hh: u64, mm: u64) -> SystemTime {
        const MIDNIGHT: u64 = 1_772_409_600;
        UNIX_EPOCH + Duration::from_secs(MIDNIGHT + hh * 3600 + mm * 60)
    }

    fn usage(input: u64, output: u64) -> TokenUsage {
        TokenUsage {
            input,
            output,
            ..TokenUsage::default()
        }
    }

    /// GPT-6-like: $2.50 / $15, cache reads $0.25; above 272K input
    /// tokens, 2x input and cache, 1.5x output.
    fn long_context() -> Pricing {
        Pricing {
            tiers: vec![PriceTier {
                above_input_tokens: 272_000,
                prices: Prices {
                    cache_read: Some(500_000),
                    ..Prices::new(5_000_000, 22_500_000)
                },
            }],
            ..Pricing::flat(Prices {
                cache_read: Some(250_000),
                ..Prices::new(2_500_000, 15_000_000)
            })
        }
    }

    /// DeepSeek-like: $0.27 / $1.10, half price 16:30–00:30 UTC.
    fn off_peak() -> Pricing {
        Pricing {
            off_peak: vec![PriceWindow {
                start_minute: 16 * 60 + 30,
                end_minute: 30,
                prices: Prices::new(135_000, 550_000),
            }],
            ..Pricing::flat(Prices::new(270_000, 1_100_000))
        }
    }

    #[test]
    fn flat_cost_is_exact() {
        let pricing = Pricing::flat(Prices {
            cache_read: Some(1_250_000),
            ..Prices::new(2_500_000, 10_000_000)
        });
        // 1234 * 2.5e-6 + 567 * 10e-6 = 0.003085 + 0.00567
        assert_eq!(
            cost(&pricing, &usage(1234, 567), utc(12, 0)),
            dec("0.008755")
        );
        let cached = TokenUsage {
            cache_read: 400,
            ..usage(1000, 0)
        };
        // 600 * 2.5e-6 + 400 * 1.25e-6 = 0.0015 + 0.0005
        assert_eq!(cost(&pricing, &cached, utc(12, 0)), dec("0.002"));
    }

    #[test]
    fn tiny_prices_keep_every_digit() {
        // $0.005 per million tokens, one token.
        let pricing = Pricing::flat(Prices::new(5_000, 0));
        assert_eq!(cost(&pricing, &usage(1, 0), utc(0, 0)), dec("0.000000005"));
    }

    #[test]
    fn absurd_bills_saturate_instead_of_panicking() {
        let prices = Prices {
            cache_read: Some(u64::MAX),
            cache_write: Some(u64::MAX),
            cache_write_hour: Some(u64::MAX),
            ..Prices::new(u64::MAX, u64::MAX)
        };
        let huge = TokenUsage {
            input: u64::MAX,
            output: u64::MAX,
            cache_read: u64::MAX,
            cache_write: u64::MAX,
            cache_write_hour: u64::MAX,
        };
        assert_eq!(prices.cost(&huge), Decimal::MAX);
        // The largest counts the contract reports, at a million dollars per
        // million tokens, are still exact.
        let large = usage(u64::from(u32::MAX), u64::from(u32::MAX));
        let dear = Prices::new(1_000_000_000_000, 1_000_000_000_000);
        assert_eq!(dear.cost(&large), dec("8589934590"));
    }

    #[test]
    fn cache_prices_fall_back_to_input_then_to_the_default_write() {
        let writes = TokenUsage {
            cache_write: 300,
            cache_write_hour: 100,
            ..usage(1000, 0)
        };
        // Nothing of its own: everything at $1.
        let plain = Prices::new(1_000_000, 0);
        assert_eq!(plain.cost(&writes), dec("0.001"));
        // A default write price only: the hour ones pay it too.
        // 700 * 1e-6 + 300 * 1.25e-6
        let short_only = Prices {
            cache_write: Some(1_250_000),
            ..plain
        };
        assert_eq!(short_only.effective_cache_write_hour(), 1_250_000);
        assert_eq!(short_only.cost(&writes), dec("0.001075"));
        // Both: 700 * 1e-6 + 200 * 1.25e-6 + 100 * 2e-6
        let both = Prices {
            cache_write_hour: Some(2_000_000),
            ..short_only
        };
        assert_eq!(both.cost(&writes), dec("0.00115"));
        // An hour price alone leaves default writes at the input price:
        // 700 * 1e-6 + 200 * 1e-6 + 100 * 2e-6
        let hour_only = Prices {
            cache_write_hour: Some(2_000_000),
            ..plain
        };
        assert_eq!(hour_only.effective_cache_write(), 1_000_000);
        assert_eq!(hour_only.cost(&writes), dec("0.0011"));
        assert_eq!(plain.effective_cache_read(), 1_000_000);
    }

    #[test]
    fn inconsistent_counts_bill_the_specific_ones() {
        let prices = Prices {
            cache_read: Some(100_000),
            cache_write: Some(1_250_000),
            cache_write_hour: Some(2_000_000),
            ..Prices::new(1_000_000, 0)
        };
        // More one-hour writes than writes: 50 hour writes, no default ones,
        // no uncached input.
        let hours = TokenUsage {
            cache_write: 10,
            cache_write_hour: 50,
            ..usage(40, 0)
        };
        assert_eq!(prices.cost(&hours), dec("0.0001"));
        assert_eq!(hours.prompt_tokens(), 50);
        // More reads than input: the reads alone.
        let reads = TokenUsage {
            cache_read: 1000,
            ..usage(10, 0)
        };
        assert_eq!(prices.cost(&reads), dec("0.0001"));
    }

    #[test]
    fn a_prompt_above_the_threshold_pays_the_tier() {
        let pricing = long_context();
        let noon = utc(12, 0);
        // 300_000 * 5e-6 + 1000 * 22.5e-6 = 1.5 + 0.0225
        assert_eq!(cost(&pricing, &usage(300_000, 1000), noon), dec("1.5225"));
        // The tier's cache price too: 200_000 * 5e-6 + 100_000 * 0.5e-6
        let cached = TokenUsage {
            cache_read: 100_000,
            ..usage(300_000, 0)
        };
        assert_eq!(cost(&pricing, &cached, noon), dec("1.05"));
        // Exactly at the threshold is not above it: 272_000 * 2.5e-6
        assert_eq!(cost(&pricing, &usage(272_000, 0), noon), dec("0.68"));
        // One more token is: 272_001 * 5e-6
        assert_eq!(cost(&pricing, &usage(272_001, 0), noon), dec("1.360005"));
    }

    #[test]
    fn cached_tokens_count_towards_the_threshold() {
        let pricing = long_context();
        let mostly_cached = TokenUsage {
            cache_read: 270_000,
            ..usage(280_000, 0)
        };
        // 10_000 * 5e-6 + 270_000 * 0.5e-6 = 0.05 + 0.135
        assert_eq!(cost(&pricing, &mostly_cached, utc(1, 0)), dec("0.185"));
    }

    #[test]
    fn the_highest_threshold_crossed_wins_in_any_order() {
        let tier = |above, input| PriceTier {
            above_input_tokens: above,
            prices: Prices::new(input, 0),
        };
        let mut pricing = Pricing {
            tiers: vec![tier(100, 2), tier(1000, 3), tier(10_000, 4)],
            ..Pricing::flat(Prices::new(1, 0))
        };
        let noon = utc(12, 0);
        assert_eq!(pricing.prices_for(100, noon).input, 1);
        assert_eq!(pricing.prices_for(101, noon).input, 2);
        assert_eq!(pricing.prices_for(1000, noon).input, 2);
        assert_eq!(pricing.prices_for(1001, noon).input, 3);
        assert_eq!(pricing.prices_for(u64::MAX, noon).input, 4);
        pricing.tiers.reverse();
        assert_eq!(pricing.prices_for(1001, noon).input, 3);
    }

    #[test]
    fn off_peak_window_edges_and_midnight() {
        let pricing = off_peak();
        let half = dec("0.000135");
        let full = dec("0.00027");
        let at = |hh, mm| cost(&pricing, &usage(1000, 0), utc(hh, mm));
        assert_eq!(at(16, 29), full, "just before the start");
        assert_eq!(at(16, 30), half, "the start is inside");
        assert_eq!(at(23, 59), half);
        assert_eq!(at(0, 0), half, "past midnight");
        assert_eq!(at(0, 29), half);
        assert_eq!(at(0, 30), full, "the end is outside");
        assert_eq!(at(12, 0), full);
        // Seconds do not move a request out of its minute.
        let late = utc(0, 29) + Duration::from_millis(59_999);
        assert_eq!(cost(&pricing, &usage(1000, 0), late), half);
    }

    #[test]
    fn a_window_inside_one_day() {
        let window = PriceWindow {
            start_minute: 60,
            end_minute: 120,
            prices: Prices::default(),
        };
        assert!(!window.contains(59));
        assert!(window.contains(60));
        assert!(window.contains(119));
        assert!(!window.contains(120));
        assert!(!window.contains(0));
        let empty = PriceWindow {
            end_minute: 60,
            ..window
        };
        assert!(!(0..MINUTES_PER_DAY).any(|m| empty.contains(m)));
    }

    #[test]
    fn the_first_window_holding_the_time_wins() {
        let window = |start, end, input| PriceWindow {
            start_minute: start,
            end_minute: end,
            prices: Prices::new(input, 0),
        };
        let pricing = Pricing {
            off_peak: vec![window(0, 120, 2), window(60, 180, 3)],
            ..Pricing::flat(Prices::new(1, 0))
        };
        assert_eq!(pricing.prices_for(1, utc(1, 30)).input, 2);
        assert_eq!(pricing.prices_for(1, utc(2, 30)).input, 3);
        assert_eq!(pricing.prices_for(1, utc(3, 0)).input, 1);
    }

    #[test]
    fn a_tier_wins_over_a_window() {
        let mut pricing = off_peak();
        pricing.tiers.push(PriceTier {
            above_input_tokens: 200_000,
            prices: Prices::new(540_000, 2_200_000),
        });
        // Off-peak, long prompt: the tier, 300_000 * 0.54e-6.
        assert_eq!(cost(&pricing, &usage(300_000, 0), utc(17, 0)), dec("0.162"));
        // Off-peak, short prompt: the window, 1000 * 0.135e-6.
        assert_eq!(cost(&pricing, &usage(1000, 0), utc(17, 0)), dec("0.000135"));
    }

    #[test]
    fn times_before_the_epoch_have_a_minute_too() {
        let before = UNIX_EPOCH - Duration::from_secs(60);
        assert_eq!(minute_of_day_utc(before), MINUTES_PER_DAY - 1);
        let just_before = UNIX_EPOCH - Duration::from_nanos(1);
        assert_eq!(minute_of_day_utc(just_before), MINUTES_PER_DAY - 1);
        assert_eq!(minute_of_day_utc(UNIX_EPOCH), 0);
        assert_eq!(minute_of_day_utc(utc(16, 30)), 990);
    }

    #[test]
    fn validation_refuses_what_cannot_be_meant() {
        assert_eq!(long_context().validate(), Ok(()));
        assert_eq!(off_peak().validate(), Ok(()));
        assert_eq!(Pricing::default().validate(), Ok(()));

        let tier = |above| PriceTier {
            above_input_tokens: above,
            prices: Prices::default(),
        };
        let unordered = Pricing {
            tiers: vec![tier(100), tier(300), tier(200)],
            ..Pricing::default()
        };
        let err = unordered.validate().expect_err("descending");
        assert_eq!(
            err,
            PricingError::TiersNotAscending {
                index: 2,
                threshold: 200,
                previous: 300
            }
        );
        assert_eq!(
            err.to_string(),
            "price tier #3 applies above 200 input tokens, not above tier #2's 300: thresholds must rise strictly"
        );
        let repeated = Pricing {
            tiers: vec![tier(100), tier(100)],
            ..Pricing::default()
        };
        assert!(matches!(
            repeated.validate(),
            Err(PricingError::TiersNotAscending { index: 1, .. })
        ));

        let window = |start, end| PriceWindow {
            start_minute: start,
            end_minute: end,
            prices: Prices::default(),
        };
        let late = Pricing {
            off_peak: vec![window(0, 60), window(1380, MINUTES_PER_DAY)],
            ..Pricing::default()
        };
        assert_eq!(
            late.validate(),
            Err(PricingError::MinuteOutOfDay {
                index: 1,
                minute: 1440
            })
        );
        let empty = Pricing {
            off_peak: vec![window(600, 600)],
            ..Pricing::default()
        };
        assert_eq!(
            empty.validate(),
            Err(PricingError::EmptyWindow {
                index: 0,
                minute: 600
            })
        );
    }
}
