//! The idempotency ledger: the first answer to every keyed request, one record per
//! `(user, Idempotency-Key)`.
//!
//! Every keyed POST of contracts Q and B goes through the caller's [`Wallet`], which owns
//! the user's keys while they run: a key whose first request is still running is refused
//! (409), whichever actor that request went to. The actor that makes the change writes
//! the ledger entry in the same atomic batch as the change itself (the seat map with the
//! hold or the booking, the wallet with the debit), so after a crash a retry finds either
//! both or neither. A refusal that changes nothing is recorded alone and answered without
//! waiting for its flush; it rides the next group commit.
//!
//! A retry of the same request gets the recorded [`Answer`], which the HTTP layer renders
//! exactly as it rendered the first time (the answer holds everything the response shows,
//! as it was then); the same key with another request is refused (422). Entries older than
//! [`KEY_RETENTION`] no longer count and are purged by [`purge_expired`].
//!
//! Each entry is its own record, written once: a user's 10,000th keyed request costs what
//! their first did.
//!
//! [`Wallet`]: super::wallet::Wallet

use super::seat_map::booking::ExecuteOutcome;
use super::seat_map::{Reservation, SeatError};
use super::wallet::{ChargeReceipt, ChargeRefusal, PayRefusal, PaymentReceipt};
use crate::store::{Batch, Key, Store, StoreError};
use crate::time::now_ms;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long an idempotency key and its answer are kept (the contracts ask for 24 hours).
pub const KEY_RETENTION: Duration = Duration::from_secs(25 * 3600);

/// A request's fingerprint: a hash of what it asked for.
pub type Fingerprint = [u8; 32];

/// A keyed request on its way to the actor that will record its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyedRequest {
    pub user: u64,
    pub key: String,
    pub fingerprint: Fingerprint,
}

/// The answer to a keyed request, as recorded and replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// `POST /reservations`: the hold as it was made.
    Reserved(Reservation),
    ReserveRefused(SeatError),
    /// `PATCH /users/{id}/charge`.
    Charged(ChargeReceipt),
    ChargeRefused(ChargeRefusal),
    /// `POST /payments`.
    Paid(PaymentReceipt),
    PayRefused(PayRefusal),
    /// `POST /bookings`: the booking as it was created (its status then, not now).
    Booked(Reservation),
    BookRefused(SeatError),
    /// `POST /payments/execute`: a definite outcome (paid, declined, expired). Refusals
    /// that say nothing about the charge (not yours, in progress) are not recorded.
    Executed(ExecuteOutcome),
    /// Answered but not recorded: a retry asks again.
    ExecuteRefused(SeatError),
}

/// One ledger record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub fingerprint: Fingerprint,
    /// When the answer was recorded (ms since the epoch).
    pub at: u64,
    pub answer: Answer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("this idempotency key was used with a different request")]
    Reused,
}

fn live(entry: &Entry, now: u64) -> bool {
    entry.at.saturating_add(crate::time::ms(KEY_RETENTION)) > now
}

/// The recorded answer for `req`'s key: `Ok(Some)` to replay, `Ok(None)` if the key is
/// new (or its entry has run out), `Err(Reused)` if it answered another request.
pub fn lookup(store: &Store, req: &KeyedRequest) -> Result<Result<Option<Answer>, KeyError>, StoreError> {
    let entry = store.get::<Entry>(&Key::Ledger(req.user, req.key.clone()))?;
    Ok(match entry.filter(|e| live(e, now_ms())) {
        None => Ok(None),
        Some(e) if e.fingerprint == req.fingerprint => Ok(Some(e.answer)),
        Some(_) => Err(KeyError::Reused),
    })
}

/// A [`KeyFilter`]'s size bounds, in bits: it starts at 128 bytes and doubles (reloading
/// the user's keys) as keys come, up to 32 KiB.
const FILTER_MIN_BITS: usize = 1 << 10;
const FILTER_MAX_BITS: usize = 1 << 18;
/// Bits per key before the filter doubles (about 1% false positives with four hashes).
const FILTER_BITS_PER_KEY: usize = 10;

