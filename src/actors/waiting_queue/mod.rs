//! `WaitingQueue`: the one actor that lets buyers in at a steady rate.
//!
//! A user takes a place in line (first come, first served) and gets a token that proves
//! itself ([`ticket`]): it names the user and the place, signed with the deployment's key.
//! A tick admits waiting places at `admit_rate` per second (a token bucket, so a quiet
//! queue admits at once) while fewer than `max_active` are active. An active place expires
//! `active_ttl` after admission, or when its holder pays; a waiting one expires `wait_ttl`
//! after issue.
//!
//! Places are numbered in the order they are taken and leave the line only from its
//! front (admission and the uniform wait TTL are both first in, first out). So the queue
//! publishes what it decided as a few numbers ([`admission`]): how far the line has moved,
//! when each stretch of places left it, and which admitted places ended early. A token's
//! position, its admission and its expiry follow from those and the token alone: checks
//! and the gate of the seat endpoints never message this actor.
//!
//! Records: one per live place (written when taken, deleted when it ends), one per step
//! (written once, deleted when its places can no longer be active), one per place ended
//! early (likewise), and the counters. A restart brings the line back in order, and
//! expiries that fell due meanwhile fire at the first tick.

pub mod admission;
pub mod ticket;
pub mod watch;

pub use admission::{Delta, QueueGate, Snapshot, Standing, TokenView};
pub use ticket::{Ticket, TicketKey};

use crate::store::{Batch, Key, Store, StoreError};
use crate::time::{ms, now_ms};
use actix::prelude::*;
use admission::{Admission, AdmissionWriter, Shuffle, Step, PRE};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How often the queue admits and expires.
const TICK: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy)]
pub struct QueuePolicy {
    pub admit_rate: u32,
    pub max_active: u32,
    pub active_ttl: Duration,
    pub wait_ttl: Duration,
}

/// A place as its record keeps it (the record's key is the place number).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct PlaceRecord {
    user: u64,
    issued_at: u64,
}

/// A live place: in the pre-queue, waiting, or admitted and not yet ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Place {
    /// Its place in line (for a pre-queue place, once the shuffle gave it one).
    seq: u64,
    /// Its record's number and its ticket's: `seq`, or `PRE | n` for pre-queue place n.
    record: u64,
    user: u64,
    issued_at: u64,
    /// When its wait began: `issued_at`, or the opening for a pre-queue place.
    waits_from: u64,
}

impl Place {
    fn new(seq: u64, user: u64, issued_at: u64) -> Place {
        Place { seq, record: seq, user, issued_at, waits_from: issued_at }
    }
}

/// What operators set through `PUT /waiting/settings` (over the configured policy), and
/// the pre-queue's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SettingsRecord {
    opens_at: Option<u64>,
    admit_rate: Option<u32>,
    max_active: Option<u32>,
    active_ttl_ms: Option<u64>,
    pre_next: u64,
    /// (seed, base, size, at) once the pre-queue was shuffled.
    shuffle: Option<([u8; 32], u64, u64, u64)>,
}

/// The queue's settings as `GET /waiting/settings` shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    pub opens_at: Option<u64>,
    pub admit_rate: u32,
    pub max_active: u32,
    pub active_ttl: Duration,
    /// Places in the pre-queue (taken before the opening).
    pub pre_queue: u64,
    /// The shuffle, once drawn: its seed (hex), when, and how many places it ordered.
    pub shuffle: Option<(String, u64, u64)>,
}

/// The queue's counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct QueueMeta {
    next_seq: u64,
    epoch: u32,
}

/// The counters as the build before signed tokens wrote them.
#[derive(Deserialize)]
struct LegacyQueueMeta {
    next_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("queue token is unknown or expired")]
    Unknown,
    #[error("queue token belongs to another user")]
    NotYours,
    #[error("queue token is not active yet")]
    NotActive,
    #[error("storage failure: {0}")]
    Storage(String),
    #[error("this node has lost the queue's state for now; try again shortly")]
    Unavailable,
    #[error("{0}")]
    Invalid(String),
    #[error("the queue has opened and its pre-queue was shuffled: an opening cannot be set again")]
    Opened,
}

impl From<StoreError> for QueueError {
    fn from(e: StoreError) -> Self {
        QueueError::Storage(e.to_string())
    }
}

