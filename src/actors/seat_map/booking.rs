//! Contract B's half of the seat map: bookings, and paying them by card.
//!
//! A booking is a [`Reservation`] with a [`Booking`] attached: its seats were locked all
//! or none by one `HoldSeats`, and its lock runs out at `hold_expires_at` like any hold.
//!
//! # Charging a card without blocking the seat map
//! [`ExecuteBooking`] runs the three steps of [`card`](crate::actors::card); the first and
//! the last inside the actor, the gateway call between them outside it, so the seat map
//! goes on serving (and its timer goes on expiring locks) while the gateway thinks:
//! 1. Check the booking (the caller's, pending, lock not run out, no charge in flight),
//!    record `Charging` and persist it; the gateway key is `{intent}-{attempt}`.
//! 2. Once that is durable, ask the gateway, for at most `BOXOFFICE_GATEWAY_TIMEOUT`.
//! 3. Apply the answer. Captured while the lock holds: `confirmed`, seats sold. Captured
//!    after the lock ran out: the booking is `expired` and the charge is refunded.
//!    Declined: nothing was charged; the booking stays payable and the next attempt uses
//!    a new key. No answer (a timeout): the outcome is unknown, so the charge becomes
//!    `Unknown`; a retry reuses the same key, and the gateway answers it with the first
//!    charge instead of making a second; if nobody retries, the expiry refunds by key.
//!
//! So each intent is charged at most once, and money is kept only by a confirmed booking.
//! A refund voids the key at the gateway, so a capture still on its way is refused. A
//! finished booking that may still hold money stays in memory, and in the snapshot's
//! `settling` list, until the gateway acknowledges its refund; a restart resumes it, and
//! a charge that was in flight when the process stopped counts as `Unknown`.

use super::{HoldSeats, Reservation, ReservationStatus, SeatError, SeatMap, SeatState};
use crate::actors::card::{self, CardFailure, CardOwner, Cards, ChargeState};
use crate::actors::gateway::{ChargeRequest, GatewayCharge, GatewayError};
use crate::actors::ledger::Keyed;
use crate::store::{Batch, Key};
use crate::time::now_ms;
use actix::prelude::*;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What makes a hold a booking, as the client asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingSpec {
    /// The performance as the client named it.
    pub performance: String,
    /// The user id as the client wrote it (`"user_123"`), shown back to it.
    pub user_label: String,
    pub payment_method: Option<String>,
}

/// A contract B booking: public ids and its card payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Booking {
    pub id: String,
    pub intent: String,
    pub performance: String,
    pub user_label: String,
    pub payment_method: Option<String>,
    /// How many attempts the gateway definitely declined; the current attempt's gateway
    /// key is `{intent}-{attempt}`. It moves on only after a definite decline, never
    /// after an unknown outcome, so a retry can never charge twice.
    pub attempt: u32,
    pub charge: ChargeState,
}

/// Letters of a public id's reservation part (base 62).
const ID_DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// How many characters of a public id spell its reservation id (62^11 > 2^64).
const ID_RESERVATION_CHARS: usize = 11;

/// A booking's or intent's public id: 20 letters and digits, the first 11 the reservation
/// id in base 62, the other 9 random. So an id routes to its reservation without a lookup
/// table, and cannot be guessed from another.
fn public_id(reservation: u64) -> String {
    let mut digits = [b'0'; ID_RESERVATION_CHARS];
    let mut n = reservation;
    for d in digits.iter_mut().rev() {
        *d = ID_DIGITS[(n % 62) as usize];
        n /= 62;
    }
    let mut id: String = digits.iter().map(|&b| b as char).collect();
    id.push_str(&crate::actors::gateway::random_id(20 - ID_RESERVATION_CHARS));
    id
}

/// The reservation a public id names, if it is of that form (the caller still checks that
/// the reservation's booking has exactly this id).
pub fn reservation_of_public_id(id: &str) -> Option<u64> {
    if id.len() != 20 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    id.as_bytes()[..ID_RESERVATION_CHARS].iter().try_fold(0u64, |n, &b| {
        let d = ID_DIGITS.iter().position(|&x| x == b)? as u64;
        n.checked_mul(62)?.checked_add(d)
    })
}

impl Booking {
    pub fn new(reservation: u64, spec: BookingSpec) -> Booking {
        Booking {
            id: public_id(reservation),
            intent: public_id(reservation),
            performance: spec.performance,
            user_label: spec.user_label,
            payment_method: spec.payment_method,
            attempt: 0,
            charge: ChargeState::Unpaid,
        }
    }

    /// The gateway-side idempotency key of the current attempt.
    pub fn gateway_key(&self) -> String {
        format!("{}-{}", self.intent, self.attempt)
    }
}

/// The answer to a payment attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecuteOutcome {
    Paid { processed_at: u64 },
    Failed(CardFailure),
}

/// What the first step of a payment decided.
enum Begun {
    /// Answered without the gateway (a replay, a finished booking).
    Answer(ExecuteOutcome),
    /// Ask the gateway this.
    Charge(ChargeRequest),
}

