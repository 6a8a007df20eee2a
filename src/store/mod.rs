//! The store: sled behind a small typed API.
//!
//! Nothing outside this module knows the key layout or the encoding. Actors keep their
//! state in memory and write it here as bincode snapshots (or per-record values, where a
//! snapshot would grow without bound) with [`Store::apply`], which is atomic across keys.
//!
//! # Atomic batches
//! sled recovers a prefix of its log after a crash. A batch of several writes is first
//! written whole as one record of the `journal` tree (one insert: atomic), then applied key
//! by key, then its record is removed. A crash leaves either no record (the batch is wholly
//! in or wholly out) or the record, which [`Store::open`] applies again before anything
//! reads the state. One actor owns each key and applies its batches one after another, so
//! replaying a record can never overwrite a later write of the same key.
//!
//! # Durability and group commit
//! A write is in sled's memory and log buffer once `apply` returns; it is on disk once a
//! later `flush` has finished. [`Store::durable`] queues a waiter for the flusher thread,
//! which takes every waiter queued so far, runs one `flush` (one fsync for all of them)
//! and wakes them. Because sled's log is ordered, a flush covers every write made before
//! it began, so a handler that writes, then awaits `durable()`, answers only once its
//! change (and everything it read that was written before) survives `kill -9`.

pub mod files;
mod keys;
mod migrate;

pub use keys::{IdemHash, Key};

use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// What can go wrong below the actors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("encoding: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    #[error("decoding {key}: {source}")]
    Decode { key: String, source: bincode::error::DecodeError },
    #[error("the flusher has stopped")]
    FlusherGone,
    #[error("flush failed: {0}")]
    Flush(String),
    #[error(
        "this data directory holds a store of layout {found}, and this build reads layout {FORMAT} \
         (and migrates layout 4): start it with the build that wrote it, or with an empty --data-dir"
    )]
    Format { found: u32 },
    #[error("migrating the store from layout 4: {0}")]
    Migration(String),
}

/// The version of the key layout and record encodings. Layout 1 kept idempotency keys,
/// payments and payment requests inside growing snapshots; layout 2 keeps each as its
/// own record; layout 3 leaves a room participant never seen unnamed (`None`); layout 4
/// adds each room's counts record and its index of stored files; layout 5 has binary keys
/// (a family byte, big-endian ids, hashed idempotency keys) and no `live/` index of
/// reservations beside the per-seat-map one. A store of layout 4 is migrated when opened
/// (`migrate.rs`).
pub const FORMAT: u32 = 5;

/// sled's page cache when nothing else is said (sled's own default is 1 GiB).
pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;

/// How often sled's own flusher thread runs. Besides writing out sled's buffer, each run
/// reclaims log space: it copies the live pages out of a segment (512 KiB, fixed when the
/// store was created) that is at most half live, and ends when that segment is empty
/// (sled 0.34's `SegmentCleaner::pop`), so sled frees at most one segment per run. At
/// 1,000 ms (what this was) that is 0.5 MB/s, far below what a rush of holds writes, and
/// the log file kept the garbage.
///
/// Cleaning costs CPU in proportion to what it reclaims. In the seat rush with 1 s holds
/// and layout 5's keys (6,500-8,600 requests/s here), 1,000 ms left 1.2 KB per request on
/// disk, with 0.2% of the server's CPU in sled's flusher thread; 100 ms 940-1,000 B and
/// 2.6%; 50 ms 690-850 B and 5.7%; 20 ms 260-360 B and 9.4% (10 ms did no better). Since
/// a run frees at most one segment, what stays on disk per request grows with the request
/// rate at a given period. 50 ms stays under the 1 KB aimed at in every run at no CPU per
/// request measurable beside the build before; 20 ms cost 6-8% more per request. Each run
/// also fsyncs the file: idle, 20 cheap fsyncs a second. See docs/performance.md (disk
/// per request).
const SLED_FLUSH_EVERY_MS: u64 = 50;

