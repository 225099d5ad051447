//! The store's UTC calendar: timestamps in the format every row's times
//! have (`2026-11-02T09:30:00.000Z`, RFC 3339 with milliseconds, as
//! SQLite's `strftime('%Y-%m-%dT%H:%M:%fZ')` writes them) and the windows
//! budgets apply to. Such timestamps sort as text, so windows are ranges
//! of the `created_at` indexes.

use crate::error::Error;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The window a budget applies to: the current UTC calendar day, ISO week
/// (from Monday 00:00), calendar month, or all time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BudgetPeriod {
    Day,
    Week,
    Month,
    Total,
}

impl BudgetPeriod {
    /// Every period, in the order the CLI lists them.
    pub const ALL: [BudgetPeriod; 4] = [Self::Day, Self::Week, Self::Month, Self::Total];

    /// The name stored and printed: `day`, `week`, `month`, `total`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
            Self::Total => "total",
        }
    }

    /// The UTC start of the window holding `now`, in the format of the
    /// store's timestamps (`2026-11-02T00:00:00.000Z`), so that spend since
    /// it is `created_at >= start`; `None` for [`BudgetPeriod::Total`].
    pub fn window_start(&self, now: SystemTime) -> Option<String> {
        let days = unix_millis(now).div_euclid(MILLIS_PER_DAY);
        let start = match self {
            Self::Day => days,
            // 1970-01-01 was a Thursday, three days after a Monday.
            Self::Week => days - (days + 3).rem_euclid(7),
            Self::Month => {
                let (year, month, _) = civil_from_days(days);
                days_from_civil(year, month, 1)
            }
            Self::Total => return None,
        };
        Some(format_millis(start * MILLIS_PER_DAY))
    }
}

impl fmt::Display for BudgetPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BudgetPeriod {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == text)
            .ok_or_else(|| Error::Validation {
                field: "budget_period",
                message: format!("`{text}` is not one of day, week, month, total"),
            })
    }
}

const MILLIS_PER_DAY: i128 = 86_400_000;

/// Milliseconds since the Unix epoch, rounded down (also before 1970).
fn unix_millis(time: SystemTime) -> i128 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_millis() as i128,
        Err(before) => {
            let before = before.duration();
            let partial = before.as_nanos() % 1_000_000 != 0;
            -(before.as_millis() as i128) - i128::from(partial)
        }
    }
}

/// `time` as the store writes times: UTC RFC 3339 with milliseconds, like
/// SQLite's `strftime('%Y-%m-%dT%H:%M:%fZ', 'now')`.
pub(crate) fn utc_timestamp(time: SystemTime) -> String {
    format_millis(unix_millis(time))
}

/// `text`, an RFC 3339 UTC time (`2026-11-02T09:30:00Z`, with or without
/// a fraction, `Z` or `+00:00`), in the store's format; `None` if it is
/// not one.
pub(crate) fn parse_utc_timestamp(text: &str) -> Option<String> {
    let text = text.trim();
    let body = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix('z'))
        .or_else(|| text.strip_suffix("+00:00"))?;
    let (date, time) = body.split_once(['T', 't', ' '])?;
    let mut date = date.split('-');
    let year: i128 = date.next().filter(|y| y.len() == 4)?.parse().ok()?;
    let month: u32 = date.next().filter(|m| m.len() == 2)?.parse().ok()?;
    let day: u32 = date.next().filter(|d| d.len() == 2)?.parse().ok()?;
    if date.next().is_some() || !(1..=12).contains(&month) || day == 0 {
        return None;
    }
    let (clock, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut clock = clock.split(':');
    let mut part = |max: i128| -> Option<i128> {
        let p = clock.next().filter(|p| p.len() == 2)?.parse().ok()?;
        (0..=max).contains(&p).then_some(p)
    };
    let (hour, minute, second) = (part(23)?, part(59)?, part(59)?);
    if clock.next().is_some() || fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    // A day past the month's end comes back as another date.
    if civil_from_days(days) != (year, month, day) {
        return None;
    }
    let millis_of_fraction: i128 = format!("{fraction:0<3}")[..3].parse().ok()?;
    let millis =
        days * MILLIS_PER_DAY + ((hour * 60 + minute) * 60 + second) * 1000 + millis_of_fraction;
    Some(format_millis(millis))
}

fn format_millis(millis: i128) -> String {
    let days = millis.div_euclid(MILLIS_PER_DAY);
    let of_day = millis.rem_euclid(MILLIS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3_600_000,
        of_day / 60_000 % 60,
        of_day / 1000 % 60,
        of_day % 1000
    )
}

/// The proleptic Gregorian date of a day counted from 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i128) -> (i128, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i128::from(month <= 2);
    (year, month, day)
}

