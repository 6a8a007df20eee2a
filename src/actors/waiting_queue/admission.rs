//! How far the line has moved: the state the queue publishes, and the gate that reads it.
//!
//! The waiting queue is the only writer of admissions. What it decided is summed up here:
//! the places issued so far, the place the line has moved past, and when each stretch of
//! places left it ("steps": admitted, or expired while waiting), for as long as a place
//! admitted then could still be active, and the admitted places that ended early (paid).
//! Together with what a [`Ticket`] says about itself, that answers any token without
//! asking the queue: [`Admission::standing`] is a pure function of the two and the clock.
//! So the check and the gate run on the caller's thread, on any node that has the state.
//!
//! A place below `through` that left in a step at `at` was admitted if it was still valid
//! then (`issued_at + wait_ttl > at`), which is the rule the queue admits by; it is active
//! until `at + active_ttl` unless it ended early.

use super::ticket::{Ticket, TicketKey};
use super::QueueError;
use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The places in `start..end` left the line at `at` (Unix ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Step {
    pub start: u64,
    pub end: u64,
    pub at: u64,
}

/// The queue's admission state.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Admission {
    /// The queue that issued the tokens this state answers for.
    pub epoch: u32,
    /// Places issued so far are `0..next_seq`.
    pub next_seq: u64,
    /// Every place below it has left the line.
    pub through: u64,
    /// The steps of the last active TTL, oldest first (the newest is kept even when older,
    /// so that `through` survives a restart). Places below the first one's start left too
    /// long ago to be active.
    pub steps: VecDeque<Step>,
    /// Admitted places that ended early (their holder paid), within the steps.
    pub ended: BTreeSet<u64>,
    /// How many admitted places are active now.
    pub active: u64,
    pub admit_rate: u32,
    /// ms.
    pub active_ttl: u64,
    /// ms.
    pub wait_ttl: u64,
    /// When the queue opens (Unix ms): before it, new places go to the pre-queue.
    pub opens_at: Option<u64>,
    /// Pre-queue places taken so far are `PRE | 0 .. PRE | pre_next`.
    pub pre_next: u64,
    /// The pre-queue's shuffle, once the queue opened.
    pub shuffle: Option<Shuffle>,
    /// Whether this copy may answer: always in the core; on an edge, only while it keeps
    /// up with the core's updates (see `cluster::edge`).
    #[serde(skip)]
    pub unavailable: bool,
    /// What changed since the last [`Delta`] was taken, when the core publishes them.
    #[serde(skip)]
    pub(super) pending: Pending,
}

/// Marks a ticket's place as a pre-queue number (before the shuffle gives it a place).
pub const PRE: u64 = 1 << 63;

/// The pre-queue's order, drawn at the opening: a uniform random permutation of the
/// `size` pre-queue places (Fisher-Yates driven by ChaCha20 from `seed`, see
/// [`shuffle_order`]), placed from `base` on, ahead of everyone who came after. Anyone with
/// the seed can draw the order again (the audit).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shuffle {
    pub seed: [u8; 32],
    pub base: u64,
    pub size: u64,
    /// When it was drawn (Unix ms): a pre-queue place waits from then on.
    pub at: u64,
    /// Pre-queue number -> offset from `base` (drawn again from the seed, not sent).
    #[serde(skip)]
    pub offsets: Arc<Vec<u64>>,
}

impl Shuffle {
    pub fn draw(seed: [u8; 32], base: u64, size: u64, at: u64) -> Shuffle {
        let order = shuffle_order(&seed, size);
        let mut offsets = vec![0u64; order.len()];
        for (k, n) in order.iter().enumerate() {
            offsets[*n as usize] = k as u64;
        }
        Shuffle { seed, base, size, at, offsets: Arc::new(offsets) }
    }

    /// The place of pre-queue number `n`.
    pub fn place(&self, n: u64) -> Option<u64> {
        self.offsets.get(n as usize).map(|o| self.base + o)
    }
}

