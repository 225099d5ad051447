//! Identifiers, timestamps and duration strings in the vendors' formats.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &[u8] = b"0123456789abcdef";
const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Differs per process so ids from two simulator runs do not repeat.
static SEED: LazyLock<u64> = LazyLock::new(|| {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
});
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// SplitMix64: a bijection, so distinct counter values never collide on the
/// first draw, and its output looks as random as vendor ids do.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn random_string(len: usize, alphabet: &[u8]) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut state = splitmix64(*SEED ^ splitmix64(n));
    let mut out = String::with_capacity(len);
    let mut bits_left = 64;
    for _ in 0..len {
        if bits_left < 8 {
            state = splitmix64(state);
            bits_left = 64;
        }
        out.push(char::from(
            alphabet[(state & 0xff) as usize % alphabet.len()],
        ));
        state >>= 8;
        bits_left -= 8;
    }
    out
}

/// `req_` and 32 hex digits, as in OpenAI's `x-request-id`.
pub(crate) fn request_id() -> String {
    format!("req_{}", random_string(32, HEX))
}

/// `chatcmpl-` and 29 alphanumerics.
pub(crate) fn completion_id() -> String {
    format!("chatcmpl-{}", random_string(29, ALPHANUMERIC))
}

/// `call_` and 24 alphanumerics.
pub(crate) fn call_id() -> String {
    format!("call_{}", random_string(24, ALPHANUMERIC))
}

/// `count` random lowercase hex digits, as in DeepSeek's `x-ds-trace-id`.
pub(crate) fn hex(count: usize) -> String {
    random_string(count, HEX)
}

/// A random (version 4) UUID, which DeepSeek and xAI use as completion ids.
pub(crate) fn uuid() -> String {
    let h = random_string(32, HEX);
    // The version nibble is 4 and the variant's top bits are `10`.
    let variant = ["8", "9", "a", "b"][usize::from(h.as_bytes()[16]) % 4];
    format!(
        "{}-{}-4{}-{variant}{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..]
    )
}

/// `msg_01` and 22 alphanumerics, as Anthropic's message ids.
pub(crate) fn message_id() -> String {
    format!("msg_01{}", random_string(22, ALPHANUMERIC))
}

/// `toolu_01` and 22 alphanumerics, as Anthropic's tool use ids.
pub(crate) fn tool_use_id() -> String {
    format!("toolu_01{}", random_string(22, ALPHANUMERIC))
}

/// `req_011C` and 20 alphanumerics, as Anthropic's `request-id`.
pub(crate) fn anthropic_request_id() -> String {
    format!("req_011C{}", random_string(20, ALPHANUMERIC))
}

/// An opaque base64 string standing in for the signature Anthropic puts on
/// thinking blocks.
pub(crate) fn signature() -> String {
    format!("Eq{}==", random_string(150, BASE64))
}

/// A stable `fp_` and 10 hex digits per model, as a backend build would be.
pub(crate) fn fingerprint(model: &str) -> String {
    // FNV-1a: stable across runs and Rust versions, unlike `DefaultHasher`.
    let hash = model.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("fp_{:010x}", hash & 0xff_ffff_ffff)
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `secs` after the Unix epoch as an RFC 3339 UTC timestamp,
/// `2025-11-26T00:57:03Z`, as Anthropic's rate-limit reset headers.
pub(crate) fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Howard Hinnant's `civil_from_days`, for days since 1970-01-01 (which
/// keeps everything unsigned).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Formats like Go's `time.Duration` as the rate-limit reset headers do:
/// `12ms`, `8.64s`, `6m0s`, `1h2m3s`.
pub(crate) fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let hours = ms / 3_600_000;
    let minutes = ms / 60_000 % 60;
    let secs = ms / 1000 % 60;
    let frac = ms % 1000;
    let mut seconds = if frac == 0 {
        format!("{secs}s")
    } else {
        let digits = format!("{frac:03}");
        format!("{secs}.{}s", digits.trim_end_matches('0'))
    };
    if hours > 0 || minutes > 0 {
        seconds = format!("{minutes}m{seconds}");
    }
    if hours > 0 {
        seconds = format!("{hours}h{seconds}");
    }
    seconds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_millis(12)), "12ms");
        assert_eq!(go_duration(Duration::ZERO), "0ms");
        assert_eq!(go_duration(Duration::from_millis(8640)), "8.64s");
        assert_eq!(go_duration(Duration::from_secs(360)), "6m0s");
        assert_eq!(go_duration(Duration::from_millis(3_723_500)), "1h2m3.5s");
    }

    #[test]
    fn rfc3339_timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_764_118_623), "2025-11-26T00:57:03Z");
    }

    #[test]
    fn uuids_are_version_4() {
        let id = uuid();
        let groups: Vec<&str> = id.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(groups[2].starts_with('4'));
        assert!(matches!(&groups[3][..1], "8" | "9" | "a" | "b"));
        assert_ne!(uuid(), id);
    }

    #[test]
    fn ids_have_vendor_shapes_and_differ() {
        let a = request_id();
        let b = request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 32);
        assert!(a[4..].bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(completion_id().len(), 9 + 29);
        assert!(call_id().starts_with("call_"));
        assert_eq!(fingerprint("gpt-4o"), fingerprint("gpt-4o"));
        assert_eq!(fingerprint("gpt-4o").len(), 13);
    }
}