pub struct WaitingQueue {
    policy: QueuePolicy,
    /// What this queue publishes; it is the only writer.
    published: AdmissionWriter,
    gate: QueueGate,
    /// Waiting places, front first; their numbers increase.
    line: VecDeque<Place>,
    /// Admitted places in admission order (so by expiry), each with its admission time;
    /// some may have ended early (see `Admission::ended`).
    admitted: VecDeque<(Place, u64)>,
    /// Each user's live place.
    by_user: HashMap<u64, Place>,
    /// Pre-queue places, before the shuffle.
    pre: Vec<Place>,
    settings: SettingsRecord,
    /// Admissions the rate still allows (a token bucket holding at most one second's).
    budget: f64,
    refilled_at: Instant,
    store: Store,
}

impl WaitingQueue {
    /// Read the queue back from its records. Returns the queue and the gate that reads
    /// what it publishes.
    pub fn load(store: Store, policy: QueuePolicy, key: TicketKey) -> Result<(WaitingQueue, QueueGate), StoreError> {
        let meta = match store.get::<QueueMeta>(&Key::QueueMeta) {
            Ok(Some(m)) => m,
            Ok(None) => QueueMeta { next_seq: 0, epoch: new_epoch() },
            // Counters from before signed tokens: a new epoch, places numbered on.
            Err(StoreError::Decode { .. }) => {
                let old = store.get::<LegacyQueueMeta>(&Key::QueueMeta)?.map_or(0, |m| m.next_seq);
                QueueMeta { next_seq: old, epoch: new_epoch() }
            }
            Err(e) => return Err(e),
        };
        let mut cleanup = Batch::default();
        cleanup.put(&Key::QueueMeta, &meta)?;
        let settings = store.get::<SettingsRecord>(&Key::QueueSettings)?.unwrap_or_default();
        let mut policy = policy;
        policy.admit_rate = settings.admit_rate.unwrap_or(policy.admit_rate);
        policy.max_active = settings.max_active.unwrap_or(policy.max_active);
        policy.active_ttl = settings.active_ttl_ms.map_or(policy.active_ttl, Duration::from_millis);
        let shuffle = settings.shuffle.map(|(seed, base, size, at)| Shuffle::draw(seed, base, size, at));
        let mut steps: Vec<Step> = store.scan::<Step>(&Key::QueueStep(0))?.into_iter().map(|(_, s)| s).collect();
        steps.sort_by_key(|s| s.start);
        let ended = store.scan::<()>(&Key::QueueEnded(0))?.into_iter().filter_map(|(k, _)| match k {
            Key::QueueEnded(seq) => Some(seq),
            _ => None,
        });
        let admission = Admission {
            epoch: meta.epoch,
            next_seq: meta.next_seq,
            through: steps.last().map_or(0, |s| s.end),
            steps: steps.into(),
            ended: ended.collect(),
            active: 0,
            admit_rate: policy.admit_rate,
            active_ttl: ms(policy.active_ttl),
            wait_ttl: ms(policy.wait_ttl),
            opens_at: settings.opens_at,
            pre_next: settings.pre_next,
            shuffle: shuffle.clone(),
            ..Admission::default()
        };
        let mut line = Vec::new();
        let mut admitted = Vec::new();
        let mut by_user: HashMap<u64, Place> = HashMap::new();
        let mut pre = Vec::new();
        for (k, rec) in store.scan::<PlaceRecord>(&Key::QueuePlace(0))? {
            let Key::QueuePlace(record) = k else { continue };
            let place = if record & PRE == 0 {
                Place::new(record, rec.user, rec.issued_at)
            } else {
                let n = record & !PRE;
                match shuffle.as_ref().and_then(|s| Some((s.place(n)?, s.at))) {
                    Some((seq, at)) => Place {
                        seq,
                        record,
                        user: rec.user,
                        issued_at: rec.issued_at,
                        waits_from: rec.issued_at.max(at),
                    },
                    None => {
                        let place = Place {
                            seq: record,
                            record,
                            user: rec.user,
                            issued_at: rec.issued_at,
                            waits_from: rec.issued_at,
                        };
                        pre.push(place);
                        by_user.insert(place.user, place);
                        continue;
                    }
                }
            };
            let seq = place.seq;
            if seq >= admission.through {
                line.push(place);
            } else {
                match admission.left_at(seq) {
                    // Admitted: active until the first tick says otherwise.
                    Some(at) if place.waits_from.saturating_add(admission.wait_ttl) > at => admitted.push((place, at)),
                    // Left the line unadmitted, or long ago: a record a crash left behind.
                    _ => {
                        cleanup.delete(&Key::QueuePlace(record));
                        continue;
                    }
                }
            }
            // A crash may leave a user's old place beside the new one: the newest wins.
            if by_user.get(&place.user).is_none_or(|old| old.seq < seq) {
                by_user.insert(place.user, place);
            }
        }
        store.apply(cleanup)?;
        pre.sort_by_key(|p| p.record);
        line.sort_by_key(|p| p.seq);
        admitted.sort_by_key(|(p, _)| p.seq);
        let mut admission = admission;
        admission.active = admitted.len() as u64;
        let (published, gate) = AdmissionWriter::new(key, admission);
        let q = WaitingQueue {
            policy,
            published,
            gate: gate.clone(),
            line: line.into(),
            admitted: admitted.into(),
            by_user,
            pre,
            settings,
            budget: policy.admit_rate as f64,
            refilled_at: Instant::now(),
            store,
        };
        Ok((q, gate))
    }

