//! `TicketListing`: one actor per listing of contract T. It owns the listing's stock
//! (unit price, total and remaining quantity) and every payment request (transaction)
//! that reserves from it; its mailbox is the only lock, so racing requests never reserve
//! more than remain.
//!
//! A request reserves its quantity at once and stays `pending_payment` until paid or
//! until `reservation_expires_at` (`BOXOFFICE_TRADE_RESERVATION_TTL`, 24 h). The actor's
//! timer cancels what runs out, once: the stock comes back and the room gets a
//! [`TradeNotice`] (a notice owed is remembered with the transaction and re-sent after a
//! restart until the room has stored it); so does a confirmed purchase.
//!
//! Paying runs the card protocol contract B's bookings run too (see
//! [`card`](super::card)): `Charging` is persisted before the gateway is asked outside
//! the handler, the gateway key is `trade-{id}-{attempt}` and moves on only after a
//! definite decline, and a charge whose request ran out or was cancelled meanwhile is
//! refunded. An expiry racing a payment ends in one state: the
//! charge is kept only by a request that was still pending when it was captured.

use super::book::{deactivate, Activated, ActorBook, Deactivate, Lease, Lookup};
use super::card::{self, CardFailure, CardOwner, Cards, ChargeState};
use super::deadline::Deadline;
use super::gateway::{ChargeRequest, GatewayCharge, GatewayError, PaymentGateway};
use super::trade_notice::TradeNotice;
use crate::observe::Sale;
use crate::store::{Batch, Key, Store, StoreError};
use crate::time::now_ms;
use actix::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

/// How long after a failed notice the actor tries again.
const RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    pub id: u64,
    pub seller: u64,
    pub title: String,
    pub description: Option<String>,
    pub unit_price: u64,
    pub total_quantity: u32,
    pub remaining_quantity: u32,
    pub created_at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxStatus {
    PendingPayment,
    Paid,
    Confirmed,
    Cancelled,
}

impl TxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TxStatus::PendingPayment => "pending_payment",
            TxStatus::Paid => "paid",
            TxStatus::Confirmed => "confirmed",
            TxStatus::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    pub id: u64,
    pub listing: u64,
    pub room: u64,
    pub buyer: u64,
    pub seller: u64,
    pub quantity: u32,
    pub unit_price: u64,
    pub amount: u64,
    pub status: TxStatus,
    pub created_at: u64,
    pub reservation_expires_at: u64,
    pub paid_at: Option<u64>,
    pub confirmed_at: Option<u64>,
    pub cancelled_at: Option<u64>,
    /// `expired`, or who cancelled.
    pub cancel_reason: Option<String>,
    pub charge: ChargeState,
    pub attempt: u32,
    /// The room still has to be told that the request expired ([`TradeNotice::Expired`]).
    pub notice_owed: bool,
    /// The room still has to be told of the purchase ([`TradeNotice::PurchaseConfirmed`]).
    pub card_owed: bool,
}

impl Transaction {
    pub fn gateway_key(&self) -> String {
        format!("trade-{}-{}", self.id, self.attempt)
    }

    /// Cancelled while its card may still hold money: it must be refunded.
    fn needs_refund(&self) -> bool {
        self.status == TxStatus::Cancelled && self.charge.may_hold_money()
    }

    /// Whether the listing still has to act on it or it may still change: pending or
    /// paid, owed a refund, or owing its room a message. A request that is none of these
    /// is finished and lives only in the store.
    fn is_open(&self) -> bool {
        matches!(self.status, TxStatus::PendingPayment | TxStatus::Paid)
            || self.needs_refund()
            || self.notice_owed
            || self.card_owed
    }
}

/// What a listing persists as its own record: its stock, and the ids of its open payment
/// requests (each request is its own [`Key::Transaction`] record). Bounded by the open
/// requests, whatever the listing's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListingSnapshot {
    pub listing: Listing,
    pub open: Vec<u64>,
}

