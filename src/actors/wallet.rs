//! `Wallet`: one actor per user. It owns the user's balance and monthly charge total, and
//! the user's idempotency keys while their requests run; it coordinates each payment with
//! the seat map.
//!
//! # Idempotency
//! Every keyed request of a user (a hold, a booking, a charge, a payment, a card payment)
//! passes through
//! the user's wallet, which refuses a key whose first request is still running (409) and
//! answers a known key from the [`ledger`](super::ledger) (the first answer; 422 for
//! another request). The actor that makes the change records the answer in the same
//! atomic write as the change: the seat map for holds and bookings, the wallet for
//! charges and payments.
//!
//! # What is persisted
//! The wallet's own record is its current state only (balance, month, monthly total): a
//! few dozen bytes, whatever the user's history. Each committed payment is its own
//! [`Key::Payment`] record, each answer its own ledger entry, both written once.
//!
//! # Payment, the coordinator's half
//! 1. `Pay` asks the seat map to `BeginPayment`: the reservation is now `Paying` and
//!    cannot expire under us.
//! 2. `CommitPayment` (a message to ourselves, so it runs alone on our state) checks the
//!    amount and the balance, and either debits, writes the payment record and the
//!    answer in one write, or records the refusal. We wait until a debit is durable: this
//!    is the commit point.
//! 3. We tell the seat map `FinishPayment { commit }`, wait for it to be durable, and
//!    answer. A seat map that never hears step 3 asks [`ResolvePayment`] later, which
//!    answers from the payment record of step 2; a payment never recorded is aborted.
//!
//! So a debit (durable in step 2) always ends in a confirmed seat, and a confirmed seat
//! always has a durable debit behind it, whatever crashes or expiries come in between.

use super::book::{deactivate, Activated, ActorBook, Deactivate, Lease};
use super::ledger::{self, Answer, Fingerprint, KeyError, KeyedRequest};
use super::seat_map::booking::ExecuteBooking;
use super::seat_map::{
    BeginPayment, BookingSpec, FinishPayment, HoldSeats, PaymentDecision, Reservation, ResolvePayment, SeatError,
    SeatMap, SeatMaps,
};
use super::waiting_queue::Retire;
use crate::store::{Batch, Key, Store, StoreError};
use crate::time::{month_of, now_ms};
use actix::prelude::*;
use futures_util::future::ready;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

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
    #[error("this charge would exceed the monthly limit of {limit} ({used} already charged this month)")]
    OverMonthlyLimit { limit: u64, used: u64 },
    #[error("the balance would pass {}, the largest amount accepted", crate::money::MAX_AMOUNT)]
    OverMaxBalance,
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

/// A committed payment: its own record, written once with the debit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRecord {
    pub user: u64,
    pub reservation: u64,
    pub amount: u64,
    pub at: u64,
}

/// What a wallet persists: its current state, bounded whatever the user's history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletSnapshot {
    user: u64,
    balance: u64,
    /// The month (`yyyymm`) `month_charged` counts.
    month: u32,
    month_charged: u64,
}

pub struct Wallet {
    state: WalletSnapshot,
    /// Keys whose first request is running, with its fingerprint (memory only: after a
    /// crash nothing is running, and the ledger answers for what was recorded).
    in_flight: HashMap<String, Fingerprint>,
    /// Payments between `BeginPayment` and their decision.
    paying: HashSet<u64>,
    limits: ChargeLimits,
    store: Store,
    env: WalletEnv,
    lease: Lease<Wallet>,
}

/// What a wallet reaches besides its own state: the seat maps it pays at, and the queue
/// whose token a payment retires.
#[derive(Clone)]
pub struct WalletEnv {
    pub seat_maps: SeatMaps,
    pub queue: Recipient<Retire>,
}

impl Wallet {
    pub fn load(
        user: u64,
        store: Store,
        env: WalletEnv,
        limits: ChargeLimits,
        lease: Lease<Wallet>,
    ) -> Result<Wallet, StoreError> {
        let state =
            store.get::<WalletSnapshot>(&Key::Wallet(user))?.unwrap_or(WalletSnapshot { user, ..Default::default() });
        Ok(Wallet { state, in_flight: HashMap::new(), paying: HashSet::new(), limits, store, env, lease })
    }

    fn request(&self, key: String, fingerprint: Fingerprint) -> KeyedRequest {
        KeyedRequest { user: self.state.user, key, fingerprint }
    }

