//! Anthropic's rate-limit headers (`anthropic-ratelimit-*`), whose reset
//! times are RFC 3339 timestamps rather than durations.

use llmhost_provider_sdk::http::Headers;
use llmhost_provider_sdk::types::RateLimits;
use std::time::{SystemTime, UNIX_EPOCH};

/// The rate limits Anthropic reported, with reset times measured from now.
pub fn rate_limits(headers: &Headers) -> Option<RateLimits> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    rate_limits_at(headers, now_ms)
}

/// The rate limits in `headers`, with reset times measured from `now_ms`
/// (milliseconds since the Unix epoch); `None` when there are none.
///
/// `tokens-*` is the most restrictive token limit in effect; proxies that
/// only pass the input-token limit through are read as a fallback.
pub fn rate_limits_at(headers: &Headers, now_ms: i64) -> Option<RateLimits> {
    let header =
        |kind: &str, field: &str| headers.get(&format!("anthropic-ratelimit-{kind}-{field}"));
    let number =
        |kind: &str, field: &str| header(kind, field).and_then(|v| v.trim().parse::<u64>().ok());
    let reset = |kind: &str| {
        header(kind, "reset")
            .and_then(parse_rfc3339_ms)
            .map(|at| u64::try_from(at.saturating_sub(now_ms)).unwrap_or(0))
    };
    let tokens = if ["limit", "remaining", "reset"]
        .iter()
        .any(|field| header("tokens", field).is_some())
    {
        "tokens"
    } else {
        "input-tokens"
    };
    let limits = RateLimits {
        requests_limit: number("requests", "limit"),
        requests_remaining: number("requests", "remaining"),
        requests_reset_ms: reset("requests"),
        tokens_limit: number(tokens, "limit"),
        tokens_remaining: number(tokens, "remaining"),
        tokens_reset_ms: reset(tokens),
    };
    let any = limits.requests_limit.is_some()
        || limits.requests_remaining.is_some()
        || limits.requests_reset_ms.is_some()
        || limits.tokens_limit.is_some()
        || limits.tokens_remaining.is_some()
        || limits.tokens_reset_ms.is_some();
    any.then_some(limits)
}

/// Parses an RFC 3339 timestamp (`2025-01-02T03:04:05.678Z`,
/// `2025-01-02T05:04:05+02:00`) into milliseconds since the Unix epoch;
/// fractions beyond milliseconds are truncated.
pub fn parse_rfc3339_ms(value: &str) -> Option<i64> {
    let s = value.trim().as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(range)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let year = digits(0..4)?;
    let month = digits(5..7)?;
    let day = digits(8..10)?;
    let hour = digits(11..13)?;
    let minute = digits(14..16)?;
    let second = digits(17..19)?;
    if s.get(4) != Some(&b'-')
        || s.get(7) != Some(&b'-')
        || !matches!(s.get(10), Some(b'T' | b't' | b' '))
        || s.get(13) != Some(&b':')
        || s.get(16) != Some(&b':')
    {
        return None;
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut pos = 19;
    let mut millis = 0;
    if s.get(pos) == Some(&b'.') {
        let start = pos + 1;
        let mut end = start;
        while s.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        if end == start {
            return None;
        }
        for (i, digit) in s[start..end.min(start + 3)].iter().enumerate() {
            millis += i64::from(digit - b'0') * [100, 10, 1][i];
        }
        pos = end;
    }
    let offset_minutes = match s.get(pos)? {
        b'Z' | b'z' if pos + 1 == s.len() => 0,
        sign @ (b'+' | b'-') if pos + 6 == s.len() && s[pos + 3] == b':' => {
            let hours = digits(pos + 1..pos + 3)?;
            let minutes = digits(pos + 4..pos + 6)?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = hours * 60 + minutes;
            if *sign == b'-' { -offset } else { offset }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1_000 + millis)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        Headers::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn rfc3339_timestamps() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ms("2024-02-29T12:30:15Z"),
            Some(1_709_209_815_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2025-01-01T00:00:00.5Z"),
            Some(1_735_689_600_500)
        );
        assert_eq!(
            parse_rfc3339_ms("2025-01-01T00:00:00.123456789z"),
            Some(1_735_689_600_123)
        );
        assert_eq!(
            parse_rfc3339_ms("2025-01-01T02:00:00+02:00"),
            parse_rfc3339_ms("2025-01-01T00:00:00Z")
        );
        assert_eq!(
            parse_rfc3339_ms("2024-12-31T19:30:00-04:30"),
            parse_rfc3339_ms("2025-01-01T00:00:00Z")
        );
        assert_eq!(parse_rfc3339_ms("1969-12-31T23:59:59Z"), Some(-1_000));
    }

    #[test]
    fn malformed_timestamps_are_rejected() {
        for bad in [
            "",
            "2025-01-01",
            "2025-01-01T00:00:00",
            "2025-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2025-01-01T24:00:00Z",
            "2025-01-01T00:00:00.Z",
            "2025-01-01T00:00:00+0200",
            "2025-01-01T00:00:00Zjunk",
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "2025-01-0xT00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn rate_limit_headers_with_resets_from_now() {
        let now = parse_rfc3339_ms("2025-06-01T12:00:00Z").expect("valid");
        let limits = rate_limits_at(
            &headers(&[
                ("anthropic-ratelimit-requests-limit", "50"),
                ("anthropic-ratelimit-requests-remaining", "49"),
                (
                    "anthropic-ratelimit-requests-reset",
                    "2025-06-01T12:00:01.5Z",
                ),
                ("anthropic-ratelimit-tokens-limit", "40000"),
                ("anthropic-ratelimit-tokens-remaining", "39000"),
                ("anthropic-ratelimit-tokens-reset", "2025-06-01T11:59:00Z"),
                ("anthropic-ratelimit-input-tokens-limit", "1"),
            ]),
            now,
        )
        .expect("limits present");
        assert_eq!(limits.requests_limit, Some(50));
        assert_eq!(limits.requests_remaining, Some(49));
        assert_eq!(limits.requests_reset_ms, Some(1_500));
        assert_eq!(limits.tokens_limit, Some(40_000));
        assert_eq!(limits.tokens_remaining, Some(39_000));
        assert_eq!(limits.tokens_reset_ms, Some(0), "a past reset means now");
        assert!(rate_limits_at(&headers(&[]), now).is_none());
    }

    #[test]
    fn input_token_limits_stand_in_for_missing_token_limits() {
        let limits = rate_limits_at(
            &headers(&[
                ("anthropic-ratelimit-input-tokens-limit", "30000"),
                ("anthropic-ratelimit-input-tokens-remaining", "29000"),
            ]),
            0,
        )
        .expect("limits present");
        assert_eq!(limits.tokens_limit, Some(30_000));
        assert_eq!(limits.tokens_remaining, Some(29_000));
        assert_eq!(limits.requests_limit, None);
    }
}
