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
#[derive(Debug, Clone, Default)]
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
}

/// Where a valid token stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
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
        if t.epoch != self.epoch || t.seq >= self.next_seq {
            return Err(QueueError::Unknown);
        }
        if t.seq >= self.through {
            let expires_at = t.issued_at.saturating_add(self.wait_ttl);
            return if expires_at > now {
                Ok(Standing::Waiting { position: t.seq - self.through + 1, expires_at })
            } else {
                Err(QueueError::Unknown)
            };
        }
        let at = self.left_at(t.seq).ok_or(QueueError::Unknown)?;
        let admitted = t.issued_at.saturating_add(self.wait_ttl) > at;
        let expires_at = at.saturating_add(self.active_ttl);
        if !admitted || expires_at <= now || self.ended.contains(&t.seq) {
            return Err(QueueError::Unknown);
        }
        Ok(Standing::Active { expires_at })
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
        self.state.write().unwrap_or_else(|e| e.into_inner())
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

    /// The published state, read-locked (hold it briefly).
    pub fn state(&self) -> RwLockReadGuard<'_, Admission> {
        self.read()
    }

    /// Where a verified ticket stands at `now`.
    pub fn standing(&self, ticket: &Ticket, now: u64) -> Result<Standing, QueueError> {
        self.read().standing(ticket, now)
    }

    /// The token `text` as `user` sees it: unknown (forged, altered, expired or ended),
    /// another user's, or where it stands.
    pub fn check(&self, text: &str, user: u64, now: u64) -> Result<TokenView, QueueError> {
        let ticket = self.key.verify(text).ok_or(QueueError::Unknown)?;
        let standing = self.read().standing(&ticket, now)?;
        if ticket.user != user {
            return Err(QueueError::NotYours);
        }
        Ok(self.view(text.to_string(), &ticket, standing))
    }

    /// Succeeds only for an active token of `user`; returns what the token says.
    pub fn require_active(&self, text: &str, user: u64, now: u64) -> Result<Ticket, QueueError> {
        let ticket = self.key.verify(text).ok_or(QueueError::Unknown)?;
        let standing = self.read().standing(&ticket, now)?;
        if ticket.user != user {
            return Err(QueueError::NotYours);
        }
        match standing {
            Standing::Active { .. } => Ok(ticket),
            Standing::Waiting { .. } => Err(QueueError::NotActive),
        }
    }

    /// The view of `ticket` (whose text is `token`) standing as it does.
    pub fn view(&self, token: String, ticket: &Ticket, standing: Standing) -> TokenView {
        let (position, active, expires_at) = match standing {
            Standing::Waiting { position, expires_at } => (position, false, expires_at),
            Standing::Active { expires_at } => (0, true, expires_at),
        };
        TokenView {
            token,
            user: ticket.user,
            position,
            active,
            expires_at,
            estimated_wait_secs: self.read().estimated_wait_secs(position),
        }
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
        // Ended early, before the window, not issued yet, or of another epoch.
        assert_eq!(s.standing(&t(5, 1_500), 3_000), Err(QueueError::Unknown));
        assert_eq!(s.standing(&t(1, 900), 1_000), Err(QueueError::Unknown));
        assert_eq!(s.standing(&t(10, 2_900), 3_000), Err(QueueError::Unknown));
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
}
