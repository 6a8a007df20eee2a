//! Contract T over REST: ticket listings, trade rooms between a listing's buyer and its
//! seller, messages with up to 3 images (served by expiring signed links), payment
//! requests that reserve stock, paying them by card, confirming and cancelling. Every
//! answer is the envelope `{"message", "data", "statusCode"}`; see [`TError`].

pub mod signalr;

use crate::actors::directory::OpenTradeRoom;
use crate::actors::directory::Profiles;
use crate::actors::room::{
    ChatError, FindFile, GetRoom, Leave, ListMessages, MarkRead, PostMessage, RequestTradePayment, Room, RoomSnapshot,
    StoredFile, StoredMessage, Summary,
};
use crate::actors::seat_map::ChargeState;
use crate::actors::ticket_listing::{
    CancelTransaction, ConfirmPurchase, GetListing, Listing, PayOutcome, PayTransaction, RoomTransactions,
    TicketListing, Transaction,
};
use crate::http::chat::{author, Upload};
use crate::http::error::{TEnvelope, TError};
use crate::http::{profiles_of, AppState, Caller, JsonBody};
use crate::time::{now_ms, rfc3339};
use actix::Addr;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

/// Most images one message carries.
const MAX_IMAGES: usize = 3;

pub fn routes(cfg: &mut web::ServiceConfig) {
    signalr::routes(cfg);
    cfg.route("/api/tickets", web::post().to(create_listing))
        .route("/api/tickets", web::get().to(list_listings))
        .route("/api/tickets/{ticket_id}", web::get().to(get_listing))
        .route("/api/chat/rooms", web::post().to(open_room))
        .route("/api/chat/rooms", web::get().to(list_rooms))
        .route("/api/chat/rooms/detail", web::get().to(room_detail))
        .route("/api/chat/rooms/read", web::post().to(mark_read))
        .route("/api/chat/rooms/leave", web::post().to(leave))
        .route("/api/chat/rooms/request-payment", web::post().to(request_payment))
        .route("/api/chat/rooms/pay", web::post().to(pay))
        .route("/api/chat/rooms/confirm-purchase", web::post().to(confirm_purchase))
        .route("/api/chat/rooms/cancel-payment", web::post().to(cancel_payment))
        .route("/api/chat/rooms/{room_id}/messages", web::get().to(history))
        .route("/api/chat/messages", web::post().to(send_message))
        .route("/api/chat/images/{room_id}/{name}", web::get().to(image));
}

fn ok<T: Serialize>(status: StatusCode, message: &str, data: T) -> HttpResponse {
    HttpResponse::build(status).json(TEnvelope {
        message: message.to_string(),
        data: Some(data),
        status_code: status.as_u16(),
    })
}

fn positive(v: &Option<serde_json::Value>, what: &str) -> Result<u64, TError> {
    let n = match v {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    n.filter(|n| *n > 0).ok_or_else(|| TError::bad_request(format!("{what}는 양의 정수여야 합니다.")))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListingView {
    pub ticket_id: u64,
    pub seller_id: u64,
    pub title: String,
    pub description: Option<String>,
    pub unit_price: u64,
    pub total_quantity: u32,
    pub remaining_quantity: u32,
    pub created_at: String,
}

impl From<&Listing> for ListingView {
    fn from(l: &Listing) -> Self {
        ListingView {
            ticket_id: l.id,
            seller_id: l.seller,
            title: l.title.clone(),
            description: l.description.clone(),
            unit_price: l.unit_price,
            total_quantity: l.total_quantity,
            remaining_quantity: l.remaining_quantity,
            created_at: rfc3339(l.created_at),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListingRequest {
    pub title: Option<String>,
    pub description: Option<String>,
    #[schema(value_type = u64)]
    pub unit_price: Option<serde_json::Value>,
    #[schema(value_type = u32)]
    pub total_quantity: Option<serde_json::Value>,
}

/// List tickets for sale (the caller is the seller).
#[utoipa::path(post, path = "/api/tickets", tag = "T: ticket trade", request_body = ListingRequest,
    responses((status = 201, body = ListingView), (status = 400, body = TEnvelope), (status = 401, body = TEnvelope)),
    security(("bearer" = [])))]
pub async fn create_listing(
    state: web::Data<AppState>,
    me: Caller<TError>,
    body: JsonBody<ListingRequest, TError>,
) -> Result<HttpResponse, TError> {
    let b = body.0;
    let title = b.title.map(|t| t.trim().to_string()).filter(|t| !t.is_empty() && t.chars().count() <= 200);
    let title = title.ok_or_else(|| TError::bad_request("title은 1~200자여야 합니다."))?;
    let price = positive(&b.unit_price, "unitPrice")?;
    let quantity = positive(&b.total_quantity, "totalQuantity")?;
    let quantity = u32::try_from(quantity).ok().filter(|q| *q <= 10_000);
    let quantity = quantity.ok_or_else(|| TError::bad_request("totalQuantity는 10000 이하여야 합니다."))?;
    let l = state.registry.create_listing(me.user_id, title, b.description, price, quantity).await?;
    Ok(ok(StatusCode::CREATED, "티켓 등록 성공", ListingView::from(&l)))
}

fn listing_of(state: &AppState, id: u64) -> Result<Addr<TicketListing>, TError> {
    state.registry.listing(id).ok_or_else(|| TError::not_found("티켓을 찾을 수 없습니다."))
}

/// Every listing.
#[utoipa::path(get, path = "/api/tickets", tag = "T: ticket trade",
    responses((status = 200, body = [ListingView]), (status = 401, body = TEnvelope)), security(("bearer" = [])))]
pub async fn list_listings(state: web::Data<AppState>, _me: Caller<TError>) -> Result<HttpResponse, TError> {
    let mut out = Vec::new();
    for id in state.registry.listing_ids() {
        let l = listing_of(&state, id)?.send(GetListing).await?;
        out.push(ListingView::from(&l));
    }
    Ok(ok(StatusCode::OK, "티켓 목록 조회 성공", out))
}

/// One listing with its stock.
#[utoipa::path(get, path = "/api/tickets/{ticket_id}", tag = "T: ticket trade", params(("ticket_id" = u64, Path)),
    responses((status = 200, body = ListingView), (status = 401, body = TEnvelope), (status = 404, body = TEnvelope)),
    security(("bearer" = [])))]