impl SeatMap {
    /// A reservation of this seat map, live or finished.
    fn find(&self, id: u64) -> Result<Reservation, SeatError> {
        if let Some(r) = self.live.get(&id) {
            return Ok(r.clone());
        }
        match self.store.get::<Reservation>(&Key::Reservation(id))? {
            Some(r) if r.seat_map == self.id => Ok(r),
            _ => Err(SeatError::NotFound),
        }
    }

    /// A booking of `user`: not found if it is not a booking, not yours if it is not theirs.
    fn find_booking(&self, id: u64, user: u64) -> Result<Reservation, SeatError> {
        let r = self.find(id)?;
        if r.booking.is_none() {
            return Err(SeatError::NotFound);
        }
        if r.user != user {
            return Err(SeatError::NotYours);
        }
        Ok(r)
    }

    /// Expire a held booking whose lock has run out but whose timer has not fired yet.
    fn expire_now(&mut self, mut r: Reservation, ctx: &mut Context<Self>) -> Result<(), SeatError> {
        r.status = ReservationStatus::Expired;
        self.transition(r, SeatState::Available)?;
        card::settle(self, ctx);
        self.arm(ctx);
        Ok(())
    }

    fn begin_charge(&mut self, msg: &ExecuteBooking, ctx: &mut Context<Self>) -> Result<Begun, SeatError> {
        let mut r = self.find_booking(msg.reservation, msg.user)?;
        let Some(b) = r.booking.as_mut() else { return Err(SeatError::NotFound) };
        if self.cards.charging(r.id) {
            return Err(SeatError::PaymentInProgress);
        }
        match r.status {
            ReservationStatus::Confirmed => {
                let processed_at = match b.charge {
                    ChargeState::Captured { at, .. } => at,
                    _ => r.updated_at,
                };
                return Ok(Begun::Answer(ExecuteOutcome::Paid { processed_at }));
            }
            ReservationStatus::Cancelled => {
                return Ok(Begun::Answer(ExecuteOutcome::Failed(CardFailure::BookingCancelled)))
            }
            ReservationStatus::Expired => {
                return Ok(Begun::Answer(ExecuteOutcome::Failed(CardFailure::BookingExpired)))
            }
            ReservationStatus::Paying => return Err(SeatError::PaymentInProgress),
            ReservationStatus::Held => {}
        }
        if r.hold_expires_at <= now_ms() {
            self.expire_now(r, ctx)?;
            return Ok(Begun::Answer(ExecuteOutcome::Failed(CardFailure::BookingExpired)));
        }
        b.charge = ChargeState::Charging { since: now_ms() };
        let req =
            ChargeRequest { key: b.gateway_key(), amount: r.price, token: msg.token.clone(), cvv: msg.cvv.clone() };
        self.save(r)?;
        Ok(Begun::Charge(req))
    }

    /// Step 3: apply the gateway's answer (see the module docs).
    fn finish_charge(
        &mut self,
        id: u64,
        answer: Result<GatewayCharge, GatewayError>,
        key: Option<Keyed<ExecuteOutcome>>,
        ctx: &mut Context<Self>,
    ) -> Result<ExecuteOutcome, SeatError> {
        let Some(mut r) = self.live.get(&id).cloned() else {
            // Only a booking with a charge in flight gets here, and those stay live.
            tracing::error!(seat_map = %self.id, reservation = id, "a charge finished for a booking that is gone");
            return Err(SeatError::NotFound);
        };
        let now = now_ms();
        let lock_holds = r.status == ReservationStatus::Held && r.hold_expires_at > now;
        let Some(b) = r.booking.as_mut() else { return Err(SeatError::NotFound) };
        let (outcome, seats) = match b.charge.apply(&mut b.attempt, answer, now) {
            Ok(()) if lock_holds => {
                r.status = ReservationStatus::Confirmed;
                (ExecuteOutcome::Paid { processed_at: now }, Some(SeatState::Sold(id)))
            }
            Ok(()) => {
                tracing::warn!(seat_map = %self.id, reservation = id, "captured after the lock ran out; refunding");
                let seats = (r.status == ReservationStatus::Held).then_some(SeatState::Available);
                r.status = ReservationStatus::Expired;
                (ExecuteOutcome::Failed(CardFailure::BookingExpired), seats)
            }
            Err(failure) => (ExecuteOutcome::Failed(failure), None),
        };
        // A definite answer is the key's first answer, written with the change it reports.
        // An unknown outcome is not: a retry must ask again (with the same gateway key).
        let definite = !matches!(outcome, ExecuteOutcome::Failed(f) if f.outcome_unknown());
        let mut extra = Batch::default();
        if let (true, Some(keyed)) = (definite, &key) {
            keyed.record(&outcome, &mut extra)?;
        }
        self.commit(r, seats, extra)?;
        card::settle(self, ctx);
        self.arm(ctx);
        Ok(outcome)
    }
}

/// The seat map refunds finished bookings whose card may still hold money.
impl CardOwner for SeatMap {
    type Error = SeatError;

    fn cards(&mut self) -> &mut Cards {
        &mut self.cards
    }

