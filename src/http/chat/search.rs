//! Contract C's search: a room's messages that contain a text (case-insensitive), newest
//! first, each with the matched text as `highlight`.

use super::{paging, query, room_of};
use crate::actors::room::Search;
use crate::http::error::{CError, CErrorBody};
use crate::http::{AppState, Caller};
use crate::time::rfc3339;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Required: the text to find (case-insensitive).
    #[param(required = true, nullable = false, pattern = "\\S", max_length = 200)]
    pub query: Option<String>,
    /// 1 (the newest hits) and up.
    #[param(value_type = Option<u64>, minimum = 1, maximum = 9007199254740991_u64, nullable = false)]
    pub page: Option<String>,
    /// 1..=100, default 20.
    #[param(value_type = Option<u64>, minimum = 1, maximum = 100, nullable = false)]
    pub size: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = c::SearchHit)]
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
#[schema(as = c::SearchResult)]
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
    let text = q.query.filter(|s| crate::http::schema::has_text(s));
    let text = text.ok_or_else(|| CError::invalid("query is required"))?;
    if !crate::http::schema::length_within(&text, 1, 200) {
        return Err(CError::invalid("query must be at most 200 characters"));
    }
    let text = crate::http::schema::trimmed(&text).to_string();
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