pub async fn get_listing(
    state: web::Data<AppState>,
    _me: Caller<TError>,
    path: web::Path<String>,
) -> Result<HttpResponse, TError> {
    let id = positive(&Some(json!(path.as_str())), "ticketId")?;
    let l = listing_of(&state, id)?.send(GetListing).await?;
    Ok(ok(StatusCode::OK, "티켓 조회 성공", ListingView::from(&l)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpenRoomRequest {
    #[schema(value_type = u64)]
    pub ticket_id: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomItem {
    pub room_id: u64,
    pub ticket_id: u64,
    pub ticket_title: String,
    pub buyer_id: u64,
    pub seller_id: u64,
    pub other_user_id: u64,
    pub other_nickname: String,
    pub other_profile_image: Option<String>,
    /// `open` or `closed`.
    pub status: &'static str,
    pub last_message: Option<String>,
    pub last_message_at: Option<String>,
    pub unread_count: u64,
    pub created_at: String,
}

fn room_item(
    names: &Profiles,
    r: &RoomSnapshot,
    me: u64,
    last: Option<&StoredMessage>,
    unread: u64,
) -> Option<RoomItem> {
    let t = r.trade?;
    let other = t.other(me);
    let (stored_name, picture) = r
        .participants
        .iter()
        .find(|p| p.user == other)
        .map(|p| (p.name.clone(), p.picture.clone()))
        .unwrap_or_default();
    let (name, profile_picture) = match names.get(&other) {
        Some((name, latest)) => (name.clone(), latest.clone()),
        None => (stored_name, None),
    };
    Some(RoomItem {
        room_id: r.id,
        ticket_id: t.listing,
        ticket_title: r.name.clone().unwrap_or_default(),
        buyer_id: t.buyer,
        seller_id: t.seller,
        other_user_id: other,
        other_nickname: name,
        other_profile_image: profile_picture.or(picture),
        status: if r.closed_at.is_some() { "closed" } else { "open" },
        last_message: last.map(message_preview),
        last_message_at: last.map(|m| rfc3339(m.created_at)),
        unread_count: unread,
        created_at: rfc3339(r.created_at),
    })
}

/// What a room list shows of a message.
fn message_preview(m: &StoredMessage) -> String {
    match (&m.content, m.kind.as_str(), m.images.len()) {
        (Some(c), _, _) if !c.is_empty() => c.clone(),
        (_, "PURCHASE_CONFIRMED", _) => "구매가 확정되었습니다.".into(),
        (_, _, n) if n > 0 => "사진".into(),
        _ => String::new(),
    }
}

/// Open (or get back) the caller's room about a listing with its seller.
#[utoipa::path(post, path = "/api/chat/rooms", tag = "T: ticket trade", request_body = OpenRoomRequest,
    responses((status = 201, description = "A new room", body = RoomItem), (status = 200, description = "The open room of this listing and buyer", body = RoomItem),
        (status = 400, description = "Your own listing", body = TEnvelope), (status = 401, body = TEnvelope), (status = 404, body = TEnvelope)),
    security(("bearer" = [])))]
pub async fn open_room(
    state: web::Data<AppState>,
    me: Caller<TError>,
    body: JsonBody<OpenRoomRequest, TError>,
) -> Result<HttpResponse, TError> {
    let ticket = positive(&body.0.ticket_id, "ticketId")?;
    let listing = listing_of(&state, ticket)?.send(GetListing).await?;
    if listing.seller == me.user_id {
        return Err(TError::bad_request("자신의 티켓에는 채팅방을 열 수 없습니다."));
    }
    let (id, created) = state.registry.directory().send(OpenTradeRoom { listing, buyer: author(&me) }).await??;
    let room = room_actor(&state, id)?;
    let s = room.send(Summary { user: me.user_id }).await??;
    let names = profiles_of(&state, s.room.participants.iter().map(|p| p.user)).await?;
    let item = room_item(&names, &s.room, me.user_id, s.last_message.as_ref(), s.unread);
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(ok(status, if created { "채팅방 생성 성공" } else { "기존 채팅방 조회 성공" }, item))
}

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

/// The caller's open trade rooms, most recently active first.
#[utoipa::path(get, path = "/api/chat/rooms", tag = "T: ticket trade",
    responses((status = 200, body = [RoomItem]), (status = 401, body = TEnvelope)), security(("bearer" = [])))]
