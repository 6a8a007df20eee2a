//! A trade room's two decisions that span another actor: leaving (which closes the room
//! and tells the directory before it answers) and asking for payment (which reserves at
//! the listing before any other message is handled); and what its listing tells it
//! ([`TradeNotice`]), stored as contract T's messages.

use super::*;
use crate::actors::trade_notice::{NoticeNotPosted, TradeNotice};

/// The text of the system message an expired payment request leaves in its room (seed
/// 001; contract T refuses a payment of an expired request in the same words).
pub const EXPIRED_NOTICE: &str = "결제 요청이 만료되었습니다.";

/// Close a trade room because `user` (a party) left: it stays readable but takes no new
/// messages, drops out of room lists, and `RoomUpdated` goes to the room and both parties.
#[derive(Message)]
#[rtype(result = "Result<RoomSnapshot, ChatError>")]
pub struct Leave {
    pub user: u64,
}

impl Handler<Leave> for Room {
    type Result = ResponseActFuture<Self, Result<RoomSnapshot, ChatError>>;
    fn handle(&mut self, msg: Leave, _: &mut Context<Self>) -> Self::Result {
        let r = (|| {
            self.member(msg.user)?;
            if self.state.closed_at.is_none() {
                let mut next = self.state.clone();
                next.closed_at = Some(now_ms());
                next.updated_at = now_ms();
                self.write_snapshot(&next)?;
                self.state = next;
            }
            Ok(self.state.clone())
        })();
        let r = match r {
            Ok(s) => s,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let store = self.store.clone();
        // The directory forgets the open trade room (so the buyer's next request opens a
        // new one) before anyone hears that this one closed.
        let directory = self.directory.clone();
        let closed = r.trade.map(|trade| RoomClosed { room: r.id, trade });
        let settled = async move {
            store.durable().await?;
            if let Some(closed) = closed {
                directory
                    .send(closed)
                    .await
                    .map_err(|e| ChatError::Storage(format!("directory unavailable: {e}")))??;
            }
            Ok::<_, ChatError>(())
        };
        Box::pin(fut::wrap_future::<_, Self>(settled).map(move |settled, act, _| {
            settled?;
            let event = Event::new(ChatEvent::RoomClosed { room: r.id });
            act.fanout.publish(room_group(r.id), &event);
            for p in &r.participants {
                act.fanout.publish(crate::actors::hub::user_group(p.user), &event);
            }
            Ok(r)
        }))
    }
}

/// A party of a trade room asks for payment of `quantity` tickets. The room checks that it
/// is a trade room, open, and that the caller is a party, then reserves at the listing
/// before it handles any other message: a `Leave` sent meanwhile waits, so a payment
/// request never lands in a room that had closed. The outer error is the room's, the inner
/// the listing's.
#[derive(Message)]
#[rtype(result = "Result<Result<Transaction, TradeError>, ChatError>")]
pub struct RequestTradePayment {
    pub user: u64,
    pub quantity: u32,
    pub listings: ListingBook,
}

impl Handler<RequestTradePayment> for Room {
    type Result = AtomicResponse<Self, Result<Result<Transaction, TradeError>, ChatError>>;
    fn handle(&mut self, msg: RequestTradePayment, _: &mut Context<Self>) -> Self::Result {
        let checked = (|| {
            self.member(msg.user)?;
            let trade = self.state.trade.ok_or(ChatError::RoomNotFound)?;
            if self.state.closed_at.is_some() {
                return Err(ChatError::RoomClosed);
            }
            Ok(trade)
        })();
        let trade = match checked {
            Ok(t) => t,
            Err(e) => return AtomicResponse::new(Box::pin(fut::ready(Err(e)))),
        };
        let listing = match msg.listings.get(&trade.listing) {
            Ok(Some(listing)) => listing,
            Ok(None) => return AtomicResponse::new(Box::pin(fut::ready(Ok(Err(TradeError::ListingNotFound))))),
            Err(e) => return AtomicResponse::new(Box::pin(fut::ready(Ok(Err(TradeError::Storage(e.to_string())))))),
        };
        let request = RequestPayment { room: self.state.id, buyer: trade.buyer, quantity: msg.quantity };
        AtomicResponse::new(Box::pin(fut::wrap_future::<_, Self>(listing.send(request)).map(|answer, _, _| {
            Ok(answer.unwrap_or_else(|e| Err(TradeError::Storage(format!("listing unavailable: {e}")))))
        })))
    }
}

impl TradeNotice {
    /// The message the notice is, as contract T shows it: the expiry a `system` message
    /// from the system, the purchase a `PURCHASE_CONFIRMED` card without text from the
    /// buyer (signed with the name the room knows them by).
    fn message(self) -> PostMessage {
        let (from, content, kind) = match self {
            TradeNotice::Expired => {
                (Author { id: 0, name: "system".into(), picture: None }, Some(EXPIRED_NOTICE.to_string()), "system")
            }
            TradeNotice::PurchaseConfirmed { buyer } => {
                (Author { id: buyer, name: String::new(), picture: None }, None, "PURCHASE_CONFIRMED")
            }
        };
        PostMessage {
            from,
            content,
            kind: kind.into(),
            reply_to: None,
            file: None,
            images: Vec::new(),
            system: true,
            client_msg_id: None,
        }
    }
}

/// A listing's notice is posted like any message (durable, then published), also in a
/// closed room.
impl Handler<TradeNotice> for Room {
    type Result = ResponseActFuture<Self, Result<(), NoticeNotPosted>>;
    fn handle(&mut self, notice: TradeNotice, ctx: &mut Context<Self>) -> Self::Result {
        let posted = <Self as Handler<PostMessage>>::handle(self, notice.message(), ctx);
        Box::pin(posted.map(|posted, _, _| posted.map(|_| ()).map_err(|e| NoticeNotPosted(e.to_string()))))
    }
}