/// The keys one user may have in the ledger, as a Bloom filter, so that a key certainly
/// new skips its [`lookup`] (a store read that was a sixth of a refused hold's CPU).
///
/// The wallet that owns the user's keys adds every key it lets run before anything can
/// record it, and loads the user's recorded keys when it starts, so a key the filter does
/// not know has no entry. A key it wrongly knows (a false positive, a purged or unrecorded
/// key) only costs a lookup. It doubles while it fills, reloading the recorded keys (plus
/// those running) each time, so a key costs O(1) on average; at its largest (32 KiB) it
/// keeps filtering with more false positives: memory is bounded whatever a client sends.
#[derive(Debug)]
pub struct KeyFilter {
    bits: Vec<u64>,
    /// Keys inserted since the filter was (re)built.
    count: usize,
}

impl KeyFilter {
    fn with_bits(n: usize) -> KeyFilter {
        KeyFilter { bits: vec![0; n / 64], count: 0 }
    }

    /// The filter of `user`'s recorded keys, big enough for them.
    pub fn load(store: &Store, user: u64) -> Result<KeyFilter, StoreError> {
        Self::build(store, user, 0, std::iter::empty())
    }

    /// A filter of at least `min_bits` with `user`'s recorded keys and `running` ones.
    fn build<'a>(
        store: &Store,
        user: u64,
        min_bits: usize,
        running: impl Iterator<Item = &'a str>,
    ) -> Result<KeyFilter, StoreError> {
        let mut keys: Vec<String> = store
            .keys_under(&Key::LedgerOf(user))?
            .into_iter()
            .filter_map(|k| match k {
                Key::Ledger(_, k) => Some(k),
                _ => None,
            })
            .collect();
        keys.extend(running.map(str::to_string));
        let wanted = (keys.len() * FILTER_BITS_PER_KEY * 2).next_power_of_two();
        let mut filter = Self::with_bits(wanted.clamp(min_bits.max(FILTER_MIN_BITS), FILTER_MAX_BITS));
        for k in &keys {
            filter.set(k);
        }
        Ok(filter)
    }

    /// The bit positions of `key`: four, by double hashing one 64-bit hash.
    fn positions(&self, key: &str) -> impl Iterator<Item = usize> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        let h = h.finish();
        let (h1, h2) = (h as u32 as usize, (h >> 32) as usize | 1);
        let n = self.bits.len() * 64;
        (0..4).map(move |i| h1.wrapping_add(i * h2) % n)
    }

    fn set(&mut self, key: &str) {
        let positions: Vec<usize> = self.positions(key).collect();
        for p in positions {
            self.bits[p / 64] |= 1 << (p % 64);
        }
        self.count += 1;
    }

    /// Whether `key` may have an entry (`false`: it certainly has none).
    pub fn may_contain(&self, key: &str) -> bool {
        self.positions(key).all(|p| self.bits[p / 64] & (1 << (p % 64)) != 0)
    }

    /// Remember `key` before anything may record it; `running` are the user's keys whose
    /// requests are still running (not yet recorded), kept if the filter doubles.
    pub fn insert<'a>(
        &mut self,
        store: &Store,
        user: u64,
        key: &str,
        running: impl Iterator<Item = &'a str>,
    ) -> Result<(), StoreError> {
        let size = self.bits.len() * 64;
        if (self.count + 1) * FILTER_BITS_PER_KEY > size && size < FILTER_MAX_BITS {
            *self = Self::build(store, user, size * 2, running)?;
        }
        self.set(key);
        Ok(())
    }
}

/// Add `req`'s entry with `answer` to `batch` (written with the change it answers).
pub fn record(batch: &mut Batch, req: &KeyedRequest, answer: Answer) -> Result<(), StoreError> {
    let entry = Entry { fingerprint: req.fingerprint, at: now_ms(), answer };
    batch.put(&Key::Ledger(req.user, req.key.clone()), &entry)
}