/// A listing in memory: its stock and its open payment requests. Not `Clone`: a change
/// copies the requests it changes, never the whole listing (see `TicketListing::commit`).
#[derive(Debug, PartialEq, Eq)]
pub struct ListingState {
    pub listing: Listing,
    pub transactions: BTreeMap<u64, Transaction>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TradeError {
    #[error("ticket listing not found")]
    ListingNotFound,
    #[error("transaction not found")]
    TxNotFound,
    #[error("only the buyer or the seller of this room may do that")]
    NotParty,
    #[error("quantity must be at least 1")]
    ZeroQuantity,
    #[error("not enough tickets left")]
    NotEnoughStock,
    #[error("the amount would pass the largest amount the server accepts")]
    AmountTooLarge,
    #[error("the payment request has expired")]
    Expired,
    #[error("the payment request was cancelled")]
    Cancelled,
    #[error("the payment request is not paid yet")]
    NotPaidYet,
    #[error("a confirmed purchase cannot be cancelled")]
    ConfirmedIsFinal,
    #[error("only the whole quantity can be cancelled")]
    PartialCancel,
    #[error("a payment for this request is already running")]
    InProgress,
    #[error("storage failure: {0}")]
    Storage(String),
}

impl From<StoreError> for TradeError {
    fn from(e: StoreError) -> Self {
        TradeError::Storage(e.to_string())
    }
}

/// The address book of the listing actors, by listing id: a narrow handle for actors that
/// must reach a listing (a trade room asking for payment) without the whole registry. A
/// listing's actor starts with the server only if it has open payment requests (their
/// timers run there); any other starts from its record on first use, and stops when idle
/// with no request open.
pub type ListingBook = ActorBook<TicketListing>;

/// What every listing is activated with.
pub struct ListingsEnv {
    pub store: Store,
    pub env: ListingEnv,
}

impl Activated for TicketListing {
    type Id = u64;
    type Env = ListingsEnv;
    const KIND: &'static str = "listing";
    fn activate(id: &u64, env: &ListingsEnv, lease: Lease<Self>) -> Result<Option<Self>, StoreError> {
        let Some(snapshot) = env.store.get::<ListingSnapshot>(&Key::Listing(*id))? else { return Ok(None) };
        TicketListing::load(snapshot, env.store.clone(), env.env.clone(), lease).map(Some)
    }
    /// An open payment request (its expiry, a refund or a notice owed), a timer, or a
    /// gateway call in flight.
    fn busy(&self) -> bool {
        !self.state.transactions.is_empty() || self.timer.is_armed() || self.cards.busy() || !self.notifying.is_empty()
    }
    fn lease(&self) -> &Lease<Self> {
        &self.lease
    }
}

impl Handler<Deactivate> for TicketListing {
    type Result = ();
    fn handle(&mut self, _: Deactivate, ctx: &mut Context<Self>) {
        deactivate(self, ctx)
    }
}

/// How a payment attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayOutcome {
    Paid(Transaction),
    Failed(CardFailure),
}

/// What a listing reaches besides its own state: its rooms (to post notices in), the card
/// gateway, and how long a payment request reserves stock.
#[derive(Clone)]
pub struct ListingEnv {
    pub rooms: Lookup<u64, TradeNotice>,
    pub gateway: std::sync::Arc<dyn PaymentGateway>,
    pub gateway_timeout: Duration,
    pub ttl: Duration,
}

pub struct TicketListing {
    state: ListingState,
    store: Store,
    env: ListingEnv,
    /// The expiry timer, aimed at the earliest pending request's expiry.
    timer: Deadline,
    /// The requests' charges and refunds in flight with the gateway.
    cards: Cards,
    /// Requests whose message to their room is on its way.
    notifying: HashSet<u64>,
    lease: Lease<TicketListing>,
}

