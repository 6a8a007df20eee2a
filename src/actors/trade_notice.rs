//! What a ticket listing tells a trade room about one of its payment requests, as data:
//! the room renders a [`TradeNotice`] into contract T's message (its words, kind and
//! sender) and stores it; the listing knows no message texts.
//!
//! The rest of the protocol runs the other way: a room asks its listing for payment with
//! [`RequestPayment`](super::ticket_listing::RequestPayment). So the room names the
//! listing's messages and the listing this module's, never the room's.

use actix::prelude::*;

/// A payment request's news for its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "Result<(), NoticeNotPosted>")]
pub enum TradeNotice {
    /// The request ran out unpaid; its tickets went back to the listing.
    Expired,
    /// `buyer` confirmed the purchase.
    PurchaseConfirmed { buyer: u64 },
}

/// The room did not store the notice (the listing tries again).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the room did not post the notice: {0}")]
pub struct NoticeNotPosted(pub String);
