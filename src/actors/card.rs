//! Paying by card: the bookkeeping every actor that charges cards shares. Two do: the
//! seat map for its bookings (contract B, [`seat_map::booking`](super::seat_map::booking))
//! and a ticket listing for its payment requests (contract T,
//! [`ticket_listing`](super::ticket_listing)).
//!
//! The records stay with their owners (a reservation's booking, a listing's transaction):
//! each carries a [`ChargeState`] and an attempt counter, and decides what a capture means
//! for it. This module knows how a charge moves, not whose it is. An owner holds a
//! [`Cards`] (what it has in flight with the gateway) and implements [`CardOwner`].
//!
//! # A payment in three steps
//! 1. The owner checks its record, sets [`ChargeState::Charging`] and writes it; the
//!    gateway key is the owner's `{record}-{attempt}`.
//! 2. [`charge`]: once that write is durable, ask the gateway, for at most
//!    `BOXOFFICE_GATEWAY_TIMEOUT`, outside the owner's handler, so the owner goes on
//!    serving (and its timers fire) while the gateway thinks.
//! 3. The owner applies the answer with [`ChargeState::apply`]: captured (the owner keeps
//!    it or not), declined (nothing charged; the attempt moves on, so the next one uses a
//!    new key), or unknown (a timeout: a retry reuses the key, and the gateway answers it
//!    with the first charge instead of making a second).
//!
//! So a key is charged at most once. A record that finished while its card may still
//! hold money (a capture that came too late, an unknown charge of a cancelled record) is
//! refunded by [`settle`], again after [`REFUND_RETRY`] until the gateway acknowledges;
//! a refund voids the key at the gateway, so a capture still on its way is refused.
//! Nothing here is persisted but the [`ChargeState`] inside the owner's records: after a
//! restart nothing is in flight, and a charge that was counts as unknown
//! ([`ChargeState::restarted`]).

use super::gateway::{ChargeRequest, Decline, GatewayCharge, GatewayError, PaymentGateway};
use crate::store::Store;
use crate::time::now_ms;
use actix::prelude::*;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

/// How long after a failed refund (or a failed write of its result) the owner tries again.
pub const REFUND_RETRY: Duration = Duration::from_secs(2);

/// Where a record's card payment stands. Persisted inside the owner's record (a booking,
/// a transaction): the variants' order is its encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChargeState {
    /// Nothing charged (no attempt yet, or the last one was declined).
    Unpaid,
    /// A gateway call is (or was, before a restart) under way.
    Charging { since: u64 },
    /// The gateway did not answer in time: the current key may or may not have charged.
    Unknown,
    /// The gateway captured `charge`.
    Captured { charge: String, at: u64 },
    /// The key was refunded and voided (`charge` is what it had captured, if anything).
    Refunded { charge: Option<String>, at: u64 },
}

/// A card payment's state as clients see it (the edge spells it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentStatus {
    /// Nothing charged, or nothing was captured before the key was voided.
    Unpaid,
    /// A charge in flight, or of unknown outcome.
    Processing,
    Captured,
    /// Captured, then refunded.
    Refunded,
}

impl ChargeState {
    /// Whether the gateway may hold this record's money.
    pub fn may_hold_money(&self) -> bool {
        matches!(self, ChargeState::Charging { .. } | ChargeState::Unknown | ChargeState::Captured { .. })
    }

    pub fn status(&self) -> PaymentStatus {
        match self {
            ChargeState::Unpaid | ChargeState::Refunded { charge: None, .. } => PaymentStatus::Unpaid,
            ChargeState::Charging { .. } | ChargeState::Unknown => PaymentStatus::Processing,
            ChargeState::Captured { .. } => PaymentStatus::Captured,
            ChargeState::Refunded { charge: Some(_), .. } => PaymentStatus::Refunded,
        }
    }

    /// As read back after a restart: a charge that was in flight when the process stopped
    /// has an unknown outcome now (a retry reuses its key, a refund voids it).
    pub fn restarted(&mut self) {
        if let ChargeState::Charging { .. } = self {
            *self = ChargeState::Unknown;
        }
    }

