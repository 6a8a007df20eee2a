//! `KeyGate`: one actor per user that owns the user's `Idempotency-Key`s while their
//! requests run, and the answers those keys replay.
//!
//! Every keyed request of a user (a hold, a booking, a card payment, a charge, a wallet
//! payment) passes through the user's gate, which refuses a key whose first request is
//! still running (409, whichever actor that request went to), answers a known key from the
//! [`ledger`] (the first answer; 422 for another request), and otherwise hands the request
//! to the actor that runs it (the seat map, or the wallet) with a [`Keyed`] handle: that
//! actor records the answer in the same atomic write as the change. The gate decides
//! nothing about seats or money, and no actor it calls knows of it.
//!
//! [`Answer`] is what the ledger keeps for each endpoint; the HTTP layer renders it.

use super::book::{deactivate, Activated, ActorBook, Deactivate, Lease};
use super::ledger::{self, Fingerprint, KeyError, Keyed, KeyedRequest};
use super::seat_map::booking::{ExecuteBooking, ExecuteOutcome};
use super::seat_map::{BookingSpec, HoldOutcome, HoldSeats, Reservation, SeatError, SeatMap};
use super::wallet::{
    self, ChargeOutcome, ChargeReceipt, ChargeRefusal, PayOutcome, PayRefusal, PaymentReceipt, WalletError, Wallets,
};
use crate::store::{Batch, Store, StoreError};
use actix::prelude::*;
use futures_util::future::{ready, BoxFuture, FutureExt};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;

/// The answer to a keyed request, as recorded and replayed (one ledger entry each; the
/// variants' order is the records' encoding: add new ones at the end).
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

fn record_hold(req: &KeyedRequest, outcome: &HoldOutcome, batch: &mut Batch) -> Result<(), StoreError> {
    let answer = match outcome {
        Ok(r) => Answer::Reserved(r.clone()),
        Err(e) => Answer::ReserveRefused(e.clone()),
    };
    ledger::record(batch, req, &answer)
}

fn record_booking(req: &KeyedRequest, outcome: &HoldOutcome, batch: &mut Batch) -> Result<(), StoreError> {
    let answer = match outcome {
        Ok(r) => Answer::Booked(r.clone()),
        Err(e) => Answer::BookRefused(e.clone()),
    };
    ledger::record(batch, req, &answer)
}

fn record_execute(req: &KeyedRequest, outcome: &ExecuteOutcome, batch: &mut Batch) -> Result<(), StoreError> {
    ledger::record(batch, req, &Answer::Executed(outcome.clone()))
}

fn record_charge(req: &KeyedRequest, outcome: &ChargeOutcome, batch: &mut Batch) -> Result<(), StoreError> {
    let answer = match outcome {
        Ok(r) => Answer::Charged(r.clone()),
        Err(e) => Answer::ChargeRefused(e.clone()),
    };
    ledger::record(batch, req, &answer)
}

fn record_payment(req: &KeyedRequest, outcome: &PayOutcome, batch: &mut Batch) -> Result<(), StoreError> {
    let answer = match outcome {
        Ok(r) => Answer::Paid(r.clone()),
        Err(e) => Answer::PayRefused(e.clone()),
    };
    ledger::record(batch, req, &answer)
}

/// Why a keyed request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    #[error("this idempotency key was used with a different request")]
    KeyReused,
    #[error("a request with this idempotency key is still in progress")]
    KeyInProgress,
    #[error("the server is busy; try again")]
    Unavailable,
    #[error("storage failure: {0}")]
    Storage(String),
}

impl From<StoreError> for GateError {
    fn from(e: StoreError) -> Self {
        GateError::Storage(e.to_string())
    }
}

impl From<MailboxError> for GateError {
    fn from(_: MailboxError) -> Self {
        GateError::Unavailable
    }
}

impl From<WalletError> for GateError {
    fn from(e: WalletError) -> Self {
        match e {
            WalletError::Unavailable => GateError::Unavailable,
            WalletError::Storage(m) => GateError::Storage(m),
        }
    }
}

/// What every gate reaches: the store (for the ledger) and the wallets it hands charges
/// and payments to.
pub struct KeysEnv {
    pub store: Store,
    pub wallets: Wallets,
}

pub struct KeyGate {
    user: u64,
    /// Keys whose first request is running, with its fingerprint (memory only: after a
    /// crash nothing is running, and the ledger answers for what was recorded).
    in_flight: HashMap<String, Fingerprint>,
    store: Store,
    wallets: Wallets,
    lease: Lease<KeyGate>,
}

type Answered = ResponseFuture<Result<Answer, GateError>>;

