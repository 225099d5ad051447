//! Identifiers, timestamps and duration strings in the vendors' formats.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &[u8] = b"0123456789abcdef";

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
