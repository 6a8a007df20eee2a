//! Contract Q: the waiting queue (`/waiting/issue`, `/waiting/check`), and the gate that
//! seat, reservation, wallet and payment endpoints pass through.

use crate::actors::waiting_queue::{Issue, QueueError, TokenView};
use crate::auth::parse_user_id;
use crate::http::error::{QError, QErrorBody};
use crate::http::{AppState, Caller, JsonBody, Realtime};
use crate::time::{now_ms, rfc3339};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/waiting/issue", web::post().to(issue)).route("/waiting/check", web::get().to(check));
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = q::IssueRequest)]
#[serde(rename_all = "camelCase")]
pub struct IssueRequest {
    /// The caller's own user id (number or numeric string).
    #[schema(schema_with = crate::http::schema::user_id, required = true, example = 1)]
    pub user_id: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = q::QueueTokenResponse)]
#[serde(rename_all = "camelCase")]
pub struct QueueTokenResponse {
    /// Send it as `X-Queue-Token`.
    pub token: String,
    pub user_id: u64,
    /// 0 once active; 1 for the first in line.
    pub position: u64,
    pub active: bool,
    /// `WAITING` or `ACTIVE`.
    pub status: &'static str,
    /// When the token stops being valid (RFC 3339).
    pub expires_at: String,
    /// Seconds until admission, from the admission rate.
    pub estimated_wait_seconds: u64,
}

impl From<TokenView> for QueueTokenResponse {
    fn from(v: TokenView) -> Self {
        QueueTokenResponse {
            token: v.token,
            user_id: v.user,
            position: v.position,
            active: v.active,
            status: if v.active { "ACTIVE" } else { "WAITING" },
            expires_at: rfc3339(v.expires_at),
            estimated_wait_seconds: v.estimated_wait_secs,
        }
    }
}

/// Take a queue token (or get back your live one).
#[utoipa::path(post, path = "/waiting/issue", tag = "Q: waiting queue", request_body = IssueRequest,
    responses(
        (status = 200, description = "The token; `X-Queue-Position` carries the position", body = QueueTokenResponse),
        (status = 400, description = "Missing or invalid userId", body = QErrorBody),
        (status = 401, description = "No valid JWT", body = QErrorBody),
        (status = 403, description = "userId is not the token's subject", body = QErrorBody)),
    security(("bearer" = [])))]
pub async fn issue(
    state: web::Data<AppState>,
    me: Caller<QError>,
    body: JsonBody<IssueRequest, QError>,
) -> Result<HttpResponse, QError> {
    let user = body
        .0
        .user_id
        .as_ref()
        .and_then(parse_user_id)
        .ok_or_else(|| QError::bad_request("INVALID_USER_ID", "userId must be a positive integer"))?;
    if user != me.user_id {
        return Err(QError::forbidden("userId must be the authenticated user"));
    }
    let view = state.registry.queue().send(Issue { user }).await?.map_err(storage)?;
    Ok(HttpResponse::Ok()
        .insert_header(("X-Queue-Position", view.position.to_string()))
        .json(QueueTokenResponse::from(view)))
}

/// Where a queue token stands.
#[utoipa::path(get, path = "/waiting/check", tag = "Q: waiting queue",
    params(("X-Queue-Token" = String, Header, description = "The queue token")),
    responses(
        (status = 200, description = "Position, active flag and estimated wait", body = QueueTokenResponse),
        (status = 401, description = "No valid JWT, or the queue token is unknown or expired", body = QErrorBody),
        (status = 403, description = "The queue token is another user's", body = QErrorBody),
        (status = 503, description = "An edge that has lost the queue's state for now", body = QErrorBody)),
    security(("bearer" = [])))]
pub async fn check(realtime: web::Data<Realtime>, req: HttpRequest) -> Result<HttpResponse, QError> {
    let me = crate::http::identify_with_query(&req).map_err(QError::from)?;
    let token = queue_token(&req).ok_or_else(|| {
        QError::new(StatusCode::UNAUTHORIZED, "QUEUE_TOKEN_INVALID", "the X-Queue-Token header is required")
    })?;
    let view = realtime.queue.gate.check(&token, me.user_id, now_ms()).map_err(check_error)?;
    Ok(HttpResponse::Ok()
        .insert_header(("X-Queue-Position", view.position.to_string()))
        .json(QueueTokenResponse::from(view)))
}

/// A check's refusal: 403 for another user's token, 503 on an edge that lost the queue's
/// state, 401 otherwise.
pub fn check_error(e: QueueError) -> QError {
    match e {
        QueueError::NotYours => QError::forbidden("this queue token belongs to another user"),
        QueueError::Unavailable => QError::from(e),
        other => QError::new(StatusCode::UNAUTHORIZED, "QUEUE_TOKEN_INVALID", other.to_string()),
    }
}

fn queue_token(req: &HttpRequest) -> Option<String> {
    let t = req.headers().get("x-queue-token")?.to_str().ok()?.trim();
    (!t.is_empty()).then(|| t.to_string())
}

fn storage(e: QueueError) -> QError {
    QError::new(StatusCode::INTERNAL_SERVER_ERROR, "STORAGE_FAILURE", e.to_string())
}

/// The queue gate: the request's `X-Queue-Token` must be an active token of `user`.
/// Returns the token (a payment retires it).
pub fn require_active(state: &AppState, req: &HttpRequest, user: u64) -> Result<String, QError> {
    let token = queue_token(req).ok_or_else(|| QError::from(QueueError::Unknown))?;
    state.registry.queue_gate().require_active(&token, user, now_ms())?;
    Ok(token)
}