impl TicketListing {
    /// Bring a listing back from its record and its open payment requests.
    pub fn load(
        snapshot: ListingSnapshot,
        store: Store,
        env: ListingEnv,
        lease: Lease<TicketListing>,
    ) -> Result<TicketListing, StoreError> {
        let mut transactions = BTreeMap::new();
        for id in snapshot.open {
            let Some(mut tx) = store.get::<Transaction>(&Key::Transaction(id))? else {
                tracing::warn!(listing = snapshot.listing.id, tx = id, "an open payment request without its record");
                continue;
            };
            // A charge in flight when the process stopped has an unknown outcome now.
            tx.charge.restarted();
            transactions.insert(id, tx);
        }
        let state = ListingState { listing: snapshot.listing, transactions };
        let cards = Cards::new(store.clone(), env.gateway.clone(), env.gateway_timeout);
        Ok(TicketListing { state, store, env, timer: Deadline::default(), cards, notifying: HashSet::new(), lease })
    }

    /// The one place a listing changes, write first: the requests in `txs` as they are to
    /// be (a new one with its room's index entry) and, when the stock or the set of open
    /// requests changes, the listing's record go in one atomic write; only then does
    /// memory change, so a failed write leaves the listing as it was. The stock follows the
    /// requests: a new one takes its quantity, a cancelled one gives it back. Finished
    /// requests leave memory.
    fn commit(&mut self, txs: Vec<Transaction>) -> Result<(), TradeError> {
        let mut batch = Batch::default();
        let mut remaining = self.state.listing.remaining_quantity;
        let mut open_changed = false;
        for tx in &txs {
            let old = self.state.transactions.get(&tx.id);
            match old {
                Some(old) if old == tx => {}
                Some(_) => batch.put(&Key::Transaction(tx.id), tx)?,
                None => {
                    batch.put(&Key::Transaction(tx.id), tx)?;
                    batch.put(&Key::RoomTransaction(tx.room, tx.id), &())?;
                }
            }
            match (old.is_some_and(|t| t.status != TxStatus::Cancelled), tx.status != TxStatus::Cancelled) {
                (false, true) => remaining -= tx.quantity,
                (true, false) => remaining += tx.quantity,
                _ => {}
            }
            open_changed |= old.is_some() != tx.is_open();
        }
        if open_changed || remaining != self.state.listing.remaining_quantity {
            let mut open: BTreeSet<u64> = self.state.transactions.keys().copied().collect();
            for tx in &txs {
                if tx.is_open() {
                    open.insert(tx.id);
                } else {
                    open.remove(&tx.id);
                }
            }
            let listing = Listing { remaining_quantity: remaining, ..self.state.listing.clone() };
            let open = open.into_iter().collect();
            batch.put(&Key::Listing(listing.id), &ListingSnapshot { listing, open })?;
        }
        self.store.apply(batch)?;
        self.state.listing.remaining_quantity = remaining;
        for tx in txs {
            count(self.state.transactions.get(&tx.id).map(|t| t.status), &tx);
            if tx.is_open() {
                self.state.transactions.insert(tx.id, tx);
            } else {
                self.state.transactions.remove(&tx.id);
            }
        }
        Ok(())
    }

    /// Change open request `id` with `f`, on a copy, and commit it.
    fn change<T>(
        &mut self,
        id: u64,
        f: impl FnOnce(&mut Transaction) -> Result<T, TradeError>,
    ) -> Result<T, TradeError> {
        let mut tx = self.state.transactions.get(&id).cloned().ok_or(TradeError::TxNotFound)?;
        let out = f(&mut tx)?;
        self.commit(vec![tx])?;
        Ok(out)
    }

    /// Cancel every pending request that has run out (and is not being charged).
    fn sweep(&mut self, ctx: &mut Context<Self>) {
        let now = now_ms();
        let mut expired: Vec<Transaction> = self
            .state
            .transactions
            .values()
            .filter(|t| t.status == TxStatus::PendingPayment && t.reservation_expires_at <= now)
            .cloned()
            .collect();
        if !expired.is_empty() {
            let due: Vec<u64> = expired.iter().map(|t| t.id).collect();
            expired.iter_mut().for_each(|t| expire(t, now));
            match self.commit(expired) {
                Ok(()) => tracing::info!(listing = self.state.listing.id, ?due, "payment requests expired"),
                Err(e) => {
                    tracing::error!(error = %e, "could not persist expired payment requests; retrying");
                    ctx.run_later(RETRY, |act, ctx| act.sweep(ctx));
                    return;
                }
            }
        }
        card::settle(self, ctx);
        self.notify(ctx);
        self.arm(ctx);
    }