/// The inverse of [`civil_from_days`].
fn days_from_civil(year: i128, month: u32, day: u32) -> i128 {
    let year = year - i128::from(month <= 2);
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i128::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i128::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// How far in the future an expiry may be: past it, timestamps would
/// leave the four-digit years that keep them sortable as text.
pub(crate) const MAX_EXPIRY: Duration = Duration::from_secs(100 * 366 * 86_400);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_are_read_into_the_store_format() {
        let cases = [
            ("2026-11-02T09:30:00Z", Some("2026-11-02T09:30:00.000Z")),
            ("2026-11-02T09:30:00.5Z", Some("2026-11-02T09:30:00.500Z")),
            (
                "2026-11-02T09:30:00.123456+00:00",
                Some("2026-11-02T09:30:00.123Z"),
            ),
            ("2024-02-29T00:00:00Z", Some("2024-02-29T00:00:00.000Z")),
            ("2026-02-29T00:00:00Z", None),
            ("2026-11-02T24:00:00Z", None),
            ("2026-11-02T09:30:00+01:00", None),
            ("2026-11-02", None),
            ("yesterday", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_utc_timestamp(text).as_deref(), want, "{text}");
        }
    }
    use proptest::prelude::*;

    fn at(millis: i128) -> SystemTime {
        if millis >= 0 {
            UNIX_EPOCH + Duration::from_millis(millis as u64)
        } else {
            UNIX_EPOCH - Duration::from_millis((-millis) as u64)
        }
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ` as milliseconds since the epoch.
    fn parse(text: &str) -> i128 {
        let n = |range: std::ops::Range<usize>| text[range].parse::<i128>().unwrap();
        let days = days_from_civil(n(0..4), n(5..7) as u32, n(8..10) as u32);
        days * MILLIS_PER_DAY
            + n(11..13) * 3_600_000
            + n(14..16) * 60_000
            + n(17..19) * 1000
            + n(20..23)
    }

    #[test]
    fn window_starts_at_calendar_edges() {
        use BudgetPeriod::*;
        for (now, period, start) in [
            ("2026-11-03T12:34:56.789Z", Day, "2026-11-03T00:00:00.000Z"),
            ("2026-11-03T00:00:00.000Z", Day, "2026-11-03T00:00:00.000Z"),
            ("2026-11-02T23:59:59.999Z", Day, "2026-11-02T00:00:00.000Z"),
            // 2026-11-02 is a Monday.
            ("2026-11-02T00:00:00.000Z", Week, "2026-11-02T00:00:00.000Z"),
            ("2026-11-08T23:59:59.999Z", Week, "2026-11-02T00:00:00.000Z"),
            ("2026-11-09T00:00:00.000Z", Week, "2026-11-09T00:00:00.000Z"),
            // A week across the turn of the year: Monday 2024-12-30.
            ("2025-01-01T08:00:00.000Z", Week, "2024-12-30T00:00:00.000Z"),
            ("1970-01-01T00:00:00.000Z", Week, "1969-12-29T00:00:00.000Z"),
            (
                "2026-11-30T23:59:59.999Z",
                Month,
                "2026-11-01T00:00:00.000Z",
            ),
            (
                "2026-12-01T00:00:00.000Z",
                Month,
                "2026-12-01T00:00:00.000Z",
            ),
            (
                "2026-12-31T23:59:59.999Z",
                Month,
                "2026-12-01T00:00:00.000Z",
            ),
            (
                "2027-01-01T00:00:00.000Z",
                Month,
                "2027-01-01T00:00:00.000Z",
            ),
            (
                "2024-02-29T13:00:00.000Z",
                Month,
                "2024-02-01T00:00:00.000Z",
            ),
            (
                "2024-03-01T00:00:00.000Z",
                Month,
                "2024-03-01T00:00:00.000Z",
            ),
            ("2000-02-29T00:00:00.001Z", Day, "2000-02-29T00:00:00.000Z"),
            (
                "1969-12-31T23:59:59.999Z",
                Month,
                "1969-12-01T00:00:00.000Z",
            ),
        ] {
            let now = at(parse(now));
            assert_eq!(
                period.window_start(now).as_deref(),
                Some(start),
                "{period} of {}",
                utc_timestamp(now)
            );
        }
        assert_eq!(Total.window_start(SystemTime::now()), None);
    }

    #[test]
    fn timestamps_have_the_store_format() {
        assert_eq!(utc_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc_timestamp(at(-1)), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            utc_timestamp(at(1_709_251_199_999)),
            "2024-02-29T23:59:59.999Z"
        );
        // Sub-millisecond parts are dropped, as SQLite does.
        assert_eq!(
            utc_timestamp(UNIX_EPOCH + Duration::from_micros(1_999)),
            "1970-01-01T00:00:00.001Z"
        );
    }

    #[test]
    fn periods_parse_and_print() {
        for period in BudgetPeriod::ALL {
            assert_eq!(period.as_str().parse::<BudgetPeriod>().unwrap(), period);
            assert_eq!(
                serde_json::to_value(period).unwrap(),
                serde_json::json!(period.as_str())
            );
        }
        let err = "monthly".parse::<BudgetPeriod>().unwrap_err();
        assert_eq!(err.kind(), "validation");
        assert!(err.to_string().contains("day, week, month, total"), "{err}");
    }

    proptest! {
        /// SQLite's own date functions agree with ours for any time from
        /// year 1 to 9999.
        #[test]
        fn windows_agree_with_sqlite(millis in -62_135_596_800_000i128..253_402_300_799_999i128) {
            let conn = rusqlite::Connection::open_in_memory().unwrap();
            let seconds = millis.div_euclid(1000) as i64;
            let sqlite = |modifiers: &str| -> String {
                conn.query_row(
                    &format!("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', ?1, 'unixepoch'{modifiers})"),
                    [seconds],
                    |row| row.get(0),
                )
                .unwrap()
            };
            let now = at(millis);
            let whole_second = sqlite("");
            prop_assert_eq!(&utc_timestamp(now)[..19], &whole_second[..19]);
            prop_assert_eq!(
                BudgetPeriod::Day.window_start(now).unwrap(),
                sqlite(", 'start of day'")
            );
            prop_assert_eq!(
                BudgetPeriod::Week.window_start(now).unwrap(),
                sqlite(", 'start of day', '-6 days', 'weekday 1'")
            );
            prop_assert_eq!(
                BudgetPeriod::Month.window_start(now).unwrap(),
                sqlite(", 'start of month'")
            );
            prop_assert_eq!(parse(&utc_timestamp(now)), millis);
        }
    }
}