impl KeyGate {
    /// Run `run` for the key of `req` once: the recorded answer (once durable) or a refusal
    /// of the key (409, 422) instead, if there is one; otherwise the key is in flight
    /// until `run` has answered.
    fn once(
        &mut self,
        key: String,
        fingerprint: Fingerprint,
        ctx: &mut Context<Self>,
        run: impl FnOnce(KeyedRequest) -> BoxFuture<'static, Result<Answer, GateError>>,
    ) -> Answered {
        let req = KeyedRequest { user: self.user, key, fingerprint };
        if let Some(fp) = self.in_flight.get(&req.key) {
            let e = if *fp == req.fingerprint { GateError::KeyInProgress } else { GateError::KeyReused };
            return Box::pin(ready(Err(e)));
        }
        match ledger::lookup::<Answer>(&self.store, &req) {
            Err(e) => return Box::pin(ready(Err(e.into()))),
            Ok(Err(KeyError::Reused)) => return Box::pin(ready(Err(GateError::KeyReused))),
            Ok(Ok(Some(answer))) => return self.replay(answer),
            Ok(Ok(None)) => {}
        }
        self.in_flight.insert(req.key.clone(), req.fingerprint);
        let me = ctx.address();
        let key = req.key.clone();
        let running = run(req);
        Box::pin(async move {
            let answer = running.await;
            // Whatever happened, the request is over: from now on the ledger answers.
            me.do_send(Release { key });
            answer
        })
    }

    fn replay(&self, answer: Answer) -> Answered {
        // The first answer may still be on its way to disk: replay it no sooner.
        let store = self.store.clone();
        Box::pin(async move {
            store.durable().await?;
            Ok(answer)
        })
    }

    fn wallet(&self) -> Result<Addr<wallet::Wallet>, GateError> {
        match self.wallets.get(&self.user)? {
            Some(wallet) => Ok(wallet),
            None => unreachable!("every user has a wallet"),
        }
    }
}

impl Actor for KeyGate {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(super::MAILBOX);
    }
    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        self.lease.stopping()
    }
}

impl Activated for KeyGate {
    type Id = u64;
    type Env = KeysEnv;
    const KIND: &'static str = "key_gate";
    fn activate(user: &u64, env: &KeysEnv, lease: Lease<Self>) -> Result<Option<Self>, StoreError> {
        Ok(Some(KeyGate {
            user: *user,
            in_flight: HashMap::new(),
            store: env.store.clone(),
            wallets: env.wallets.clone(),
            lease,
        }))
    }
    /// A key whose request runs.
    fn busy(&self) -> bool {
        !self.in_flight.is_empty()
    }
    fn lease(&self) -> &Lease<Self> {
        &self.lease
    }
}

impl Handler<Deactivate> for KeyGate {
    type Result = ();
    fn handle(&mut self, _: Deactivate, ctx: &mut Context<Self>) {
        deactivate(self, ctx)
    }
}

/// The users' key gates, by user id.
pub type KeyGates = ActorBook<KeyGate>;

/// A request that is over: its key no longer runs.
#[derive(Message)]
#[rtype(result = "()")]
struct Release {
    key: String,
}

impl Handler<Release> for KeyGate {
    type Result = ();
    fn handle(&mut self, msg: Release, _: &mut Context<Self>) {
        self.in_flight.remove(&msg.key);
    }
}

/// Hold seats for this user, once per key (`POST /reservations`).
#[derive(Message)]
#[rtype(result = "Result<Answer, GateError>")]
pub struct Reserve {
    pub key: String,
    pub fingerprint: Fingerprint,
    pub seat_map: Addr<SeatMap>,
    pub seats: Vec<String>,
    pub ttl: Duration,
}

impl Handler<Reserve> for KeyGate {
    type Result = Answered;
    fn handle(&mut self, msg: Reserve, ctx: &mut Context<Self>) -> Answered {
        let (store, user) = (self.store.clone(), self.user);
        self.once(msg.key, msg.fingerprint, ctx, move |req| {
            let key = Some(Keyed { req, recorder: record_hold as ledger::Recorder<HoldOutcome> });
            let hold = HoldSeats { user, seats: msg.seats, ttl: msg.ttl, key, booking: None };
            hold_at(store, msg.seat_map, hold, Answer::Reserved, Answer::ReserveRefused)
        })
    }
}

/// Lock seats for a contract B booking, once per key (`POST /bookings`).
#[derive(Message)]
#[rtype(result = "Result<Answer, GateError>")]
pub struct Book {
    pub key: String,
    pub fingerprint: Fingerprint,
    pub seat_map: Addr<SeatMap>,
    pub seats: Vec<String>,
    pub ttl: Duration,
    pub spec: BookingSpec,
}

impl Handler<Book> for KeyGate {
    type Result = Answered;
    fn handle(&mut self, msg: Book, ctx: &mut Context<Self>) -> Answered {
        let (store, user) = (self.store.clone(), self.user);
        self.once(msg.key, msg.fingerprint, ctx, move |req| {
            let key = Some(Keyed { req, recorder: record_booking as ledger::Recorder<HoldOutcome> });
            let hold = HoldSeats { user, seats: msg.seats, ttl: msg.ttl, key, booking: Some(msg.spec) };
            hold_at(store, msg.seat_map, hold, Answer::Booked, Answer::BookRefused)
        })
    }
}