    /// Step 3: record the gateway's answer to the current attempt. `Ok`: captured, and the
    /// owner decides whether it keeps the money. `Err`: why the payment did not go
    /// through; after a decline `attempt` moves on, after an unknown outcome it does not.
    pub fn apply(
        &mut self,
        attempt: &mut u32,
        answer: Result<GatewayCharge, GatewayError>,
        now: u64,
    ) -> Result<(), CardFailure> {
        match answer {
            Ok(charge) => {
                *self = ChargeState::Captured { charge: charge.id, at: now };
                Ok(())
            }
            Err(GatewayError::Declined(decline)) => {
                *self = ChargeState::Unpaid;
                *attempt += 1;
                Err(CardFailure::Declined(decline))
            }
            Err(GatewayError::Timeout) => {
                *self = ChargeState::Unknown;
                Err(CardFailure::GatewayTimeout)
            }
            Err(GatewayError::Unavailable(_)) => {
                *self = ChargeState::Unknown;
                Err(CardFailure::GatewayUnavailable)
            }
        }
    }
}

/// Why a card payment did not go through. The edge spells it in each contract's words.
///
/// Persisted inside a booking payment's first answer (the idempotency ledger's
/// `Answer::Executed`) as two strings, a code and a concept, as records of store layout 5
/// hold it: see `FailureRecord`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "FailureRecord", try_from = "FailureRecord")]
pub enum CardFailure {
    /// The gateway refused the card: nothing was charged.
    Declined(Decline),
    /// The booking's lock ran out (before the payment, or before its capture came back:
    /// then the capture is refunded).
    BookingExpired,
    BookingCancelled,
    /// The trade payment request ran out (the same, for contract T).
    RequestExpired,
    /// The gateway did not answer in time: the outcome is unknown.
    GatewayTimeout,
    /// The gateway could not be asked: the outcome is unknown.
    GatewayUnavailable,
}

impl CardFailure {
    /// Whether the card may have been charged all the same: not an answer to keep for an
    /// idempotency key, since a retry must ask the gateway again (with the same key).
    pub fn outcome_unknown(self) -> bool {
        matches!(self, CardFailure::GatewayTimeout | CardFailure::GatewayUnavailable)
    }

    /// Whether the server or the gateway is at fault (else the card, its holder, or the
    /// request).
    pub fn server_fault(self) -> bool {
        match self {
            CardFailure::Declined(d) => d.gateway_fault(),
            CardFailure::BookingExpired | CardFailure::BookingCancelled | CardFailure::RequestExpired => false,
            CardFailure::GatewayTimeout | CardFailure::GatewayUnavailable => true,
        }
    }
}

/// A [`CardFailure`] as it is written: the code and concept strings that records of layout
/// 5 (and every layout before) hold. These spellings are the store's and stay as they are
/// whatever a contract comes to say; every code ever written is read back. A record is
/// written byte for byte as before (bincode writes a struct as its fields).
#[derive(Serialize, Deserialize)]
struct FailureRecord {
    failure_code: String,
    failure_concept: String,
}

impl CardFailure {
    /// Every failure, for reading a record back.
    const ALL: [CardFailure; 10] = [
        CardFailure::Declined(Decline::CardDeclined),
        CardFailure::Declined(Decline::InsufficientFunds),
        CardFailure::Declined(Decline::ProcessingError),
        CardFailure::Declined(Decline::InvalidPaymentMethod),
        CardFailure::Declined(Decline::ChargeVoided),
        CardFailure::BookingExpired,
        CardFailure::BookingCancelled,
        CardFailure::RequestExpired,
        CardFailure::GatewayTimeout,
        CardFailure::GatewayUnavailable,
    ];

