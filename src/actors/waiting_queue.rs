//! `WaitingQueue`: the one actor that lets buyers in at a steady rate.
//!
//! A user takes a token and waits in line (first come, first served). A tick admits
//! waiting tokens at `admit_rate` per second (a token bucket, so a quiet queue admits at
//! once) while fewer than `max_active` are active. An active token expires `active_ttl`
//! after admission, or when its holder pays; a waiting token expires `wait_ttl` after
//! issue. Every token is its own record in the store, so a restart brings the line back
//! in order, and expiries that fell due meanwhile fire at start.
//!
//! Positions are O(1): waiting tokens get consecutive sequence numbers and leave the line
//! only from its front (admission and the uniform wait TTL are both first-in first-out),
//! so a token's position is its sequence number minus the front's, plus one.

use crate::store::{Batch, Key, Store, StoreError};
use crate::time::{ms, now_ms};
use actix::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, VecDeque};
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum TokenState {
    Waiting { seq: u64 },
    Active,
}

/// A token as its record keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TokenRecord {
    token: String,
    user: u64,
    state: TokenState,
    issued_at: u64,
    expires_at: u64,
}

/// A token in memory: its 16 random bytes as a number. Clients and records see it as 32
/// lowercase hex digits; the queue keeps numbers, copied rather than cloned, so a hundred
/// thousand tokens hold no strings.
type TokenId = u128;

/// The token `s` names, if it is one the queue could have issued.
fn token_id(s: &str) -> Option<TokenId> {
    let hex = s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    hex.then(|| u128::from_str_radix(s, 16).ok()).flatten()
}

fn token_text(t: TokenId) -> String {
    format!("{t:032x}")
}

/// What the queue keeps of a token in memory.
#[derive(Debug, Clone, Copy)]
struct Token {
    user: u64,
    state: TokenState,
    issued_at: u64,
    expires_at: u64,
}