/// A keyed hold or booking at the seat map, which records its answer (the hold, or a
/// refusal) with the change; a hold is answered once durable.
fn hold_at(
    store: Store,
    seat_map: Addr<SeatMap>,
    hold: HoldSeats,
    made: fn(Reservation) -> Answer,
    refused: fn(SeatError) -> Answer,
) -> BoxFuture<'static, Result<Answer, GateError>> {
    async move {
        match seat_map.send(hold).await? {
            Ok(r) => {
                store.durable().await?;
                Ok(made(r))
            }
            Err(SeatError::Storage(e)) => Err(GateError::Storage(e)),
            Err(e) => Ok(refused(e)),
        }
    }
    .boxed()
}

/// Pay a booking by card (`POST /payments/execute`), once per key: a known key replays
/// its first definite outcome; otherwise the seat map runs the payment and records the
/// outcome with the change it makes.
#[derive(Message)]
#[rtype(result = "Result<Answer, GateError>")]
pub struct Execute {
    pub key: String,
    pub fingerprint: Fingerprint,
    pub seat_map: Addr<SeatMap>,
    pub reservation: u64,
    pub token: String,
    pub cvv: String,
}

impl Handler<Execute> for KeyGate {
    type Result = Answered;
    fn handle(&mut self, msg: Execute, ctx: &mut Context<Self>) -> Answered {
        let user = self.user;
        self.once(msg.key, msg.fingerprint, ctx, move |req| {
            let key = Some(Keyed { req, recorder: record_execute as ledger::Recorder<ExecuteOutcome> });
            let execute = ExecuteBooking { reservation: msg.reservation, user, token: msg.token, cvv: msg.cvv, key };
            async move {
                match msg.seat_map.send(execute).await? {
                    Ok(outcome) => Ok(Answer::Executed(outcome)),
                    Err(SeatError::Storage(e)) => Err(GateError::Storage(e)),
                    Err(e) => Ok(Answer::ExecuteRefused(e)),
                }
            }
            .boxed()
        })
    }
}

/// Add `amount` to the user's balance, once per key (`PATCH /users/{id}/charge`).
#[derive(Message)]
#[rtype(result = "Result<Answer, GateError>")]
pub struct Charge {
    pub key: String,
    pub fingerprint: Fingerprint,
    pub amount: u64,
}

impl Handler<Charge> for KeyGate {
    type Result = Answered;
    fn handle(&mut self, msg: Charge, ctx: &mut Context<Self>) -> Answered {
        let wallet = match self.wallet() {
            Ok(w) => w,
            Err(e) => return Box::pin(ready(Err(e))),
        };
        self.once(msg.key, msg.fingerprint, ctx, move |req| {
            let key = Keyed { req, recorder: record_charge as ledger::Recorder<ChargeOutcome> };
            async move {
                Ok(match wallet.send(wallet::Charge { key, amount: msg.amount }).await?? {
                    Ok(receipt) => Answer::Charged(receipt),
                    Err(refusal) => Answer::ChargeRefused(refusal),
                })
            }
            .boxed()
        })
    }
}

/// Pay a held reservation from the balance, once per key (`POST /payments`).
#[derive(Message)]
#[rtype(result = "Result<Answer, GateError>")]
pub struct Pay {
    pub key: String,
    pub fingerprint: Fingerprint,
    pub reservation: u64,
    pub amount: u64,
    /// The queue token to retire once paid.
    pub queue_token: String,
}

impl Handler<Pay> for KeyGate {
    type Result = Answered;
    fn handle(&mut self, msg: Pay, ctx: &mut Context<Self>) -> Answered {
        let wallet = match self.wallet() {
            Ok(w) => w,
            Err(e) => return Box::pin(ready(Err(e))),
        };
        self.once(msg.key, msg.fingerprint, ctx, move |req| {
            let key = Keyed { req, recorder: record_payment as ledger::Recorder<PayOutcome> };
            let pay =
                wallet::Pay { key, reservation: msg.reservation, amount: msg.amount, queue_token: msg.queue_token };
            async move {
                Ok(match wallet.send(pay).await?? {
                    Ok(receipt) => Answer::Paid(receipt),
                    Err(refusal) => Answer::PayRefused(refusal),
                })
            }
            .boxed()
        })
    }
}

/// The recorded answer for a key, if it has one and the request matches. Lets a retry
/// be answered after the request itself ended what it needed (a payment retires the
/// queue token that let it in). Resolves once the answer is on disk.
#[derive(Message)]
#[rtype(result = "Option<Result<Answer, GateError>>")]
pub struct Recorded {
    pub key: String,
    pub fingerprint: Fingerprint,
}

impl Handler<Recorded> for KeyGate {
    type Result = ResponseFuture<Option<Result<Answer, GateError>>>;
    fn handle(&mut self, msg: Recorded, _: &mut Context<Self>) -> Self::Result {
        let req = KeyedRequest { user: self.user, key: msg.key, fingerprint: msg.fingerprint };
        let found = match ledger::lookup::<Answer>(&self.store, &req) {
            Ok(Ok(Some(answer))) => Some(Ok(answer)),
            Ok(Ok(None)) => None,
            Ok(Err(_)) => Some(Err(GateError::KeyReused)),
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