    /// The code a record holds for it.
    fn recorded_code(self) -> &'static str {
        match self {
            CardFailure::Declined(Decline::CardDeclined) => "CARD_DECLINED",
            CardFailure::Declined(Decline::InsufficientFunds) => "INSUFFICIENT_FUNDS",
            CardFailure::Declined(Decline::ProcessingError) => "PROCESSING_ERROR",
            CardFailure::Declined(Decline::InvalidPaymentMethod) => "INVALID_PAYMENT_METHOD",
            CardFailure::Declined(Decline::ChargeVoided) => "CHARGE_VOIDED",
            CardFailure::BookingExpired => "BOOKING_EXPIRED",
            CardFailure::BookingCancelled => "BOOKING_CANCELLED",
            CardFailure::RequestExpired => "REQUEST_EXPIRED",
            CardFailure::GatewayTimeout => "GATEWAY_TIMEOUT",
            CardFailure::GatewayUnavailable => "GATEWAY_UNAVAILABLE",
        }
    }
}

impl From<CardFailure> for FailureRecord {
    fn from(f: CardFailure) -> Self {
        let concept = if f.server_fault() { "SERVER_ERROR" } else { "CLIENT_ERROR" };
        FailureRecord { failure_code: f.recorded_code().into(), failure_concept: concept.into() }
    }
}

impl TryFrom<FailureRecord> for CardFailure {
    type Error = String;
    /// By its code: the concept always followed from it.
    fn try_from(r: FailureRecord) -> Result<Self, String> {
        CardFailure::ALL
            .into_iter()
            .find(|f| f.recorded_code() == r.failure_code)
            .ok_or_else(|| format!("unknown card failure code {:?}", r.failure_code))
    }
}

/// What an owner has in flight with the gateway, by the id of the record it pays for;
/// and how it reaches the gateway. Never persisted.
pub struct Cards {
    store: Store,
    gateway: Arc<dyn PaymentGateway>,
    /// How long a charge may take before its outcome counts as unknown.
    timeout: Duration,
    /// Records whose charge this process is waiting for: a second payment of one is
    /// refused meanwhile, and its refund waits.
    charging: HashSet<u64>,
    /// Records whose refund this process is waiting for.
    refunding: HashSet<u64>,
}

impl Cards {
    pub fn new(store: Store, gateway: Arc<dyn PaymentGateway>, timeout: Duration) -> Cards {
        Cards { store, gateway, timeout, charging: HashSet::new(), refunding: HashSet::new() }
    }

    /// Whether record `id`'s charge is in flight.
    pub fn charging(&self, id: u64) -> bool {
        self.charging.contains(&id)
    }

    /// Whether anything is in flight (the owner must not stop).
    pub fn busy(&self) -> bool {
        !self.charging.is_empty() || !self.refunding.is_empty()
    }
}

/// An actor that charges cards for records it owns.
pub trait CardOwner: Actor<Context = Context<Self>> {
    /// Why writing a record failed.
    type Error: Display;

    fn cards(&mut self) -> &mut Cards;

    /// Every record that finished while its card may still hold money, with its current
    /// gateway key.
    fn refunds_owed(&self) -> Vec<(u64, String)>;

    /// The gateway refunded and voided record `id`'s key: write `charge` (a
    /// [`ChargeState::Refunded`]) into it. An error is retried after [`REFUND_RETRY`].
    fn record_refund(&mut self, id: u64, charge: ChargeState) -> Result<(), Self::Error>;
}

/// Step 2: record `id`'s `Charging` is written; once it is durable, ask the gateway to
/// charge `req`, outside the owner's handler. The answer comes back to the owner with `id`
/// no longer in flight, for [`ChargeState::apply`].
pub fn charge<A: CardOwner>(
    act: &mut A,
    id: u64,
    req: ChargeRequest,
) -> impl ActorFuture<A, Output = Result<GatewayCharge, GatewayError>> {
    let cards = act.cards();
    cards.charging.insert(id);
    let call = charge_after_flush(cards.store.clone(), cards.gateway.clone(), cards.timeout, req);
    fut::wrap_future::<_, A>(call).map(move |answer, act, _| {
        act.cards().charging.remove(&id);
        if let Err(GatewayError::Unavailable(e)) = &answer {
            tracing::warn!(record = id, error = %e, "payment gateway unavailable");
        }
        answer
    })
}