/// Remove every entry older than [`KEY_RETENTION`]; returns how many. An entry rewritten
/// meanwhile (a key reused after its first entry ran out) is left alone.
pub fn purge_expired(store: &Store) -> Result<usize, StoreError> {
    let now = now_ms();
    store.remove_where::<Entry>(&Key::Ledger(0, String::new()), |e| !live(e, now))
}

/// How often the [`Janitor`] purges run-out entries.
pub const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Purges run-out ledger entries every [`PURGE_EVERY`], on a thread of its own (a purge
/// scans the ledger, which must not hold up the actors that serve requests). It owns no
/// business state: an entry past its retention answers nothing any more.
pub struct Janitor {
    pub store: Store,
}

impl actix::Actor for Janitor {
    type Context = actix::Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        use actix::AsyncContext;
        ctx.run_interval(PURGE_EVERY, |act, _| match purge_expired(&act.store) {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "purged run-out idempotency keys"),
            Err(e) => tracing::warn!(error = %e, "could not purge run-out idempotency keys"),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_replays_its_request_refuses_another_and_runs_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let req = KeyedRequest { user: 7, key: "k".into(), fingerprint: [1; 32] };
        assert_eq!(lookup(&store, &req).expect("lookup"), Ok(None));
        let answer = Answer::ReserveRefused(SeatError::Taken("3".into()));
        let mut batch = Batch::default();
        record(&mut batch, &req, answer.clone()).expect("record");
        store.apply(batch).expect("apply");
        assert_eq!(lookup(&store, &req).expect("lookup"), Ok(Some(answer.clone())));
        let other = KeyedRequest { fingerprint: [2; 32], ..req.clone() };
        assert_eq!(lookup(&store, &other).expect("lookup"), Err(KeyError::Reused));
        let someone_else = KeyedRequest { user: 8, ..other };
        assert_eq!(lookup(&store, &someone_else).expect("lookup"), Ok(None), "keys are per user");
        assert_eq!(purge_expired(&store).expect("purge"), 0, "a fresh entry is kept");
        // An entry past the retention no longer counts, and the purge removes it.
        let old = Entry { fingerprint: [1; 32], at: now_ms() - crate::time::ms(KEY_RETENTION) - 1, answer };
        store.put(&Key::Ledger(7, "k".into()), &old).expect("put");
        assert_eq!(lookup(&store, &req).expect("lookup"), Ok(None));
        assert_eq!(purge_expired(&store).expect("purge"), 1);
        assert!(!store.contains(&Key::Ledger(7, "k".into())).expect("contains"));
    }

    #[test]
    fn the_key_filter_knows_every_recorded_and_running_key_as_it_grows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let mut batch = Batch::default();
        for (user, key) in [(7, "a"), (7, "b/c"), (8, "z")] {
            let req = KeyedRequest { user, key: key.into(), fingerprint: [1; 32] };
            record(&mut batch, &req, Answer::ReserveRefused(SeatError::NotFound)).expect("record");
        }
        store.apply(batch).expect("apply");
        let mut filter = KeyFilter::load(&store, 7).expect("load");
        assert!(filter.may_contain("a") && filter.may_contain("b/c"), "recorded keys are known");
        assert!(!filter.may_contain("new"));
        // Many keys, some recorded and some still running: it grows and forgets none.
        let mut running = Vec::new();
        for i in 0..20_000 {
            let key = format!("k{i}");
            filter.insert(&store, 7, &key, running.iter().map(String::as_str)).expect("insert");
            if i % 2 == 0 {
                let req = KeyedRequest { user: 7, key: key.clone(), fingerprint: [1; 32] };
                let mut batch = Batch::default();
                record(&mut batch, &req, Answer::ReserveRefused(SeatError::NotFound)).expect("record");
                store.apply(batch).expect("apply");
            } else {
                running.push(key);
            }
        }
        assert!((0..20_000).all(|i| filter.may_contain(&format!("k{i}"))), "no false negative");
        assert!(filter.may_contain("a"));
        let false_positives = (0..10_000).filter(|i| filter.may_contain(&format!("other{i}"))).count();
        assert!(false_positives < 1_000, "{false_positives} of 10,000 new keys looked up");
    }
}