    fn arm(&mut self, ctx: &mut Context<Self>) {
        let next = self
            .state
            .transactions
            .values()
            .filter(|t| t.status == TxStatus::PendingPayment)
            .map(|t| t.reservation_expires_at)
            .min();
        match next {
            Some(at) => self.timer.set(ctx, at, |act, ctx| {
                act.timer.fired();
                act.sweep(ctx);
            }),
            None => self.timer.clear(ctx),
        }
    }

    /// Send every notice a request owes its room: its expiry, its purchase.
    fn notify(&mut self, ctx: &mut Context<Self>) {
        let owed: Vec<(u64, u64, u64, bool)> = self
            .state
            .transactions
            .values()
            .filter(|t| (t.notice_owed || t.card_owed) && !self.notifying.contains(&t.id))
            .map(|t| (t.id, t.room, t.buyer, t.notice_owed))
            .collect();
        for (id, room, buyer, expired) in owed {
            let Ok(Some(addr)) = self.env.rooms.get(room) else { continue };
            self.notifying.insert(id);
            let notice = if expired { TradeNotice::Expired } else { TradeNotice::PurchaseConfirmed { buyer } };
            ctx.spawn(addr.send(notice).into_actor(self).map(move |r, act, ctx| {
                act.notifying.remove(&id);
                if matches!(r, Ok(Ok(_))) {
                    let _ = act.change(id, |t| {
                        if expired {
                            t.notice_owed = false;
                        } else {
                            t.card_owed = false;
                        }
                        Ok(())
                    });
                    // A transaction may owe both.
                    act.notify(ctx);
                } else {
                    ctx.run_later(RETRY, |act, ctx| act.notify(ctx));
                }
            }));
        }
    }

    /// `None` for an open request; a finished one, read from the store.
    fn finished(&self, id: u64) -> Result<Option<Transaction>, TradeError> {
        if self.state.transactions.contains_key(&id) {
            return Ok(None);
        }
        self.find(id).map(Some)
    }

    /// A request of this listing, open or finished.
    fn find(&self, id: u64) -> Result<Transaction, TradeError> {
        if let Some(t) = self.state.transactions.get(&id) {
            return Ok(t.clone());
        }
        match self.store.get::<Transaction>(&Key::Transaction(id))? {
            Some(t) if t.listing == self.state.listing.id => Ok(t),
            _ => Err(TradeError::TxNotFound),
        }
    }

    /// Step 3 of a payment: apply the gateway's answer. A capture is kept only by a
    /// request still pending; one that ran out meanwhile is cancelled and refunded.
    fn finish_charge(
        &mut self,
        id: u64,
        answer: Result<GatewayCharge, GatewayError>,
        ctx: &mut Context<Self>,
    ) -> Result<PayOutcome, TradeError> {
        let now = now_ms();
        let out = self.change(id, |t| {
            Ok(match t.charge.apply(&mut t.attempt, answer, now) {
                Ok(()) if t.status == TxStatus::PendingPayment && t.reservation_expires_at > now => {
                    t.status = TxStatus::Paid;
                    t.paid_at = Some(now);
                    PayOutcome::Paid(t.clone())
                }
                Ok(()) => {
                    if t.status == TxStatus::PendingPayment {
                        expire(t, now);
                    }
                    PayOutcome::Failed(CardFailure::RequestExpired)
                }
                Err(failure) => PayOutcome::Failed(failure),
            })
        });
        card::settle(self, ctx);
        self.notify(ctx);
        self.arm(ctx);
        out
    }
}

/// A listing refunds cancelled requests whose card may still hold money.
impl CardOwner for TicketListing {
    type Error = TradeError;

    fn cards(&mut self) -> &mut Cards {
        &mut self.cards
    }

    fn refunds_owed(&self) -> Vec<(u64, String)> {
        self.state.transactions.values().filter(|t| t.needs_refund()).map(|t| (t.id, t.gateway_key())).collect()
    }

