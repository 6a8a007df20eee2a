//! Contract T's message images: links signed to work until `expiresAt` (a day after they
//! are handed out, see [`IMAGE_LINK_TTL`](crate::http::signed::IMAGE_LINK_TTL)), and
//! serving an image by such a link, without a token.

use super::{path_positive, room_actor};
use crate::actors::room::{FindFile, StoredMessage};
use crate::http::error::{TEnvelope, TError};
use crate::http::AppState;
use crate::time::{now_ms, rfc3339};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = t::ImageLink)]
#[serde(rename_all = "camelCase")]
pub struct ImageLink {
    pub url: String,
    pub expires_at: String,
}

pub(super) fn image_links(state: &AppState, m: &StoredMessage) -> Option<Vec<ImageLink>> {
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

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LinkQuery {
    /// When the link stops working (milliseconds since the epoch); without it, 403.
    #[param(nullable = false)]
    pub expires: Option<u64>,
    /// The link's signature; without it, 403.
    #[param(nullable = false)]
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
    let id = path_positive(&path.0, "roomId")?;
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