    /// Look the key up: `Ok(Some(answer))` replays, `Ok(None)` means run the request (the
    /// key is now in flight until [`Wallet::release`]).
    fn begin(&mut self, req: &KeyedRequest) -> Result<Option<Answer>, WalletError> {
        if let Some(fp) = self.in_flight.get(&req.key) {
            return Err(if *fp == req.fingerprint { WalletError::KeyInProgress } else { WalletError::KeyReused });
        }
        match ledger::lookup(&self.store, req)? {
            Ok(Some(answer)) => return Ok(Some(answer)),
            Ok(None) => {}
            Err(KeyError::Reused) => return Err(WalletError::KeyReused),
        }
        self.in_flight.insert(req.key.clone(), req.fingerprint);
        Ok(None)
    }

    /// Start `req`, or the answer to give instead: the recorded one (once durable), or a
    /// refusal of the key (409, 422).
    fn start(&mut self, req: &KeyedRequest) -> Option<ResponseFuture<Result<Answer, WalletError>>> {
        match self.begin(req) {
            Err(e) => Some(Box::pin(ready(Err(e)))),
            Ok(Some(answer)) => Some(self.replay(answer)),
            Ok(None) => None,
        }
    }

    fn release(&mut self, key: &str) {
        self.in_flight.remove(key);
    }

    fn replay(&self, answer: Answer) -> ResponseFuture<Result<Answer, WalletError>> {
        // The first answer may still be on its way to disk: replay it no sooner.
        let store = self.store.clone();
        Box::pin(async move {
            store.durable().await?;
            Ok(answer)
        })
    }

    /// Apply the charge policy to the state: the answer, and whether the state changed.
    fn charge(&mut self, amount: u64) -> Answer {
        let now = now_ms();
        let month = month_of(now);
        let used = if self.state.month == month { self.state.month_charged } else { 0 };
        if amount == 0 {
            return Answer::ChargeRefused(ChargeRefusal::NotPositive);
        }
        if amount > self.limits.max_single {
            return Answer::ChargeRefused(ChargeRefusal::OverSingleLimit { limit: self.limits.max_single });
        }
        if used.saturating_add(amount) > self.limits.max_monthly {
            return Answer::ChargeRefused(ChargeRefusal::OverMonthlyLimit { limit: self.limits.max_monthly, used });
        }
        let Some(balance) = crate::money::add(self.state.balance, amount) else {
            return Answer::ChargeRefused(ChargeRefusal::OverMaxBalance);
        };
        self.state.month = month;
        self.state.month_charged = used + amount;
        self.state.balance = balance;
        Answer::Charged(ChargeReceipt { user: self.state.user, charged: amount, balance: self.state.balance, at: now })
    }

    /// Write the ledger entry for `req` (and the wallet's state with it, when `changed`),
    /// settling the key; on a failed write the state goes back to `before`.
    fn write(
        &mut self,
        req: &KeyedRequest,
        answer: &Answer,
        changed: bool,
        before: WalletSnapshot,
        extra: Batch,
    ) -> Result<(), WalletError> {
        let mut batch = extra;
        if changed {
            batch.put(&Key::Wallet(self.state.user), &self.state)?;
        }
        ledger::record(&mut batch, req, answer.clone())?;
        if let Err(e) = self.store.apply(batch) {
            self.state = before;
            return Err(e.into());
        }
        Ok(())
    }
}

impl Actor for Wallet {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(crate::actors::MAILBOX);
    }
    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        self.lease.stopping()
    }
}

/// What every wallet is activated with.
pub struct WalletsEnv {
    pub store: Store,
    pub limits: ChargeLimits,
    pub env: WalletEnv,
}

impl Activated for Wallet {
    type Id = u64;
    type Env = WalletsEnv;
    const KIND: &'static str = "wallet";
    /// Every user has a wallet: one never charged starts empty.
    fn activate(user: &u64, env: &WalletsEnv, lease: Lease<Self>) -> Result<Option<Self>, StoreError> {
        Wallet::load(*user, env.store.clone(), env.env.clone(), env.limits, lease).map(Some)
    }
    /// A key whose request runs, or a payment between its steps.
    fn busy(&self) -> bool {
        !self.in_flight.is_empty() || !self.paying.is_empty()
    }
    fn lease(&self) -> &Lease<Self> {
        &self.lease
    }
}