    fn record_refund(&mut self, id: u64, charge: ChargeState) -> Result<(), TradeError> {
        if !self.state.transactions.contains_key(&id) {
            return Ok(());
        }
        self.change(id, |t| {
            t.charge = charge;
            Ok(())
        })
    }
}

impl Actor for TicketListing {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(super::MAILBOX);
        // What ran out while the server was down is cancelled now; owed refunds and
        // notices resume.
        self.sweep(ctx);
    }
    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        self.lease.stopping()
    }
}

/// The listing with its stock.
#[derive(Message)]
#[rtype(result = "Listing")]
pub struct GetListing;

impl Handler<GetListing> for TicketListing {
    type Result = MessageResult<GetListing>;
    fn handle(&mut self, _: GetListing, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.state.listing.clone())
    }
}

/// The transactions of one room, oldest first.
#[derive(Message)]
#[rtype(result = "Result<Vec<Transaction>, TradeError>")]
pub struct RoomTransactions {
    pub room: u64,
}

impl Handler<RoomTransactions> for TicketListing {
    type Result = Result<Vec<Transaction>, TradeError>;
    fn handle(&mut self, msg: RoomTransactions, _: &mut Context<Self>) -> Self::Result {
        let mut out = Vec::new();
        for key in self.store.keys_under(&Key::TransactionsOf(msg.room))? {
            if let Key::RoomTransaction(_, id) = key {
                out.push(self.find(id)?);
            }
        }
        Ok(out)
    }
}

/// Reserve `quantity` for the buyer of `room` at once (either party may ask).
#[derive(Message)]
#[rtype(result = "Result<Transaction, TradeError>")]
pub struct RequestPayment {
    pub room: u64,
    pub buyer: u64,
    pub quantity: u32,
}

impl Handler<RequestPayment> for TicketListing {
    type Result = ResponseFuture<Result<Transaction, TradeError>>;
    fn handle(&mut self, msg: RequestPayment, ctx: &mut Context<Self>) -> Self::Result {
        let ttl = crate::time::ms(self.env.ttl);
        let id = self.store.next_id().map_err(TradeError::from);
        let r = id.and_then(|id| {
            let listing = &self.state.listing;
            if msg.quantity == 0 {
                return Err(TradeError::ZeroQuantity);
            }
            if listing.remaining_quantity < msg.quantity {
                return Err(TradeError::NotEnoughStock);
            }
            let amount =
                crate::money::times(listing.unit_price, u64::from(msg.quantity)).ok_or(TradeError::AmountTooLarge)?;
            let now = now_ms();
            let t = Transaction {
                id,
                listing: listing.id,
                room: msg.room,
                buyer: msg.buyer,
                seller: listing.seller,
                quantity: msg.quantity,
                unit_price: listing.unit_price,
                amount,
                status: TxStatus::PendingPayment,
                created_at: now,
                reservation_expires_at: now + ttl,
                paid_at: None,
                confirmed_at: None,
                cancelled_at: None,
                cancel_reason: None,
                charge: ChargeState::Unpaid,
                attempt: 0,
                notice_owed: false,
                card_owed: false,
            };
            self.commit(vec![t.clone()])?;
            Ok(t)
        });
        self.arm(ctx);
        self.store.when_durable(r)
    }
}

/// The buyer pays a pending request by card.
#[derive(Message)]
#[rtype(result = "Result<PayOutcome, TradeError>")]
pub struct PayTransaction {
    pub tx: u64,
    pub buyer: u64,
    pub token: String,
}

