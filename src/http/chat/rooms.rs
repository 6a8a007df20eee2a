//! Contract C's rooms: the caller's rooms (most recently active first, with the last
//! message and the unread count), creating a direct or group room (a direct room between
//! two users is made once), one room, its participants, and who of them is online.

use super::room_of;
use crate::actors::directory::Profiles;
use crate::actors::room::{GetRoom, RoomKind, RoomSnapshot, RoomSummary};
use crate::auth::default_name;
use crate::http::error::{CError, CErrorBody};
use crate::http::{author, profiles_of, AppState, Caller, JsonBody};
use crate::time::rfc3339;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = c::RoomSummaryView)]
pub struct RoomSummaryView {
    pub room_id: u64,
    pub room_name: String,
    /// `direct` or `group`.
    pub room_type: &'static str,
    pub created_by: u64,
    pub is_active: bool,
    pub created_at: String,
    pub updated_at: String,
    pub participant_count: usize,
    /// The newest message's text (null when the room has none).
    pub last_message: Option<String>,
    pub unread_count: u64,
}

/// A participant's name: their latest token's, once the server has seen one, else the
/// name the room has for them, else the default one.
fn display_name(names: &Profiles, user: u64, stored: &Option<String>) -> String {
    match (names.get(&user), stored) {
        (Some((name, _)), _) => name.clone(),
        (None, Some(name)) => name.clone(),
        (None, None) => default_name(user),
    }
}

/// The room's name as `user` sees it: a direct room without one is named after the other.
fn room_name(names: &Profiles, r: &RoomSnapshot, user: u64) -> String {
    match (&r.name, r.participants.iter().find(|p| p.user != user)) {
        (Some(n), _) => n.clone(),
        (None, Some(other)) => display_name(names, other.user, &other.name),
        (None, None) => String::new(),
    }
}

/// Everyone in these rooms, named.
async fn names_in<'a>(state: &AppState, rooms: impl IntoIterator<Item = &'a RoomSnapshot>) -> Result<Profiles, CError> {
    Ok(profiles_of(state, rooms.into_iter().flat_map(|r| r.participants.iter().map(|p| p.user))).await?)
}

impl RoomSummaryView {
    fn new(names: &Profiles, s: &RoomSummary, user: u64) -> Self {
        let r = &s.room;
        let last = s.last_message.as_ref().map(|m| m.content.clone().unwrap_or_default());
        RoomSummaryView {
            room_id: r.id,
            room_name: room_name(names, r, user),
            room_type: r.kind.as_str(),
            created_by: r.created_by,
            is_active: r.active,
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at.max(s.last_message.as_ref().map(|m| m.created_at).unwrap_or(0))),
            participant_count: r.participants.iter().filter(|p| p.active).count(),
            last_message: last,
            unread_count: s.unread,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = c::RoomList)]
pub struct RoomList {
    pub rooms: Vec<RoomSummaryView>,
    pub total_count: usize,
}

/// The caller's rooms, most recently active first.
#[utoipa::path(get, path = "/chat/rooms/", tag = "C: chat",
    responses((status = 200, body = RoomList), (status = 401, body = CErrorBody)), security(("bearer" = [])))]
pub async fn list_rooms(state: web::Data<AppState>, me: Caller<CError>) -> Result<HttpResponse, CError> {
    let summaries = state.registry.room_summaries(me.user_id).await?;
    let names = names_in(&state, summaries.iter().map(|s| &s.room)).await?;
    let mut rooms: Vec<(u64, RoomSummaryView)> = summaries
        .iter()
        .map(|s| {
            let active_at = s.last_message.as_ref().map(|m| m.created_at).unwrap_or(s.room.created_at);
            (active_at, RoomSummaryView::new(&names, s, me.user_id))
        })
        .collect();
    rooms.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.room_id.cmp(&a.1.room_id)));
    let rooms: Vec<RoomSummaryView> = rooms.into_iter().map(|(_, r)| r).collect();
    Ok(HttpResponse::Ok().json(RoomList { total_count: rooms.len(), rooms }))
}