impl Handler<Deactivate> for Wallet {
    type Result = ();
    fn handle(&mut self, _: Deactivate, ctx: &mut Context<Self>) {
        deactivate(self, ctx)
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
        let req = self.request(msg.key, msg.fingerprint);
        if let Some(answered) = self.start(&req) {
            return answered;
        }
        let before = self.state.clone();
        let answer = self.charge(msg.amount);
        let changed = matches!(answer, Answer::Charged(_));
        let written = self.write(&req, &answer, changed, before, Batch::default());
        self.release(&req.key);
        if let Err(e) = written {
            return Box::pin(ready(Err(e)));
        }
        if !changed {
            // A refusal changes nothing: its record rides the next flush.
            return Box::pin(ready(Ok(answer)));
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

/// Lock seats for a contract B booking, once per key.
#[derive(Message)]
#[rtype(result = "Result<Answer, WalletError>")]
pub struct Book {
    pub key: String,
    pub fingerprint: Fingerprint,
    pub seat_map: Addr<SeatMap>,
    pub seats: Vec<String>,
    pub ttl: Duration,
    pub spec: BookingSpec,
}

impl Handler<Reserve> for Wallet {
    type Result = ResponseFuture<Result<Answer, WalletError>>;
    fn handle(&mut self, msg: Reserve, ctx: &mut Context<Self>) -> Self::Result {
        let req = self.request(msg.key, msg.fingerprint);
        let hold = HoldSeats { user: req.user, seats: msg.seats, ttl: msg.ttl, key: Some(req.clone()), booking: None };
        self.hold_once(req, msg.seat_map, hold, ctx)
    }
}

impl Handler<Book> for Wallet {
    type Result = ResponseFuture<Result<Answer, WalletError>>;
    fn handle(&mut self, msg: Book, ctx: &mut Context<Self>) -> Self::Result {
        let req = self.request(msg.key, msg.fingerprint);
        let hold = HoldSeats {
            user: req.user,
            seats: msg.seats,
            ttl: msg.ttl,
            key: Some(req.clone()),
            booking: Some(msg.spec),
        };
        self.hold_once(req, msg.seat_map, hold, ctx)
    }
}

impl Wallet {
    /// A keyed hold or booking: replayed from the ledger, or run at the seat map, which
    /// records its answer (the hold, or a refusal) with the change.
    fn hold_once(
        &mut self,
        req: KeyedRequest,
        seat_map: Addr<SeatMap>,
        hold: HoldSeats,
        ctx: &mut Context<Self>,
    ) -> ResponseFuture<Result<Answer, WalletError>> {
        if let Some(answered) = self.start(&req) {
            return answered;
        }
        let me = ctx.address();
        let store = self.store.clone();
        let booking = hold.booking.is_some();
        Box::pin(async move {
            let held = seat_map.send(hold).await;
            // Whatever happened, the seat map is done with the key: the ledger answers now.
            me.do_send(Release { key: req.key, payment: None });
            match held {
                Ok(Ok(r)) => {
                    store.durable().await?;
                    Ok(if booking { Answer::Booked(r) } else { Answer::Reserved(r) })
                }
                Ok(Err(SeatError::Storage(e))) => Err(WalletError::Storage(e)),
                Ok(Err(e)) if booking => Ok(Answer::BookRefused(e)),
                Ok(Err(e)) => Ok(Answer::ReserveRefused(e)),
                Err(_) => Err(WalletError::Unavailable),
            }
        })
    }
}

/// Pay a booking by card (`POST /payments/execute`) under an `Idempotency-Key`: a known
/// key replays its first definite outcome; otherwise the seat map runs the payment and
/// records the outcome with the change it makes.
#[derive(Message)]
#[rtype(result = "Result<Answer, WalletError>")]
pub struct Execute {
    pub key: String,
    pub fingerprint: Fingerprint,
    pub seat_map: Addr<SeatMap>,
    pub reservation: u64,
    pub token: String,
    pub cvv: String,
}

impl Handler<Execute> for Wallet {
    type Result = ResponseFuture<Result<Answer, WalletError>>;
    fn handle(&mut self, msg: Execute, ctx: &mut Context<Self>) -> Self::Result {
        let req = self.request(msg.key, msg.fingerprint);
        if let Some(answered) = self.start(&req) {
            return answered;
        }
        let me = ctx.address();
        let key = req.key.clone();
        let execute = ExecuteBooking {
            reservation: msg.reservation,
            user: req.user,
            token: msg.token,
            cvv: msg.cvv,
            key: Some(req),
        };
        Box::pin(async move {
            let outcome = msg.seat_map.send(execute).await;
            me.do_send(Release { key, payment: None });
            match outcome {
                Ok(Ok(outcome)) => Ok(Answer::Executed(outcome)),
                Ok(Err(SeatError::Storage(e))) => Err(WalletError::Storage(e)),
                Ok(Err(e)) => Ok(Answer::ExecuteRefused(e)),
                Err(_) => Err(WalletError::Unavailable),
            }
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
        let req = self.request(msg.key.clone(), msg.fingerprint);
        if let Some(answered) = self.start(&req) {
            return answered;
        }
        let payment = match self.store.next_id() {
            Ok(p) => p,
            Err(e) => {
                self.release(&req.key);
                return Box::pin(ready(Err(e.into())));
            }
        };
        self.paying.insert(payment);
        let flow = PayFlow {
            me: ctx.address(),
            store: self.store.clone(),
            env: self.env.clone(),
            user: self.state.user,
            payment,
        };
        Box::pin(async move {
            let result = flow.run(msg).await;
            // Whatever happened, neither the key nor the payment is in flight any more:
            // from now on the ledger answers for the key, and the payment record for the
            // payment (committed if it is there, aborted if not).
            flow.me.do_send(Release { key: req.key, payment: Some(payment) });
            result
        })
    }
}

/// One payment's steps, outside the actor (so the wallet keeps serving) but changing
/// the wallet's state only through its own messages.
struct PayFlow {
    me: Addr<Wallet>,
    store: Store,
    env: WalletEnv,
    user: u64,
    payment: u64,
}

impl PayFlow {
    async fn run(&self, msg: Pay) -> Result<Answer, WalletError> {
        let refuse = |e: SeatError| Answer::PayRefused(PayRefusal::Seat(e));
        let Some(seat_map) = self.env.seat_maps.of_reservation(&self.store, msg.reservation)? else {
            return self.refuse(msg.key, msg.fingerprint, refuse(SeatError::NotFound)).await;
        };
        let begin = BeginPayment { reservation: msg.reservation, user: self.user, payment: self.payment };
        let reservation = match seat_map.send(begin).await? {
            Ok(r) => r,
            Err(SeatError::Storage(e)) => return Err(WalletError::Storage(e)),
            // Not final (another payment of it is being settled): answer, do not record.
            Err(e @ SeatError::PaymentInProgress) => return Ok(refuse(e)),
            Err(e) => return self.refuse(msg.key, msg.fingerprint, refuse(e)).await,
        };
        let commit = CommitPayment {
            req: KeyedRequest { user: self.user, key: msg.key, fingerprint: msg.fingerprint },
            payment: self.payment,
            reservation,
            amount: msg.amount,
        };
        let answer = match self.me.send(commit).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                // Nothing was recorded: the seat map puts the hold back.
                seat_map.do_send(FinishPayment { reservation: msg.reservation, payment: self.payment, commit: false });
                return Err(e);
            }
            // The seat map will ask (ResolvePayment) and settle it from our record.
            Err(_) => return Err(WalletError::Unavailable),
        };
        let paid = matches!(answer, Answer::Paid(_));
        if paid {
            // The commit point: the debit is on disk before anyone hears of it.
            self.store.durable().await?;
        }
        let finish = FinishPayment { reservation: msg.reservation, payment: self.payment, commit: paid };
        if let Err(e) = seat_map.send(finish).await.map_err(SeatError::from_mailbox).and_then(|r| r) {
            tracing::warn!(payment = self.payment, error = %e, "seat map did not finish the payment; it will resolve it");
        }
        if paid {
            let retired = self.env.queue.send(Retire { token: msg.queue_token }).await;
            if !matches!(retired, Ok(Ok(()))) {
                tracing::warn!(payment = self.payment, ?retired, "could not retire the queue token");
            }
            self.store.durable().await?;
        }
        Ok(answer)
    }

    /// Record a final refusal for the key and answer it (a refusal changes nothing, so
    /// its record rides the next flush).
    async fn refuse(&self, key: String, fingerprint: Fingerprint, answer: Answer) -> Result<Answer, WalletError> {
        let req = KeyedRequest { user: self.user, key, fingerprint };
        self.me.send(Record { req, answer: answer.clone() }).await??;
        Ok(answer)
    }
}

/// The recorded answer for a key, if it has one and the request matches. Lets a retry
/// be answered after the request itself ended what it needed (a payment retires the
/// queue token that let it in). Resolves once the answer is on disk.
#[derive(Message)]
#[rtype(result = "Option<Result<Answer, WalletError>>")]
pub struct Recorded {
    pub key: String,
    pub fingerprint: Fingerprint,
}

impl Handler<Recorded> for Wallet {
    type Result = ResponseFuture<Option<Result<Answer, WalletError>>>;
    fn handle(&mut self, msg: Recorded, _: &mut Context<Self>) -> Self::Result {
        let req = self.request(msg.key, msg.fingerprint);
        let found = match ledger::lookup(&self.store, &req) {
            Ok(Ok(Some(answer))) => Some(Ok(answer)),
            Ok(Ok(None)) => None,
            Ok(Err(_)) => Some(Err(WalletError::KeyReused)),
            Err(e) => Some(Err(e.into())),
        };
        let store = self.store.clone();
        Box::pin(async move {
            if let Some(Ok(_)) = &found {
                if let Err(e) = store.durable().await {
                    return Some(Err(e.into()));
                }
            }
            found
        })
    }
}

/// Step 2 of a payment, run alone on the wallet's state: debit and record, or refuse.
/// The key stays in flight until the whole payment is over.
#[derive(Message)]
#[rtype(result = "Result<Answer, WalletError>")]
struct CommitPayment {
    req: KeyedRequest,
    payment: u64,
    reservation: Reservation,
    amount: u64,
}

impl Handler<CommitPayment> for Wallet {
    type Result = Result<Answer, WalletError>;
    fn handle(&mut self, msg: CommitPayment, _: &mut Context<Self>) -> Self::Result {
        let before = self.state.clone();
        let price = msg.reservation.price;
        let mut batch = Batch::default();
        let answer = if msg.amount != price {
            Answer::PayRefused(PayRefusal::AmountMismatch { amount: msg.amount, price })
        } else if self.state.balance < price {
            Answer::PayRefused(PayRefusal::InsufficientBalance { balance: self.state.balance, price })
        } else {
            let now = now_ms();
            self.state.balance -= price;
            let record =
                PaymentRecord { user: self.state.user, reservation: msg.reservation.id, amount: price, at: now };
            batch.put(&Key::Payment(msg.payment), &record)?;
            let mut reservation = msg.reservation;
            reservation.status = super::seat_map::ReservationStatus::Confirmed;
            let balance_after = self.state.balance;
            Answer::Paid(PaymentReceipt { payment: msg.payment, reservation, amount: price, balance_after, at: now })
        };
        let changed = matches!(answer, Answer::Paid(_));
        self.write(&msg.req, &answer, changed, before, batch)?;
        Ok(answer)
    }
}

/// Record the answer of a keyed request that changed nothing, and settle its key.
#[derive(Message)]
#[rtype(result = "Result<(), WalletError>")]
struct Record {
    req: KeyedRequest,
    answer: Answer,
}

impl Handler<Record> for Wallet {
    type Result = Result<(), WalletError>;
    fn handle(&mut self, msg: Record, _: &mut Context<Self>) -> Self::Result {
        let before = self.state.clone();
        let written = self.write(&msg.req, &msg.answer, false, before, Batch::default());
        self.release(&msg.req.key);
        written
    }
}

/// Settle a key whose request is over (its answer, if any, is in the ledger), and a
/// payment that is no longer in flight.
#[derive(Message)]
#[rtype(result = "()")]
struct Release {
    key: String,
    payment: Option<u64>,
}

impl Handler<Release> for Wallet {
    type Result = ();
    fn handle(&mut self, msg: Release, _: &mut Context<Self>) {
        self.release(&msg.key);
        if let Some(p) = msg.payment {
            self.paying.remove(&p);
        }
    }
}

impl Handler<ResolvePayment> for Wallet {
    type Result = MessageResult<ResolvePayment>;
    fn handle(&mut self, msg: ResolvePayment, _: &mut Context<Self>) -> Self::Result {
        MessageResult(if self.paying.contains(&msg.payment) {
            PaymentDecision::InProgress
        } else {
            match self.store.contains(&Key::Payment(msg.payment)) {
                Ok(true) => PaymentDecision::Committed,
                Ok(false) => PaymentDecision::Aborted,
                // Unknown: ask again later rather than guess.
                Err(e) => {
                    tracing::error!(payment = msg.payment, error = %e, "could not read a payment record");
                    PaymentDecision::InProgress
                }
            }
        })
    }
}

/// The wallets' address book: a user's wallet, started from its record on first use.
pub type Wallets = ActorBook<Wallet>;

#[cfg(test)]
mod tests {
    //! The payment protocol interrupted between its steps: fresh actors restored from
    //! the same store (a restart) must settle the reservation from the wallet's record.

    use super::*;
    use crate::actors::seat_map::{GetReservation, ReservationStatus, SeatMapSnapshot};
    use crate::actors::Registry;
    use crate::config::Cli;
    use clap::Parser;

    async fn setup(dir: &std::path::Path) -> (Store, crate::config::Settings, Registry) {
        let data = dir.to_str().expect("utf-8").to_string();
        let settings = Cli::parse_from(["boxoffice", "--no-demo", "--data-dir", &data]).settings.sanitize();
        let store = Store::open(dir).expect("store");
        let registry = Registry::start(store.clone(), settings.clone()).await.expect("registry");
        (store, settings, registry)
    }

    /// Hold seat "1" of seat map "t" for user 1 with 500 in the wallet, then run the
    /// payment's first step (and the second, if `commit`) and stop there.
    async fn interrupted_payment(registry: &Registry, store: &Store, commit: bool) -> u64 {
        // A seat map's definition is written once, as the catalog does when it creates one.
        let definition = SeatMapSnapshot::new("t".into(), ["1".to_string()], 100);
        store.put(&crate::store::Key::SeatMap("t".into()), &definition).expect("definition");
        let seat_map = registry.start_seat_map(definition).expect("seat map");
        let hold =
            HoldSeats { user: 1, seats: vec!["1".into()], ttl: Duration::from_secs(60), key: None, booking: None };
        let r = seat_map.send(hold).await.expect("mailbox").expect("hold");
        let wallet = registry.wallet(1).expect("wallet");
        wallet
            .send(Charge { key: "c".into(), fingerprint: [0; 32], amount: 500 })
            .await
            .expect("mailbox")
            .expect("charge");
        let payment = 4242;
        seat_map.send(BeginPayment { reservation: r.id, user: 1, payment }).await.expect("mailbox").expect("begin");
        if commit {
            let req = KeyedRequest { user: 1, key: "p".into(), fingerprint: [0; 32] };
            let step2 = CommitPayment { req, payment, reservation: r.clone(), amount: 100 };
            let answer = wallet.send(step2).await.expect("mailbox").expect("commit");
            assert!(matches!(answer, Answer::Paid(_)));
        }
        store.durable().await.expect("durable");
        r.id
    }

    async fn settled(registry: &Registry, id: u64) -> Reservation {
        let seat_map = registry.seat_map("t").expect("restored seat map");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let r = seat_map.send(GetReservation { id }).await.expect("mailbox").expect("reservation");
            if r.status != ReservationStatus::Paying {
                return r;
            }
            assert!(std::time::Instant::now() < deadline, "the payment was never settled");
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[actix_rt::test]
    async fn a_payment_cut_off_after_the_debit_is_confirmed_on_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, settings, registry) = setup(dir.path()).await;
        let id = interrupted_payment(&registry, &store, true).await;
        let restarted = Registry::start(store.clone(), settings).await.expect("restart");
        assert_eq!(settled(&restarted, id).await.status, ReservationStatus::Confirmed);
        let balance = restarted.wallet(1).expect("wallet").send(GetBalance).await.expect("mailbox");
        assert_eq!(balance, 400, "debited once");
    }

    #[actix_rt::test]
    async fn a_payment_cut_off_before_the_debit_is_released_on_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, settings, registry) = setup(dir.path()).await;
        let id = interrupted_payment(&registry, &store, false).await;
        let restarted = Registry::start(store.clone(), settings).await.expect("restart");
        let r = settled(&restarted, id).await;
        assert_eq!((r.status, r.payment), (ReservationStatus::Held, None), "the hold is payable again");
        let balance = restarted.wallet(1).expect("wallet").send(GetBalance).await.expect("mailbox");
        assert_eq!(balance, 500, "nothing was charged");
    }
}