/// The order of `size` pre-queue numbers drawn from `seed`: the k-th in line is
/// `order[k]`. Fisher-Yates from the last position down, each index drawn uniformly from
/// `0..=i` by rejection sampling of ChaCha20's 64-bit outputs.
pub fn shuffle_order(seed: &[u8; 32], size: u64) -> Vec<u64> {
    use rand::{RngCore, SeedableRng};
    let mut rng = rand_chacha::ChaCha20Rng::from_seed(*seed);
    let mut order: Vec<u64> = (0..size).collect();
    for i in (1..order.len()).rev() {
        let bound = i as u64 + 1;
        let zone = u64::MAX - u64::MAX % bound;
        let j = loop {
            let x = rng.next_u64();
            if x < zone {
                break x % bound;
            }
        };
        order.swap(i, j as usize);
    }
    order
}

/// Changes not yet published.
#[derive(Debug, Clone, Default)]
pub(super) struct Pending {
    on: bool,
    dirty: bool,
    version: u64,
    steps: Vec<Step>,
    ended: Vec<u64>,
}

/// The changes of the admission state from version `from` to `to`, as the core publishes
/// them to the edges every tick (and at least once a second): the numbers whole, the
/// steps and early ends that were added, and where the kept steps now start (older steps
/// and ends are dropped).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Delta {
    pub boot: u64,
    pub from: u64,
    pub to: u64,
    pub epoch: u32,
    pub next_seq: u64,
    pub through: u64,
    pub active: u64,
    pub admit_rate: u32,
    pub active_ttl: u64,
    pub wait_ttl: u64,
    pub steps_from: u64,
    pub steps: Vec<Step>,
    pub ended: Vec<u64>,
    pub opens_at: Option<u64>,
    pub pre_next: u64,
    /// The shuffle, in every delta once drawn (its offsets are drawn again from the seed).
    pub shuffle: Option<Shuffle>,
}

/// The whole state at `version`, for an edge that starts or missed a delta.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    pub boot: u64,
    pub version: u64,
    pub state: Admission,
}

/// An edge's copy missed a delta: it needs a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap;

impl Admission {
    /// Add a step (the queue's tick).
    pub fn push_step(&mut self, step: Step) {
        if self.pending.on {
            self.pending.steps.push(step);
        }
        self.through = step.end;
        self.steps.push_back(step);
    }

    /// An admitted place ended early.
    pub fn end(&mut self, seq: u64) {
        if self.pending.on {
            self.pending.ended.push(seq);
        }
        self.ended.insert(seq);
    }

    fn steps_from(&self) -> u64 {
        self.steps.front().map_or(self.through, |s| s.start)
    }

    /// Drop what lies before `from`: steps, and places ended early among them.
    fn drop_before(&mut self, from: u64) {
        while self.steps.front().is_some_and(|s| s.start < from) {
            self.steps.pop_front();
        }
        super::fit_deque(&mut self.steps);
        self.ended = self.ended.split_off(&from);
    }

    /// Apply a delta published by the core (an edge's copy).
    pub fn apply(&mut self, boot: u64, d: &Delta) -> Result<(), Gap> {
        if d.boot != boot || d.from != self.pending.version {
            return if d.boot == boot && d.to <= self.pending.version { Ok(()) } else { Err(Gap) };
        }
        for step in &d.steps {
            if self.steps.back().is_none_or(|last| step.start >= last.end) {
                self.steps.push_back(*step);
            }
        }
        self.ended.extend(d.ended.iter().copied());
        self.drop_before(d.steps_from);
        self.epoch = d.epoch;
        self.next_seq = d.next_seq;
        self.through = d.through;
        self.active = d.active;
        self.admit_rate = d.admit_rate;
        self.active_ttl = d.active_ttl;
        self.wait_ttl = d.wait_ttl;
        self.opens_at = d.opens_at;
        self.pre_next = d.pre_next;
        let drawn = |s: &Option<Shuffle>| s.as_ref().map(|s| (s.seed, s.base, s.size));
        if drawn(&self.shuffle) != drawn(&d.shuffle) {
            self.shuffle = d.shuffle.as_ref().map(|s| Shuffle::draw(s.seed, s.base, s.size, s.at));
        }
        self.pending.version = d.to;
        Ok(())
    }
}

