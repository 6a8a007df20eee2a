//! `TicketListing`: one actor per listing of contract T. It owns the listing's stock
//! (unit price, total and remaining quantity) and every payment request (transaction)
//! that reserves from it; its mailbox is the only lock, so racing requests never reserve
//! more than remain.
//!
//! A request reserves its quantity at once and stays `pending_payment` until paid or
//! until `reservation_expires_at` (`BOXOFFICE_TRADE_RESERVATION_TTL`, 24 h). The actor's
//! timer cancels what runs out, once: the stock comes back and the room gets the system
//! message `결제 요청이 만료되었습니다.` (a notice owed is remembered with the transaction
//! and re-sent after a restart until the room has stored it).
//!
//! Paying runs the same protocol as a contract B booking (see
//! [`seat_map::booking`](super::seat_map::booking)): `Charging` is persisted before the
//! gateway is asked outside the handler, the gateway key is `trade-{id}-{attempt}` and
//! moves on only after a definite decline, and a charge whose request ran out or was
//! cancelled meanwhile is refunded. An expiry racing a payment ends in one state: the
//! charge is kept only by a request that was still pending when it was captured.

use super::gateway::{charge_after_flush, CardFailure, ChargeRequest, GatewayCharge, GatewayError};
use super::registry::Registry;
use super::room::{Author, PostMessage};
use super::seat_map::ChargeState;
use crate::store::{Key, Store, StoreError};
use crate::time::{now_ms, until};
use actix::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// The text of the expiry notice and of a refusal to pay an expired request.
pub const EXPIRED: &str = "결제 요청이 만료되었습니다.";
/// Not enough stock left.
pub const NOT_ENOUGH: &str = "판매 가능한 수량이 부족합니다.";
/// How long after a failed refund or notice the actor tries again.
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
    /// The room still has to be told that the request expired.
    pub notice_owed: bool,
    /// The room still has to get the `PURCHASE_CONFIRMED` card.
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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListingSnapshot {
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
    #[error("{0}")]
    Refused(String),
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

/// How a payment attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayOutcome {
    Paid(Transaction),
    Failed(CardFailure),
}

pub struct TicketListing {
    state: ListingSnapshot,
    store: Store,
    registry: Registry,
    ttl: Duration,
    timer: Option<(u64, SpawnHandle)>,
    charging: HashSet<u64>,
    refunding: HashSet<u64>,
    notifying: HashSet<u64>,
}

impl TicketListing {
    pub fn new(mut state: ListingSnapshot, store: Store, registry: Registry) -> TicketListing {
        // A charge in flight when the process stopped has an unknown outcome now.
        for tx in state.transactions.values_mut() {
            if let ChargeState::Charging { .. } = tx.charge {
                tx.charge = ChargeState::Unknown;
            }
        }
        let ttl = registry.settings().trade_reservation_ttl;
        TicketListing {
            state,
            store,
            registry,
            ttl,
            timer: None,
            charging: HashSet::new(),
            refunding: HashSet::new(),
            notifying: HashSet::new(),
        }
    }

    fn persist(&self, next: &ListingSnapshot) -> Result<(), StoreError> {
        self.store.put(&Key::Listing(next.listing.id), next)
    }

    /// Apply `f` to a copy of the state, persist it, and keep it (or nothing).
    fn update<T>(&mut self, f: impl FnOnce(&mut ListingSnapshot) -> Result<T, TradeError>) -> Result<T, TradeError> {
        let mut next = self.state.clone();
        let out = f(&mut next)?;
        self.persist(&next)?;
        self.state = next;
        Ok(out)
    }

