//! `Wallet`: one actor per user. It owns the user's balance and monthly charge total, and
//! coordinates each payment with the seat map.
//!
//! Charges and payments come keyed, through the user's [`KeyGate`], which owns the keys
//! while the requests run and answers replays. The wallet records each outcome through the
//! [`Keyed`] handle it is given, in the same atomic write as the change itself.
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
//!
//! [`KeyGate`]: super::keys::KeyGate

use super::book::{deactivate, Activated, ActorBook, Deactivate, Lease};
use super::ledger::Keyed;
use super::seat_map::{BeginPayment, FinishPayment, PaymentDecision, Reservation, ResolvePayment, SeatError, SeatMaps};
use super::waiting_queue::Retire;
use crate::store::{Batch, Key, Store, StoreError};
use crate::time::{month_of, now_ms};
use actix::prelude::*;
use futures_util::future::ready;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

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

/// What a charge comes to: the receipt, or why not.
pub type ChargeOutcome = Result<ChargeReceipt, ChargeRefusal>;

/// What a payment comes to: the receipt, or why not.
pub type PayOutcome = Result<PaymentReceipt, PayRefusal>;

/// A failure that is no answer to the request (nothing was recorded): try again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalletError {
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletSnapshot {
    user: u64,
    balance: u64,
    /// The month (`yyyymm`) `month_charged` counts.
    month: u32,
    month_charged: u64,
}

