//! The server's one clock, and time as the server stores and shows it.
//!
//! Every expiry, hold, queue tick and idle stop reads [`now_ms`]: the wall clock plus an
//! offset that only grows. The offset is 0 unless a test moves it ([`Clock::advance`],
//! reached through `POST /admin/clock` when `BOXOFFICE_CLOCK_ADJUSTABLE` is on), so a
//! timer test advances the server's clock instead of sleeping.
//!
//! Deadlines that must survive a restart (hold expiries, token expiries) are kept as
//! milliseconds since the Unix epoch; timers inside actors wait for them with
//! [`Clock::sleep_until`], which wakes early when the clock is advanced past them. Every
//! timestamp a client sees is RFC 3339 in UTC.

use chrono::{SecondsFormat, TimeZone, Utc};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// Wall time plus an offset that can only move forward.
///
/// One per process ([`clock`]): the offset is not persisted, so a restarted server reads
/// the wall clock again.
#[derive(Debug)]
pub struct Clock {
    /// Milliseconds added to the wall clock. Read on every [`Clock::now_ms`], so an atomic
    /// beside the watch rather than the watch's lock; it is written only inside
    /// `moved.send_modify`, which orders advances.
    offset: AtomicU64,
    /// "The clock moved": the offset, sent on every advance. Each waiting timer holds a
    /// receiver and re-aims when it changes; a watch wakes every receiver on whichever
    /// thread (arbiter) it waits, and a receiver never misses a change made after it
    /// subscribed.
    moved: watch::Sender<u64>,
}

static CLOCK: LazyLock<Clock> = LazyLock::new(Clock::new);

/// The process-wide clock.
pub fn clock() -> &'static Clock {
    &CLOCK
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    /// A clock that reads the wall clock (offset 0).
    pub fn new() -> Clock {
        Clock { offset: AtomicU64::new(0), moved: watch::Sender::new(0) }
    }

    /// Milliseconds since the Unix epoch, now, by this clock.
    pub fn now_ms(&self) -> u64 {
        wall_ms().saturating_add(self.offset.load(Ordering::Acquire))
    }

    /// How far this clock is ahead of the wall clock.
    pub fn offset(&self) -> Duration {
        Duration::from_millis(self.offset.load(Ordering::Acquire))
    }

    /// Move the clock forward by `by` and wake every timer, which re-aims: a deadline the
    /// advance passed fires at once. Returns the new time.
    pub fn advance(&self, by: Duration) -> u64 {
        self.moved.send_modify(|offset| {
            *offset = offset.saturating_add(ms(by));
            self.offset.store(*offset, Ordering::Release);
        });
        self.now_ms()
    }

    /// How long from now until the deadline `at_ms` (zero if it has passed).
    pub fn until(&self, at_ms: u64) -> Duration {
        Duration::from_millis(at_ms.saturating_sub(self.now_ms()))
    }

    /// Told of each advance from now on (for a loop that also ticks in real time, such as
    /// an idle sweep).
    pub fn moved(&self) -> Moved {
        Moved(self.moved.subscribe())
    }

    /// Resolves once this clock reads `at_ms` or later: by the wall clock, a millisecond
    /// late rather than early, or at once when an advance passes it. It allocates nothing
    /// beyond the future itself.
    pub async fn sleep_until(&self, at_ms: u64) {
        let mut moved = self.moved();
        loop {
            let left = self.until(at_ms);
            if left.is_zero() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(left + Duration::from_millis(1)) => return,
                // Re-aim: the deadline may have been passed.
                () = moved.next() => {}
            }
        }
    }
}

/// A [`Clock`]'s advances, as a timer waits for them.
pub struct Moved(watch::Receiver<u64>);

impl Moved {
    /// Resolves at the next advance after the last one seen (never, if the clock is gone).
    pub async fn next(&mut self) {
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Milliseconds since the Unix epoch, now, by the server's [`clock`].
pub fn now_ms() -> u64 {
    CLOCK.now_ms()
}

/// `ms` as an RFC 3339 UTC timestamp with millisecond precision.
pub fn rfc3339(ms: u64) -> String {
    match Utc.timestamp_millis_opt(ms as i64).single() {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => String::from("1970-01-01T00:00:00.000Z"),
    }
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