    /// Cancel every pending request that has run out (and is not being charged).
    fn sweep(&mut self, ctx: &mut Context<Self>) {
        let now = now_ms();
        let due: Vec<u64> = self
            .state
            .transactions
            .values()
            .filter(|t| t.status == TxStatus::PendingPayment && t.reservation_expires_at <= now)
            .map(|t| t.id)
            .collect();
        if !due.is_empty() {
            let r = self.update(|s| {
                for id in &due {
                    if let Some(t) = s.transactions.get_mut(id) {
                        t.status = TxStatus::Cancelled;
                        t.cancelled_at = Some(now);
                        t.cancel_reason = Some("expired".into());
                        t.notice_owed = true;
                        s.listing.remaining_quantity += t.quantity;
                    }
                }
                Ok(())
            });
            match r {
                Ok(()) => tracing::info!(listing = self.state.listing.id, ?due, "payment requests expired"),
                Err(e) => {
                    tracing::error!(error = %e, "could not persist expired payment requests; retrying");
                    ctx.run_later(RETRY, |act, ctx| act.sweep(ctx));
                    return;
                }
            }
        }
        self.settle(ctx);
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
        if let Some((armed, h)) = self.timer {
            if next == Some(armed) {
                return;
            }
            ctx.cancel_future(h);
            self.timer = None;
        }
        if let Some(at) = next {
            let h = ctx.run_later(until(at) + Duration::from_millis(1), |act, ctx| {
                act.timer = None;
                act.sweep(ctx);
            });
            self.timer = Some((at, h));
        }
    }