/// Where a valid token stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// In the pre-queue, before the opening: no place yet.
    PreQueue {
        opens_at: u64,
        expires_at: u64,
    },
    /// 1 for the first in line.
    Waiting {
        position: u64,
        expires_at: u64,
    },
    Active {
        expires_at: u64,
    },
}

impl Admission {
    /// When the place `seq` (below `through`) left the line, while that is within the steps.
    pub fn left_at(&self, seq: u64) -> Option<u64> {
        if self.steps.front().is_none_or(|s| seq < s.start) || seq >= self.through {
            return None;
        }
        let i = self.steps.partition_point(|s| s.end <= seq);
        self.steps.get(i).filter(|s| s.start <= seq).map(|s| s.at)
    }

    /// What the token `t` stands for at `now`: unknown (expired, ended, or of another
    /// queue), waiting, or active.
    pub fn standing(&self, t: &Ticket, now: u64) -> Result<Standing, QueueError> {
        if t.epoch != self.epoch {
            return Err(QueueError::Unknown);
        }
        // A signed ticket beyond what this copy has heard of (`next_seq`, `pre_next`) was
        // issued since its last update: on an edge, a token taken a moment ago.
        if t.seq & PRE != 0 && self.shuffle.is_none() {
            let opens_at = self.opens_at.unwrap_or(now).max(t.issued_at);
            return Ok(Standing::PreQueue { opens_at, expires_at: opens_at.saturating_add(self.wait_ttl) });
        }
        let (seq, waits_from) = self.place_of(t).ok_or(QueueError::Unknown)?;
        if seq >= self.through {
            let expires_at = waits_from.saturating_add(self.wait_ttl);
            return if expires_at > now {
                Ok(Standing::Waiting { position: seq - self.through + 1, expires_at })
            } else {
                Err(QueueError::Unknown)
            };
        }
        let at = self.left_at(seq).ok_or(QueueError::Unknown)?;
        let admitted = waits_from.saturating_add(self.wait_ttl) > at;
        let expires_at = at.saturating_add(self.active_ttl);
        if !admitted || expires_at <= now || self.ended.contains(&seq) {
            return Err(QueueError::Unknown);
        }
        Ok(Standing::Active { expires_at })
    }

    /// A ticket's place in line and when its wait began: its own place, or for a
    /// pre-queue ticket the place the shuffle gave it, waiting from the opening.
    pub fn place_of(&self, t: &Ticket) -> Option<(u64, u64)> {
        if t.seq & PRE == 0 {
            return Some((t.seq, t.issued_at));
        }
        let n = t.seq & !PRE;
        let shuffle = self.shuffle.as_ref()?;
        Some((shuffle.place(n)?, t.issued_at.max(shuffle.at)))
    }

    /// Seconds until a place at `position` is admitted, at the admission rate.
    pub fn estimated_wait_secs(&self, position: u64) -> u64 {
        position.div_ceil(self.admit_rate.max(1) as u64)
    }
}

/// A token as clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenView {
    pub token: String,
    pub user: u64,
    /// 0 once active; 1 for the first in line.
    pub position: u64,
    pub active: bool,
    pub expires_at: u64,
    pub estimated_wait_secs: u64,
    /// In the pre-queue: when the queue opens.
    pub opens_at: Option<u64>,
}

/// The read side: checks tokens against the published state, on the caller's thread. The
/// queue holds the only [`AdmissionWriter`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct QueueGate {
    key: TicketKey,
    state: Arc<RwLock<Admission>>,
}

/// The queue's handle for changing what it publishes.
#[derive(Debug)]
pub struct AdmissionWriter {
    state: Arc<RwLock<Admission>>,
}