/// A room's kind (a documentation type: the handler checks the string).
#[allow(dead_code)]
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = c::RoomType)]
#[serde(rename_all = "lowercase")]
pub enum RoomType {
    Direct,
    Group,
}

fn participant_ids() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::ArrayBuilder::new().items(crate::http::schema::positive()).min_items(Some(1)).build()
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = c::CreateRoomRequest)]
pub struct CreateRoomRequest {
    /// Required for a group room (not only white space).
    #[schema(max_length = 100)]
    pub room_name: Option<String>,
    /// `direct` (exactly one other user) or `group` (a name and at least one other user,
    /// at most `BOXOFFICE_CHAT_MAX_PARTICIPANTS` in all). Who "other" is depends on the
    /// caller, so those rules are 422 rather than part of this schema.
    #[schema(value_type = RoomType, required = true)]
    pub room_type: Option<String>,
    #[schema(max_length = 1000)]
    pub room_description: Option<String>,
    #[schema(schema_with = participant_ids, required = true)]
    pub participant_ids: Option<Vec<serde_json::Value>>,
}

/// Create a direct or group room; a direct room that exists already is answered with 200.
#[utoipa::path(post, path = "/chat/rooms/", tag = "C: chat", request_body = CreateRoomRequest,
    responses((status = 201, body = RoomSummaryView), (status = 200, description = "The existing direct room", body = RoomSummaryView),
        (status = 401, body = CErrorBody), (status = 422, body = CErrorBody)),
    security(("bearer" = [])))]
pub async fn create_room(
    state: web::Data<AppState>,
    me: Caller<CError>,
    body: JsonBody<CreateRoomRequest, CError>,
) -> Result<HttpResponse, CError> {
    let b = body.0;
    let kind = match b.room_type.as_deref() {
        Some("direct") => RoomKind::Direct,
        Some("group") => RoomKind::Group,
        _ => return Err(CError::invalid("room_type must be \"direct\" or \"group\"")),
    };
    let ids =
        b.participant_ids.filter(|v| !v.is_empty()).ok_or_else(|| CError::invalid("participant_ids is required"))?;
    let mut others = Vec::new();
    for v in &ids {
        let id = v
            .as_u64()
            .filter(|n| (1..=crate::money::MAX_AMOUNT).contains(n))
            .ok_or_else(|| CError::invalid("participant_ids must be positive integers"))?;
        others.push(id);
    }
    if b.room_name.as_ref().is_some_and(|n| !crate::http::schema::length_within(n, 0, 100)) {
        return Err(CError::invalid("room_name must be at most 100 characters"));
    }
    let name = b.room_name.as_deref().map(crate::http::schema::trimmed).filter(|n| !n.is_empty()).map(String::from);
    if b.room_description.as_ref().is_some_and(|d| d.chars().count() > 1000) {
        return Err(CError::invalid("room_description must be at most 1000 characters"));
    }
    let created =
        crate::usecase::chat::create_room(&state.registry, author(&me), kind, name, b.room_description, others).await?;
    let (summary, created) = created;
    let names = names_in(&state, [&summary.room]).await?;
    let view = RoomSummaryView::new(&names, &summary, me.user_id);
    Ok(if created { HttpResponse::Created().json(view) } else { HttpResponse::Ok().json(view) })
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = c::RoomDetail)]
pub struct RoomDetail {
    pub room_id: u64,
    pub room_name: String,
    pub room_type: &'static str,
    pub room_description: Option<String>,
    pub max_participants: u32,
    pub created_by: u64,
    pub is_active: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// One room (participants only).
#[utoipa::path(get, path = "/chat/rooms/{room_id}/", tag = "C: chat", params(("room_id" = u64, Path)),
    responses((status = 200, body = RoomDetail), (status = 401, body = CErrorBody), (status = 403, body = CErrorBody),
        (status = 404, body = CErrorBody), (status = 422, body = CErrorBody)),
    security(("bearer" = [])))]
