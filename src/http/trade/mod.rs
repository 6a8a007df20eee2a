//! Contract T (seeds 000, 001): ticket-trade chat, in rooms between the buyer and the
//! seller of a ticket listing. Every REST answer is the envelope `{"message", "data",
//! "statusCode"}`; see [`TError`].
//!
//! - [`listings`]: tickets for sale (`/api/tickets`).
//! - [`rooms`]: opening a room about a listing, the caller's room list, a room's detail,
//!   marking it read, and leaving it (which closes it for both parties).
//! - [`messages`]: a room's history, and sending text with up to 3 images.
//! - [`images`]: the images' expiring signed links, and serving an image by its link.
//! - [`payments`]: payment requests that reserve stock, paying them by card, confirming
//!   the purchase, and cancelling.
//! - [`signalr`]: the SignalR hub that pushes the contract's events (`ReceiveMessage`,
//!   `RoomUpdated`, ...) to the official clients.
//!
//! Here: the contract's route table, and what its handlers share: the envelope, positive
//! ids, and finding a listing or a trade room of the caller.

pub mod images;
pub mod listings;
pub mod messages;
pub mod payments;
pub mod rooms;
pub mod signalr;

use crate::actors::room::{ChatError, GetRoom, Room, RoomSnapshot};
use crate::actors::ticket_listing::TicketListing;
use crate::http::error::{TEnvelope, TError};
use crate::http::AppState;
use actix::Addr;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Serialize;

/// Every route of contract T: the SignalR hub's, then REST.
pub fn routes(cfg: &mut web::ServiceConfig) {
    signalr::routes(cfg);
    cfg.route("/api/tickets", web::post().to(listings::create_listing))
        .route("/api/tickets", web::get().to(listings::list_listings))
        .route("/api/tickets/{ticket_id}", web::get().to(listings::get_listing))
        .route("/api/chat/rooms", web::post().to(rooms::open_room))
        .route("/api/chat/rooms", web::get().to(rooms::list_rooms))
        .route("/api/chat/rooms/detail", web::get().to(rooms::room_detail))
        .route("/api/chat/rooms/read", web::post().to(rooms::mark_read))
        .route("/api/chat/rooms/leave", web::post().to(rooms::leave))
        .route("/api/chat/rooms/request-payment", web::post().to(payments::request_payment))
        .route("/api/chat/rooms/pay", web::post().to(payments::pay))
        .route("/api/chat/rooms/confirm-purchase", web::post().to(payments::confirm_purchase))
        .route("/api/chat/rooms/cancel-payment", web::post().to(payments::cancel_payment))
        .route("/api/chat/rooms/{room_id}/messages", web::get().to(messages::history))
        .route("/api/chat/messages", web::post().to(messages::send_message))
        .route("/api/chat/images/{room_id}/{name}", web::get().to(images::image));
}

/// An answer in the envelope, with `data` and the status repeated as `statusCode`.
fn ok<T: Serialize>(status: StatusCode, message: &str, data: T) -> HttpResponse {
    HttpResponse::build(status).json(TEnvelope {
        message: message.to_string(),
        data: Some(data),
        status_code: status.as_u16(),
    })
}

/// A positive integer, sent as a JSON number or a string of digits, or 400 naming `what`.
fn positive(v: &Option<serde_json::Value>, what: &str) -> Result<u64, TError> {
    v.as_ref()
        .and_then(crate::http::schema::json_id)
        .ok_or_else(|| TError::bad_request(format!("{what}는 양의 정수여야 합니다.")))
}

/// A positive id in a path (digits, at most 2^53 - 1), or 400 naming `what`.
fn path_positive(raw: &str, what: &str) -> Result<u64, TError> {
    crate::http::schema::path_id(raw).ok_or_else(|| TError::bad_request(format!("{what}는 양의 정수여야 합니다.")))
}

/// The listing's actor, or 404.
fn listing_of(state: &AppState, id: u64) -> Result<Addr<TicketListing>, TError> {
    state.registry.listing(id)?.ok_or_else(|| TError::not_found("티켓을 찾을 수 없습니다."))
}

/// The room's actor, or 404 (any room: [`trade_room`] also checks that it is a trade
/// room of the caller).
fn room_actor(state: &AppState, id: u64) -> Result<Addr<Room>, TError> {
    state.registry.room(id)?.ok_or_else(|| TError::not_found("채팅방을 찾을 수 없습니다."))
}

/// A trade room of the caller: its actor and snapshot (403 for others, 404 for none).
async fn trade_room(state: &AppState, id: u64, me: u64) -> Result<(Addr<Room>, RoomSnapshot), TError> {
    let room = room_actor(state, id)?;
    let snapshot = room.send(GetRoom { user: me }).await??;
    if snapshot.trade.is_none() {
        return Err(TError::not_found("채팅방을 찾을 수 없습니다."));
    }
    Ok((room, snapshot))
}

/// A room's refusals in contract T's words.
impl From<crate::usecase::chat::OpenTradeRoomError> for TError {
    fn from(e: crate::usecase::chat::OpenTradeRoomError) -> Self {
        match e {
            crate::usecase::chat::OpenTradeRoomError::ListingNotFound => TError::not_found("티켓을 찾을 수 없습니다."),
            crate::usecase::chat::OpenTradeRoomError::Chat(e) => e.into(),
        }
    }
}

impl From<ChatError> for TError {
    fn from(e: ChatError) -> Self {
        match e {
            ChatError::RoomNotFound => TError::not_found("채팅방을 찾을 수 없습니다."),
            ChatError::NotParticipant => TError::forbidden("채팅방에 접근할 권한이 없습니다."),
            ChatError::MessageNotFound => TError::not_found("메시지를 찾을 수 없습니다."),
            ChatError::NotSender => TError::forbidden("메시지를 보낸 사람만 할 수 있습니다."),
            ChatError::RoomClosed => TError::bad_request(crate::http::ROOM_CLOSED),
            e @ ChatError::NotInRoom(_) => TError::bad_request(e.to_string()),
            ChatError::Storage(m) => TError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("저장소 오류: {m}")),
            ChatError::Unavailable(m) => {
                TError::new(StatusCode::SERVICE_UNAVAILABLE, format!("일시적으로 사용할 수 없습니다: {m}"))
            }
            ChatError::Refused(crate::actors::room::RoomRule::OwnListing) => {
                TError::bad_request("자신의 티켓에는 채팅방을 열 수 없습니다.")
            }
            ChatError::Refused(rule) => TError::bad_request(format!("{rule:?}")),
            // Only socket posts carry client message ids; REST never meets this.
            e @ ChatError::ClientIdReused => TError::bad_request(e.to_string()),
        }
    }
}
