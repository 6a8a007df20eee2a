//! `Wallet`: one actor per user. It owns the user's balance and monthly charge total, the
//! user's idempotency ledger, and the record of the user's payments; it coordinates each
//! payment with the seat map.
//!
//! # Idempotency
//! Every keyed request of a user (a hold, a charge, a payment) passes through the user's
//! wallet, which keeps `key -> (fingerprint of the request, answer)` in the same snapshot
//! as the balance. A request whose key is known is answered from the ledger (the same
//! answer, status and body); a key reused with another request is refused (422); a key
//! whose first request is still running is refused (409). Keys are kept at least
//! [`KEY_RETENTION`]. A charge's answer is written in the same atomic write as the
//! balance change, so a retry after a crash finds either both or neither.
//!
//! # Payment, the coordinator's half
//! 1. `Pay` asks the seat map to `BeginPayment`: the reservation is now `Paying` and
//!    cannot expire under us.
//! 2. `CommitPayment` (a message to ourselves, so it runs alone on our state) checks the
//!    amount and the balance, and either debits and records the payment and the answer
//!    in one write, or records the refusal. We wait until that write is durable: this is
//!    the commit point.
//! 3. We tell the seat map `FinishPayment { commit }`, wait for it to be durable, and
//!    answer. A seat map that never hears step 3 asks [`ResolvePayment`] later, which
//!    answers from the record of step 2; a payment we never recorded is aborted.
//!
//! So a debit (durable in step 2) always ends in a confirmed seat, and a confirmed seat
//! always has a durable debit behind it, whatever crashes or expiries come in between.

use super::registry::Registry;
use super::seat_map::{BeginPayment, FinishPayment, HoldSeats, Reservation, SeatError, SeatMap};
use super::waiting_queue::Retire;
use crate::store::{Key, Store, StoreError};
use crate::time::{month_of, now_ms};
use actix::prelude::*;
use futures_util::future::ready;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// How long an idempotency key and its answer are kept.
pub const KEY_RETENTION: Duration = Duration::from_secs(25 * 3600);

/// A request's fingerprint: a hash of what it asked for.
pub type Fingerprint = [u8; 32];

