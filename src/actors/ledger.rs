//! The idempotency ledger: the first answer to every keyed request, one record per
//! `(user, Idempotency-Key)`, generic over what an answer is.
//!
//! The user's [`KeyGate`] owns their keys while their requests run: a key whose first
//! request is still running is refused (409), whichever actor that request went to. The
//! actor that makes the change writes the ledger entry in the same atomic batch as the
//! change itself (the seat map with the hold or the booking, the wallet with the debit),
//! through the [`Keyed`] handle it is given, so after a crash a retry finds either both or
//! neither. The handle says how the actor's outcome becomes the recorded answer: the
//! caller knows what the endpoint answers, the actor does not. A refusal that changes
//! nothing is recorded alone and answered without waiting for its flush; it rides the next
//! group commit.
//!
//! A retry of the same request gets the recorded answer, which the HTTP layer renders
//! exactly as it rendered the first time (the answer holds everything the response shows,
//! as it was then); the same key with another request is refused (422). Entries older than
//! [`KEY_RETENTION`] no longer count and are purged by [`purge_expired`], which the
//! [`Janitor`](super::janitor::Janitor) runs every hour.
//!
//! Each entry is its own record, written once: a user's 10,000th keyed request costs what
//! their first did.
//!
//! [`KeyGate`]: super::keys::KeyGate

use crate::store::{Batch, Key, Store, StoreError};
use crate::time::now_ms;
use serde::de::DeserializeOwned;
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

/// How an actor records outcome `O` of a keyed request as the key's answer: adds the
/// ledger entry to the batch that makes the change.
pub type Recorder<O> = fn(&KeyedRequest, &O, &mut Batch) -> Result<(), StoreError>;

/// A keyed request handed to the actor that runs it, with how that actor records its
/// outcome (the actor calls [`Keyed::record`] with the outcome it reached, in the batch of
/// the change it makes).
pub struct Keyed<O> {
    pub req: KeyedRequest,
    pub recorder: Recorder<O>,
}

impl<O> Clone for Keyed<O> {
    fn clone(&self) -> Self {
        Keyed { req: self.req.clone(), recorder: self.recorder }
    }
}

impl<O> std::fmt::Debug for Keyed<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyed").field("req", &self.req).finish_non_exhaustive()
    }
}

impl<O> Keyed<O> {
    /// Add the entry recording `outcome` to `batch`.
    pub fn record(&self, outcome: &O, batch: &mut Batch) -> Result<(), StoreError> {
        (self.recorder)(&self.req, outcome, batch)
    }
}

/// One ledger record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry<A> {
    pub fingerprint: Fingerprint,
    /// When the answer was recorded (ms since the epoch).
    pub at: u64,
    pub answer: A,
}

/// An [`Entry`] to write, by reference (encoded alike).
#[derive(Serialize)]
struct EntryRef<'a, A> {
    fingerprint: Fingerprint,
    at: u64,
    answer: &'a A,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("this idempotency key was used with a different request")]
    Reused,
}

fn live<A>(entry: &Entry<A>, now: u64) -> bool {
    entry.at.saturating_add(crate::time::ms(KEY_RETENTION)) > now
}

/// The recorded answer for `req`'s key: `Ok(Some)` to replay, `Ok(None)` if the key is
/// new (or its entry has run out), `Err(Reused)` if it answered another request.
pub fn lookup<A: DeserializeOwned>(
    store: &Store,
    req: &KeyedRequest,
) -> Result<Result<Option<A>, KeyError>, StoreError> {
    let entry = store.get::<Entry<A>>(&Key::ledger(req.user, &req.key))?;
    Ok(match entry.filter(|e| live(e, now_ms())) {
        None => Ok(None),
        Some(e) if e.fingerprint == req.fingerprint => Ok(Some(e.answer)),
        Some(_) => Err(KeyError::Reused),
    })
}

/// Add `req`'s entry with `answer` to `batch` (written with the change it answers).
pub fn record<A: Serialize>(batch: &mut Batch, req: &KeyedRequest, answer: &A) -> Result<(), StoreError> {
    let entry = EntryRef { fingerprint: req.fingerprint, at: now_ms(), answer };
    batch.put(&Key::ledger(req.user, &req.key), &entry)
}

/// Remove every entry older than [`KEY_RETENTION`]; returns how many. An entry rewritten
/// meanwhile (a key reused after its first entry ran out) is left alone.
pub fn purge_expired<A: DeserializeOwned>(store: &Store) -> Result<usize, StoreError> {
    let now = now_ms();
    store.remove_where::<Entry<A>>(&Key::ledger(0, ""), |e| !live(e, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_replays_its_request_refuses_another_and_runs_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let req = KeyedRequest { user: 7, key: "k".into(), fingerprint: [1; 32] };
        assert_eq!(lookup::<String>(&store, &req).expect("lookup"), Ok(None));
        let answer = "seat 3 is taken".to_string();
        let mut batch = Batch::default();
        record(&mut batch, &req, &answer).expect("record");
        store.apply(batch).expect("apply");
        assert_eq!(lookup(&store, &req).expect("lookup"), Ok(Some(answer.clone())));
        let other = KeyedRequest { fingerprint: [2; 32], ..req.clone() };
        assert_eq!(lookup::<String>(&store, &other).expect("lookup"), Err(KeyError::Reused));
        let someone_else = KeyedRequest { user: 8, ..other };
        assert_eq!(lookup::<String>(&store, &someone_else).expect("lookup"), Ok(None), "keys are per user");
        assert_eq!(purge_expired::<String>(&store).expect("purge"), 0, "a fresh entry is kept");
        // An entry past the retention no longer counts, and the purge removes it.
        let old = Entry { fingerprint: [1; 32], at: now_ms() - crate::time::ms(KEY_RETENTION) - 1, answer };
        store.put(&Key::ledger(7, "k"), &old).expect("put");
        assert_eq!(lookup::<String>(&store, &req).expect("lookup"), Ok(None));
        assert_eq!(purge_expired::<String>(&store).expect("purge"), 1);
        assert!(!store.contains(&Key::ledger(7, "k")).expect("contains"));
    }
}