    /// The token of `place`.
    fn ticket(&self, place: &Place) -> Ticket {
        Ticket { user: place.user, seq: place.record, issued_at: place.issued_at, epoch: self.published.read().epoch }
    }

    /// Admit what the rate and the cap allow, expire what is due, and forget steps whose
    /// places can no longer be active. The changes are written first and published only
    /// once the write succeeded.
    fn tick(&mut self) {
        let now = now_ms();
        if self.settings.shuffle.is_none() && !self.pre.is_empty() && self.settings.opens_at.is_none_or(|t| now >= t) {
            if let Err(e) = self.open(now) {
                tracing::error!(error = %e, "could not persist the pre-queue's shuffle; will retry");
            }
        }
        let elapsed = self.refilled_at.elapsed().as_secs_f64();
        self.refilled_at = Instant::now();
        let rate = self.policy.admit_rate as f64;
        self.budget = (self.budget + elapsed * rate).min(rate.max(1.0));
        let active_ttl = ms(self.policy.active_ttl);
        let wait_ttl = ms(self.policy.wait_ttl);

        // Admitted places past their TTL (some ended early already).
        let expired_active = self.admitted.iter().take_while(|(_, at)| at.saturating_add(active_ttl) <= now).count();
        // Waiting places past their TTL leave from the front.
        let expired_waiting = self.line.iter().take_while(|p| p.waits_from.saturating_add(wait_ttl) <= now).count();
        let (active, old_steps) = {
            let a = self.published.read();
            let old = a.steps.iter().take(a.steps.len().saturating_sub(1));
            (a.active, old.take_while(|s| s.at.saturating_add(active_ttl) <= now).count())
        };
        let ending = {
            let a = self.published.read();
            self.admitted.iter().take(expired_active).filter(|(p, _)| !a.ended.contains(&p.seq)).count() as u64
        };
        // Admissions, in line order.
        let room = (self.policy.max_active as u64).saturating_sub(active - ending) as usize;
        let admit = (self.budget.max(0.0).floor() as usize).min(room).min(self.line.len() - expired_waiting);
        if expired_active == 0 && expired_waiting == 0 && admit == 0 && old_steps == 0 {
            return;
        }
        let mut batch = Batch::default();
        // An ended place's record went when it ended; the others' go now.
        for (p, _) in self.admitted.iter().take(expired_active) {
            batch.delete(&Key::QueuePlace(p.record));
        }
        for p in self.line.iter().take(expired_waiting) {
            batch.delete(&Key::QueuePlace(p.record));
        }
        let leaving = expired_waiting + admit;
        let through = self.published.read().through;
        let new_step = (leaving > 0).then(|| Step {
            start: through,
            end: self.line.get(leaving - 1).map_or(through, |p| p.seq + 1),
            at: now,
        });
        if let Some(step) = &new_step {
            if let Err(e) = batch.put(&Key::QueueStep(step.start), step) {
                tracing::error!(error = %e, "could not encode a queue step");
                return;
            }
        }
        // Steps whose places can no longer be active, and the places of theirs that ended
        // early: nobody needs them to tell a token's standing any more.
        let (dropped_steps, ended_gone): (Vec<Step>, Vec<u64>) = {
            let a = self.published.read();
            let dropped: Vec<Step> = a.steps.iter().take(old_steps).copied().collect();
            let before = dropped.last().map_or(0, |s| s.end);
            (dropped, a.ended.range(..before).copied().collect())
        };
        for s in &dropped_steps {
            batch.delete(&Key::QueueStep(s.start));
        }
        for seq in &ended_gone {
            batch.delete(&Key::QueueEnded(*seq));
        }
        if let Err(e) = self.store.apply(batch) {
            tracing::error!(error = %e, "could not persist queue admissions and expiries; will retry");
            return;
        }
        // Written: now change memory and what readers see.
        let gone: Vec<(Place, u64)> = self.admitted.drain(..expired_active).collect();
        for (p, _) in &gone {
            self.forget(p);
        }
        let left: Vec<Place> = self.line.drain(..leaving).collect();
        for p in &left[..expired_waiting] {
            self.forget(p);
        }
        for p in &left[expired_waiting..] {
            self.admitted.push_back((*p, now));
        }
        {
            let mut a = self.published.write();
            for s in &ended_gone {
                a.ended.remove(s);
            }
            a.active = a.active - ending + admit as u64;
            if let Some(step) = new_step {
                a.push_step(step);
            }
            a.steps.drain(..old_steps);
            fit_deque(&mut a.steps);
        }
        // After a crowd left, give back the room it took.
        if expired_active + expired_waiting > 0 {
            fit_deque(&mut self.admitted);
            fit_deque(&mut self.line);
            fit_map(&mut self.by_user);
        }
        self.budget -= admit as f64;
        crate::observe::queue_admitted(admit as u64);
        crate::observe::queue_tokens_expired(ending + expired_waiting as u64);
    }

