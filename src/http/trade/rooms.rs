//! Contract T's trade rooms: opening (or getting back) the buyer's room about a listing,
//! the caller's open rooms with their last message and unread count, a room's detail with
//! its ticket's stock and payment requests, marking a room read, and leaving it.

use super::payments::TxView;
use super::{listing_of, ok, positive, trade_room};
use crate::actors::directory::Profiles;
use crate::actors::room::{Leave, MarkRead, RoomSnapshot, StoredMessage};
use crate::actors::ticket_listing::{GetListing, RoomTransactions};
use crate::auth::default_name;
use crate::http::error::{TData, TEnvelope, TError};
use crate::http::{author, profiles_of, AppState, Caller, JsonBody};
use crate::time::rfc3339;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = t::OpenRoomRequest)]
#[serde(rename_all = "camelCase")]
pub struct OpenRoomRequest {
    #[schema(schema_with = crate::http::schema::id_or_digits, required = true)]
    pub ticket_id: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = t::RoomItem)]
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
    let stored_name = stored_name.unwrap_or_else(|| default_name(other));
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
    responses((status = 201, description = "A new room", body = TData<RoomItem>), (status = 200, description = "The open room of this listing and buyer", body = TData<RoomItem>),
        (status = 400, description = "Your own listing", body = TEnvelope), (status = 401, body = TEnvelope), (status = 404, body = TEnvelope)),
    security(("bearer" = [])))]
pub async fn open_room(
    state: web::Data<AppState>,
    me: Caller<TError>,
    body: JsonBody<OpenRoomRequest, TError>,
) -> Result<HttpResponse, TError> {
    let ticket = positive(&body.0.ticket_id, "ticketId")?;
    let (s, created) = crate::usecase::chat::open_trade_room(&state.registry, author(&me), ticket).await?;
    let names = profiles_of(&state, s.room.participants.iter().map(|p| p.user)).await?;
    let item = room_item(&names, &s.room, me.user_id, s.last_message.as_ref(), s.unread);
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(ok(status, if created { "채팅방 생성 성공" } else { "기존 채팅방 조회 성공" }, item))
}

/// The caller's open trade rooms, most recently active first.
#[utoipa::path(get, path = "/api/chat/rooms", tag = "T: ticket trade",
    responses((status = 200, body = TData<Vec<RoomItem>>), (status = 401, body = TEnvelope)), security(("bearer" = [])))]
pub async fn list_rooms(state: web::Data<AppState>, me: Caller<TError>) -> Result<HttpResponse, TError> {
    let summaries = state.registry.room_summaries(me.user_id).await?;
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
#[schema(as = t::TicketFields)]
#[serde(rename_all = "camelCase")]
pub struct TicketFields {
    pub ticket_id: u64,
    pub title: String,
    pub unit_price: u64,
    pub total_quantity: u32,
    pub remaining_quantity: u32,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = t::RoomDetail)]
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
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct RoomQuery {
    #[param(required = true, nullable = false, pattern = "^0*[1-9][0-9]{0,14}$")]
    pub room_id: Option<String>,
}

/// A trade room with its ticket's stock and its payment requests.
#[utoipa::path(get, path = "/api/chat/rooms/detail", tag = "T: ticket trade", params(RoomQuery),
    responses((status = 200, body = TData<RoomDetail>), (status = 400, body = TEnvelope), (status = 401, body = TEnvelope),
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
        None => r
            .participants
            .iter()
            .find(|p| p.user == user)
            .and_then(|p| p.name.clone())
            .unwrap_or_else(|| default_name(user)),
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

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = t::RoomBody)]
#[serde(rename_all = "camelCase")]
pub struct RoomBody {
    #[schema(schema_with = crate::http::schema::id_or_digits, required = true)]
    pub room_id: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = t::ReadView)]
#[serde(rename_all = "camelCase")]
pub struct ReadView {
    pub room_id: u64,
    pub last_read_message_id: u64,
    pub read_at: String,
    pub unread_count: u64,
}

/// Mark a room read.
#[utoipa::path(post, path = "/api/chat/rooms/read", tag = "T: ticket trade", request_body = RoomBody,
    responses((status = 200, body = TData<ReadView>), (status = 400, body = TEnvelope), (status = 401, body = TEnvelope),
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
#[schema(as = t::LeaveView)]
#[serde(rename_all = "camelCase")]
pub struct LeaveView {
    pub room_id: u64,
    pub status: &'static str,
    pub closed_at: Option<String>,
}

/// Leave a trade room: it is closed for both parties and drops out of room lists;
/// `RoomUpdated` (`RoomClosed`) goes to the room and to both parties.
#[utoipa::path(post, path = "/api/chat/rooms/leave", tag = "T: ticket trade", request_body = RoomBody,
    responses((status = 200, body = TData<LeaveView>), (status = 400, body = TEnvelope), (status = 401, body = TEnvelope),
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
        crate::http::ROOM_CLOSED,
        LeaveView { room_id: id, status: "closed", closed_at: r.closed_at.map(rfc3339) },
    ))
}
