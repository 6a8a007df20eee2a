//! Contract C over REST: rooms, messages (JSON or multipart with a file), read state,
//! search, settings, online status, and the files messages carry. Every path works with
//! and without its trailing slash. Errors are `{"detail": "..."}` (see [`CError`]).

pub mod ws;

use crate::actors::directory::CreateRoom;
use crate::actors::directory::Profiles;
use crate::actors::room::{
    Author, DeleteMessage, EditMessage, FindFile, GetRoom, GetSettings, ListMessages, MarkRead, PostMessage, Room,
    RoomKind, RoomSettings, RoomSnapshot, RoomSummary, Search, SettingsPatch, StoredFile, StoredMessage, Summary,
    UpdateSettings,
};
use crate::auth::Identity;
use crate::http::error::{CError, CErrorBody};
use crate::http::{profiles_of, AppState, Caller, JsonBody};
use crate::time::rfc3339;
use actix::Addr;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use utoipa::{IntoParams, ToSchema};

/// Longest message text.
const MAX_CONTENT: usize = 5000;
const MESSAGE_TYPES: [&str; 5] = ["text", "image", "file", "voice", "location"];

pub fn routes(cfg: &mut web::ServiceConfig) {
    // FastAPI answers both spellings; so do we.
    for slash in ["/", ""] {
        cfg.route(&format!("/chat/rooms{slash}"), web::get().to(list_rooms))
            .route(&format!("/chat/rooms{slash}"), web::post().to(create_room))
            .route(&format!("/chat/rooms/{{room_id}}{slash}"), web::get().to(get_room))
            .route(&format!("/chat/rooms/{{room_id}}/participants{slash}"), web::get().to(participants))
            .route(&format!("/chat/rooms/{{room_id}}/messages{slash}"), web::get().to(list_messages))
            .route(&format!("/chat/rooms/{{room_id}}/messages{slash}"), web::post().to(post_message))
            .route(&format!("/chat/rooms/{{room_id}}/messages/{{message_id}}{slash}"), web::put().to(edit_message))
            .route(&format!("/chat/rooms/{{room_id}}/messages/{{message_id}}{slash}"), web::delete().to(delete_message))
            .route(&format!("/chat/rooms/{{room_id}}/read{slash}"), web::post().to(mark_read))
            .route(&format!("/chat/rooms/{{room_id}}/search{slash}"), web::get().to(search))
            .route(&format!("/chat/rooms/{{room_id}}/settings{slash}"), web::get().to(get_settings))
            .route(&format!("/chat/rooms/{{room_id}}/settings{slash}"), web::put().to(update_settings))
            .route(&format!("/chat/rooms/{{room_id}}/online-status{slash}"), web::get().to(online_status));
    }
    cfg.route("/chat/files/{room_id}/{name}", web::get().to(file));
    ws::routes(cfg);
}

pub fn author(id: &Identity) -> Author {
    Author { id: id.user_id, name: id.name.clone(), picture: id.picture.clone() }
}

/// A positive integer path or query value, or 422 as FastAPI answers.
fn int(raw: &str, what: &str) -> Result<u64, CError> {
    raw.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| CError::invalid(format!("{what} must be a positive integer")))
}

/// The room's actor, or 404.
pub fn room_of(state: &AppState, raw: &str) -> Result<(u64, Addr<Room>), CError> {
    let id = int(raw, "room_id")?;
    let addr = state.registry.room(id)?.ok_or_else(|| CError::not_found("Chat room not found."))?;
    Ok((id, addr))
}

#[derive(Debug, Serialize, ToSchema)]
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
/// name the room has for them.
fn display_name(names: &Profiles, user: u64, stored: &str) -> String {
    match names.get(&user) {
        Some((name, _)) => name.clone(),
        None => stored.to_string(),
    }
}

