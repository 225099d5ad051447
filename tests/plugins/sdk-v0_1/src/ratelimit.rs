//! Reading what vendors say about waiting: `retry-after`, `retry-after-ms`
//! and the OpenAI-style `x-ratelimit-*` headers.
//!
//! Plugins only report these; the host decides whether and when to retry.

use crate::http::Headers;
use crate::types::RateLimits;
use std::time::{Duration, SystemTime};

/// How long the vendor asked to wait, from `retry-after-ms` (milliseconds)
/// or `retry-after` (seconds, or an HTTP date).
pub fn retry_after_ms(headers: &Headers) -> Option<u64> {
    if let Some(ms) = headers.get("retry-after-ms").and_then(parse_non_negative) {
        return Some(ms.ceil() as u64);
    }
    let value = headers.get("retry-after")?.trim();
    if let Some(seconds) = parse_non_negative(value) {
        return Some((seconds * 1000.0).ceil() as u64);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
            .as_millis()
            .try_into()
            .unwrap_or(u64::MAX),
    )
}

/// For a 429 without `retry-after`: when the exhausted OpenAI-style
/// budget (`x-ratelimit-remaining-* = 0`) resets, from its
/// `x-ratelimit-reset-*` header; if no budget says it is exhausted, the
/// later of the resets given.
pub fn rate_limit_reset_ms(headers: &Headers) -> Option<u64> {
    let limits = openai_rate_limits(headers)?;
    let exhausted = [
        (limits.requests_remaining, limits.requests_reset_ms),
        (limits.tokens_remaining, limits.tokens_reset_ms),
    ];
    let spent: Option<u64> = exhausted
        .iter()
        .filter(|(remaining, _)| *remaining == Some(0))
        .filter_map(|(_, reset)| *reset)
        .max();
    spent.or_else(|| {
        [limits.requests_reset_ms, limits.tokens_reset_ms]
            .into_iter()
            .flatten()
            .max()
    })
}

/// A finite, non-negative number, possibly fractional.
fn parse_non_negative(value: &str) -> Option<f64> {
    let f = value.trim().parse::<f64>().ok()?;
    (f.is_finite() && f >= 0.0).then_some(f)
}

/// The `x-ratelimit-*` headers OpenAI, xAI and others send, if any.
pub fn openai_rate_limits(headers: &Headers) -> Option<RateLimits> {
    let number = |name: &str| headers.get(name).and_then(|v| v.trim().parse::<u64>().ok());
    let reset = |name: &str| headers.get(name).and_then(parse_duration_ms);
    let limits = RateLimits {
        requests_limit: number("x-ratelimit-limit-requests"),
        requests_remaining: number("x-ratelimit-remaining-requests"),
        requests_reset_ms: reset("x-ratelimit-reset-requests"),
        tokens_limit: number("x-ratelimit-limit-tokens"),
        tokens_remaining: number("x-ratelimit-remaining-tokens"),
        tokens_reset_ms: reset("x-ratelimit-reset-tokens"),
    };
    let any = limits.requests_limit.is_some()
        || limits.requests_remaining.is_some()
        || limits.requests_reset_ms.is_some()
        || limits.tokens_limit.is_some()
        || limits.tokens_remaining.is_some()
        || limits.tokens_reset_ms.is_some();
    any.then_some(limits)
}

/// Parses Go-style durations as OpenAI sends them (`6m0s`, `12ms`, `1.5s`,
/// `1h2m3s`) into milliseconds, rounding up.
pub fn parse_duration_ms(value: &str) -> Option<u64> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    let bytes = value.as_bytes();
    let mut total_us: f64 = 0.0;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        if start == i {
            return None;
        }
        let number: f64 = value[start..i].parse().ok()?;
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit_us = match &value[unit_start..i] {
            "h" => 3_600_000_000.0,
            "m" => 60_000_000.0,
            "s" | "" => 1_000_000.0,
            "ms" => 1_000.0,
            "us" | "µs" => 1.0,
            "ns" => 0.001,
            _ => return None,
        };
        total_us += number * unit_us;
    }
    Some((total_us / 1000.0).ceil() as u64)
}