/// One atomic group of writes, applied in order.
#[derive(Default, Serialize, serde::Deserialize)]
pub struct Batch {
    writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    pub fn put<T: Serialize>(&mut self, key: &Key, value: &T) -> Result<(), StoreError> {
        self.writes.push((key.bytes(), Some(encode(value)?)));
        Ok(())
    }
    pub fn delete(&mut self, key: &Key) {
        self.writes.push((key.bytes(), None));
    }
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }
}

/// Flush counters, for the benches and logs.
#[derive(Debug, Default)]
pub struct FlushStats {
    /// How many `flush` calls the flusher made.
    pub flushes: AtomicU64,
    /// How many `durable()` waiters those flushes acknowledged.
    pub waiters: AtomicU64,
}

type Waiter = oneshot::Sender<Result<(), String>>;

/// The handle every actor holds. Cloning is cheap.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    state: sled::Tree,
    /// Batches being applied (see [`Store::apply`]); empty whenever no write is under way.
    journal: sled::Tree,
    journal_seq: Arc<AtomicU64>,
    flusher: mpsc::Sender<Waiter>,
    stats: Arc<FlushStats>,
    /// Unit tests: while set, every write fails as a disk error would (see
    /// [`Store::fail_writes`]).
    #[cfg(test)]
    failing: Arc<std::sync::atomic::AtomicBool>,
}