pub async fn list_rooms(state: web::Data<AppState>, me: Caller<TError>) -> Result<HttpResponse, TError> {
    let mut summaries = Vec::new();
    for id in state.registry.rooms_of(me.user_id)? {
        let Some(addr) = state.registry.room(id)? else { continue };
        let Ok(s) = addr.send(Summary { user: me.user_id }).await? else { continue };
        if s.room.closed_at.is_none() {
            summaries.push(s);
        }
    }
    let users = summaries.iter().flat_map(|s| s.room.participants.iter().map(|p| p.user));
    let names = profiles_of(&state, users.collect::<Vec<u64>>()).await?;
    let mut rooms = Vec::new();
    for s in &summaries {
        let active = s.last_message.as_ref().map(|m| m.created_at).unwrap_or(s.room.created_at);
        if let Some(item) = room_item(&names, &s.room, me.user_id, s.last_message.as_ref(), s.unread) {
            rooms.push((active, item));
        }
    }
    rooms.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.room_id.cmp(&a.1.room_id)));
    let rooms: Vec<RoomItem> = rooms.into_iter().map(|(_, r)| r).collect();
    Ok(ok(StatusCode::OK, "채팅방 목록 조회 성공", rooms))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TicketFields {
    pub ticket_id: u64,
    pub title: String,
    pub unit_price: u64,
    pub total_quantity: u32,
    pub remaining_quantity: u32,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TxView {
    pub transaction_id: u64,
    pub room_id: u64,
    pub ticket_id: u64,
    pub buyer_id: u64,
    pub seller_id: u64,
    pub quantity: u32,
    pub unit_price: u64,
    pub amount: u64,
    /// `pending_payment`, `paid`, `confirmed` or `cancelled`.
    pub status: &'static str,
    pub reservation_expires_at: String,
    pub created_at: String,
    pub paid_at: Option<String>,
    pub confirmed_at: Option<String>,
    pub cancelled_at: Option<String>,
    /// `expired`, `buyer` or `seller`.
    pub cancel_reason: Option<String>,
    /// `unpaid`, `processing`, `captured` or `refunded`.
    pub payment_status: &'static str,
}

impl From<&Transaction> for TxView {
    fn from(t: &Transaction) -> Self {
        TxView {
            transaction_id: t.id,
            room_id: t.room,
            ticket_id: t.listing,
            buyer_id: t.buyer,
            seller_id: t.seller,
            quantity: t.quantity,
            unit_price: t.unit_price,
            amount: t.amount,
            status: t.status.as_str(),
            reservation_expires_at: rfc3339(t.reservation_expires_at),
            created_at: rfc3339(t.created_at),
            paid_at: t.paid_at.map(rfc3339),
            confirmed_at: t.confirmed_at.map(rfc3339),
            cancelled_at: t.cancelled_at.map(rfc3339),
            cancel_reason: t.cancel_reason.clone(),
            payment_status: match t.charge {
                ChargeState::Unpaid | ChargeState::Refunded { charge: None, .. } => "unpaid",
                ChargeState::Charging { .. } | ChargeState::Unknown => "processing",
                ChargeState::Captured { .. } => "captured",
                ChargeState::Refunded { charge: Some(_), .. } => "refunded",
            },
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomDetail {
    pub room_id: u64,
    pub status: &'static str,
    pub buyer_id: u64,
    pub seller_id: u64,
    pub buyer_nickname: String,
    pub seller_nickname: String,
    pub created_at: String,
    pub closed_at: Option<String>,
    pub ticket: TicketFields,
    pub transactions: Vec<TxView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct RoomQuery {
    pub room_id: Option<String>,
}

/// A trade room with its ticket's stock and its payment requests.
#[utoipa::path(get, path = "/api/chat/rooms/detail", tag = "T: ticket trade", params(RoomQuery),
    responses((status = 200, body = RoomDetail), (status = 400, body = TEnvelope), (status = 401, body = TEnvelope),
        (status = 403, body = TEnvelope), (status = 404, body = TEnvelope)),
    security(("bearer" = [])))]
pub async fn room_detail(
    state: web::Data<AppState>,
    me: Caller<TError>,
    req: HttpRequest,
) -> Result<HttpResponse, TError> {
    let q = web::Query::<RoomQuery>::from_query(req.query_string()).map_err(|e| TError::bad_request(e.to_string()))?;
    let id = positive(&q.room_id.clone().map(serde_json::Value::String), "roomId")?;
    let (_, r) = trade_room(&state, id, me.user_id).await?;
    let Some(t) = r.trade else { return Err(TError::not_found("채팅방을 찾을 수 없습니다.")) };
    let listing = listing_of(&state, t.listing)?;
    let l = listing.send(GetListing).await?;
    let txs = listing.send(RoomTransactions { room: r.id }).await??;
    let names = profiles_of(&state, [t.buyer, t.seller]).await?;
    let name = |user: u64| match names.get(&user) {
        Some((n, _)) => n.clone(),
        None => r.participants.iter().find(|p| p.user == user).map(|p| p.name.clone()).unwrap_or_default(),
    };
    Ok(ok(
        StatusCode::OK,
        "채팅방 상세 조회 성공",
        RoomDetail {
            room_id: r.id,
            status: if r.closed_at.is_some() { "closed" } else { "open" },
            buyer_id: t.buyer,
            seller_id: t.seller,
            buyer_nickname: name(t.buyer),
            seller_nickname: name(t.seller),
            created_at: rfc3339(r.created_at),
            closed_at: r.closed_at.map(rfc3339),
            ticket: TicketFields {
                ticket_id: l.id,
                title: l.title.clone(),
                unit_price: l.unit_price,
                total_quantity: l.total_quantity,
                remaining_quantity: l.remaining_quantity,
            },
            transactions: txs.iter().map(TxView::from).collect(),
        },
    ))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageLink {
    pub url: String,
    pub expires_at: String,
}

/// A message as contract T shows it (the `ReceiveMessage` payload, plus `type`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TMessage {
    pub message_id: u64,
    pub room_id: u64,
    pub sender_id: u64,
    pub sender_nickname: String,
    pub sender_profile_image: Option<String>,
    pub message: Option<String>,
    pub images: Option<Vec<ImageLink>>,
    pub created_at: String,
    /// `TEXT`, `IMAGE`, `SYSTEM`, `PURCHASE_CONFIRMED`, ...
    #[serde(rename = "type")]
    pub kind: String,
}

/// The message kind as contract T writes it.
pub fn t_kind(kind: &str) -> String {
    match kind {
        "system" => "SYSTEM".into(),
        other => other.to_ascii_uppercase(),
    }
}

fn image_links(state: &AppState, m: &StoredMessage) -> Option<Vec<ImageLink>> {
    if m.images.is_empty() {
        return None;
    }
    let expires = now_ms() + crate::time::ms(crate::http::signed::IMAGE_LINK_TTL);
    Some(
        m.images
            .iter()
            .map(|f| ImageLink {
                url: state.links.sign(&StoredMessage::image_path(m.room, &f.stored), expires),
                expires_at: rfc3339(expires),
            })
            .collect(),
    )
}

fn t_message(state: &AppState, m: &StoredMessage) -> TMessage {
    TMessage {
        message_id: m.id,
        room_id: m.room,
        sender_id: m.sender,
        sender_nickname: m.sender_name.clone(),
        sender_profile_image: m.sender_picture.clone(),
        message: m.content.clone().filter(|c| !c.is_empty()).or_else(|| m.deleted.then(String::new)),
        images: image_links(state, m),
        created_at: rfc3339(m.created_at),
        kind: t_kind(&m.kind),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct HistoryQuery {
    /// 1 (the newest) and up.
    pub page: Option<String>,
    /// 1..=100, default 30.
    pub size: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct History {
    pub messages: Vec<TMessage>,
    pub total_count: usize,
    pub has_more: bool,
    pub page: usize,
    pub size: usize,
}

/// A page of a room's messages: page 1 is the newest `size`, ascending within the page.
#[utoipa::path(get, path = "/api/chat/rooms/{room_id}/messages", tag = "T: ticket trade",
    params(("room_id" = u64, Path), HistoryQuery),
    responses((status = 200, body = History), (status = 400, body = TEnvelope), (status = 401, body = TEnvelope),
        (status = 403, body = TEnvelope), (status = 404, body = TEnvelope)),
    security(("bearer" = [])))]
pub async fn history(
    state: web::Data<AppState>,
    me: Caller<TError>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, TError> {
    let id = positive(&Some(json!(path.as_str())), "roomId")?;
    let q =
        web::Query::<HistoryQuery>::from_query(req.query_string()).map_err(|e| TError::bad_request(e.to_string()))?;
    let page = match &q.page {
        Some(p) => positive(&Some(json!(p)), "page")? as usize,
        None => 1,
    };
    let size = match &q.size {
        Some(s) => s.trim().parse::<usize>().ok().filter(|n| (1..=100).contains(n)),
        None => Some(30),
    };
    let size = size.ok_or_else(|| TError::bad_request("size는 1~100이어야 합니다."))?;
    let (room, _) = trade_room(&state, id, me.user_id).await?;
    let p = room.send(ListMessages { user: me.user_id, page, size, since: None }).await??;
    let messages = p.messages.iter().map(|m| t_message(&state, m)).collect();
    Ok(ok(
        StatusCode::OK,
        "메시지 조회 성공",
        History { messages, total_count: p.total, has_more: p.has_more, page, size },
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomBody {
    #[schema(value_type = u64)]
    pub room_id: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadView {
    pub room_id: u64,
    pub last_read_message_id: u64,
    pub read_at: String,
    pub unread_count: u64,
}

/// Mark a room read.
#[utoipa::path(post, path = "/api/chat/rooms/read", tag = "T: ticket trade", request_body = RoomBody,
    responses((status = 200, body = ReadView), (status = 400, body = TEnvelope), (status = 401, body = TEnvelope),
        (status = 403, body = TEnvelope), (status = 404, body = TEnvelope)),
    security(("bearer" = [])))]
pub async fn mark_read(
    state: web::Data<AppState>,
    me: Caller<TError>,
    body: JsonBody<RoomBody, TError>,
) -> Result<HttpResponse, TError> {
    let id = positive(&body.0.room_id, "roomId")?;
    let (room, _) = trade_room(&state, id, me.user_id).await?;
    let (last, at) = room.send(MarkRead { from: author(&me) }).await??;
    Ok(ok(
        StatusCode::OK,
        "읽음 처리 성공",
        ReadView { room_id: id, last_read_message_id: last, read_at: rfc3339(at), unread_count: 0 },
    ))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeaveView {
    pub room_id: u64,
    pub status: &'static str,
    pub closed_at: Option<String>,
}

/// Leave a trade room: it is closed for both parties and drops out of room lists;
/// `RoomUpdated` (`RoomClosed`) goes to the room and to both parties.
#[utoipa::path(post, path = "/api/chat/rooms/leave", tag = "T: ticket trade", request_body = RoomBody,
    responses((status = 200, body = LeaveView), (status = 400, body = TEnvelope), (status = 401, body = TEnvelope),
        (status = 403, body = TEnvelope), (status = 404, body = TEnvelope)),
    security(("bearer" = [])))]
pub async fn leave(
    state: web::Data<AppState>,
    me: Caller<TError>,
    body: JsonBody<RoomBody, TError>,
) -> Result<HttpResponse, TError> {
    let id = positive(&body.0.room_id, "roomId")?;
    let (room, _) = trade_room(&state, id, me.user_id).await?;
    let r = room.send(Leave { user: me.user_id }).await??;
    Ok(ok(
        StatusCode::OK,
        crate::actors::room::ROOM_CLOSED,
        LeaveView { room_id: id, status: "closed", closed_at: r.closed_at.map(rfc3339) },
    ))
}

/// Read the multipart body of `POST /api/chat/messages`: `roomId`, `message`, `images`.
async fn read_send_form(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<(Option<String>, Option<String>, Vec<Upload>), TError> {
    let mut form = actix_multipart::Multipart::new(req.headers(), payload);
    let (mut room, mut message, mut images) = (None, None, Vec::new());
    while let Some(field) = form.next().await {
        let mut field = field.map_err(|e| TError::bad_request(format!("multipart 본문이 올바르지 않습니다: {e}")))?;
        let name = field.name().unwrap_or_default().to_string();
        let file_name = field.content_disposition().and_then(|d| d.get_filename()).map(str::to_string);
        let declared_type = field.content_type().map(|m| m.essence_str().to_string());
        let is_image = name == "images" || name == "images[]" || name == "image";
        if is_image && images.len() >= MAX_IMAGES {
            return Err(TError::bad_request("이미지는 최대 3개까지 첨부할 수 있습니다."));
        }
        let cap = if is_image { limit } else { 64 * 1024 };
        let mut bytes = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(|e| TError::bad_request(format!("multipart 본문이 올바르지 않습니다: {e}")))?;
            if bytes.len() + chunk.len() > cap {
                return Err(TError::bad_request(format!("{name}의 크기는 {cap}바이트 이하여야 합니다.")));
            }
            bytes.extend_from_slice(&chunk);
        }
        if is_image {
            if !bytes.is_empty() {
                images.push(Upload { name: file_name.unwrap_or_else(|| "image".into()), declared_type, bytes });
            }
            continue;
        }
        let text =
            String::from_utf8(bytes).map_err(|_| TError::bad_request(format!("{name}는 UTF-8 텍스트여야 합니다.")))?;
        match name.as_str() {
            "roomId" => room = Some(text),
            "message" => message = Some(text),
            _ => {}
        }
    }
    Ok((room, message, images))
}

/// Send a message with text and/or up to 3 images. It is stored, then broadcast as
/// `ReceiveMessage` to `room_{roomId}` and to the other party's `user_{id}`.
#[utoipa::path(post, path = "/api/chat/messages", tag = "T: ticket trade",
    request_body(content_type = "multipart/form-data", description = "roomId (required), message, images (0 to 3 files)"),
    responses((status = 200, body = TMessage), (status = 400, description = "No text and no image, more than 3 images, not an image, too large, or `채팅방이 종료되었습니다.`", body = TEnvelope),
        (status = 401, body = TEnvelope), (status = 403, body = TEnvelope), (status = 404, body = TEnvelope)),
    security(("bearer" = [])))]
pub async fn send_message(
    state: web::Data<AppState>,
    me: Caller<TError>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, TError> {
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    let (room_id, text, uploads) = if multipart {
        read_send_form(&req, payload, state.settings.chat_max_file_bytes).await?
    } else {
        // A JSON body `{roomId, message}` is accepted too, for text-only clients.
        let bytes = payload.to_bytes_limited(1 << 20).await.map_err(|_| TError::bad_request("본문이 너무 큽니다."))?;
        let bytes = bytes.map_err(|e| TError::bad_request(e.to_string()))?;
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| TError::bad_request(format!("JSON 본문이 올바르지 않습니다: {e}")))?;
        let room = v.get("roomId").map(|r| r.to_string().trim_matches('"').to_string());
        (room, v.get("message").and_then(|m| m.as_str()).map(str::to_string), Vec::new())
    };
    let room_id = room_id.ok_or_else(|| TError::bad_request("roomId는 필수입니다."))?;
    let id = positive(&Some(json!(room_id)), "roomId")?;
    let text = text.filter(|t| !t.trim().is_empty());
    if text.is_none() && uploads.is_empty() {
        return Err(TError::bad_request("메시지 또는 이미지 중 하나는 필수입니다."));
    }
    if text.as_ref().is_some_and(|t| t.chars().count() > 5000) {
        return Err(TError::bad_request("메시지는 5000자 이하여야 합니다."));
    }
    let (room, snapshot) = trade_room(&state, id, me.user_id).await?;
    if snapshot.closed_at.is_some() {
        return Err(TError::bad_request(crate::actors::room::ROOM_CLOSED));
    }
    let mut images: Vec<StoredFile> = Vec::new();
    for up in uploads {
        let f = crate::http::chat::store_upload(&state, id, "image", up)
            .await
            .map_err(|e| TError::bad_request(e.detail))?;
        images.push(f);
    }
    let kind = if text.is_none() { "image" } else { "text" };
    let msg = PostMessage {
        from: author(&me),
        content: text,
        kind: kind.into(),
        reply_to: None,
        file: None,
        images,
        system: false,
    };
    let m = room.send(msg).await??;
    let mut data = serde_json::to_value(t_message(&state, &m)).unwrap_or_default();
    data["success"] = json!(true);
    Ok(ok(StatusCode::OK, "메시지 전송 성공", data))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct LinkQuery {
    pub expires: Option<u64>,
    pub sig: Option<String>,
}

/// A message image, by its signed link (no token needed; the link expires).
#[utoipa::path(get, path = "/api/chat/images/{room_id}/{name}", tag = "T: ticket trade",
    params(("room_id" = u64, Path), ("name" = String, Path), LinkQuery),
    responses((status = 200, description = "The image"), (status = 403, description = "Expired or forged link", body = TEnvelope),
        (status = 404, body = TEnvelope)))]
pub async fn image(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, TError> {
    let q = web::Query::<LinkQuery>::from_query(req.query_string()).map_err(|e| TError::bad_request(e.to_string()))?;
    let id = positive(&Some(json!(path.0)), "roomId")?;
    let link = StoredMessage::image_path(id, &path.1);
    let (Some(expires), Some(sig)) = (q.expires, q.sig.as_deref()) else {
        return Err(TError::forbidden("만료되었거나 올바르지 않은 링크입니다."));
    };
    if !state.links.verify(&link, expires, sig, now_ms()) {
        return Err(TError::forbidden("만료되었거나 올바르지 않은 링크입니다."));
    }
    let not_found = || TError::not_found("이미지를 찾을 수 없습니다.");
    let disk = state.registry.files().path(id, &path.1).ok_or_else(not_found)?;
    let f = room_actor(&state, id)?
        .send(FindFile { user: None, stored: path.1.clone() })
        .await?
        .map_err(|_| not_found())?;
    let bytes = web::block(move || std::fs::read(disk)).await.map_err(|_| not_found())?.map_err(|_| not_found())?;
    Ok(HttpResponse::Ok()
        .content_type(f.content_type)
        .insert_header((header::CACHE_CONTROL, "private, max-age=3600"))
        .body(bytes))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequestBody {
    #[schema(value_type = u64)]
    pub room_id: Option<serde_json::Value>,
    #[schema(value_type = u32)]
    pub quantity: Option<serde_json::Value>,
}

/// Ask the buyer of a room to pay for `quantity` tickets: they are reserved at once for
/// `BOXOFFICE_TRADE_RESERVATION_TTL` (24 h).
#[utoipa::path(post, path = "/api/chat/rooms/request-payment", tag = "T: ticket trade", request_body = PaymentRequestBody,
    responses((status = 200, body = TxView),
        (status = 400, description = "`판매 가능한 수량이 부족합니다.`, `채팅방이 종료되었습니다.`, or a bad quantity", body = TEnvelope),
        (status = 401, body = TEnvelope), (status = 403, body = TEnvelope), (status = 404, body = TEnvelope)),
    security(("bearer" = [])))]
pub async fn request_payment(
    state: web::Data<AppState>,
    me: Caller<TError>,
    body: JsonBody<PaymentRequestBody, TError>,
) -> Result<HttpResponse, TError> {
    let id = positive(&body.0.room_id, "roomId")?;
    let quantity = positive(&body.0.quantity, "quantity")?;
    let quantity = u32::try_from(quantity).map_err(|_| TError::bad_request(crate::http::error::NOT_ENOUGH))?;
    let room = room_actor(&state, id)?;
    let msg = RequestTradePayment { user: me.user_id, quantity, listings: state.registry.listing_book() };
    let tx = room.send(msg).await???;
    Ok(ok(StatusCode::OK, "결제 요청 성공", TxView::from(&tx)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TxBody {
    #[schema(value_type = u64)]
    pub transaction_id: Option<serde_json::Value>,
    /// For `pay`: a test-gateway card token (see contract B).
    pub payment_method_token: Option<String>,
    /// For `cancel-payment`: must be the whole quantity when given.
    #[schema(value_type = Option<u32>)]
    pub quantity: Option<serde_json::Value>,
    #[schema(value_type = u64)]
    pub room_id: Option<serde_json::Value>,
}

/// The listing that holds the body's transaction (the listing checks who may act on it).
fn tx_listing(state: &AppState, body: &TxBody) -> Result<(u64, Addr<TicketListing>), TError> {
    let tx = positive(&body.transaction_id, "transactionId")?;
    let listing = state.registry.listing_of_transaction(tx)?;
    Ok((tx, listing.ok_or_else(|| TError::not_found("거래를 찾을 수 없습니다."))?))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PayFailure {
    pub transaction_id: u64,
    pub failure_code: String,
    pub failure_concept: String,
}

/// The buyer pays a pending request by card (the test gateway's tokens, as contract B).
#[utoipa::path(post, path = "/api/chat/rooms/pay", tag = "T: ticket trade", request_body = TxBody,
    responses((status = 200, body = TxView), (status = 400, description = "`결제 요청이 만료되었습니다.`, or the card failed (data has failureCode)", body = TEnvelope),
        (status = 401, body = TEnvelope), (status = 403, body = TEnvelope), (status = 404, body = TEnvelope), (status = 409, body = TEnvelope)),
    security(("bearer" = [])))]
pub async fn pay(
    state: web::Data<AppState>,
    me: Caller<TError>,
    body: JsonBody<TxBody, TError>,
) -> Result<HttpResponse, TError> {
    let token = body.0.payment_method_token.clone().map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
    let token = token.ok_or_else(|| TError::bad_request("paymentMethodToken은 필수입니다."))?;
    let (tx, listing) = tx_listing(&state, &body.0)?;
    match listing.send(PayTransaction { tx, buyer: me.user_id, token }).await?? {
        PayOutcome::Paid(t) => Ok(ok(StatusCode::OK, "결제 성공", TxView::from(&t))),
        PayOutcome::Failed(f) if f.failure_code == "REQUEST_EXPIRED" => {
            Err(TError::bad_request(crate::actors::ticket_listing::EXPIRED))
        }
        PayOutcome::Failed(f) => Ok(ok(
            StatusCode::BAD_REQUEST,
            "결제에 실패했습니다.",
            PayFailure { transaction_id: tx, failure_code: f.failure_code, failure_concept: f.failure_concept },
        )),
    }
}

/// The buyer confirms a paid purchase; a `PURCHASE_CONFIRMED` card (message null) is
/// posted to the room.
#[utoipa::path(post, path = "/api/chat/rooms/confirm-purchase", tag = "T: ticket trade", request_body = TxBody,
    responses((status = 200, body = TxView), (status = 400, body = TEnvelope), (status = 401, body = TEnvelope),
        (status = 403, body = TEnvelope), (status = 404, body = TEnvelope)),
    security(("bearer" = [])))]
pub async fn confirm_purchase(
    state: web::Data<AppState>,
    me: Caller<TError>,
    body: JsonBody<TxBody, TError>,
) -> Result<HttpResponse, TError> {
    let (tx, listing) = tx_listing(&state, &body.0)?;
    let t = listing.send(ConfirmPurchase { tx, buyer: me.user_id }).await??;
    Ok(ok(StatusCode::OK, "구매 확정 성공", TxView::from(&t)))
}

/// Cancel a payment request in full: its quantity returns to the listing (a paid one is
/// refunded). Partial cancellation is not supported: 400.
#[utoipa::path(post, path = "/api/chat/rooms/cancel-payment", tag = "T: ticket trade", request_body = TxBody,
    responses((status = 200, body = TxView), (status = 400, description = "Partial cancellation, or not cancellable", body = TEnvelope),
        (status = 401, body = TEnvelope), (status = 403, body = TEnvelope), (status = 404, body = TEnvelope), (status = 409, body = TEnvelope)),
    security(("bearer" = [])))]
pub async fn cancel_payment(
    state: web::Data<AppState>,
    me: Caller<TError>,
    body: JsonBody<TxBody, TError>,
) -> Result<HttpResponse, TError> {
    let quantity = match &body.0.quantity {
        None | Some(serde_json::Value::Null) => None,
        q => Some(u32::try_from(positive(q, "quantity")?).unwrap_or(u32::MAX)),
    };
    let (tx, listing) = tx_listing(&state, &body.0)?;
    let t = listing.send(CancelTransaction { tx, user: me.user_id, quantity }).await??;
    Ok(ok(StatusCode::OK, "결제 취소 성공", TxView::from(&t)))
}

impl From<ChatError> for TError {
    fn from(e: ChatError) -> Self {
        match e {
            ChatError::RoomNotFound => TError::not_found("채팅방을 찾을 수 없습니다."),
            ChatError::NotParticipant => TError::forbidden("채팅방에 접근할 권한이 없습니다."),
            ChatError::MessageNotFound => TError::not_found("메시지를 찾을 수 없습니다."),
            ChatError::NotSender => TError::forbidden("메시지를 보낸 사람만 할 수 있습니다."),
            ChatError::RoomClosed => TError::bad_request(crate::actors::room::ROOM_CLOSED),
            e @ ChatError::NotInRoom(_) => TError::bad_request(e.to_string()),
            ChatError::Storage(m) => TError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("저장소 오류: {m}")),
        }
    }
}
