//! A card payment in the words of contracts B and T, which pay by card alike: the payment
//! status of a booking or transaction, and why a payment failed (`failureCode`,
//! `failureConcept`).

use crate::actors::card::{CardFailure, PaymentStatus};
use crate::actors::gateway::Decline;

/// `unpaid`, `processing`, `captured` or `refunded`.
pub fn payment_status(s: PaymentStatus) -> &'static str {
    match s {
        PaymentStatus::Unpaid => "unpaid",
        PaymentStatus::Processing => "processing",
        PaymentStatus::Captured => "captured",
        PaymentStatus::Refunded => "refunded",
    }
}

/// The `failureCode` of a failed payment.
pub fn failure_code(f: CardFailure) -> &'static str {
    match f {
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

/// The `failureConcept` of a failed payment: `SERVER_ERROR` when the server or the gateway
/// is at fault, else `CLIENT_ERROR` (the card, its holder, or the request).
pub fn failure_concept(f: CardFailure) -> &'static str {
    if f.server_fault() {
        "SERVER_ERROR"
    } else {
        "CLIENT_ERROR"
    }
}