/// Once everything written so far (the `Charging` record) is durable, ask the gateway,
/// for at most `timeout`, counting the outcome.
async fn charge_after_flush(
    store: Store,
    gateway: Arc<dyn PaymentGateway>,
    timeout: Duration,
    req: ChargeRequest,
) -> Result<GatewayCharge, GatewayError> {
    store.durable().await.map_err(|e| GatewayError::Unavailable(e.to_string()))?;
    let answer = match actix_rt::time::timeout(timeout, gateway.charge(req)).await {
        Ok(answer) => answer,
        Err(_) => Err(GatewayError::Timeout),
    };
    crate::observe::card_charge(match &answer {
        Ok(_) => "captured",
        Err(GatewayError::Declined(_)) => "declined",
        Err(_) => "unknown",
    });
    answer
}

/// Refund every record the owner owes a refund that has no gateway call in flight.
pub fn settle<A: CardOwner>(act: &mut A, ctx: &mut Context<A>) {
    let mut due = act.refunds_owed();
    let cards = act.cards();
    due.retain(|(id, _)| !cards.charging.contains(id) && !cards.refunding.contains(id));
    for (id, key) in due {
        cards.refunding.insert(id);
        let call = refund(cards.gateway.as_ref(), key);
        ctx.spawn(fut::wrap_future::<_, A>(call).map(move |answer, act, ctx| {
            act.cards().refunding.remove(&id);
            let written = match answer {
                Ok(charge) => act
                    .record_refund(id, ChargeState::Refunded { charge: charge.map(|c| c.id), at: now_ms() })
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = written {
                tracing::warn!(record = id, error = %e, "refund failed; retrying");
                ctx.run_later(REFUND_RETRY, |act, ctx| settle(act, ctx));
            }
        }));
    }
}

/// Ask the gateway to refund what was charged under `key`, counting what it refunded.
fn refund(
    gateway: &dyn PaymentGateway,
    key: String,
) -> BoxFuture<'static, Result<Option<GatewayCharge>, GatewayError>> {
    let call = gateway.refund(key);
    Box::pin(async move {
        let answer = call.await;
        if let Ok(Some(c)) = &answer {
            if !c.voided {
                crate::observe::refund(c.amount);
            }
        }
        answer
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The record as every layout up to 5 wrote it.
    #[derive(Serialize, Deserialize)]
    struct OldCardFailure {
        failure_code: String,
        failure_concept: String,
    }

    fn bytes<T: Serialize>(v: &T) -> Vec<u8> {
        bincode::serde::encode_to_vec(v, bincode::config::standard()).expect("encode")
    }

    #[test]
    fn failures_are_written_and_read_as_before() {
        let written = [
            ("CARD_DECLINED", "CLIENT_ERROR"),
            ("INSUFFICIENT_FUNDS", "CLIENT_ERROR"),
            ("PROCESSING_ERROR", "SERVER_ERROR"),
            ("INVALID_PAYMENT_METHOD", "CLIENT_ERROR"),
            ("CHARGE_VOIDED", "CLIENT_ERROR"),
            ("BOOKING_EXPIRED", "CLIENT_ERROR"),
            ("BOOKING_CANCELLED", "CLIENT_ERROR"),
            ("REQUEST_EXPIRED", "CLIENT_ERROR"),
            ("GATEWAY_TIMEOUT", "SERVER_ERROR"),
            ("GATEWAY_UNAVAILABLE", "SERVER_ERROR"),
        ];
        for (code, concept) in written {
            let old = bytes(&OldCardFailure { failure_code: code.into(), failure_concept: concept.into() });
            let (read, _): (CardFailure, _) =
                bincode::serde::decode_from_slice(&old, bincode::config::standard()).expect("an old record reads");
            assert_eq!(bytes(&read), old, "{code} is written as it was");
        }
        assert_eq!(written.len(), CardFailure::ALL.len(), "every failure was written before");
        let unknown = bytes(&OldCardFailure { failure_code: "NOPE".into(), failure_concept: "CLIENT_ERROR".into() });
        let read = bincode::serde::decode_from_slice::<CardFailure, _>(&unknown, bincode::config::standard());
        assert!(read.is_err());
    }
}