    /// The opening: shuffle the pre-queue (a uniform random order from a new seed, kept
    /// for the audit) and place it in line after everyone already there, ahead of everyone
    /// who comes later. Written first; its places wait from now on.
    fn open(&mut self, now: u64) -> Result<(), QueueError> {
        use rand::RngCore;
        let mut seed = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut seed);
        let (base, epoch) = {
            let a = self.published.read();
            (a.next_seq, a.epoch)
        };
        let size = self.settings.pre_next;
        let shuffle = Shuffle::draw(seed, base, size, now);
        let settings = SettingsRecord { shuffle: Some((seed, base, size, now)), ..self.settings.clone() };
        let mut batch = Batch::default();
        batch.put(&Key::QueueSettings, &settings)?;
        batch.put(&Key::QueueMeta, &QueueMeta { next_seq: base + size, epoch })?;
        self.store.apply(batch)?;
        self.settings = settings;
        let mut placed: Vec<Place> = std::mem::take(&mut self.pre)
            .into_iter()
            .filter_map(|p| Some(Place { seq: shuffle.place(p.record & !PRE)?, waits_from: p.issued_at.max(now), ..p }))
            .collect();
        placed.sort_by_key(|p| p.seq);
        for p in &placed {
            self.by_user.insert(p.user, *p);
        }
        self.line.extend(placed);
        {
            let mut a = self.published.write();
            a.next_seq = base + size;
            a.shuffle = Some(shuffle);
        }
        tracing::info!(places = size, seed = %hex(&seed), "the queue opened: the pre-queue is shuffled");
        Ok(())
    }

    /// The queue's figures for operators.
    fn figures(&self) {
        let rate = self.policy.admit_rate.max(1) as u64;
        let waiting = self.line.len() as u64;
        crate::observe::queue(waiting, self.published.read().active, waiting.div_ceil(rate));
    }

    /// Forget a user's place (its record is deleted by the caller's write).
    fn forget(&mut self, place: &Place) {
        if self.by_user.get(&place.user) == Some(place) {
            self.by_user.remove(&place.user);
        }
    }

    /// The view of `place`, if it is live at `now`.
    fn view(&self, place: &Place, now: u64) -> Option<TokenView> {
        let ticket = self.ticket(place);
        let standing = self.published.read().standing(&ticket, now).ok()?;
        Some(self.gate.view(self.gate.key().sign(&ticket), &ticket, standing))
    }
}