    fn refunds_owed(&self) -> Vec<(u64, String)> {
        self.live
            .values()
            .filter(|r| r.needs_refund())
            .filter_map(|r| r.booking.as_ref().map(|b| (r.id, b.gateway_key())))
            .collect()
    }

    fn record_refund(&mut self, id: u64, charge: ChargeState) -> Result<(), SeatError> {
        let Some(mut r) = self.live.get(&id).cloned() else { return Ok(()) };
        let Some(b) = r.booking.as_mut() else { return Ok(()) };
        b.charge = charge;
        tracing::info!(seat_map = %self.id, reservation = id, booking = %b.id, "refunded a booking that did not keep its seats");
        self.save(r).map(|_| ())
    }
}

/// Lock every listed seat for a new booking, or none; answered once it is durable. (A
/// booking with an `Idempotency-Key` goes through the user's key gate: `keys::Book`.)
#[derive(Message)]
#[rtype(result = "Result<Reservation, SeatError>")]
pub struct BookSeats {
    pub user: u64,
    pub seats: Vec<String>,
    pub ttl: Duration,
    pub spec: BookingSpec,
}

impl Handler<BookSeats> for SeatMap {
    type Result = ResponseFuture<Result<Reservation, SeatError>>;
    fn handle(&mut self, msg: BookSeats, ctx: &mut Context<Self>) -> Self::Result {
        let hold = HoldSeats { user: msg.user, seats: msg.seats, ttl: msg.ttl, key: None, booking: Some(msg.spec) };
        let result = self.hold(hold);
        self.arm(ctx);
        self.store.when_durable(result)
    }
}

/// Pay a booking by card: charge through the gateway, at most once per intent.
#[derive(Message)]
#[rtype(result = "Result<ExecuteOutcome, SeatError>")]
pub struct ExecuteBooking {
    pub reservation: u64,
    pub user: u64,
    pub token: String,
    pub cvv: String,
    /// The keyed request this is (its key gate has checked the key): a definite outcome is
    /// recorded in the ledger with the change.
    pub key: Option<Keyed<ExecuteOutcome>>,
}

impl Handler<ExecuteBooking> for SeatMap {
    type Result = ResponseActFuture<Self, Result<ExecuteOutcome, SeatError>>;
    fn handle(&mut self, msg: ExecuteBooking, ctx: &mut Context<Self>) -> Self::Result {
        let req = match self.begin_charge(&msg, ctx) {
            Ok(Begun::Charge(req)) => req,
            Ok(Begun::Answer(outcome)) => return Box::pin(fut::ready(Ok(outcome))),
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let id = msg.reservation;
        let key = msg.key;
        // The gateway hears of the charge only once `Charging` is on disk.
        Box::pin(card::charge(self, id, req).map(move |answer, act, ctx| act.finish_charge(id, answer, key, ctx)).then(
            |outcome, act, _| {
                let store = act.store.clone();
                fut::wrap_future(async move {
                    let outcome = outcome?;
                    store.durable().await?;
                    Ok(outcome)
                })
            },
        ))
    }
}

/// Cancel a pending booking of `user` and free its seats.
#[derive(Message)]
#[rtype(result = "Result<Reservation, SeatError>")]
pub struct CancelBooking {
    pub reservation: u64,
    pub user: u64,
}

impl Handler<CancelBooking> for SeatMap {
    type Result = ResponseFuture<Result<Reservation, SeatError>>;
    fn handle(&mut self, msg: CancelBooking, ctx: &mut Context<Self>) -> Self::Result {
        let result = self.cancel_booking(msg, ctx);
        self.store.when_durable(result)
    }
}

impl SeatMap {
    fn cancel_booking(&mut self, msg: CancelBooking, ctx: &mut Context<Self>) -> Result<Reservation, SeatError> {
        let mut r = self.find_booking(msg.reservation, msg.user)?;
        if self.cards.charging(r.id) {
            return Err(SeatError::PaymentInProgress);
        }
        if r.status != ReservationStatus::Held {
            return Err(SeatError::NotPending);
        }
        if r.hold_expires_at <= now_ms() {
            self.expire_now(r, ctx)?;
            return Err(SeatError::NotPending);
        }
        r.status = ReservationStatus::Cancelled;
        let r = self.transition(r, SeatState::Available)?;
        // A charge of unknown outcome is refunded.
        card::settle(self, ctx);
        self.arm(ctx);
        Ok(r)
    }
}

#[cfg(test)]
mod id_tests {
    use super::*;

    #[test]
    fn public_ids_name_their_reservation_and_differ() {
        for r in [0, 1, 61, 62, 123_456_789, u64::MAX] {
            let (a, b) = (public_id(r), public_id(r));
            assert_eq!(a.len(), 20);
            assert_ne!(a, b, "the random part differs");
            assert_eq!(reservation_of_public_id(&a), Some(r));
        }
        assert_eq!(reservation_of_public_id("zzzzzzzzzzzAAAAAAAAA"), None, "past u64");
        assert_eq!(reservation_of_public_id("short"), None);
        assert_eq!(reservation_of_public_id("AAAAAAAAAAAAAAAAAA-A"), None);
    }
}
