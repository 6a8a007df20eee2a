//! Contract T's messages: a room's history page by page, and sending text with up to 3
//! images (multipart, or JSON for text only). A message is shown as [`TMessage`]: the
//! `ReceiveMessage` payload, plus `type`.

use super::images::{image_links, ImageLink};
use super::{ok, path_positive, positive, trade_room};
use crate::actors::room::{ListMessages, PostMessage, StoredFile, StoredMessage};
use crate::http::chat::files::{store_upload, Upload};
use crate::http::error::{TData, TEnvelope, TError};
use crate::http::{author, AppState, Caller};
use crate::time::rfc3339;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

/// Most images one message carries.
const MAX_IMAGES: usize = 3;

/// A message as contract T shows it (the `ReceiveMessage` payload, plus `type`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = t::TMessage)]
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
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// 1 (the newest) and up.
    #[param(value_type = Option<u64>, minimum = 1, maximum = 9007199254740991_u64, nullable = false)]
    pub page: Option<String>,
    /// 1..=100, default 30.
    #[param(value_type = Option<u64>, minimum = 1, maximum = 100, nullable = false)]
    pub size: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = t::History)]
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
    responses((status = 200, body = TData<History>), (status = 400, body = TEnvelope), (status = 401, body = TEnvelope),
        (status = 403, body = TEnvelope), (status = 404, body = TEnvelope)),
    security(("bearer" = [])))]
pub async fn history(
    state: web::Data<AppState>,
    me: Caller<TError>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, TError> {
    let id = path_positive(&path, "roomId")?;
    let q =
        web::Query::<HistoryQuery>::from_query(req.query_string()).map_err(|e| TError::bad_request(e.to_string()))?;
    let page = match &q.page {
        Some(p) => {
            crate::http::schema::path_id(p).ok_or_else(|| TError::bad_request("page는 양의 정수여야 합니다."))? as usize
        }
        None => 1,
    };
    let size = match &q.size {
        Some(s) => crate::http::schema::uint(s).filter(|n| (1..=100).contains(n)).map(|n| n as usize),
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

/// The multipart body of `POST /api/chat/messages` (a documentation type: the handler
/// reads the parts itself).
#[allow(dead_code)]
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = t::SendForm)]
#[serde(rename_all = "camelCase")]
pub struct SendForm {
    /// The room's id, in digits.
    #[schema(pattern = "^0*[1-9][0-9]{0,14}$")]
    pub room_id: String,
    /// Up to 5000 characters.
    #[schema(max_length = 5000)]
    pub message: Option<String>,
    /// Up to 3 images (PNG, JPEG, GIF or WebP), each at most `BOXOFFICE_CHAT_MAX_FILE_BYTES`.
    #[schema(value_type = Option<Vec<String>>, format = Binary, max_items = 3)]
    pub images: Option<Vec<Vec<u8>>>,
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
    request_body(content = SendForm, content_type = "multipart/form-data", description = "roomId (required), message, images (0 to 3 files); a message or an image is required"),
    responses((status = 200, body = TData<TMessage>), (status = 400, description = "No text and no image, more than 3 images, not an image, too large, or `채팅방이 종료되었습니다.`", body = TEnvelope),
        (status = 401, body = TEnvelope), (status = 403, body = TEnvelope), (status = 404, body = TEnvelope),
        (status = 415, description = "Not multipart/form-data", body = TEnvelope)),
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
    // The contract's body is multipart only; anything else is 415 (a JSON body used to be
    // taken too, undocumented).
    if !multipart {
        return Err(TError::new(
            actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "multipart/form-data로 보내야 합니다 (roomId, message, images).",
        ));
    }
    let (room_id, text, uploads) = read_send_form(&req, payload, state.settings.chat_max_file_bytes).await?;
    let room_id = room_id.ok_or_else(|| TError::bad_request("roomId는 필수입니다."))?;
    let id = positive(&Some(json!(room_id)), "roomId")?;
    let text = text.filter(|t| crate::http::schema::has_text(t));
    if text.is_none() && uploads.is_empty() {
        return Err(TError::bad_request("메시지 또는 이미지 중 하나는 필수입니다."));
    }
    if text.as_ref().is_some_and(|t| t.chars().count() > 5000) {
        return Err(TError::bad_request("메시지는 5000자 이하여야 합니다."));
    }
    let (room, snapshot) = trade_room(&state, id, me.user_id).await?;
    if snapshot.closed_at.is_some() {
        return Err(TError::bad_request(crate::http::ROOM_CLOSED));
    }
    let mut images: Vec<StoredFile> = Vec::new();
    for up in uploads {
        let f = store_upload(&state, id, "image", up).await.map_err(|e| TError::bad_request(e.detail))?;
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
        client_msg_id: None,
    };
    let m = room.send(msg).await??.message;
    let mut data = serde_json::to_value(t_message(&state, &m)).unwrap_or_default();
    data["success"] = json!(true);
    Ok(ok(StatusCode::OK, "메시지 전송 성공", data))
}