/// Collections keep the room their largest crowd took. Once one holds less than a quarter
/// of its room, it is given half back: memory follows what is live, and each shrink
/// (a copy of what is left) comes after at least as many removals, so it stays cheap.
const FIT_MIN: usize = 1024;

pub(super) fn fit_deque<T>(d: &mut VecDeque<T>) {
    if d.capacity() > FIT_MIN && d.len() < d.capacity() / 4 {
        d.shrink_to((d.len() * 2).max(FIT_MIN));
    }
}

fn fit_map<K: std::hash::Hash + Eq, V>(m: &mut HashMap<K, V>) {
    if m.capacity() > FIT_MIN && m.len() < m.capacity() / 4 {
        m.shrink_to((m.len() * 2).max(FIT_MIN));
    }
}

fn new_epoch() -> u32 {
    use rand::Rng;
    rand::thread_rng().gen()
}

impl Actor for WaitingQueue {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(crate::actors::MAILBOX);
        self.tick();
        self.figures();
        ctx.run_interval(TICK, |q, _| {
            q.tick();
            q.figures();
        });
    }
}

/// Take a place in line (or get back the user's live one).
#[derive(Message)]
#[rtype(result = "Result<TokenView, QueueError>")]
pub struct Issue {
    pub user: u64,
}

impl Handler<Issue> for WaitingQueue {
    type Result = ResponseFuture<Result<TokenView, QueueError>>;
    fn handle(&mut self, msg: Issue, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let now = now_ms();
        let existing = self.by_user.get(&msg.user).and_then(|p| self.view(p, now));
        let view = match existing {
            Some(v) => Ok(v),
            None => self.issue(msg.user, now),
        };
        Box::pin(async move {
            let view = view?;
            store.durable().await?;
            Ok(view)
        })
    }
}

impl WaitingQueue {
    fn issue(&mut self, user: u64, now: u64) -> Result<TokenView, QueueError> {
        if self.settings.shuffle.is_none() && self.settings.opens_at.is_some_and(|t| now < t) {
            return self.issue_before_opening(user, now);
        }
        let (seq, epoch) = {
            let a = self.published.read();
            (a.next_seq, a.epoch)
        };
        let place = Place::new(seq, user, now);
        let mut batch = Batch::default();
        batch.put(&Key::QueuePlace(seq), &PlaceRecord { user, issued_at: now })?;
        batch.put(&Key::QueueMeta, &QueueMeta { next_seq: seq + 1, epoch })?;
        self.store.apply(batch)?;
        self.published.write().next_seq = seq + 1;
        // A user's earlier place that has expired but that the tick has not swept yet stays
        // in line until it does; the user's place is the new one.
        self.by_user.insert(user, place);
        self.line.push_back(place);
        crate::observe::queue_issued();
        // Admit at once what the rate and the cap allow (in line order, so nobody is passed):
        // a quiet queue lets a user straight in, a busy one at the admission rate.
        self.tick();
        self.view(&place, now).ok_or(QueueError::Unknown)
    }
}

impl WaitingQueue {
    /// A place in the pre-queue: numbered in arrival order, which the shuffle forgets.
    fn issue_before_opening(&mut self, user: u64, now: u64) -> Result<TokenView, QueueError> {
        let n = self.settings.pre_next;
        let place = Place { seq: PRE | n, record: PRE | n, user, issued_at: now, waits_from: now };
        let settings = SettingsRecord { pre_next: n + 1, ..self.settings.clone() };
        let mut batch = Batch::default();
        batch.put(&Key::QueuePlace(PRE | n), &PlaceRecord { user, issued_at: now })?;
        batch.put(&Key::QueueSettings, &settings)?;
        self.store.apply(batch)?;
        self.settings = settings;
        self.published.write().pre_next = n + 1;
        self.by_user.insert(user, place);
        self.pre.push(place);
        crate::observe::queue_issued();
        self.view(&place, now).ok_or(QueueError::Unknown)
    }