/// The charge policy.
#[derive(Debug, Clone, Copy)]
pub struct ChargeLimits {
    pub max_single: u64,
    pub max_monthly: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeReceipt {
    pub user: u64,
    pub charged: u64,
    pub balance: u64,
    pub at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ChargeRefusal {
    #[error("a charge must be positive")]
    NotPositive,
    #[error("a single charge may not exceed {limit}")]
    OverSingleLimit { limit: u64 },
    #[error(
        "this charge would exceed the monthly limit of {limit} ({used} already charged this month)"
    )]
    OverMonthlyLimit { limit: u64, used: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentReceipt {
    pub payment: u64,
    pub reservation: Reservation,
    pub amount: u64,
    pub balance_after: u64,
    pub at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum PayRefusal {
    #[error(transparent)]
    Seat(SeatError),
    #[error("the amount {amount} does not match the reservation's price {price}")]
    AmountMismatch { amount: u64, price: u64 },
    #[error("balance {balance} is less than the price {price}")]
    InsufficientBalance { balance: u64, price: u64 },
}

/// The answer to a keyed request, as recorded in the ledger and replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    Reserved(Reservation),
    ReserveRefused(SeatError),
    Charged(ChargeReceipt),
    ChargeRefused(ChargeRefusal),
    Paid(PaymentReceipt),
    PayRefused(PayRefusal),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalletError {
    #[error("this idempotency key was used with a different request")]
    KeyReused,
    #[error("a request with this idempotency key is still in progress")]
    KeyInProgress,
    #[error("the server is busy; try again")]
    Unavailable,
    #[error("storage failure: {0}")]
    Storage(String),
}

impl From<StoreError> for WalletError {
    fn from(e: StoreError) -> Self {
        WalletError::Storage(e.to_string())
    }
}

impl From<MailboxError> for WalletError {
    fn from(_: MailboxError) -> Self {
        WalletError::Unavailable
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LedgerEntry {
    fingerprint: Fingerprint,
    at: u64,
    answer: Answer,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PaymentRecord {
    reservation: u64,
    amount: u64,
    at: u64,
}

/// Everything a wallet persists, in one snapshot.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WalletSnapshot {
    user: u64,
    balance: u64,
    /// The month (`yyyymm`) `month_charged` counts.
    month: u32,
    month_charged: u64,
    ledger: HashMap<String, LedgerEntry>,
    /// Committed payments by payment id.
    payments: HashMap<u64, PaymentRecord>,
}

pub struct Wallet {
    state: WalletSnapshot,
    /// Keys whose first request is running, with its fingerprint (memory only: after a
    /// crash, a retry runs again and the seat map's own record of the key dedupes it).
    in_flight: HashMap<String, Fingerprint>,
    /// Payments between `BeginPayment` and their decision.
    paying: HashSet<u64>,
    limits: ChargeLimits,
    store: Store,
    registry: Registry,
}

impl Wallet {
    pub fn load(
        user: u64,
        store: Store,
        registry: Registry,
        limits: ChargeLimits,
    ) -> Result<Wallet, StoreError> {
        let state = store
            .get::<WalletSnapshot>(&Key::Wallet(user))?
            .unwrap_or(WalletSnapshot {
                user,
                ..Default::default()
            });
        Ok(Wallet {
            state,
            in_flight: HashMap::new(),
            paying: HashSet::new(),
            limits,
            store,
            registry,
        })
    }

    fn persist(&self) -> Result<(), StoreError> {
        self.store.put(&Key::Wallet(self.state.user), &self.state)
    }

    /// Look the key up: `Ok(Some(answer))` replays, `Ok(None)` means run the request.
    fn begin(
        &mut self,
        key: &str,
        fingerprint: Fingerprint,
    ) -> Result<Option<Answer>, WalletError> {
        if let Some(fp) = self.in_flight.get(key) {
            return Err(if *fp == fingerprint {
                WalletError::KeyInProgress
            } else {
                WalletError::KeyReused
            });
        }
        if let Some(entry) = self.state.ledger.get(key) {
            return if entry.fingerprint == fingerprint {
                Ok(Some(entry.answer.clone()))
            } else {
                Err(WalletError::KeyReused)
            };
        }
        self.in_flight.insert(key.to_string(), fingerprint);
        Ok(None)
    }

    /// Record the answer for a key whose request has finished (not yet persisted).
    fn record(&mut self, key: String, answer: Answer) {
        let now = now_ms();
        if let Some(fingerprint) = self.in_flight.remove(&key) {
            self.state.ledger.insert(
                key,
                LedgerEntry {
                    fingerprint,
                    at: now,
                    answer,
                },
            );
        }
        if self.state.ledger.len() > 256 {
            let cutoff = now.saturating_sub(crate::time::ms(KEY_RETENTION));
            self.state.ledger.retain(|_, e| e.at >= cutoff);
        }
    }

    fn replay(&self, answer: Answer) -> ResponseFuture<Result<Answer, WalletError>> {
        // The first answer may still be on its way to disk: replay it no sooner.
        let store = self.store.clone();
        Box::pin(async move {
            store.durable().await?;
            Ok(answer)
        })
    }

    fn charge(&mut self, amount: u64) -> Answer {
        let now = now_ms();
        let month = month_of(now);
        let used = if self.state.month == month {
            self.state.month_charged
        } else {
            0
        };
        if amount == 0 {
            return Answer::ChargeRefused(ChargeRefusal::NotPositive);
        }
        if amount > self.limits.max_single {
            return Answer::ChargeRefused(ChargeRefusal::OverSingleLimit {
                limit: self.limits.max_single,
            });
        }
        if used.saturating_add(amount) > self.limits.max_monthly {
            return Answer::ChargeRefused(ChargeRefusal::OverMonthlyLimit {
                limit: self.limits.max_monthly,
                used,
            });
        }
        self.state.month = month;
        self.state.month_charged = used + amount;
        self.state.balance = self.state.balance.saturating_add(amount);
        Answer::Charged(ChargeReceipt {
            user: self.state.user,
            charged: amount,
            balance: self.state.balance,
            at: now,
        })
    }
}

impl Actor for Wallet {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(crate::actors::MAILBOX);
    }
}

/// The balance.
#[derive(Message)]
#[rtype(result = "u64")]
pub struct GetBalance;

impl Handler<GetBalance> for Wallet {
    type Result = u64;
    fn handle(&mut self, _: GetBalance, _: &mut Context<Self>) -> u64 {
        self.state.balance
    }
}

/// Add `amount` to the balance under the charge policy.
#[derive(Message)]
#[rtype(result = "Result<Answer, WalletError>")]
pub struct Charge {
    pub key: String,
    pub fingerprint: Fingerprint,
    pub amount: u64,
}

impl Handler<Charge> for Wallet {
    type Result = ResponseFuture<Result<Answer, WalletError>>;
    fn handle(&mut self, msg: Charge, _: &mut Context<Self>) -> Self::Result {
        match self.begin(&msg.key, msg.fingerprint) {
            Err(e) => return Box::pin(ready(Err(e))),
            Ok(Some(answer)) => return self.replay(answer),
            Ok(None) => {}
        }
        let before = self.state.clone();
        let answer = self.charge(msg.amount);
        self.record(msg.key, answer.clone());
        if let Err(e) = self.persist() {
            self.state = before;
            return Box::pin(ready(Err(e.into())));
        }
        let store = self.store.clone();
        Box::pin(async move {
            store.durable().await?;
            Ok(answer)
        })
    }
}

/// Hold seats for this user, once per key.
#[derive(Message)]
#[rtype(result = "Result<Answer, WalletError>")]
pub struct Reserve {
    pub key: String,
    pub fingerprint: Fingerprint,
    pub seat_map: Addr<SeatMap>,
    pub seats: Vec<String>,
    pub ttl: Duration,
}

impl Handler<Reserve> for Wallet {
    type Result = ResponseFuture<Result<Answer, WalletError>>;
    fn handle(&mut self, msg: Reserve, ctx: &mut Context<Self>) -> Self::Result {
        match self.begin(&msg.key, msg.fingerprint) {
            Err(e) => return Box::pin(ready(Err(e))),
            Ok(Some(answer)) => return self.replay(answer),
            Ok(None) => {}
        }
        let me = ctx.address();
        let store = self.store.clone();
        let user = self.state.user;
        Box::pin(async move {
            let hold = HoldSeats {
                user,
                seats: msg.seats,
                ttl: msg.ttl,
                key: Some(msg.key.clone()),
            };
            let answer = match msg.seat_map.send(hold).await {
                Ok(Ok(r)) => Answer::Reserved(r),
                Ok(Err(SeatError::Storage(e))) => {
                    me.do_send(Abandon {
                        key: msg.key,
                        payment: None,
                    });
                    return Err(WalletError::Storage(e));
                }
                Ok(Err(e)) => Answer::ReserveRefused(e),
                Err(_) => {
                    me.do_send(Abandon {
                        key: msg.key,
                        payment: None,
                    });
                    return Err(WalletError::Unavailable);
                }
            };
            me.send(Record {
                key: msg.key,
                answer: answer.clone(),
            })
            .await??;
            store.durable().await?;
            Ok(answer)
        })
    }
}

/// Pay for a held reservation from the balance, once per key.
#[derive(Message)]
#[rtype(result = "Result<Answer, WalletError>")]
pub struct Pay {
    pub key: String,
    pub fingerprint: Fingerprint,
    pub reservation: u64,
    pub amount: u64,
    /// The queue token to retire once paid.
    pub queue_token: String,
}

impl Handler<Pay> for Wallet {
    type Result = ResponseFuture<Result<Answer, WalletError>>;
    fn handle(&mut self, msg: Pay, ctx: &mut Context<Self>) -> Self::Result {
        match self.begin(&msg.key, msg.fingerprint) {
            Err(e) => return Box::pin(ready(Err(e))),
            Ok(Some(answer)) => return self.replay(answer),
            Ok(None) => {}
        }
        let payment = match self.store.next_id() {
            Ok(p) => p,
            Err(e) => {
                self.in_flight.remove(&msg.key);
                return Box::pin(ready(Err(e.into())));
            }
        };
        self.paying.insert(payment);
        let me = ctx.address();
        let store = self.store.clone();
        let registry = self.registry.clone();
        let user = self.state.user;
        Box::pin(async move {
            let refuse = |e: SeatError| Answer::PayRefused(PayRefusal::Seat(e));
            let Some(seat_map) = registry.seat_map_of_reservation(msg.reservation) else {
                let answer = refuse(SeatError::NotFound);
                me.send(Record {
                    key: msg.key,
                    answer: answer.clone(),
                })
                .await??;
                me.do_send(Abandon {
                    key: String::new(),
                    payment: Some(payment),
                });
                store.durable().await?;
                return Ok(answer);
            };
            let begun = seat_map
                .send(BeginPayment {
                    reservation: msg.reservation,
                    user,
                    payment,
                })
                .await;
            let reservation = match begun {
                Ok(Ok(r)) => r,
                Ok(Err(SeatError::Storage(e))) => {
                    me.do_send(Abandon {
                        key: msg.key,
                        payment: Some(payment),
                    });
                    return Err(WalletError::Storage(e));
                }
                Ok(Err(e)) => {
                    let answer = refuse(e);
                    me.send(Record {
                        key: msg.key,
                        answer: answer.clone(),
                    })
                    .await??;
                    me.do_send(Abandon {
                        key: String::new(),
                        payment: Some(payment),
                    });
                    store.durable().await?;
                    return Ok(answer);
                }
                Err(_) => {
                    me.do_send(Abandon {
                        key: msg.key,
                        payment: Some(payment),
                    });
                    return Err(WalletError::Unavailable);
                }
            };
            let commit = CommitPayment {
                key: msg.key.clone(),
                payment,
                reservation,
                amount: msg.amount,
            };
            let decided = me.send(commit).await;
            let answer = match decided {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) => {
                    // Nothing was recorded: the seat map puts the hold back.
                    seat_map.do_send(FinishPayment {
                        reservation: msg.reservation,
                        payment,
                        commit: false,
                    });
                    return Err(e);
                }
                Err(_) => return Err(WalletError::Unavailable),
            };
            // The commit point: the debit (or the refusal) is on disk before anyone hears of it.
            store.durable().await?;
            let paid = matches!(answer, Answer::Paid(_));
            match seat_map
                .send(FinishPayment {
                    reservation: msg.reservation,
                    payment,
                    commit: paid,
                })
                .await
            {
                Ok(Ok(_)) => {}
                // The seat map will ask us (ResolvePayment) and finish it from our record.
                other => tracing::warn!(
                    payment,
                    ?other,
                    "seat map did not finish the payment; it will resolve it"
                ),
            }
            store.durable().await?;
            if paid {
                registry.queue().do_send(Retire {
                    token: msg.queue_token,
                });
            }
            Ok(answer)
        })
    }
}

/// The recorded answer for a key, if it has one and the request matches. Lets a retry
/// be answered after the request itself ended what it needed (a payment retires the
/// queue token that let it in).
#[derive(Message)]
#[rtype(result = "Option<Result<Answer, WalletError>>")]
pub struct Recorded {
    pub key: String,
    pub fingerprint: Fingerprint,
}

impl Handler<Recorded> for Wallet {
    type Result = Option<Result<Answer, WalletError>>;
    fn handle(&mut self, msg: Recorded, _: &mut Context<Self>) -> Self::Result {
        let entry = self.state.ledger.get(&msg.key)?;
        Some(if entry.fingerprint == msg.fingerprint {
            Ok(entry.answer.clone())
        } else {
            Err(WalletError::KeyReused)
        })
    }
}

/// Step 2 of a payment, run alone on the wallet's state: debit and record, or refuse.
#[derive(Message)]
#[rtype(result = "Result<Answer, WalletError>")]
struct CommitPayment {
    key: String,
    payment: u64,
    reservation: Reservation,
    amount: u64,
}

impl Handler<CommitPayment> for Wallet {
    type Result = Result<Answer, WalletError>;
    fn handle(&mut self, msg: CommitPayment, _: &mut Context<Self>) -> Self::Result {
        let before = self.state.clone();
        let price = msg.reservation.price;
        let answer = if msg.amount != price {
            Answer::PayRefused(PayRefusal::AmountMismatch {
                amount: msg.amount,
                price,
            })
        } else if self.state.balance < price {
            Answer::PayRefused(PayRefusal::InsufficientBalance {
                balance: self.state.balance,
                price,
            })
        } else {
            let now = now_ms();
            self.state.balance -= price;
            self.state.payments.insert(
                msg.payment,
                PaymentRecord {
                    reservation: msg.reservation.id,
                    amount: price,
                    at: now,
                },
            );
            let mut reservation = msg.reservation;
            reservation.status = super::seat_map::ReservationStatus::Confirmed;
            Answer::Paid(PaymentReceipt {
                payment: msg.payment,
                reservation,
                amount: price,
                balance_after: self.state.balance,
                at: now,
            })
        };
        self.record(msg.key.clone(), answer.clone());
        if let Err(e) = self.persist() {
            self.state = before;
            self.in_flight.remove(&msg.key);
            self.paying.remove(&msg.payment);
            return Err(e.into());
        }
        self.paying.remove(&msg.payment);
        Ok(answer)
    }
}

/// Record the answer of a keyed request and persist it.
#[derive(Message)]
#[rtype(result = "Result<(), WalletError>")]
struct Record {
    key: String,
    answer: Answer,
}

impl Handler<Record> for Wallet {
    type Result = Result<(), WalletError>;
    fn handle(&mut self, msg: Record, _: &mut Context<Self>) -> Self::Result {
        let key = msg.key.clone();
        self.record(msg.key, msg.answer);
        if let Err(e) = self.persist() {
            self.state.ledger.remove(&key);
            return Err(e.into());
        }
        Ok(())
    }
}

/// Forget a request that failed without an answer (so the key may be retried), and a
/// payment that never committed.
#[derive(Message)]
#[rtype(result = "()")]
struct Abandon {
    key: String,
    payment: Option<u64>,
}

impl Handler<Abandon> for Wallet {
    type Result = ();
    fn handle(&mut self, msg: Abandon, _: &mut Context<Self>) {
        self.in_flight.remove(&msg.key);
        if let Some(p) = msg.payment {
            self.paying.remove(&p);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentDecision {
    Committed,
    Aborted,
    InProgress,
}

/// A seat map asks what became of a payment it was left `Paying` for.
#[derive(Message)]
#[rtype(result = "PaymentDecision")]
pub struct ResolvePayment {
    pub payment: u64,
}

impl Handler<ResolvePayment> for Wallet {
    type Result = MessageResult<ResolvePayment>;
    fn handle(&mut self, msg: ResolvePayment, _: &mut Context<Self>) -> Self::Result {
        MessageResult(if self.state.payments.contains_key(&msg.payment) {
            PaymentDecision::Committed
        } else if self.paying.contains(&msg.payment) {
            PaymentDecision::InProgress
        } else {
            PaymentDecision::Aborted
        })
    }
}