impl Handler<PayTransaction> for TicketListing {
    type Result = ResponseActFuture<Self, Result<PayOutcome, TradeError>>;
    fn handle(&mut self, msg: PayTransaction, ctx: &mut Context<Self>) -> Self::Result {
        let begun = (|| {
            let t = self.find(msg.tx)?;
            if t.buyer != msg.buyer {
                return Err(TradeError::NotParty);
            }
            if self.cards.charging(t.id) {
                return Err(TradeError::InProgress);
            }
            match t.status {
                TxStatus::Paid | TxStatus::Confirmed => return Ok(Err(PayOutcome::Paid(t.clone()))),
                TxStatus::Cancelled if t.cancel_reason.as_deref() == Some("expired") => {
                    return Err(TradeError::Expired)
                }
                TxStatus::Cancelled => return Err(TradeError::Cancelled),
                TxStatus::PendingPayment => {}
            }
            if t.reservation_expires_at <= now_ms() {
                return Err(TradeError::Expired);
            }
            let id = t.id;
            let req = self.change(id, |t| {
                t.charge = ChargeState::Charging { since: now_ms() };
                Ok(ChargeRequest {
                    key: t.gateway_key(),
                    amount: t.amount,
                    token: msg.token.clone(),
                    cvv: String::new(),
                })
            })?;
            Ok(Ok((id, req)))
        })();
        let (id, req) = match begun {
            Ok(Ok(begun)) => begun,
            Ok(Err(answer)) => return Box::pin(fut::ready(Ok(answer))),
            Err(e) => {
                // Something that ran out while its timer had not fired yet.
                self.sweep(ctx);
                return Box::pin(fut::ready(Err(e)));
            }
        };
        // The gateway hears of the charge only once `Charging` is on disk.
        Box::pin(card::charge(self, id, req).map(move |answer, act, ctx| act.finish_charge(id, answer, ctx)).then(
            |out, act, _| {
                let store = act.store.clone();
                fut::wrap_future(async move {
                    let out = out?;
                    store.durable().await?;
                    Ok(out)
                })
            },
        ))
    }
}

/// The buyer confirms a paid purchase.
#[derive(Message)]
#[rtype(result = "Result<Transaction, TradeError>")]
pub struct ConfirmPurchase {
    pub tx: u64,
    pub buyer: u64,
}

impl Handler<ConfirmPurchase> for TicketListing {
    type Result = ResponseFuture<Result<Transaction, TradeError>>;
    fn handle(&mut self, msg: ConfirmPurchase, ctx: &mut Context<Self>) -> Self::Result {
        let r = match self.finished(msg.tx) {
            // A finished request changes no more: this only answers (or refuses).
            Ok(Some(mut t)) => confirm(&mut t, msg.buyer),
            Ok(None) => self.change(msg.tx, |t| confirm(t, msg.buyer)),
            Err(e) => Err(e),
        };
        self.notify(ctx);
        self.store.when_durable(r)
    }
}

/// Cancel a pending request that ran out: its room is to be told.
fn expire(t: &mut Transaction, now: u64) {
    t.status = TxStatus::Cancelled;
    t.cancelled_at = Some(now);
    t.cancel_reason = Some("expired".into());
    t.notice_owed = true;
}

/// The metrics of a request's change from `was` (`None`: new) to `tx`'s status.
fn count(was: Option<TxStatus>, tx: &Transaction) {
    if was == Some(tx.status) {
        return;
    }
    match tx.status {
        TxStatus::PendingPayment if was.is_none() => crate::observe::hold(Sale::Trade),
        TxStatus::Paid => crate::observe::payment(Sale::Trade, tx.amount),
        TxStatus::Cancelled if tx.cancel_reason.as_deref() == Some("expired") => crate::observe::expiry(Sale::Trade),
        _ => {}
    }
}

/// Confirm a paid request (a confirmed one is answered as it is).
fn confirm(t: &mut Transaction, buyer: u64) -> Result<Transaction, TradeError> {
    if t.buyer != buyer {
        return Err(TradeError::NotParty);
    }
    match t.status {
        TxStatus::Paid => {
            t.status = TxStatus::Confirmed;
            t.confirmed_at = Some(now_ms());
            t.card_owed = true;
            Ok(t.clone())
        }
        TxStatus::Confirmed => Ok(t.clone()),
        TxStatus::PendingPayment => Err(TradeError::NotPaidYet),
        TxStatus::Cancelled => Err(TradeError::Cancelled),
    }
}

