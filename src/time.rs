//! Wall-clock time as the server stores and shows it.
//!
//! Deadlines that must survive a restart (hold expiries, token expiries) are kept as
//! milliseconds since the Unix epoch; timers inside actors are armed from them with
//! [`until`]. Every timestamp a client sees is RFC 3339 in UTC.

use chrono::{SecondsFormat, TimeZone, Utc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// `ms` as an RFC 3339 UTC timestamp with millisecond precision.
pub fn rfc3339(ms: u64) -> String {
    match Utc.timestamp_millis_opt(ms as i64).single() {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => String::from("1970-01-01T00:00:00.000Z"),
    }
}

/// How long from now until the wall-clock deadline `at_ms` (zero if it has passed).
pub fn until(at_ms: u64) -> Duration {
    Duration::from_millis(at_ms.saturating_sub(now_ms()))
}

/// A duration as whole milliseconds, saturating.
pub fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The calendar month of `at_ms` as `yyyymm`, for monthly limits.
pub fn month_of(at_ms: u64) -> u32 {
    use chrono::Datelike;
    match Utc.timestamp_millis_opt(at_ms as i64).single() {
        Some(t) => t.year() as u32 * 100 + t.month(),
        None => 197001,
    }
}