impl Store {
    /// Open (or create) the store in `dir` and start its flusher thread.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(dir, Duration::ZERO, DEFAULT_CACHE_BYTES)
    }

    /// Like [`Store::open`], with flushes started at most once per `commit_window`: under
    /// load more writes share each fsync (less CPU per write) at the price of up to one
    /// window of extra latency; an idle store flushes a lone write at once.
    /// sled caches at most `cache_bytes` of pages in memory.
    pub fn open_with(dir: &Path, commit_window: Duration, cache_bytes: u64) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(dir.join("db"))
            .cache_capacity(cache_bytes)
            .mode(sled::Mode::HighThroughput)
            .flush_every_ms(Some(SLED_FLUSH_EVERY_MS))
            .open()?;
        let state = db.open_tree("state")?;
        let journal = db.open_tree("journal")?;
        // Batches a crash interrupted are finished in the layout they were written in,
        // before a store of an older layout is migrated.
        let replayed = replay_journal(&db, &journal, &state)?;
        crate::observe::journal_replayed(replayed as u64);
        if replayed > 0 {
            tracing::info!(replayed, "finished batches interrupted by the last stop");
        }
        check_format(&db, &state)?;
        let (tx, rx) = mpsc::channel::<Waiter>();
        let stats = Arc::new(FlushStats::default());
        let flush_db = db.clone();
        let flush_stats = stats.clone();
        std::thread::Builder::new()
            .name("store-flusher".into())
            .spawn(move || group_commit(flush_db, rx, flush_stats, commit_window))
            .map_err(|e| StoreError::Flush(e.to_string()))?;
        Ok(Store {
            db,
            state,
            journal,
            journal_seq: Arc::new(AtomicU64::new(0)),
            flusher: tx,
            stats,
            #[cfg(test)]
            failing: Default::default(),
        })
    }

    pub fn get<T: DeserializeOwned>(&self, key: &Key) -> Result<Option<T>, StoreError> {
        match self.state.get(key.bytes())? {
            Some(bytes) => decode(&bytes, key).map(Some),
            None => Ok(None),
        }
    }

    pub fn put<T: Serialize>(&self, key: &Key, value: &T) -> Result<(), StoreError> {
        self.injected_failure()?;
        self.state.insert(key.bytes(), encode(value)?)?;
        Ok(())
    }

    /// Apply every write of `batch` at once, or none of them.
    ///
    /// One write is one sled insert. More go through the journal (see the module docs): the
    /// whole batch is written as one journal record, then applied key by key, then the
    /// record is removed; a restart replays the records it finds. sled's own `apply_batch`
    /// would do instead, but it takes sled's global write lock and writes out (and
    /// `sync_file_range`s) the log buffer twice per batch, which made the log writer threads
    /// the server's largest CPU cost under load.
    pub fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        self.injected_failure()?;
        match batch.writes.len() {
            0 => Ok(()),
            1 => {
                let (k, v) = batch.writes.into_iter().next().expect("one write");
                self.write_one(k, v)
            }
            _ => {
                let id = self.journal_seq.fetch_add(1, Ordering::Relaxed).to_be_bytes();
                self.journal.insert(id, encode(&batch)?)?;
                for (k, v) in batch.writes {
                    self.write_one(k, v)?;
                }
                self.journal.remove(id)?;
                Ok(())
            }
        }
    }

    fn write_one(&self, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<(), StoreError> {
        write_one(&self.state, key, value)
    }

    /// Unit tests: make every later `apply` and `put` fail (`true`) or work again
    /// (`false`), to show that a failed write leaves an actor's memory as it was.
    #[cfg(test)]
    pub fn fail_writes(&self, on: bool) {
        self.failing.store(on, Ordering::Relaxed);
    }

    #[cfg(test)]
    fn injected_failure(&self) -> Result<(), StoreError> {
        if self.failing.load(Ordering::Relaxed) {
            return Err(sled::Error::Io(std::io::Error::other("a write failure injected by a test")).into());
        }
        Ok(())
    }

    #[cfg(not(test))]
    #[inline(always)]
    fn injected_failure(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Whether a record exists under `key`.
    pub fn contains(&self, key: &Key) -> Result<bool, StoreError> {
        Ok(self.state.contains_key(key.bytes())?)
    }

    /// The keys (not the values) of the family of `family` (e.g. `Key::LiveOf("")` lists
    /// every seat map's live entries), in key order.
    pub fn family_keys(&self, family: &Key) -> Result<Vec<Key>, StoreError> {
        let mut out = Vec::new();
        for item in self.state.scan_prefix(family.family_prefix()) {
            let (k, _) = item?;
            out.push(parse_key(&k)?);
        }
        Ok(out)
    }

    /// Remove every record of `family` for which `expired` holds, each only if it is still
    /// the value that was read (a record rewritten meanwhile stays). For housekeeping of
    /// records that no actor keeps in memory, such as run-out ledger entries. Returns how
    /// many were removed.
    pub fn remove_where<T: DeserializeOwned>(
        &self,
        family: &Key,
        expired: impl Fn(&T) -> bool,
    ) -> Result<usize, StoreError> {
        let mut removed = 0;
        for item in self.state.scan_prefix(family.family_prefix()) {
            let (k, v) = item?;
            let key = parse_key(&k)?;
            if expired(&decode::<T>(&v, &key)?) && self.state.compare_and_swap(&k, Some(&v), None::<&[u8]>)?.is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The keys under the prefix `prefix` stands for (e.g. `Key::TransactionsOf(room)`),
    /// in key order: for index entries, whose keys say everything.
    pub fn keys_under(&self, prefix: &Key) -> Result<Vec<Key>, StoreError> {
        let mut out = Vec::new();
        for item in self.state.scan_prefix(prefix.bytes()) {
            let (k, _) = item?;
            out.push(parse_key(&k)?);
        }
        Ok(out)
    }

    /// Every value whose key is of the family of `prefix` (e.g. `Key::Reservation(0)`
    /// scans all reservations), in key order.
    pub fn scan<T: DeserializeOwned>(&self, family: &Key) -> Result<Vec<(Key, T)>, StoreError> {
        let mut out = Vec::new();
        for item in self.state.scan_prefix(family.family_prefix()) {
            let (k, v) = item?;
            let key = Key::parse(&k)
                .ok_or_else(|| StoreError::Flush(format!("unknown key {:?}", String::from_utf8_lossy(&k))))?;
            out.push((key.clone(), decode(&v, &key)?));
        }
        Ok(out)
    }

    /// Every value under the prefix `prefix` stands for (e.g. `Key::MessagesOf(room)`).
    pub fn scan_under<T: DeserializeOwned>(&self, prefix: &Key) -> Result<Vec<(Key, T)>, StoreError> {
        let mut out = Vec::new();
        for item in self.state.scan_prefix(prefix.bytes()) {
            let (k, v) = item?;
            let key = Key::parse(&k)
                .ok_or_else(|| StoreError::Flush(format!("unknown key {:?}", String::from_utf8_lossy(&k))))?;
            out.push((key.clone(), decode(&v, &key)?));
        }
        Ok(out)
    }

    /// The last value under `prefix` (in key order) that `wanted` accepts, read from the
    /// end: e.g. a room's newest message that is not deleted.
    pub fn last_under<T: DeserializeOwned>(
        &self,
        prefix: &Key,
        wanted: impl Fn(&T) -> bool,
    ) -> Result<Option<T>, StoreError> {
        for item in self.state.scan_prefix(prefix.bytes()).rev() {
            let (k, v) = item?;
            let value = decode(&v, &parse_key(&k)?)?;
            if wanted(&value) {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    /// How many values under `prefix`, from the key `from` on, `counted` accepts: e.g. a
    /// reader's unread messages, from the first after their read position.
    pub fn count_under_from<T: DeserializeOwned>(
        &self,
        prefix: &Key,
        from: &Key,
        counted: impl Fn(&T) -> bool,
    ) -> Result<u64, StoreError> {
        let prefix = prefix.bytes();
        let mut n = 0;
        for item in self.state.range(from.bytes()..) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            if counted(&decode(&v, &parse_key(&k)?)?) {
                n += 1;
            }
        }
        Ok(n)
    }

    /// The values under `prefix` whose keys come before `before`, newest key first, read
    /// lazily (e.g. a room's messages older than those it keeps in memory).
    pub fn iter_under_before<T: DeserializeOwned>(
        &self,
        prefix: &Key,
        before: &Key,
    ) -> impl Iterator<Item = Result<T, StoreError>> {
        self.iter_under_before_skipping(prefix, before, 0)
    }

    /// [`Store::iter_under_before`] past the first `skip` records, which are not decoded.
    pub fn iter_under_before_skipping<T: DeserializeOwned>(
        &self,
        prefix: &Key,
        before: &Key,
        skip: usize,
    ) -> impl Iterator<Item = Result<T, StoreError>> {
        let (prefix, before) = (prefix.bytes(), before.bytes());
        debug_assert!(before.starts_with(&prefix), "the bound lies under the prefix");
        self.state.range(prefix..before).rev().skip(skip).map(|item| {
            let (k, v) = item?;
            decode(&v, &parse_key(&k)?)
        })
    }

    /// The values under `prefix` from the key `from` on, in key order, read lazily.
    pub fn iter_under_from<T: DeserializeOwned>(
        &self,
        prefix: &Key,
        from: &Key,
    ) -> impl Iterator<Item = Result<T, StoreError>> {
        let prefix = prefix.bytes();
        self.state
            .range(from.bytes()..)
            .take_while(move |item| item.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)))
            .map(|item| {
                let (k, v) = item?;
                decode(&v, &parse_key(&k)?)
            })
    }

    /// How many records are under `prefix` (keys only, nothing decoded).
    pub fn count_under(&self, prefix: &Key) -> Result<usize, StoreError> {
        let mut n = 0;
        for item in self.state.scan_prefix(prefix.bytes()).keys() {
            item?;
            n += 1;
        }
        Ok(n)
    }

    /// A fresh, never reused, monotonically increasing id (crash-safe).
    pub fn next_id(&self) -> Result<u64, StoreError> {
        // sled ids start at 0; ours start at 1.
        Ok(self.db.generate_id()? + 1)
    }

    /// Resolves once everything written before the call is on disk.
    pub async fn durable(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.flusher.send(tx).map_err(|_| StoreError::FlusherGone)?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Flush(e)),
            Err(_) => Err(StoreError::FlusherGone),
        }
    }

    /// An actor's answer, given only once everything written before it is durable (a 2xx
    /// means on disk); an error is answered at once.
    pub fn when_durable<T: 'static, E: From<StoreError> + 'static>(
        &self,
        answer: Result<T, E>,
    ) -> futures_util::future::LocalBoxFuture<'static, Result<T, E>> {
        let store = self.clone();
        Box::pin(async move {
            let value = answer?;
            store.durable().await?;
            Ok(value)
        })
    }

    /// Flush now, on this thread (shutdown, tests).
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    pub fn flush_stats(&self) -> &FlushStats {
        &self.stats
    }

    /// True when the store holds no business state at all (first start).
    pub fn is_empty(&self) -> bool {
        self.state.iter().keys().filter_map(Result::ok).all(|k| k.as_ref() == Key::Format.bytes().as_slice())
    }
}

