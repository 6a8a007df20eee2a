//! Contract C's files: reading a multipart upload, checking it (an image by its magic
//! number, no executables) and storing it beside the room, and serving a message's file
//! to the room's participants. Contract T stores its message images through
//! [`store_upload`] too.

use super::room_of;
use crate::actors::room::{FindFile, StoredFile};
use crate::http::error::{CError, CErrorBody};
use crate::http::AppState;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use std::collections::HashMap;

/// An uploaded file part.
pub struct Upload {
    pub name: String,
    pub declared_type: Option<String>,
    pub bytes: Vec<u8>,
}

/// Read a multipart body: its text fields and at most one `file`.
pub(super) async fn read_multipart(
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