impl Token {
    fn record(&self, id: TokenId) -> TokenRecord {
        TokenRecord {
            token: token_text(id),
            user: self.user,
            state: self.state,
            issued_at: self.issued_at,
            expires_at: self.expires_at,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct QueueMeta {
    next_seq: u64,
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
}

impl From<StoreError> for QueueError {
    fn from(e: StoreError) -> Self {
        QueueError::Storage(e.to_string())
    }
}

pub struct WaitingQueue {
    policy: QueuePolicy,
    tokens: HashMap<TokenId, Token>,
    by_user: HashMap<u64, TokenId>,
    /// Waiting tokens, front first; their sequence numbers are consecutive.
    line: VecDeque<TokenId>,
    /// Active tokens by expiry.
    active: BTreeSet<(u64, TokenId)>,
    meta: QueueMeta,
    /// Admissions the rate still allows (a token bucket holding at most one second's).
    budget: f64,
    refilled_at: Instant,
    store: Store,
}

impl WaitingQueue {
    pub fn load(store: Store, policy: QueuePolicy) -> Result<WaitingQueue, StoreError> {
        let meta = store.get::<QueueMeta>(&Key::QueueMeta)?.unwrap_or_default();
        let mut q = WaitingQueue {
            policy,
            tokens: HashMap::new(),
            by_user: HashMap::new(),
            line: VecDeque::new(),
            active: BTreeSet::new(),
            meta,
            budget: policy.admit_rate as f64,
            refilled_at: Instant::now(),
            store,
        };
        let mut waiting: Vec<(u64, TokenId)> = Vec::new();
        for (_, rec) in q.store.scan::<TokenRecord>(&Key::QueueToken(String::new()))? {
            let Some(id) = token_id(&rec.token) else {
                tracing::warn!(token = rec.token, "a queue token record that names no token the queue issues");
                continue;
            };
            match rec.state {
                TokenState::Waiting { seq } => waiting.push((seq, id)),
                TokenState::Active => {
                    q.active.insert((rec.expires_at, id));
                }
            }
            // A crash may leave a user's old token beside the new one: the newest wins.
            let newer =
                q.by_user.get(&rec.user).and_then(|t| q.tokens.get(t)).is_none_or(|old| old.issued_at <= rec.issued_at);
            if newer {
                q.by_user.insert(rec.user, id);
            }
            let token =
                Token { user: rec.user, state: rec.state, issued_at: rec.issued_at, expires_at: rec.expires_at };
            q.tokens.insert(id, token);
        }
        waiting.sort();
        q.line = waiting.into_iter().map(|(_, t)| t).collect();
        Ok(q)
    }

    fn seq_of(&self, token: TokenId) -> Option<u64> {
        match self.tokens.get(&token)?.state {
            TokenState::Waiting { seq } => Some(seq),
            TokenState::Active => None,
        }
    }

    fn view(&self, id: TokenId, rec: &Token) -> TokenView {
        let (position, active) = match rec.state {
            TokenState::Active => (0, true),
            TokenState::Waiting { seq } => {
                let front = self.line.front().and_then(|t| self.seq_of(*t)).unwrap_or(seq);
                (seq.saturating_sub(front) + 1, false)
            }
        };
        let rate = self.policy.admit_rate.max(1) as u64;
        TokenView {
            token: token_text(id),
            user: rec.user,
            position,
            active,
            expires_at: rec.expires_at,
            estimated_wait_secs: position.div_ceil(rate),
        }
    }

    fn live(&self, token: TokenId) -> Option<&Token> {
        self.tokens.get(&token).filter(|r| r.expires_at > now_ms())
    }

    /// Admit what the rate and the cap allow, and expire what is due. The changes are
    /// written first and applied in memory only once the write succeeded.
    fn tick(&mut self) {
        let now = now_ms();
        let elapsed = self.refilled_at.elapsed().as_secs_f64();
        self.refilled_at = Instant::now();
        let rate = self.policy.admit_rate as f64;
        self.budget = (self.budget + elapsed * rate).min(rate.max(1.0));

        // Active tokens past their TTL.
        let expired_active: Vec<(u64, TokenId)> =
            self.active.iter().take_while(|(at, _)| *at <= now).copied().collect();
        // Waiting tokens past their TTL leave from the front.
        let expired_waiting =
            self.line.iter().take_while(|t| self.tokens.get(*t).is_none_or(|r| r.expires_at <= now)).count();
        // Admissions, in line order.
        let room = (self.policy.max_active as usize).saturating_sub(self.active.len() - expired_active.len());
        let admit = (self.budget.max(0.0).floor() as usize).min(room).min(self.line.len() - expired_waiting);
        if expired_active.is_empty() && expired_waiting == 0 && admit == 0 {
            return;
        }
        let admitted_expiry = now + ms(self.policy.active_ttl);
        let mut batch = Batch::default();
        for (_, t) in &expired_active {
            batch.delete(&Key::QueueToken(token_text(*t)));
        }
        for t in self.line.iter().take(expired_waiting) {
            batch.delete(&Key::QueueToken(token_text(*t)));
        }
        let mut admitted = Vec::with_capacity(admit);
        for t in self.line.iter().skip(expired_waiting).take(admit) {
            if let Some(rec) = self.tokens.get(t) {
                let rec = Token { state: TokenState::Active, expires_at: admitted_expiry, ..*rec };
                if let Err(e) = batch.put(&Key::QueueToken(token_text(*t)), &rec.record(*t)) {
                    tracing::error!(error = %e, "could not encode a queue token");
                    return;
                }
                admitted.push((*t, rec));
            }
        }
        if let Err(e) = self.store.apply(batch) {
            tracing::error!(error = %e, "could not persist queue admissions and expiries; will retry");
            return;
        }
        for entry in &expired_active {
            self.active.remove(entry);
            self.forget(entry.1);
        }
        let left: Vec<TokenId> = self.line.drain(..expired_waiting + admit).take(expired_waiting).collect();
        for t in left {
            self.forget(t);
        }
        for (id, rec) in admitted {
            self.active.insert((rec.expires_at, id));
            self.tokens.insert(id, rec);
        }
        self.budget -= admit as f64;
        crate::observe::queue_admitted(admit as u64);
        crate::observe::queue_tokens_expired((expired_active.len() + expired_waiting) as u64);
    }

    /// The queue's figures for operators.
    fn figures(&self) {
        let rate = self.policy.admit_rate.max(1) as u64;
        let waiting = self.line.len() as u64;
        crate::observe::queue(waiting, self.active.len() as u64, waiting.div_ceil(rate));
    }

    /// Drop a token from memory (its record is deleted by the caller's write).
    fn forget(&mut self, token: TokenId) {
        if let Some(rec) = self.tokens.remove(&token) {
            if self.by_user.get(&rec.user) == Some(&token) {
                self.by_user.remove(&rec.user);
            }
        }
    }
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

/// Take a place in line (or get back the user's live token).
#[derive(Message)]
#[rtype(result = "Result<TokenView, QueueError>")]
pub struct Issue {
    pub user: u64,
}

impl Handler<Issue> for WaitingQueue {
    type Result = ResponseFuture<Result<TokenView, QueueError>>;
    fn handle(&mut self, msg: Issue, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let existing = self.by_user.get(&msg.user).copied().and_then(|t| self.live(t).map(|r| self.view(t, r)));
        let view = match existing {
            Some(v) => Ok(v),
            None => self.issue(msg.user),
        };
        Box::pin(async move {
            let view = view?;
            store.durable().await?;
            Ok(view)
        })
    }
}

impl WaitingQueue {
    fn issue(&mut self, user: u64) -> Result<TokenView, QueueError> {
        let now = now_ms();
        let token: TokenId = {
            use rand::Rng;
            rand::thread_rng().gen()
        };
        let seq = self.meta.next_seq;
        let rec = Token {
            user,
            state: TokenState::Waiting { seq },
            issued_at: now,
            expires_at: now + ms(self.policy.wait_ttl),
        };
        let mut batch = Batch::default();
        batch.put(&Key::QueueToken(token_text(token)), &rec.record(token))?;
        batch.put(&Key::QueueMeta, &QueueMeta { next_seq: seq + 1 })?;
        self.store.apply(batch)?;
        self.meta.next_seq = seq + 1;
        if let Some(old) = self.by_user.insert(user, token) {
            // An expired token of the same user that the tick has not swept yet.
            if let Some(r) = self.tokens.get_mut(&old) {
                r.expires_at = r.expires_at.min(now);
            }
        }
        self.tokens.insert(token, rec);
        self.line.push_back(token);
        crate::observe::queue_issued();
        // Admit at once what the rate and the cap allow (in line order, so nobody is passed):
        // a quiet queue lets a user straight in, a busy one at the admission rate.
        self.tick();
        let rec = self.tokens.get(&token).ok_or(QueueError::Unknown)?;
        Ok(self.view(token, rec))
    }
}

/// Where a token stands.
#[derive(Message)]
#[rtype(result = "Result<TokenView, QueueError>")]
pub struct Check {
    pub token: String,
}

impl Handler<Check> for WaitingQueue {
    type Result = Result<TokenView, QueueError>;
    fn handle(&mut self, msg: Check, _: &mut Context<Self>) -> Self::Result {
        let token = token_id(&msg.token).ok_or(QueueError::Unknown)?;
        self.live(token).map(|r| self.view(token, r)).ok_or(QueueError::Unknown)
    }
}

/// Succeeds only for an active token of `user`.
#[derive(Message)]
#[rtype(result = "Result<(), QueueError>")]
pub struct RequireActive {
    pub token: String,
    pub user: u64,
}

impl Handler<RequireActive> for WaitingQueue {
    type Result = Result<(), QueueError>;
    fn handle(&mut self, msg: RequireActive, _: &mut Context<Self>) -> Self::Result {
        let rec = token_id(&msg.token).and_then(|t| self.live(t)).ok_or(QueueError::Unknown)?;
        if rec.user != msg.user {
            return Err(QueueError::NotYours);
        }
        match rec.state {
            TokenState::Active => Ok(()),
            TokenState::Waiting { .. } => Err(QueueError::NotActive),
        }
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
        let Some(id) = token_id(token) else { return Ok(()) };
        let Some(rec) = self.tokens.get(&id) else { return Ok(()) };
        if rec.state != TokenState::Active {
            return Ok(());
        }
        let mut batch = Batch::default();
        batch.delete(&Key::QueueToken(token_text(id)));
        self.store.apply(batch)?;
        self.active.remove(&(rec.expires_at, id));
        self.forget(id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token is 32 lowercase hex digits both ways; nothing else names one.
    #[test]
    fn tokens_are_numbers_in_memory_and_hex_outside() {
        let t: TokenId = 0x0f0c_0000_0000_0000_0000_0000_0000_00ff;
        let text = token_text(t);
        assert_eq!(text, "0f0c00000000000000000000000000ff");
        assert_eq!(token_id(&text), Some(t));
        for bad in
            ["", "0f0c", "0F0C00000000000000000000000000FF", "0f0c00000000000000000000000000fg", &format!("{text}0")]
        {
            assert_eq!(token_id(bad), None, "{bad:?}");
        }
    }
}