impl AdmissionWriter {
    pub fn new(key: TicketKey, initial: Admission) -> (AdmissionWriter, QueueGate) {
        let state = Arc::new(RwLock::new(initial));
        (AdmissionWriter { state: state.clone() }, QueueGate { key, state })
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, Admission> {
        // A writer that panicked left the state whole: every change is a few assignments.
        let mut a = self.state.write().unwrap_or_else(|e| e.into_inner());
        a.pending.dirty = true;
        a
    }

    pub fn read(&self) -> RwLockReadGuard<'_, Admission> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl QueueGate {
    fn read(&self) -> RwLockReadGuard<'_, Admission> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn key(&self) -> &TicketKey {
        &self.key
    }

    fn write(&self) -> RwLockWriteGuard<'_, Admission> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this copy answers (false on an edge that lost the core's updates).
    pub fn available(&self) -> bool {
        !self.read().unavailable
    }

    /// The core: keep the changes from now on, for [`take_delta`](Self::take_delta).
    pub fn publish_changes(&self) {
        self.write().pending.on = true;
    }

    /// The core: what changed since the last delta, if anything did (or `always`: a
    /// heartbeat that says nothing changed).
    pub fn take_delta(&self, boot: u64, always: bool) -> Option<Delta> {
        let mut a = self.write();
        if !a.pending.dirty && !always {
            return None;
        }
        let from = a.pending.version;
        a.pending.version += 1;
        a.pending.dirty = false;
        let steps = std::mem::take(&mut a.pending.steps);
        let ended = std::mem::take(&mut a.pending.ended);
        Some(Delta {
            boot,
            from,
            to: a.pending.version,
            epoch: a.epoch,
            next_seq: a.next_seq,
            through: a.through,
            active: a.active,
            admit_rate: a.admit_rate,
            active_ttl: a.active_ttl,
            wait_ttl: a.wait_ttl,
            steps_from: a.steps_from(),
            steps,
            ended,
            opens_at: a.opens_at,
            pre_next: a.pre_next,
            shuffle: a.shuffle.clone(),
        })
    }

    /// The core: the whole state and the version of the last delta taken.
    pub fn snapshot(&self, boot: u64) -> Snapshot {
        let a = self.read();
        Snapshot { boot, version: a.pending.version, state: a.clone() }
    }

    /// An edge: start over from a snapshot.
    pub fn install(&self, snapshot: Snapshot) {
        let mut a = self.write();
        *a = snapshot.state;
        a.shuffle = a.shuffle.take().map(|s| Shuffle::draw(s.seed, s.base, s.size, s.at));
        a.pending = Pending { version: snapshot.version, ..Pending::default() };
        a.unavailable = false;
    }

    /// An edge: apply the core's delta (from the core booted as `boot`).
    pub fn apply(&self, boot: u64, delta: &Delta) -> Result<(), Gap> {
        self.write().apply(boot, delta)
    }

    /// An edge: stop (or resume) answering.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.write().unavailable = unavailable;
    }

    /// An edge's gate before its first snapshot: unavailable until one is installed.
    pub fn replica(key: TicketKey) -> QueueGate {
        let state = Admission { unavailable: true, ..Admission::default() };
        QueueGate { key, state: Arc::new(RwLock::new(state)) }
    }

    /// The published state, read-locked (hold it briefly).
    pub fn state(&self) -> RwLockReadGuard<'_, Admission> {
        self.read()
    }

    /// Where a verified ticket stands at `now`.
    pub fn standing(&self, ticket: &Ticket, now: u64) -> Result<Standing, QueueError> {
        self.read().standing(ticket, now)
    }

    /// What the token `text` says and where it stands for `user`: unknown (forged,
    /// altered, expired or ended), another user's, or its standing. The one check behind
    /// [`check`](Self::check), [`require_active`](Self::require_active) and the queue
    /// socket's handshake.
    pub fn stand(&self, text: &str, user: u64, now: u64) -> Result<(Ticket, Standing), QueueError> {
        let ticket = self.key.verify(text).ok_or(QueueError::Unknown)?;
        let standing = {
            let a = self.read();
            if a.unavailable {
                return Err(QueueError::Unavailable);
            }
            a.standing(&ticket, now)?
        };
        if ticket.user != user {
            return Err(QueueError::NotYours);
        }
        Ok((ticket, standing))
    }

    /// The token `text` as `user` sees it (see [`stand`](Self::stand)).
    pub fn check(&self, text: &str, user: u64, now: u64) -> Result<TokenView, QueueError> {
        let (ticket, standing) = self.stand(text, user, now)?;
        Ok(self.view(text.to_string(), &ticket, standing))
    }

    /// Succeeds only for an active token of `user`; returns what the token says.
    pub fn require_active(&self, text: &str, user: u64, now: u64) -> Result<Ticket, QueueError> {
        match self.stand(text, user, now)? {
            (ticket, Standing::Active { .. }) => Ok(ticket),
            (_, Standing::Waiting { .. } | Standing::PreQueue { .. }) => Err(QueueError::NotActive),
        }
    }

    /// The view of `ticket` (whose text is `token`) standing as it does.
    pub fn view(&self, token: String, ticket: &Ticket, standing: Standing) -> TokenView {
        let (position, active, expires_at, opens_at) = match standing {
            Standing::PreQueue { opens_at, expires_at } => (0, false, expires_at, Some(opens_at)),
            Standing::Waiting { position, expires_at } => (position, false, expires_at, None),
            Standing::Active { expires_at } => (0, true, expires_at, None),
        };
        let estimated_wait_secs = match opens_at {
            Some(at) => at.saturating_sub(crate::time::now_ms()).div_ceil(1000),
            None => self.read().estimated_wait_secs(position),
        };
        TokenView { token, user: ticket.user, position, active, expires_at, estimated_wait_secs, opens_at }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> Admission {
        Admission {
            epoch: 1,
            next_seq: 10,
            through: 6,
            steps: [Step { start: 2, end: 4, at: 1_000 }, Step { start: 4, end: 6, at: 2_000 }].into(),
            ended: [5].into(),
            active: 2,
            admit_rate: 2,
            active_ttl: 5_000,
            wait_ttl: 1_000,
            ..Admission::default()
        }
    }

    fn t(seq: u64, issued_at: u64) -> Ticket {
        Ticket { user: 1, seq, issued_at, epoch: 1 }
    }

    #[test]
    fn a_token_stands_where_the_published_state_puts_it() {
        let s = state();
        // Waiting: positions count from `through`; a waiting token expires wait_ttl after issue.
        assert_eq!(s.standing(&t(6, 2_500), 3_000), Ok(Standing::Waiting { position: 1, expires_at: 3_500 }));
        assert_eq!(s.standing(&t(9, 2_900), 3_000), Ok(Standing::Waiting { position: 4, expires_at: 3_900 }));
        assert_eq!(s.standing(&t(9, 100), 3_100), Err(QueueError::Unknown), "expired while waiting");
        // Admitted at its step's time, active for active_ttl after it.
        assert_eq!(s.standing(&t(2, 500), 3_000), Ok(Standing::Active { expires_at: 6_000 }));
        assert_eq!(s.standing(&t(4, 1_500), 6_999), Ok(Standing::Active { expires_at: 7_000 }));
        assert_eq!(s.standing(&t(4, 1_500), 7_000), Err(QueueError::Unknown), "active TTL over");
        // It had expired when its step came: it left the line without being admitted.
        assert_eq!(s.standing(&t(3, 0), 1_500), Err(QueueError::Unknown));
        // Ended early, before the window, or of another epoch.
        assert_eq!(s.standing(&t(5, 1_500), 3_000), Err(QueueError::Unknown));
        assert_eq!(s.standing(&t(1, 900), 1_000), Err(QueueError::Unknown));
        // Issued since this copy's last update (an edge a moment behind the core).
        assert_eq!(s.standing(&t(10, 2_900), 3_000), Ok(Standing::Waiting { position: 5, expires_at: 3_900 }));
        assert_eq!(s.standing(&Ticket { epoch: 2, ..t(2, 500) }, 3_000), Err(QueueError::Unknown));
    }

    #[test]
    fn the_gate_refuses_forged_and_other_users_tokens() {
        let key = TicketKey::new(b"secret");
        let (_writer, gate) = AdmissionWriter::new(key.clone(), state());
        let mine = key.sign(&t(2, 500));
        assert_eq!(gate.require_active(&mine, 1, 3_000).map(|t| t.seq), Ok(2));
        assert_eq!(gate.require_active(&mine, 2, 3_000), Err(QueueError::NotYours));
        let forged = TicketKey::new(b"guess").sign(&t(2, 500));
        assert_eq!(gate.check(&forged, 1, 3_000), Err(QueueError::Unknown));
        let waiting = key.sign(&t(7, 2_500));
        assert_eq!(gate.require_active(&waiting, 1, 3_000), Err(QueueError::NotActive));
        let v = gate.check(&waiting, 1, 3_000).expect("waiting");
        assert_eq!((v.position, v.active, v.estimated_wait_secs, v.token), (2, false, 1, waiting));
    }

    /// The shuffle is a permutation, the same for the same seed, and another for another.
    #[test]
    fn the_pre_queue_order_is_drawn_from_its_seed() {
        let a = shuffle_order(&[7; 32], 1000);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>(), "a permutation");
        assert_eq!(shuffle_order(&[7; 32], 1000), a, "drawn again from the seed");
        assert_ne!(shuffle_order(&[8; 32], 1000), a);
        assert_ne!(a, (0..1000).collect::<Vec<_>>());
        let s = Shuffle::draw([7; 32], 50, 1000, 0);
        assert_eq!(s.place(a[0]), Some(50), "the first drawn is first in line");
        assert_eq!(s.place(a[999]), Some(1049));
        assert!(shuffle_order(&[1; 32], 0).is_empty() && shuffle_order(&[1; 32], 1) == [0]);
    }

    /// An edge's copy follows the core through deltas, ignores one it already has (from a
    /// snapshot), and reports a gap or a new core so that it reloads.
    #[test]
    fn a_copy_follows_the_core_and_knows_when_it_missed_something() {
        let key = TicketKey::new(b"k");
        let (core, gate) = AdmissionWriter::new(key.clone(), Admission { epoch: 7, ..Admission::default() });
        gate.publish_changes();
        let edge = QueueGate::replica(key);
        assert!(!edge.available(), "no answers before the first snapshot");
        // The edge starts from a snapshot taken while a change is still unpublished.
        {
            let mut a = core.write();
            a.next_seq = 3;
            a.push_step(Step { start: 0, end: 2, at: 1_000 });
        }
        edge.install(gate.snapshot(42));
        let first = gate.take_delta(42, false).expect("a change");
        assert_eq!(edge.apply(42, &first), Ok(()), "a delta the snapshot already holds");
        {
            let mut a = core.write();
            a.push_step(Step { start: 2, end: 3, at: 2_000 });
            a.end(1);
        }
        let second = gate.take_delta(42, false).expect("a change");
        assert_eq!(gate.take_delta(42, false), None, "nothing changed since");
        assert_eq!(edge.apply(42, &second), Ok(()));
        {
            let (c, e) = (gate.state(), edge.state());
            assert_eq!((e.through, e.next_seq, e.epoch), (3, 3, 7));
            assert_eq!(e.steps, c.steps);
            assert_eq!(e.ended, c.ended);
        }
        core.write().next_seq = 4;
        let _missed = gate.take_delta(42, false);
        core.write().next_seq = 5;
        let after_the_gap = gate.take_delta(42, false).expect("a change");
        assert_eq!(edge.apply(42, &after_the_gap), Err(Gap), "a missed delta");
        let heartbeat = gate.take_delta(43, true).expect("a heartbeat");
        assert_eq!(edge.apply(42, &heartbeat), Err(Gap), "another core");
    }
}