pub async fn get_room(
    state: web::Data<AppState>,
    me: Caller<CError>,
    path: web::Path<String>,
) -> Result<HttpResponse, CError> {
    let (_, addr) = room_of(&state, &path)?;
    let r: RoomSnapshot = addr.send(GetRoom { user: me.user_id }).await??;
    let names = names_in(&state, [&r]).await?;
    Ok(HttpResponse::Ok().json(RoomDetail {
        room_id: r.id,
        room_name: room_name(&names, &r, me.user_id),
        room_type: r.kind.as_str(),
        room_description: r.description.clone(),
        max_participants: r.max_participants,
        created_by: r.created_by,
        is_active: r.active,
        created_at: rfc3339(r.created_at),
        updated_at: rfc3339(r.updated_at),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = c::ParticipantView)]
pub struct ParticipantView {
    pub id: u32,
    pub room_id: u64,
    pub user_id: u64,
    pub user_name: String,
    pub joined_at: String,
    pub last_read_at: Option<String>,
    pub is_active: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = c::ParticipantList)]
pub struct ParticipantList {
    pub participants: Vec<ParticipantView>,
    pub total_count: usize,
}

/// A room's participants.
#[utoipa::path(get, path = "/chat/rooms/{room_id}/participants/", tag = "C: chat", params(("room_id" = u64, Path)),
    responses((status = 200, body = ParticipantList), (status = 401, body = CErrorBody), (status = 403, body = CErrorBody),
        (status = 404, body = CErrorBody)),
    security(("bearer" = [])))]
pub async fn participants(
    state: web::Data<AppState>,
    me: Caller<CError>,
    path: web::Path<String>,
) -> Result<HttpResponse, CError> {
    let (id, addr) = room_of(&state, &path)?;
    let r = addr.send(GetRoom { user: me.user_id }).await??;
    let names = names_in(&state, [&r]).await?;
    let participants: Vec<ParticipantView> = r
        .participants
        .iter()
        .map(|p| ParticipantView {
            id: p.id,
            room_id: id,
            user_id: p.user,
            user_name: display_name(&names, p.user, &p.name),
            joined_at: rfc3339(p.joined_at),
            last_read_at: p.last_read_at.map(rfc3339),
            is_active: p.active,
        })
        .collect();
    Ok(HttpResponse::Ok().json(ParticipantList { total_count: participants.len(), participants }))
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = c::OnlineStatus)]
pub struct OnlineStatus {
    pub user_id: u64,
    pub user_name: String,
    pub is_online: bool,
    /// Now while online; when the last connection closed; null if never connected.
    pub last_seen: Option<String>,
}

/// Who of the room is connected.
#[utoipa::path(get, path = "/chat/rooms/{room_id}/online-status/", tag = "C: chat", params(("room_id" = u64, Path)),
    responses((status = 200, body = [OnlineStatus]), (status = 401, body = CErrorBody), (status = 403, body = CErrorBody),
        (status = 404, body = CErrorBody)),
    security(("bearer" = [])))]
pub async fn online_status(
    state: web::Data<AppState>,
    me: Caller<CError>,
    path: web::Path<String>,
) -> Result<HttpResponse, CError> {
    let (_, addr) = room_of(&state, &path)?;
    let r = addr.send(GetRoom { user: me.user_id }).await??;
    let names = names_in(&state, [&r]).await?;
    let now = crate::time::now_ms();
    let out: Vec<OnlineStatus> = r
        .participants
        .iter()
        .map(|p| {
            let (online, last) = state.registry.hub().presence(p.user);
            let last_seen = if online { Some(now) } else { (last > 0).then_some(last) };
            OnlineStatus {
                user_id: p.user,
                user_name: display_name(&names, p.user, &p.name),
                is_online: online,
                last_seen: last_seen.map(rfc3339),
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(out))
}
