//! Contract C's messages: a room's messages page by page (or after an id), sending JSON
//! text or a multipart file, replying, editing and deleting your own, and marking the
//! room read. A message is shown as [`MessageView`].

use super::files::{read_multipart, store_upload};
use super::{int, paging, query, room_of};
use crate::actors::room::{DeleteMessage, EditMessage, GetRoom, ListMessages, MarkRead, PostMessage, StoredMessage};
use crate::http::error::{CError, CErrorBody};
use crate::http::{author, AppState, Caller, JsonBody};
use crate::time::rfc3339;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Longest message text.
const MAX_CONTENT: usize = 5000;
const MESSAGE_TYPES: [&str; 5] = ["text", "image", "file", "voice", "location"];

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = c::MessageView)]
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
#[schema(as = c::MessageList)]
pub struct MessageList {
    pub messages: Vec<MessageView>,
    pub total_count: usize,
    pub has_more: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1 (the newest) and up.
    #[param(value_type = Option<u64>, minimum = 1, maximum = 9007199254740991_u64, nullable = false)]
    pub page: Option<String>,
    /// 1..=100, default 50.
    #[param(value_type = Option<u64>, minimum = 1, maximum = 100, nullable = false)]
    pub size: Option<String>,
    /// Instead of pages: the messages after this id, ascending.
    #[param(value_type = Option<u64>, minimum = 0, maximum = 9007199254740991_u64, nullable = false)]
    pub since: Option<String>,
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
        Some(s) => Some(crate::http::schema::uint(s).ok_or_else(|| CError::invalid("since must be a message id"))?),
        None => None,
    };
    let p = addr.send(ListMessages { user: me.user_id, page, size, since }).await??;
    let messages = p.messages.iter().map(MessageView::from).collect();
    Ok(HttpResponse::Ok().json(MessageList { messages, total_count: p.total, has_more: p.has_more }))
}

/// What a message carries (a documentation type: the handlers check the string).
#[allow(dead_code)]
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = c::MessageType)]
#[serde(rename_all = "lowercase")]
pub enum MessageType {
    Text,
    Image,
    File,
    Voice,
    Location,
}

/// A message with a file, as `multipart/form-data` (a documentation type: the handler
/// reads the parts itself).
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
#[schema(as = c::SendMultipart)]
pub struct SendMultipart {
    /// The file, at most `BOXOFFICE_CHAT_MAX_FILE_BYTES` (10 MiB by default; larger is 400).
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
    /// An optional caption.
    #[schema(max_length = 5000)]
    pub message_content: Option<String>,
    /// `file` by default.
    pub message_type: Option<MessageType>,
    /// A message of this room.
    #[schema(minimum = 1, maximum = 9007199254740991_u64)]
    pub reply_to_message_id: Option<u64>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = c::SendRequest)]
pub struct SendRequest {
    /// Not only white space.
    #[schema(pattern = "\\S", max_length = 5000, nullable = false, required = true)]
    pub message_content: Option<String>,
    /// `text` (default), `image`, `file`, `voice` or `location`.
    #[schema(value_type = Option<MessageType>)]
    pub message_type: Option<String>,
    /// A message of this room (another id is 400).
    #[schema(maximum = 9007199254740991_u64)]
    pub reply_to_message_id: Option<u64>,
}

fn check_content(content: &Option<String>, kind: &str, has_file: bool) -> Result<(), CError> {
    if !MESSAGE_TYPES.contains(&kind) {
        return Err(CError::invalid("message_type must be one of text, image, file, voice, location"));
    }
    let text = content.as_deref().unwrap_or("");
    if text.chars().count() > MAX_CONTENT {
        return Err(CError::invalid(format!("message_content must be at most {MAX_CONTENT} characters")));
    }
    if !has_file && !crate::http::schema::has_text(text) {
        return Err(CError::invalid("message_content is required"));
    }
    Ok(())
}

/// Send a message: JSON text, or multipart with a `file`.
#[utoipa::path(post, path = "/chat/rooms/{room_id}/messages/", tag = "C: chat", params(("room_id" = u64, Path)),
    request_body(description = "JSON text, or multipart/form-data with a file",
        content((SendRequest = "application/json"), (SendMultipart = "multipart/form-data"))),
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
        PostMessage {
            from: author(&me),
            content,
            kind,
            reply_to,
            file: Some(file),
            images: Vec::new(),
            system: false,
            client_msg_id: None,
        }
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
            client_msg_id: None,
        }
    };
    let m = addr.send(msg).await??.message;
    Ok(HttpResponse::Created().json(MessageView::from(&m)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = c::EditRequest)]
pub struct EditRequest {
    /// Not only white space.
    #[schema(pattern = "\\S", max_length = 5000, nullable = false, required = true)]
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
    let content = body.0.message_content.filter(|c| crate::http::schema::has_text(c));
    let content = content.ok_or_else(|| CError::invalid("message_content is required"))?;
    if content.chars().count() > MAX_CONTENT {
        return Err(CError::invalid(format!("message_content must be at most {MAX_CONTENT} characters")));
    }
    let m = addr.send(EditMessage { user: me.user_id, message, content }).await??;
    Ok(HttpResponse::Ok().json(MessageView::from(&m)))
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = c::Deleted)]
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
#[schema(as = c::ReadReceipt)]
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