    /// Post every message a request owes its room: the expiry notice, the purchase card.
    fn notify(&mut self, ctx: &mut Context<Self>) {
        let owed: Vec<(u64, u64, u64, bool)> = self
            .state
            .transactions
            .values()
            .filter(|t| (t.notice_owed || t.card_owed) && !self.notifying.contains(&t.id))
            .map(|t| (t.id, t.room, t.buyer, t.notice_owed))
            .collect();
        for (id, room, buyer, expired) in owed {
            let Ok(Some(addr)) = self.registry.room(room) else { continue };
            self.notifying.insert(id);
            let (from, content, kind) = if expired {
                (Author { id: 0, name: "system".into(), picture: None }, Some(EXPIRED.to_string()), "system")
            } else {
                let (name, picture) = self.registry.profile(buyer);
                (Author { id: buyer, name, picture }, None, "PURCHASE_CONFIRMED")
            };
            let notice = PostMessage {
                from,
                content,
                kind: kind.into(),
                reply_to: None,
                file: None,
                images: Vec::new(),
                system: true,
            };
            ctx.spawn(addr.send(notice).into_actor(self).map(move |r, act, ctx| {
                act.notifying.remove(&id);
                if matches!(r, Ok(Ok(_))) {
                    let _ = act.update(|s| {
                        if let Some(t) = s.transactions.get_mut(&id) {
                            if expired {
                                t.notice_owed = false;
                            } else {
                                t.card_owed = false;
                            }
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

    /// Refund every cancelled request whose card may hold money.
    fn settle(&mut self, ctx: &mut Context<Self>) {
        let due: Vec<(u64, String)> = self
            .state
            .transactions
            .values()
            .filter(|t| t.needs_refund() && !self.charging.contains(&t.id) && !self.refunding.contains(&t.id))
            .map(|t| (t.id, t.gateway_key()))
            .collect();
        let gateway = self.registry.gateway();
        for (id, key) in due {
            self.refunding.insert(id);
            ctx.spawn(fut::wrap_future::<_, Self>(gateway.refund(key)).map(move |answer, act, ctx| {
                act.refunding.remove(&id);
                let saved = answer.map_err(|e| TradeError::Storage(e.to_string())).and_then(|charge| {
                    act.update(|s| {
                        if let Some(t) = s.transactions.get_mut(&id) {
                            t.charge = ChargeState::Refunded { charge: charge.map(|c| c.id), at: now_ms() };
                        }
                        Ok(())
                    })
                });
                if let Err(e) = saved {
                    tracing::warn!(tx = id, error = %e, "refund failed; retrying");
                    ctx.run_later(RETRY, |act, ctx| act.settle(ctx));
                }
            }));
        }
    }

    fn tx(&self, id: u64) -> Result<&Transaction, TradeError> {
        self.state.transactions.get(&id).ok_or(TradeError::TxNotFound)
    }

    fn finish_charge(
        &mut self,
        id: u64,
        answer: Result<GatewayCharge, GatewayError>,
        ctx: &mut Context<Self>,
    ) -> Result<PayOutcome, TradeError> {
        self.charging.remove(&id);
        let now = now_ms();
        let out = self.update(|s| {
            let t = s.transactions.get_mut(&id).ok_or(TradeError::TxNotFound)?;
            Ok(match answer {
                Ok(charge) => {
                    t.charge = ChargeState::Captured { charge: charge.id, at: now };
                    if t.status == TxStatus::PendingPayment && t.reservation_expires_at > now {
                        t.status = TxStatus::Paid;
                        t.paid_at = Some(now);
                        PayOutcome::Paid(t.clone())
                    } else {
                        if t.status == TxStatus::PendingPayment {
                            t.status = TxStatus::Cancelled;
                            t.cancelled_at = Some(now);
                            t.cancel_reason = Some("expired".into());
                            t.notice_owed = true;
                            s.listing.remaining_quantity += t.quantity;
                        }
                        PayOutcome::Failed(CardFailure::new("REQUEST_EXPIRED", "CLIENT_ERROR"))
                    }
                }
                Err(GatewayError::Declined(f)) => {
                    t.charge = ChargeState::Unpaid;
                    t.attempt += 1;
                    PayOutcome::Failed(f)
                }
                Err(GatewayError::Timeout) => {
                    t.charge = ChargeState::Unknown;
                    PayOutcome::Failed(CardFailure::new("GATEWAY_TIMEOUT", "SERVER_ERROR"))
                }
                Err(GatewayError::Unavailable(_)) => {
                    t.charge = ChargeState::Unknown;
                    PayOutcome::Failed(CardFailure::new("GATEWAY_UNAVAILABLE", "SERVER_ERROR"))
                }
            })
        });
        self.settle(ctx);
        self.notify(ctx);
        self.arm(ctx);
        out
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
#[rtype(result = "Vec<Transaction>")]
pub struct RoomTransactions {
    pub room: u64,
}

impl Handler<RoomTransactions> for TicketListing {
    type Result = MessageResult<RoomTransactions>;
    fn handle(&mut self, msg: RoomTransactions, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.state.transactions.values().filter(|t| t.room == msg.room).cloned().collect())
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
        let ttl = crate::time::ms(self.ttl);
        let id = self.store.next_id().map_err(TradeError::from);
        let r = id.and_then(|id| {
            self.update(|s| {
                if msg.quantity == 0 {
                    return Err(TradeError::Refused("quantity must be at least 1".into()));
                }
                if s.listing.remaining_quantity < msg.quantity {
                    return Err(TradeError::Refused(NOT_ENOUGH.into()));
                }
                s.listing.remaining_quantity -= msg.quantity;
                let now = now_ms();
                let t = Transaction {
                    id,
                    listing: s.listing.id,
                    room: msg.room,
                    buyer: msg.buyer,
                    seller: s.listing.seller,
                    quantity: msg.quantity,
                    unit_price: s.listing.unit_price,
                    amount: s.listing.unit_price.saturating_mul(msg.quantity as u64),
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
                s.transactions.insert(id, t.clone());
                Ok(t)
            })
        });
        if let Ok(t) = &r {
            self.registry.route_transaction(t.id, t.listing);
        }
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
            let t = self.tx(msg.tx)?;
            if t.buyer != msg.buyer {
                return Err(TradeError::NotParty);
            }
            if self.charging.contains(&t.id) {
                return Err(TradeError::InProgress);
            }
            match t.status {
                TxStatus::Paid | TxStatus::Confirmed => return Ok(Err(PayOutcome::Paid(t.clone()))),
                TxStatus::Cancelled if t.cancel_reason.as_deref() == Some("expired") => {
                    return Err(TradeError::Refused(EXPIRED.into()))
                }
                TxStatus::Cancelled => return Err(TradeError::Refused("this payment request was cancelled".into())),
                TxStatus::PendingPayment => {}
            }
            if t.reservation_expires_at <= now_ms() {
                return Err(TradeError::Refused(EXPIRED.into()));
            }
            let id = t.id;
            let req = self.update(|s| {
                let t = s.transactions.get_mut(&id).ok_or(TradeError::TxNotFound)?;
                t.charge = ChargeState::Charging { since: now_ms() };
                Ok(ChargeRequest {
                    key: t.gateway_key(),
                    amount: t.amount,
                    token: msg.token.clone(),
                    cvv: String::new(),
                })
            })?;
            self.charging.insert(id);
            Ok(Ok(req))
        })();
        let req = match begun {
            Ok(Ok(req)) => req,
            Ok(Err(answer)) => return Box::pin(fut::ready(Ok(answer))),
            Err(e) => {
                // Something that ran out while its timer had not fired yet.
                self.sweep(ctx);
                return Box::pin(fut::ready(Err(e)));
            }
        };
        let store = self.store.clone();
        let gateway = self.registry.gateway();
        let timeout = self.registry.settings().gateway_timeout;
        let call = charge_after_flush(store, gateway, timeout, req);
        let id = msg.tx;
        Box::pin(
            fut::wrap_future::<_, Self>(call).map(move |answer, act, ctx| act.finish_charge(id, answer, ctx)).then(
                |out, act, _| {
                    let store = act.store.clone();
                    fut::wrap_future(async move {
                        let out = out?;
                        store.durable().await?;
                        Ok(out)
                    })
                },
            ),
        )
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
        let r = self.update(|s| {
            let t = s.transactions.get_mut(&msg.tx).ok_or(TradeError::TxNotFound)?;
            if t.buyer != msg.buyer {
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
                TxStatus::PendingPayment => Err(TradeError::Refused("the payment request is not paid yet".into())),
                TxStatus::Cancelled => Err(TradeError::Refused("the payment request was cancelled".into())),
            }
        });
        self.notify(ctx);
        self.store.when_durable(r)
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
        let charging = self.charging.contains(&msg.tx);
        let r = self.update(|s| {
            let t = s.transactions.get_mut(&msg.tx).ok_or(TradeError::TxNotFound)?;
            if t.buyer != msg.user && t.seller != msg.user {
                return Err(TradeError::NotParty);
            }
            if msg.quantity.is_some_and(|q| q != t.quantity) {
                return Err(TradeError::Refused("부분 취소는 지원하지 않습니다. 전체 수량을 취소해 주세요.".into()));
            }
            if charging {
                return Err(TradeError::InProgress);
            }
            match t.status {
                TxStatus::PendingPayment | TxStatus::Paid => {}
                TxStatus::Confirmed => {
                    return Err(TradeError::Refused("a confirmed purchase cannot be cancelled".into()))
                }
                TxStatus::Cancelled => {
                    return Err(TradeError::Refused("the payment request is already cancelled".into()))
                }
            }
            t.status = TxStatus::Cancelled;
            t.cancelled_at = Some(now_ms());
            t.cancel_reason = Some(if msg.user == t.buyer { "buyer" } else { "seller" }.into());
            let t = t.clone();
            s.listing.remaining_quantity += t.quantity;
            Ok(t)
        });
        self.settle(ctx);
        self.arm(ctx);
        self.store.when_durable(r)
    }
}

/// Everything about the listing (for tests and operators).
#[derive(Message)]
#[rtype(result = "ListingSnapshot")]
pub struct Snapshot;

impl Handler<Snapshot> for TicketListing {
    type Result = MessageResult<Snapshot>;
    fn handle(&mut self, _: Snapshot, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.state.clone())
    }
}