/// Cancel a request in full (either party): its quantity returns to the listing, and a
/// paid one is refunded. Partial cancellation is refused.
#[derive(Message)]
#[rtype(result = "Result<Transaction, TradeError>")]
pub struct CancelTransaction {
    pub tx: u64,
    pub user: u64,
    pub quantity: Option<u32>,
}

impl Handler<CancelTransaction> for TicketListing {
    type Result = ResponseFuture<Result<Transaction, TradeError>>;
    fn handle(&mut self, msg: CancelTransaction, ctx: &mut Context<Self>) -> Self::Result {
        let charging = self.cards.charging(msg.tx);
        let r = match self.finished(msg.tx) {
            // A finished request changes no more: this only refuses.
            Ok(Some(mut t)) => cancel(&mut t, &msg, charging),
            Ok(None) => self.change(msg.tx, |t| cancel(t, &msg, charging)),
            Err(e) => Err(e),
        };
        card::settle(self, ctx);
        self.arm(ctx);
        self.store.when_durable(r)
    }
}

/// Cancel a pending or paid request in full (its quantity returns with the commit).
fn cancel(t: &mut Transaction, msg: &CancelTransaction, charging: bool) -> Result<Transaction, TradeError> {
    if t.buyer != msg.user && t.seller != msg.user {
        return Err(TradeError::NotParty);
    }
    if msg.quantity.is_some_and(|q| q != t.quantity) {
        return Err(TradeError::PartialCancel);
    }
    if charging {
        return Err(TradeError::InProgress);
    }
    match t.status {
        TxStatus::PendingPayment | TxStatus::Paid => {}
        TxStatus::Confirmed => return Err(TradeError::ConfirmedIsFinal),
        TxStatus::Cancelled => return Err(TradeError::Cancelled),
    }
    t.status = TxStatus::Cancelled;
    t.cancelled_at = Some(now_ms());
    t.cancel_reason = Some(if msg.user == t.buyer { "buyer" } else { "seller" }.into());
    Ok(t.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::Registry;
    use crate::config::Cli;
    use clap::Parser;

    /// A payment request and a cancellation whose writes fail change nothing in memory:
    /// the stock and the open request stay as they were, and both succeed once the store
    /// works again.
    #[actix_rt::test]
    async fn a_failed_write_leaves_the_listing_as_it_was() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().to_str().expect("utf-8").to_string();
        let settings = Cli::parse_from(["boxoffice", "--no-demo", "--data-dir", &data]).settings.sanitize();
        let store = Store::open(dir.path()).expect("store");
        let registry = Registry::start(store.clone(), settings).await.expect("registry");
        let listing = registry.create_listing(1, "tickets".into(), None, 100, 5).await.expect("listing");
        let addr = registry.listing(listing.id).expect("store").expect("listing actor");
        let request = |quantity| RequestPayment { room: 9, buyer: 2, quantity };
        let tx = addr.send(request(2)).await.expect("mailbox").expect("requested");
        let remaining = || async { addr.send(GetListing).await.expect("mailbox").remaining_quantity };
        let requests = || async { addr.send(RoomTransactions { room: 9 }).await.expect("mailbox").expect("requests") };
        assert_eq!(remaining().await, 3);
        store.fail_writes(true);
        let failed = addr.send(request(1)).await.expect("mailbox");
        assert!(matches!(failed, Err(TradeError::Storage(_))), "{failed:?}");
        let cancel = CancelTransaction { tx: tx.id, user: 2, quantity: None };
        let failed = addr.send(cancel).await.expect("mailbox");
        assert!(matches!(failed, Err(TradeError::Storage(_))), "{failed:?}");
        store.fail_writes(false);
        assert_eq!(remaining().await, 3, "no stock taken or given back");
        assert_eq!(requests().await, vec![tx.clone()], "the request is still pending");
        let cancel = CancelTransaction { tx: tx.id, user: 2, quantity: None };
        addr.send(cancel).await.expect("mailbox").expect("cancelled");
        assert_eq!(remaining().await, 5);
        addr.send(request(5)).await.expect("mailbox").expect("the whole stock");
        assert_eq!(remaining().await, 0);
    }
}