/// The room's name as `user` sees it: a direct room without one is named after the other.
fn room_name(names: &Profiles, r: &RoomSnapshot, user: u64) -> String {
    match (&r.name, r.participants.iter().find(|p| p.user != user)) {
        (Some(n), _) => n.clone(),
        (None, Some(other)) => display_name(names, other.user, &other.name),
        (None, None) => r.name_for(user),
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
pub struct RoomList {
    pub rooms: Vec<RoomSummaryView>,
    pub total_count: usize,
}

/// The caller's rooms, most recently active first.
#[utoipa::path(get, path = "/chat/rooms/", tag = "C: chat",
    responses((status = 200, body = RoomList), (status = 401, body = CErrorBody)), security(("bearer" = [])))]
pub async fn list_rooms(state: web::Data<AppState>, me: Caller<CError>) -> Result<HttpResponse, CError> {
    let mut summaries = Vec::new();
    for id in state.registry.rooms_of(me.user_id)? {
        let Some(addr) = state.registry.room(id)? else { continue };
        if let Ok(s) = addr.send(Summary { user: me.user_id }).await? {
            // A closed (left) trade room is out of every room list.
            if s.room.closed_at.is_none() {
                summaries.push(s);
            }
        }
    }
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

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateRoomRequest {
    pub room_name: Option<String>,
    /// `direct` (exactly one other user) or `group`.
    pub room_type: Option<String>,
    pub room_description: Option<String>,
    #[schema(value_type = Vec<u64>)]
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
            .filter(|n| *n > 0)
            .ok_or_else(|| CError::invalid("participant_ids must be positive integers"))?;
        if id != me.user_id && !others.contains(&id) {
            others.push(id);
        }
    }
    let name = b.room_name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
    if name.as_ref().is_some_and(|n| n.chars().count() > 100) {
        return Err(CError::invalid("room_name must be at most 100 characters"));
    }
    if b.room_description.as_ref().is_some_and(|d| d.chars().count() > 1000) {
        return Err(CError::invalid("room_description must be at most 1000 characters"));
    }
    match kind {
        RoomKind::Direct if others.len() != 1 => {
            return Err(CError::invalid("a direct room has exactly one other participant"))
        }
        RoomKind::Group if name.is_none() => return Err(CError::invalid("a group room needs a room_name")),
        RoomKind::Group if others.is_empty() => {
            return Err(CError::invalid("a group room needs at least one other participant"))
        }
        RoomKind::Group if others.len() as u32 + 1 > state.settings.chat_max_participants => {
            let max = state.settings.chat_max_participants;
            return Err(CError::invalid(format!("a room has at most {max} participants")));
        }
        _ => {}
    }
    let msg = CreateRoom { creator: author(&me), kind, name, description: b.room_description, others };
    let (id, created) = state.registry.directory().send(msg).await??;
    let (_, addr) = room_of(&state, &id.to_string())?;
    let summary = addr.send(Summary { user: me.user_id }).await??;
    let names = names_in(&state, [&summary.room]).await?;
    let view = RoomSummaryView::new(&names, &summary, me.user_id);
    Ok(if created { HttpResponse::Created().json(view) } else { HttpResponse::Ok().json(view) })
}