fn write_one(state: &sled::Tree, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<(), StoreError> {
    match value {
        Some(v) => state.insert(key, v)?,
        None => state.remove(key)?,
    };
    Ok(())
}

/// Finish the batches a crash interrupted: apply every journal record left, oldest first,
/// then drop it. Applying a record twice is harmless (it sets keys to values).
fn replay_journal(db: &sled::Db, journal: &sled::Tree, state: &sled::Tree) -> Result<usize, StoreError> {
    let mut replayed = 0;
    for item in journal.iter() {
        let (id, bytes) = item?;
        let batch: Batch = bincode::serde::decode_from_slice(&bytes, config())
            .map(|(v, _)| v)
            .map_err(|source| StoreError::Decode { key: format!("journal/{id:?}"), source })?;
        for (k, v) in batch.writes {
            write_one(state, k, v)?;
        }
        journal.remove(id)?;
        replayed += 1;
    }
    if replayed > 0 {
        db.flush()?;
    }
    Ok(replayed)
}

/// Refuse a store written in another layout, migrate one of layout 4, and mark a new one
/// with ours.
fn check_format(db: &sled::Db, state: &sled::Tree) -> Result<(), StoreError> {
    let found = match state.get(Key::Format.bytes())? {
        Some(v) => Some(decode::<u32>(&v, &Key::Format)?),
        None => None,
    };
    match found {
        Some(FORMAT) => migrate::finish(db, state),
        Some(migrate::FROM) => migrate::four_to_five(db, state).map(|_| ()),
        Some(found) => Err(StoreError::Format { found }),
        None if state.is_empty() => {
            state.insert(Key::Format.bytes(), encode(&FORMAT)?)?;
            Ok(())
        }
        None => Err(StoreError::Format { found: 1 }),
    }
}

/// The flusher: one fsync for every waiter that queued while the last one ran.
fn group_commit(db: sled::Db, rx: mpsc::Receiver<Waiter>, stats: Arc<FlushStats>, window: Duration) {
    let mut last_flush = Instant::now().checked_sub(window).unwrap_or_else(Instant::now);
    while let Ok(first) = rx.recv() {
        if let Some(wait) = window.checked_sub(last_flush.elapsed()) {
            std::thread::sleep(wait);
        }
        last_flush = Instant::now();
        let mut waiters = vec![first];
        while let Ok(more) = rx.try_recv() {
            waiters.push(more);
        }
        let started = Instant::now();
        let result = db.flush().map(|_| ()).map_err(|e| e.to_string());
        crate::observe::commit(waiters.len() as u64, started.elapsed());
        if let Err(e) = &result {
            tracing::error!(error = %e, "store flush failed");
        }
        stats.flushes.fetch_add(1, Ordering::Relaxed);
        stats.waiters.fetch_add(waiters.len() as u64, Ordering::Relaxed);
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}

fn parse_key(k: &[u8]) -> Result<Key, StoreError> {
    Key::parse(k).ok_or_else(|| StoreError::Flush(format!("unknown key {:?}", String::from_utf8_lossy(k))))
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    Ok(bincode::serde::encode_to_vec(value, config())?)
}

fn decode<T: DeserializeOwned>(bytes: &[u8], key: &Key) -> Result<T, StoreError> {
    bincode::serde::decode_from_slice(bytes, config())
        .map(|(v, _)| v)
        .map_err(|source| StoreError::Decode { key: format!("{key:?}"), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn writes_survive_reopen_after_durable() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            let mut batch = Batch::default();
            batch.put(&Key::Wallet(7), &(42u64, String::from("x"))).expect("put");
            batch.put(&Key::Wallet(8), &(1u64, String::from("y"))).expect("put");
            store.apply(batch).expect("apply");
            store.durable().await.expect("durable");
        }
        let store = reopen(dir.path());
        let v: Option<(u64, String)> = store.get(&Key::Wallet(7)).expect("get");
        assert_eq!(v, Some((42, String::from("x"))));
        let all: Vec<(Key, (u64, String))> = store.scan(&Key::Wallet(0)).expect("scan");
        assert_eq!(all.len(), 2);
    }

    fn reopen(dir: &Path) -> Store {
        // The old flusher thread lets go of the file lock once it sees the store dropped.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match Store::open(dir) {
                Ok(s) => break s,
                Err(e) if std::time::Instant::now() > deadline => panic!("reopen: {e}"),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
    }

    /// A crash after a batch's journal record is on disk but before all its writes are:
    /// the next open finishes the batch.
    #[actix_rt::test]
    async fn an_interrupted_batch_is_finished_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            store.put(&Key::Wallet(3), &1u64).expect("put");
            let mut batch = Batch::default();
            batch.put(&Key::Wallet(1), &10u64).expect("put");
            batch.put(&Key::Wallet(2), &20u64).expect("put");
            batch.delete(&Key::Wallet(3));
            // What `apply` does up to the crash: the record, and only the first write.
            store.journal.insert(7u64.to_be_bytes(), encode(&batch).expect("encode")).expect("journal");
            store.put(&Key::Wallet(1), &10u64).expect("first write");
            store.durable().await.expect("durable");
        }
        let store = reopen(dir.path());
        assert_eq!(store.get::<u64>(&Key::Wallet(1)).expect("get"), Some(10));
        assert_eq!(store.get::<u64>(&Key::Wallet(2)).expect("get"), Some(20), "the missing write is replayed");
        assert_eq!(store.get::<u64>(&Key::Wallet(3)).expect("get"), None, "the delete is replayed");
        assert!(store.journal.is_empty(), "a replayed record is dropped");
        // A batch applied whole leaves no record behind.
        let mut batch = Batch::default();
        batch.put(&Key::Wallet(4), &4u64).expect("put");
        batch.put(&Key::Wallet(5), &5u64).expect("put");
        store.apply(batch).expect("apply");
        assert!(store.journal.is_empty());
        assert_eq!(store.get::<u64>(&Key::Wallet(5)).expect("get"), Some(5));
    }

    #[actix_rt::test]
    async fn many_waiters_share_flushes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let waits = (0..200u64).map(|i| {
            let s = store.clone();
            async move {
                s.put(&Key::Wallet(i), &i).expect("put");
                s.durable().await
            }
        });
        for r in futures_util::future::join_all(waits).await {
            r.expect("durable");
        }
        let waiters = store.flush_stats().waiters.load(Ordering::Relaxed);
        assert_eq!(waiters, 200, "every waiter is acknowledged by some flush");
    }
}