pub struct Wallet {
    state: WalletSnapshot,
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
        Ok(Wallet { state, paying: HashSet::new(), limits, store, env, lease })
    }

    /// Apply the charge policy: the receipt and the state the charge leaves, or why not.
    /// Changes nothing; [`Wallet::commit`] does, once it is written.
    fn charge(&self, amount: u64) -> Result<(ChargeReceipt, WalletSnapshot), ChargeRefusal> {
        let now = now_ms();
        let month = month_of(now);
        let used = if self.state.month == month { self.state.month_charged } else { 0 };
        if amount == 0 {
            return Err(ChargeRefusal::NotPositive);
        }
        if amount > self.limits.max_single {
            return Err(ChargeRefusal::OverSingleLimit { limit: self.limits.max_single });
        }
        if used.saturating_add(amount) > self.limits.max_monthly {
            return Err(ChargeRefusal::OverMonthlyLimit { limit: self.limits.max_monthly, used });
        }
        let Some(balance) = crate::money::add(self.state.balance, amount) else {
            return Err(ChargeRefusal::OverMaxBalance);
        };
        let next = WalletSnapshot { month, month_charged: used + amount, balance, ..self.state };
        Ok((ChargeReceipt { user: self.state.user, charged: amount, balance, at: now }, next))
    }

    /// Write first: `extra`, the wallet's `next` state when the outcome changes it, and the
    /// ledger entry recording `outcome`, in one atomic write; only then is `next` the
    /// state. A failed write leaves the wallet as it was.
    fn commit<O>(
        &mut self,
        keyed: &Keyed<O>,
        outcome: &O,
        next: Option<WalletSnapshot>,
        extra: Batch,
    ) -> Result<(), WalletError> {
        let mut batch = extra;
        if let Some(next) = &next {
            batch.put(&Key::Wallet(next.user), next)?;
        }
        keyed.record(outcome, &mut batch)?;
        self.store.apply(batch)?;
        if let Some(next) = next {
            self.state = next;
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
    /// A payment between its steps.
    fn busy(&self) -> bool {
        !self.paying.is_empty()
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

/// Add `amount` to the balance under the charge policy, recording the outcome for `key`.
#[derive(Message)]
#[rtype(result = "Result<ChargeOutcome, WalletError>")]
pub struct Charge {
    pub key: Keyed<ChargeOutcome>,
    pub amount: u64,
}

impl Handler<Charge> for Wallet {
    type Result = ResponseFuture<Result<ChargeOutcome, WalletError>>;
    fn handle(&mut self, msg: Charge, _: &mut Context<Self>) -> Self::Result {
        let (outcome, next) = match self.charge(msg.amount) {
            Ok((receipt, next)) => (Ok(receipt), Some(next)),
            Err(refusal) => (Err(refusal), None),
        };
        if let Err(e) = self.commit(&msg.key, &outcome, next, Batch::default()) {
            return Box::pin(ready(Err(e)));
        }
        if next.is_none() {
            // A refusal changes nothing: its record rides the next flush.
            return Box::pin(ready(Ok(outcome)));
        }
        let store = self.store.clone();
        Box::pin(async move {
            store.durable().await?;
            Ok(outcome)
        })
    }
}

/// Pay for a held reservation from the balance, recording the outcome for `key`.
#[derive(Message)]
#[rtype(result = "Result<PayOutcome, WalletError>")]
pub struct Pay {
    pub key: Keyed<PayOutcome>,
    pub reservation: u64,
    pub amount: u64,
    /// The queue token to retire once paid.
    pub queue_token: String,
}

impl Handler<Pay> for Wallet {
    type Result = ResponseFuture<Result<PayOutcome, WalletError>>;
    fn handle(&mut self, msg: Pay, ctx: &mut Context<Self>) -> Self::Result {
        let payment = match self.store.next_id() {
            Ok(p) => p,
            Err(e) => return Box::pin(ready(Err(e.into()))),
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
            // Whatever happened, the payment is no longer in flight: from now on its
            // record answers for it (committed if it is there, aborted if not).
            flow.me.do_send(Release { payment });
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
    async fn run(&self, msg: Pay) -> Result<PayOutcome, WalletError> {
        let refuse = |e: SeatError| Err(PayRefusal::Seat(e));
        let Some(seat_map) = self.env.seat_maps.of_reservation(&self.store, msg.reservation)? else {
            return self.refuse(&msg.key, refuse(SeatError::NotFound));
        };
        let begin = BeginPayment { reservation: msg.reservation, user: self.user, payment: self.payment };
        let reservation = match seat_map.send(begin).await? {
            Ok(r) => r,
            Err(SeatError::Storage(e)) => return Err(WalletError::Storage(e)),
            // Not final (another payment of it is being settled): answer, do not record.
            Err(e @ SeatError::PaymentInProgress) => return Ok(refuse(e)),
            Err(e) => return self.refuse(&msg.key, refuse(e)),
        };
        let commit = CommitPayment { key: msg.key, payment: self.payment, reservation, amount: msg.amount };
        let outcome = match self.me.send(commit).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => {
                // Nothing was recorded: the seat map puts the hold back.
                seat_map.do_send(FinishPayment { reservation: msg.reservation, payment: self.payment, commit: false });
                return Err(e);
            }
            // The seat map will ask (ResolvePayment) and settle it from our record.
            Err(_) => return Err(WalletError::Unavailable),
        };
        let paid = outcome.is_ok();
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
        Ok(outcome)
    }

    /// Record a final refusal for the key and answer it (a refusal changes nothing, so
    /// its record rides the next flush).
    fn refuse(&self, key: &Keyed<PayOutcome>, outcome: PayOutcome) -> Result<PayOutcome, WalletError> {
        let mut batch = Batch::default();
        key.record(&outcome, &mut batch)?;
        self.store.apply(batch)?;
        Ok(outcome)
    }
}

/// Step 2 of a payment, run alone on the wallet's state: debit and record, or refuse.
/// The key stays in flight until the whole payment is over.
#[derive(Message)]
#[rtype(result = "Result<PayOutcome, WalletError>")]
struct CommitPayment {
    key: Keyed<PayOutcome>,
    payment: u64,
    reservation: Reservation,
    amount: u64,
}

impl Handler<CommitPayment> for Wallet {
    type Result = Result<PayOutcome, WalletError>;
    fn handle(&mut self, msg: CommitPayment, _: &mut Context<Self>) -> Self::Result {
        let price = msg.reservation.price;
        let mut batch = Batch::default();
        let (outcome, next) = if msg.amount != price {
            (Err(PayRefusal::AmountMismatch { amount: msg.amount, price }), None)
        } else if self.state.balance < price {
            (Err(PayRefusal::InsufficientBalance { balance: self.state.balance, price }), None)
        } else {
            let now = now_ms();
            let next = WalletSnapshot { balance: self.state.balance - price, ..self.state };
            let record =
                PaymentRecord { user: self.state.user, reservation: msg.reservation.id, amount: price, at: now };
            batch.put(&Key::Payment(msg.payment), &record)?;
            let mut reservation = msg.reservation;
            reservation.status = super::seat_map::ReservationStatus::Confirmed;
            let balance_after = next.balance;
            (
                Ok(PaymentReceipt { payment: msg.payment, reservation, amount: price, balance_after, at: now }),
                Some(next),
            )
        };
        self.commit(&msg.key, &outcome, next, batch)?;
        Ok(outcome)
    }
}

/// A payment that is no longer in flight.
#[derive(Message)]
#[rtype(result = "()")]
struct Release {
    payment: u64,
}

impl Handler<Release> for Wallet {
    type Result = ();
    fn handle(&mut self, msg: Release, _: &mut Context<Self>) {
        self.paying.remove(&msg.payment);
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
    use crate::actors::ledger::KeyedRequest;
    use crate::actors::seat_map::{GetReservation, HoldSeats, ReservationStatus, SeatMapSnapshot};
    use crate::actors::Registry;
    use crate::config::Cli;
    use clap::Parser;
    use std::time::Duration;

    /// A keyed handle that records nothing (these tests look at the payment, not the key).
    fn unrecorded<O>(key: &str) -> Keyed<O> {
        fn nothing<O>(_: &KeyedRequest, _: &O, _: &mut Batch) -> Result<(), StoreError> {
            Ok(())
        }
        Keyed { req: KeyedRequest { user: 1, key: key.into(), fingerprint: [0; 32] }, recorder: nothing::<O> }
    }

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
        let charged = wallet.send(Charge { key: unrecorded("c"), amount: 500 }).await.expect("mailbox");
        charged.expect("charge").expect("charged");
        let payment = 4242;
        seat_map.send(BeginPayment { reservation: r.id, user: 1, payment }).await.expect("mailbox").expect("begin");
        if commit {
            let step2 = CommitPayment { key: unrecorded("p"), payment, reservation: r.clone(), amount: 100 };
            let outcome = wallet.send(step2).await.expect("mailbox").expect("commit");
            assert!(outcome.is_ok(), "{outcome:?}");
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

    /// A charge and a payment whose writes fail change nothing in memory: the balance
    /// (and the monthly total) stay as they were, and the same payment commits once the
    /// store works again.
    #[actix_rt::test]
    async fn a_failed_write_leaves_the_wallet_as_it_was() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().to_str().expect("utf-8").to_string();
        let args = ["boxoffice", "--no-demo", "--data-dir", &data, "--charge-max-monthly", "700"];
        let settings = Cli::parse_from(args).settings.sanitize();
        let store = Store::open(dir.path()).expect("store");
        let registry = Registry::start(store.clone(), settings).await.expect("registry");
        let id = interrupted_payment(&registry, &store, false).await;
        let seat_map = registry.seat_map("t").expect("seat map");
        let reservation = seat_map.send(GetReservation { id }).await.expect("mailbox").expect("reservation");
        let wallet = registry.wallet(1).expect("wallet");
        let balance = || async { wallet.send(GetBalance).await.expect("mailbox") };
        let commit =
            |amount| CommitPayment { key: unrecorded("p"), payment: 4242, reservation: reservation.clone(), amount };
        store.fail_writes(true);
        let failed = wallet.send(Charge { key: unrecorded("c2"), amount: 200 }).await.expect("mailbox");
        assert!(matches!(failed, Err(WalletError::Storage(_))), "{failed:?}");
        let failed = wallet.send(commit(100)).await.expect("mailbox");
        assert!(matches!(failed, Err(WalletError::Storage(_))), "{failed:?}");
        assert_eq!(balance().await, 500, "neither the charge nor the debit happened");
        store.fail_writes(false);
        let paid = wallet.send(commit(100)).await.expect("mailbox").expect("commit");
        assert_eq!(paid.map(|p| p.balance_after), Ok(400));
        // The failed charge did not count towards the month (limit 700, 500 charged).
        let rest = wallet.send(Charge { key: unrecorded("c3"), amount: 200 }).await.expect("mailbox");
        assert_eq!(rest.expect("charge").map(|r| r.balance), Ok(600));
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