#[derive(Debug, Serialize, ToSchema)]
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
pub struct MessageView {
    pub message_id: u64,
    pub room_id: u64,
    pub sender_id: u64,
    pub sender_name: String,
    pub message_content: String,
    pub message_type: String,
    pub file_url: Option<String>,
    pub file_name: Option<String>,
    pub file_size: Option<u64>,
    pub reply_to_message_id: Option<u64>,
    pub is_edited: bool,
    pub is_deleted: bool,
    pub edited_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&StoredMessage> for MessageView {
    fn from(m: &StoredMessage) -> Self {
        let file = m.file.as_ref();
        MessageView {
            message_id: m.id,
            room_id: m.room,
            sender_id: m.sender,
            sender_name: m.sender_name.clone(),
            message_content: m.content.clone().unwrap_or_default(),
            message_type: m.kind.clone(),
            file_url: file.map(|f| StoredMessage::file_url(m.room, &f.stored)),
            file_name: file.map(|f| f.name.clone()),
            file_size: file.map(|f| f.size),
            reply_to_message_id: m.reply_to,
            is_edited: m.edited_at.is_some(),
            is_deleted: m.deleted,
            edited_at: m.edited_at.map(rfc3339),
            created_at: rfc3339(m.created_at),
            updated_at: rfc3339(m.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageList {
    pub messages: Vec<MessageView>,
    pub total_count: usize,
    pub has_more: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct PageQuery {
    /// 1 (the newest) and up.
    pub page: Option<String>,
    /// 1..=100.
    pub size: Option<String>,
    /// Instead of pages: the messages after this id, ascending.
    pub since: Option<String>,
}

fn paging(page: &Option<String>, size: &Option<String>, default: usize) -> Result<(usize, usize), CError> {
    let page = match page {
        Some(p) => int(p, "page")? as usize,
        None => 1,
    };
    let size = match size {
        Some(s) => s.trim().parse::<usize>().ok().filter(|n| (1..=100).contains(n)),
        None => Some(default),
    };
    Ok((page, size.ok_or_else(|| CError::invalid("size must be an integer from 1 to 100"))?))
}

fn query<T: serde::de::DeserializeOwned>(req: &HttpRequest) -> Result<T, CError> {
    web::Query::<T>::from_query(req.query_string()).map(|q| q.into_inner()).map_err(|e| CError::invalid(e.to_string()))
}

/// A page of messages: page 1 is the newest `size`, ascending within the page.
#[utoipa::path(get, path = "/chat/rooms/{room_id}/messages/", tag = "C: chat", params(("room_id" = u64, Path), PageQuery),
    responses((status = 200, body = MessageList), (status = 401, body = CErrorBody), (status = 403, body = CErrorBody),
        (status = 404, body = CErrorBody), (status = 422, body = CErrorBody)),
    security(("bearer" = [])))]
pub async fn list_messages(
    state: web::Data<AppState>,
    me: Caller<CError>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, CError> {
    let (_, addr) = room_of(&state, &path)?;
    let q: PageQuery = query(&req)?;
    let (page, size) = paging(&q.page, &q.size, 50)?;
    let since = match &q.since {
        Some(s) => Some(s.trim().parse::<u64>().map_err(|_| CError::invalid("since must be a message id"))?),
        None => None,
    };
    let p = addr.send(ListMessages { user: me.user_id, page, size, since }).await??;
    let messages = p.messages.iter().map(MessageView::from).collect();
    Ok(HttpResponse::Ok().json(MessageList { messages, total_count: p.total, has_more: p.has_more }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct SendRequest {
    pub message_content: Option<String>,
    /// `text` (default), `image`, `file`, `voice` or `location`.
    pub message_type: Option<String>,
    pub reply_to_message_id: Option<u64>,
}

/// An uploaded file part.
pub struct Upload {
    pub name: String,
    pub declared_type: Option<String>,
    pub bytes: Vec<u8>,
}

/// Read a multipart body: its text fields and at most one `file`.
async fn read_multipart(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<(HashMap<String, String>, Option<Upload>), CError> {
    let mut form = actix_multipart::Multipart::new(req.headers(), payload);
    let mut fields = HashMap::new();
    let mut upload = None;
    while let Some(field) = form.next().await {
        let mut field = field.map_err(|e| CError::bad_request(format!("invalid multipart body: {e}")))?;
        let name = field.name().unwrap_or_default().to_string();
        let file_name = field.content_disposition().and_then(|d| d.get_filename()).map(str::to_string);
        let declared_type = field.content_type().map(|m| m.essence_str().to_string());
        let cap = if name == "file" { limit } else { 64 * 1024 };
        let mut bytes = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(|e| CError::bad_request(format!("invalid multipart body: {e}")))?;
            if bytes.len() + chunk.len() > cap {
                return Err(CError::bad_request(format!("{name} is larger than {cap} bytes")));
            }
            bytes.extend_from_slice(&chunk);
        }
        if name == "file" {
            let name = file_name.unwrap_or_else(|| "file".into());
            upload = Some(Upload { name, declared_type, bytes });
        } else {
            let text = String::from_utf8(bytes).map_err(|_| CError::invalid(format!("{name} must be UTF-8 text")))?;
            fields.insert(name, text);
        }
    }
    Ok((fields, upload))
}

/// The image type of `bytes` by its magic number.
fn image_type(bytes: &[u8]) -> Option<(&'static str, &'static str)> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(("image/png", "png"))
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(("image/jpeg", "jpg"))
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some(("image/gif", "gif"))
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some(("image/webp", "webp"))
    } else {
        None
    }
}

/// Executables are not accepted as chat files.
fn is_executable(bytes: &[u8]) -> bool {
    const MAGIC: [&[u8]; 6] = [
        b"MZ",
        b"\x7fELF",
        &[0xFE, 0xED, 0xFA, 0xCE],
        &[0xFE, 0xED, 0xFA, 0xCF],
        &[0xCF, 0xFA, 0xED, 0xFE],
        &[0xCE, 0xFA, 0xED, 0xFE],
    ];
    MAGIC.iter().any(|m| bytes.starts_with(m))
}

/// Check an upload and store it; returns what the message records.
pub async fn store_upload(state: &AppState, room: u64, kind: &str, up: Upload) -> Result<StoredFile, CError> {
    if up.bytes.is_empty() {
        return Err(CError::bad_request("the file is empty"));
    }
    let image = image_type(&up.bytes);
    let (content_type, ext) = match (kind, image) {
        ("image", Some(t)) => t,
        ("image", None) => return Err(CError::bad_request("an image message needs a PNG, JPEG, GIF or WebP image")),
        _ if is_executable(&up.bytes) => return Err(CError::bad_request("executable files are not accepted")),
        (_, Some(t)) => t,
        _ => ("application/octet-stream", "bin"),
    };
    let content_type = match (image, up.declared_type.as_deref()) {
        (None, Some(t)) if !t.is_empty() && t.is_ascii() && !t.contains(['\r', '\n']) => t.to_string(),
        _ => content_type.to_string(),
    };
    let files = state.registry.files().clone();
    let size = up.bytes.len() as u64;
    let ext = ext.to_string();
    let stored = web::block(move || files.save(room, &ext, &up.bytes))
        .await
        .map_err(|e| CError::bad_request(format!("could not store the file: {e}")))?
        .map_err(|e| {
            CError::new(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR, format!("could not store the file: {e}"))
        })?;
    let name: String = up.name.chars().filter(|c| !c.is_control()).take(255).collect();
    Ok(StoredFile { stored, name, size, content_type })
}

fn check_content(content: &Option<String>, kind: &str, has_file: bool) -> Result<(), CError> {
    if !MESSAGE_TYPES.contains(&kind) {
        return Err(CError::invalid("message_type must be one of text, image, file, voice, location"));
    }
    let text = content.as_deref().unwrap_or("");
    if text.chars().count() > MAX_CONTENT {
        return Err(CError::invalid(format!("message_content must be at most {MAX_CONTENT} characters")));
    }
    if !has_file && text.trim().is_empty() {
        return Err(CError::invalid("message_content is required"));
    }
    Ok(())
}

/// Send a message: JSON text, or multipart with a `file`.
#[utoipa::path(post, path = "/chat/rooms/{room_id}/messages/", tag = "C: chat", params(("room_id" = u64, Path)),
    request_body(content = SendRequest, description = "JSON, or multipart/form-data with message_content, message_type, reply_to_message_id and file"),
    responses((status = 201, body = MessageView),
        (status = 400, description = "A file too large, of the wrong type, or a reply to a message not in the room", body = CErrorBody),
        (status = 401, body = CErrorBody), (status = 403, body = CErrorBody), (status = 404, body = CErrorBody),
        (status = 422, description = "Missing or invalid fields", body = CErrorBody)),
    security(("bearer" = [])))]
pub async fn post_message(
    state: web::Data<AppState>,
    me: Caller<CError>,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, CError> {
    let (id, addr) = room_of(&state, &path)?;
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    let msg = if multipart {
        // Refuse strangers before storing anything they send.
        addr.send(GetRoom { user: me.user_id }).await??;
        let (fields, upload) = read_multipart(&req, payload, state.settings.chat_max_file_bytes).await?;
        let upload = upload.ok_or_else(|| CError::invalid("a multipart message needs a file"))?;
        let kind = fields.get("message_type").map(|s| s.trim().to_string()).unwrap_or_else(|| "file".into());
        let content = fields.get("message_content").cloned().filter(|c| !c.is_empty());
        check_content(&content, &kind, true)?;
        let reply_to = match fields.get("reply_to_message_id").map(|s| s.trim()).filter(|s| !s.is_empty()) {
            Some(r) => Some(int(r, "reply_to_message_id")?),
            None => None,
        };
        let file = store_upload(&state, id, &kind, upload).await?;
        PostMessage { from: author(&me), content, kind, reply_to, file: Some(file), images: Vec::new(), system: false }
    } else {
        let bytes =
            payload.to_bytes_limited(1 << 20).await.map_err(|_| CError::bad_request("the body is too large"))?;
        let bytes = bytes.map_err(|e| CError::bad_request(format!("could not read the body: {e}")))?;
        let b: SendRequest =
            serde_json::from_slice(&bytes).map_err(|e| CError::invalid(format!("invalid JSON body: {e}")))?;
        let kind = b.message_type.unwrap_or_else(|| "text".into());
        check_content(&b.message_content, &kind, false)?;
        PostMessage {
            from: author(&me),
            content: b.message_content,
            kind,
            reply_to: b.reply_to_message_id,
            file: None,
            images: Vec::new(),
            system: false,
        }
    };
    let m = addr.send(msg).await??;
    Ok(HttpResponse::Created().json(MessageView::from(&m)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct EditRequest {
    pub message_content: Option<String>,
}

/// Edit your message's text.
#[utoipa::path(put, path = "/chat/rooms/{room_id}/messages/{message_id}/", tag = "C: chat",
    params(("room_id" = u64, Path), ("message_id" = u64, Path)), request_body = EditRequest,
    responses((status = 200, body = MessageView), (status = 401, body = CErrorBody), (status = 403, description = "Not a participant, or not the sender", body = CErrorBody),
        (status = 404, body = CErrorBody), (status = 422, body = CErrorBody)),
    security(("bearer" = [])))]
pub async fn edit_message(
    state: web::Data<AppState>,
    me: Caller<CError>,
    path: web::Path<(String, String)>,
    body: JsonBody<EditRequest, CError>,
) -> Result<HttpResponse, CError> {
    let (_, addr) = room_of(&state, &path.0)?;
    let message = int(&path.1, "message_id")?;
    let content = body.0.message_content.filter(|c| !c.trim().is_empty());
    let content = content.ok_or_else(|| CError::invalid("message_content is required"))?;
    if content.chars().count() > MAX_CONTENT {
        return Err(CError::invalid(format!("message_content must be at most {MAX_CONTENT} characters")));
    }
    let m = addr.send(EditMessage { user: me.user_id, message, content }).await??;
    Ok(HttpResponse::Ok().json(MessageView::from(&m)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    #[schema(example = "Message deleted")]
    pub message: &'static str,
    pub message_id: u64,
}

/// Delete your message; it keeps its place, emptied, with `is_deleted`.
#[utoipa::path(delete, path = "/chat/rooms/{room_id}/messages/{message_id}/", tag = "C: chat",
    params(("room_id" = u64, Path), ("message_id" = u64, Path)),
    responses((status = 200, body = Deleted), (status = 401, body = CErrorBody), (status = 403, body = CErrorBody),
        (status = 404, body = CErrorBody), (status = 422, body = CErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_message(
    state: web::Data<AppState>,
    me: Caller<CError>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, CError> {
    let (_, addr) = room_of(&state, &path.0)?;
    let message = int(&path.1, "message_id")?;
    let m = addr.send(DeleteMessage { user: me.user_id, message }).await??;
    Ok(HttpResponse::Ok().json(Deleted { message: "Message deleted", message_id: m.id }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadReceipt {
    pub room_id: u64,
    pub user_id: u64,
    pub last_read_message_id: u64,
    pub last_read_at: String,
    pub unread_count: u64,
}

/// Mark the room read up to its newest message.
#[utoipa::path(post, path = "/chat/rooms/{room_id}/read/", tag = "C: chat", params(("room_id" = u64, Path)),
    responses((status = 200, body = ReadReceipt), (status = 401, body = CErrorBody), (status = 403, body = CErrorBody),
        (status = 404, body = CErrorBody)),
    security(("bearer" = [])))]
pub async fn mark_read(
    state: web::Data<AppState>,
    me: Caller<CError>,
    path: web::Path<String>,
) -> Result<HttpResponse, CError> {
    let (id, addr) = room_of(&state, &path)?;
    let (last, at) = addr.send(MarkRead { from: author(&me) }).await??;
    Ok(HttpResponse::Ok().json(ReadReceipt {
        room_id: id,
        user_id: me.user_id,
        last_read_message_id: last,
        last_read_at: rfc3339(at),
        unread_count: 0,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct SearchQuery {
    /// Required: the text to find (case-insensitive).
    pub query: Option<String>,
    pub page: Option<String>,
    /// 1..=100, default 20.
    pub size: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchHit {
    pub message_id: u64,
    pub sender_id: u64,
    pub sender_name: String,
    pub message_content: String,
    pub created_at: String,
    /// The matched text as it appears in the message.
    pub highlight: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResult {
    pub messages: Vec<SearchHit>,
    pub total_count: usize,
    pub has_more: bool,
}

/// Search a room's messages, newest first.
#[utoipa::path(get, path = "/chat/rooms/{room_id}/search/", tag = "C: chat", params(("room_id" = u64, Path), SearchQuery),
    responses((status = 200, body = SearchResult), (status = 401, body = CErrorBody), (status = 403, body = CErrorBody),
        (status = 404, body = CErrorBody), (status = 422, description = "No query", body = CErrorBody)),
    security(("bearer" = [])))]
pub async fn search(
    state: web::Data<AppState>,
    me: Caller<CError>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, CError> {
    let (_, addr) = room_of(&state, &path)?;
    let q: SearchQuery = query(&req)?;
    let text = q.query.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let text = text.ok_or_else(|| CError::invalid("query is required"))?;
    if text.chars().count() > 200 {
        return Err(CError::invalid("query must be at most 200 characters"));
    }
    let (page, size) = paging(&q.page, &q.size, 20)?;
    let (hits, total, has_more) = addr.send(Search { user: me.user_id, query: text, page, size }).await??;
    let messages = hits
        .into_iter()
        .map(|(m, highlight)| SearchHit {
            message_id: m.id,
            sender_id: m.sender,
            sender_name: m.sender_name,
            message_content: m.content.unwrap_or_default(),
            created_at: rfc3339(m.created_at),
            highlight,
        })
        .collect();
    Ok(HttpResponse::Ok().json(SearchResult { messages, total_count: total, has_more }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SettingsView {
    pub room_id: u64,
    pub notification_enabled: bool,
    pub message_retention_days: u32,
    pub auto_delete_enabled: bool,
    pub read_receipt_enabled: bool,
}

impl SettingsView {
    fn new(room: u64, s: RoomSettings) -> Self {
        SettingsView {
            room_id: room,
            notification_enabled: s.notification_enabled,
            message_retention_days: s.message_retention_days,
            auto_delete_enabled: s.auto_delete_enabled,
            read_receipt_enabled: s.read_receipt_enabled,
        }
    }
}

/// A room's settings.
#[utoipa::path(get, path = "/chat/rooms/{room_id}/settings/", tag = "C: chat", params(("room_id" = u64, Path)),
    responses((status = 200, body = SettingsView), (status = 401, body = CErrorBody), (status = 403, body = CErrorBody),
        (status = 404, body = CErrorBody)),
    security(("bearer" = [])))]
pub async fn get_settings(
    state: web::Data<AppState>,
    me: Caller<CError>,
    path: web::Path<String>,
) -> Result<HttpResponse, CError> {
    let (id, addr) = room_of(&state, &path)?;
    let s = addr.send(GetSettings { user: me.user_id }).await??;
    Ok(HttpResponse::Ok().json(SettingsView::new(id, s)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsRequest {
    pub notification_enabled: Option<bool>,
    /// 1..=3650.
    pub message_retention_days: Option<u32>,
    pub auto_delete_enabled: Option<bool>,
    pub read_receipt_enabled: Option<bool>,
    /// Ignored (the path names the room).
    pub room_id: Option<serde_json::Value>,
}

/// Change some of a room's settings (any participant).
#[utoipa::path(put, path = "/chat/rooms/{room_id}/settings/", tag = "C: chat", params(("room_id" = u64, Path)),
    request_body = SettingsRequest,
    responses((status = 200, body = SettingsView), (status = 401, body = CErrorBody), (status = 403, body = CErrorBody),
        (status = 404, body = CErrorBody), (status = 422, body = CErrorBody)),
    security(("bearer" = [])))]
pub async fn update_settings(
    state: web::Data<AppState>,
    me: Caller<CError>,
    path: web::Path<String>,
    body: JsonBody<SettingsRequest, CError>,
) -> Result<HttpResponse, CError> {
    let (id, addr) = room_of(&state, &path)?;
    let b = body.0;
    if b.message_retention_days.is_some_and(|d| !(1..=3650).contains(&d)) {
        return Err(CError::invalid("message_retention_days must be from 1 to 3650"));
    }
    let patch = SettingsPatch {
        notification_enabled: b.notification_enabled,
        message_retention_days: b.message_retention_days,
        auto_delete_enabled: b.auto_delete_enabled,
        read_receipt_enabled: b.read_receipt_enabled,
    };
    let s = addr.send(UpdateSettings { user: me.user_id, patch }).await??;
    Ok(HttpResponse::Ok().json(SettingsView::new(id, s)))
}

#[derive(Debug, Serialize, ToSchema)]
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

/// A file a message carries (participants only; the token may be in `?token=`).
#[utoipa::path(get, path = "/chat/files/{room_id}/{name}", tag = "C: chat",
    params(("room_id" = u64, Path), ("name" = String, Path)),
    responses((status = 200, description = "The file's bytes"), (status = 401, body = CErrorBody), (status = 403, body = CErrorBody),
        (status = 404, body = CErrorBody)),
    security(("bearer" = [])))]
pub async fn file(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, CError> {
    let me = crate::http::identify_with_query(&req).map_err(CError::from)?;
    let (id, addr) = room_of(&state, &path.0)?;
    let not_found = || CError::not_found("File not found.");
    let disk = state.registry.files().path(id, &path.1).ok_or_else(not_found)?;
    let f = addr.send(FindFile { user: Some(me.user_id), stored: path.1.clone() }).await?.map_err(|e| match e {
        crate::actors::room::ChatError::MessageNotFound => not_found(),
        other => other.into(),
    })?;
    let bytes = web::block(move || std::fs::read(disk)).await.map_err(|_| not_found())?.map_err(|_| not_found())?;
    let name: String = f.name.chars().filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\').collect();
    Ok(HttpResponse::Ok()
        .content_type(f.content_type)
        .insert_header((header::CONTENT_DISPOSITION, format!("inline; filename=\"{name}\"")))
        .insert_header((header::CACHE_CONTROL, "private, max-age=3600"))
        .body(bytes))
}