    fn settings_view(&self) -> QueueSettings {
        QueueSettings {
            opens_at: self.settings.opens_at,
            admit_rate: self.policy.admit_rate,
            max_active: self.policy.max_active,
            active_ttl: self.policy.active_ttl,
            pre_queue: self.settings.pre_next,
            shuffle: self.settings.shuffle.map(|(seed, _, size, at)| (hex(&seed), at, size)),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The queue's settings.
#[derive(Message)]
#[rtype(result = "QueueSettings")]
pub struct GetSettings;

impl Handler<GetSettings> for WaitingQueue {
    type Result = MessageResult<GetSettings>;
    fn handle(&mut self, _: GetSettings, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.settings_view())
    }
}

/// Change the queue's settings; a field left `None` stays. `opens_at: Some(None)` clears
/// the opening (a pre-queue then opens at the next tick).
#[derive(Message, Debug, Default)]
#[rtype(result = "Result<QueueSettings, QueueError>")]
pub struct PutSettings {
    pub opens_at: Option<Option<u64>>,
    pub admit_rate: Option<u32>,
    pub max_active: Option<u32>,
    pub active_ttl: Option<Duration>,
}

impl Handler<PutSettings> for WaitingQueue {
    type Result = ResponseFuture<Result<QueueSettings, QueueError>>;
    fn handle(&mut self, msg: PutSettings, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let result = self.put_settings(msg, now_ms());
        Box::pin(async move {
            let view = result?;
            store.durable().await?;
            Ok(view)
        })
    }
}

impl WaitingQueue {
    fn put_settings(&mut self, msg: PutSettings, now: u64) -> Result<QueueSettings, QueueError> {
        let invalid = |m: &str| Err(QueueError::Invalid(m.to_string()));
        if let Some(Some(at)) = msg.opens_at {
            if self.settings.shuffle.is_some() {
                return Err(QueueError::Opened);
            }
            if at <= now {
                return invalid("opensAt must be in the future");
            }
        }
        if msg.admit_rate == Some(0) || msg.max_active == Some(0) || msg.active_ttl == Some(Duration::ZERO) {
            return invalid("admitRate, maxActive and activeTtlSeconds must be at least 1");
        }
        let mut settings = self.settings.clone();
        if let Some(at) = msg.opens_at {
            settings.opens_at = at;
        }
        settings.admit_rate = msg.admit_rate.or(settings.admit_rate);
        settings.max_active = msg.max_active.or(settings.max_active);
        settings.active_ttl_ms = msg.active_ttl.map(ms).or(settings.active_ttl_ms);
        let mut batch = Batch::default();
        batch.put(&Key::QueueSettings, &settings)?;
        self.store.apply(batch)?;
        self.settings = settings;
        if let Some(r) = msg.admit_rate {
            self.policy.admit_rate = r;
        }
        if let Some(m) = msg.max_active {
            self.policy.max_active = m;
        }
        if let Some(t) = msg.active_ttl {
            self.policy.active_ttl = t;
        }
        {
            let mut a = self.published.write();
            a.opens_at = self.settings.opens_at;
            a.admit_rate = self.policy.admit_rate;
            a.active_ttl = ms(self.policy.active_ttl);
        }
        // A cleared opening opens a waiting pre-queue now.
        self.tick();
        Ok(self.settings_view())
    }
}

/// End an active token (its holder has paid). Resolves once the end is on disk.
#[derive(Message)]
#[rtype(result = "Result<(), QueueError>")]
pub struct Retire {
    pub token: String,
}

impl Handler<Retire> for WaitingQueue {
    type Result = ResponseFuture<Result<(), QueueError>>;
    fn handle(&mut self, msg: Retire, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let result = self.retire(&msg.token);
        Box::pin(async move {
            result?;
            store.durable().await?;
            Ok(())
        })
    }
}

impl WaitingQueue {
    fn retire(&mut self, token: &str) -> Result<(), QueueError> {
        let Some(ticket) = self.gate.key().verify(token) else { return Ok(()) };
        let Some(place) = self.by_user.get(&ticket.user).copied() else { return Ok(()) };
        let active = matches!(self.published.read().standing(&ticket, now_ms()), Ok(Standing::Active { .. }));
        if place.record != ticket.seq || !active {
            return Ok(());
        }
        let mut batch = Batch::default();
        batch.delete(&Key::QueuePlace(place.record));
        batch.put(&Key::QueueEnded(place.seq), &())?;
        self.store.apply(batch)?;
        {
            let mut a = self.published.write();
            a.end(place.seq);
            a.active -= 1;
        }
        self.forget(&place);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(admit_rate: u32, max_active: u32) -> QueuePolicy {
        QueuePolicy { admit_rate, max_active, active_ttl: Duration::from_secs(600), wait_ttl: Duration::from_secs(600) }
    }

    fn open(store: &Store, p: QueuePolicy) -> (WaitingQueue, QueueGate) {
        WaitingQueue::load(store.clone(), p, TicketKey::new(b"k")).expect("queue")
    }

    /// Places are admitted in order up to the cap; a payment frees a place; a restart
    /// brings back the line, the admitted places and the ended ones, and old tokens keep
    /// standing where they stood.
    #[test]
    fn admissions_survive_a_restart_and_tokens_answer_without_the_queue() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let now = now_ms();
        let views: Vec<TokenView> = {
            let (mut q, gate) = open(&store, policy(1000, 2));
            let views: Vec<TokenView> = (1..=4).map(|u| q.issue(u, now).expect("issue")).collect();
            assert_eq!(
                views.iter().map(|v| (v.active, v.position)).collect::<Vec<_>>(),
                [(true, 0), (true, 0), (false, 1), (false, 2)]
            );
            // Issuing again gives the same token.
            let again = q.by_user.get(&3).and_then(|p| q.view(p, now)).expect("live");
            assert_eq!(again.token, views[2].token);
            // User 1 pays: the place ends, user 3 moves in at the next tick.
            q.retire(&views[0].token).expect("retire");
            assert_eq!(gate.check(&views[0].token, 1, now_ms()), Err(QueueError::Unknown));
            q.tick();
            assert!(gate.check(&views[2].token, 3, now_ms()).expect("3").active);
            assert_eq!(gate.check(&views[3].token, 4, now_ms()).expect("4").position, 1);
            views
        };
        let (q, gate) = open(&store, policy(1000, 2));
        let standing: Vec<Result<(bool, u64), QueueError>> =
            views.iter().map(|v| gate.check(&v.token, v.user, now_ms()).map(|v| (v.active, v.position))).collect();
        assert_eq!(standing, [Err(QueueError::Unknown), Ok((true, 0)), Ok((true, 0)), Ok((false, 1))]);
        assert_eq!((q.line.len(), q.admitted.len(), q.published.read().active), (1, 2, 2));
        assert_eq!(q.published.read().ended.iter().copied().collect::<Vec<_>>(), [0]);
    }

    #[test]
    fn collections_give_back_the_room_a_crowd_took() {
        let mut d: VecDeque<u64> = (0..100_000).collect();
        d.drain(..99_000);
        fit_deque(&mut d);
        assert!(d.capacity() < 4 * 1000 + FIT_MIN, "room for {} kept for {}", d.capacity(), d.len());
        assert_eq!(d.front(), Some(&99_000));
        let mut m: HashMap<u64, u64> = (0..100_000).map(|i| (i, i)).collect();
        m.retain(|k, _| *k < 500);
        fit_map(&mut m);
        assert!(m.capacity() < 8 * FIT_MIN, "room for {} kept for {}", m.capacity(), m.len());
        // A small one is left alone.
        let mut small: VecDeque<u64> = VecDeque::with_capacity(FIT_MIN);
        small.push_back(1);
        fit_deque(&mut small);
        assert!(small.capacity() >= FIT_MIN);
    }

    /// A waiting place that expired leaves the line unadmitted, and its token stays
    /// unknown even once the line has moved past it.
    #[test]
    fn an_expired_waiting_place_is_passed_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        // Long enough that a place does not expire between its issue and the tick inside
        // it on a busy machine (1 ms did, now and then), short enough to wait out.
        let wait_ttl = Duration::from_millis(300);
        let (mut q, gate) = open(&store, QueuePolicy { wait_ttl, ..policy(1000, 1) });
        let first = q.issue(1, now_ms()).expect("issue");
        let late = q.issue(2, now_ms()).expect("issue");
        assert!(first.active && !late.active);
        std::thread::sleep(wait_ttl + Duration::from_millis(50));
        q.retire(&first.token).expect("retire");
        q.tick();
        assert_eq!(q.published.read().through, 2, "the expired place left the line");
        assert_eq!(gate.check(&late.token, 2, now_ms()), Err(QueueError::Unknown));
        let again = q.issue(2, now_ms()).expect("issue");
        assert!(again.active && again.token != late.token, "{again:?}");
    }
}
