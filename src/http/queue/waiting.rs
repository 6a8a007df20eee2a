//! Contract Q: the waiting queue (`/waiting/issue`, `/waiting/check`), and the gate that
//! seat, reservation, wallet and payment endpoints pass through.

use crate::actors::waiting_queue::{GetSettings, Issue, PutSettings, QueueError, QueueSettings, TokenView};
use crate::auth::parse_user_id;
use crate::http::error::{QError, QErrorBody};
use crate::http::{AppState, Caller, JsonBody, Realtime};
use crate::time::{now_ms, rfc3339};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/waiting/issue", web::post().to(issue))
        .route("/waiting/check", web::get().to(check))
        .route("/waiting/settings", web::get().to(get_settings))
        .route("/waiting/settings", web::put().to(put_settings));
}

/// The queue's settings: the opening, the admission policy, the pre-queue and its shuffle.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = q::QueueSettingsResponse)]
#[serde(rename_all = "camelCase")]
pub struct QueueSettingsResponse {
    /// When the queue opens (RFC 3339); `null`: it is open.
    pub opens_at: Option<String>,
    pub admit_rate: u32,
    pub max_active: u32,
    pub active_ttl_seconds: u64,
    /// Places taken in the pre-queue.
    pub pre_queue: u64,
    /// Once the queue opened: the shuffle's seed (64 hex digits), when it was drawn, and
    /// how many places it ordered. See docs/api.md for drawing the order again.
    pub shuffle: Option<ShuffleView>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = q::Shuffle)]
#[serde(rename_all = "camelCase")]
pub struct ShuffleView {
    pub seed: String,
    pub drawn_at: String,
    pub places: u64,
}

impl From<QueueSettings> for QueueSettingsResponse {
    fn from(s: QueueSettings) -> Self {
        QueueSettingsResponse {
            opens_at: s.opens_at.map(rfc3339),
            admit_rate: s.admit_rate,
            max_active: s.max_active,
            active_ttl_seconds: s.active_ttl.as_secs(),
            pre_queue: s.pre_queue,
            shuffle: s.shuffle.map(|(seed, at, places)| ShuffleView { seed, drawn_at: rfc3339(at), places }),
        }
    }
}

/// A change of the queue's settings: any field may be left out; `opensAt: null` clears
/// the opening.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = q::QueueSettingsRequest)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueueSettingsRequest {
    /// RFC 3339, in the future (400 otherwise); `null` clears it (a pre-queue then opens
    /// at once). 409 once a pre-queue was shuffled.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub opens_at: Option<Option<String>>,
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    pub admit_rate: Option<u32>,
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    pub max_active: Option<u32>,
    #[schema(minimum = 1, maximum = 31_536_000)]
    pub active_ttl_seconds: Option<u64>,
}

/// A field that may be absent (`None`) or `null` (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

fn admin(me: &Caller<QError>) -> Result<(), QError> {
    if me.admin {
        Ok(())
    } else {
        Err(QError::forbidden("the queue's settings are for admins"))
    }
}

/// The queue's settings (admins).
#[utoipa::path(get, path = "/waiting/settings", tag = "Q: waiting queue",
    responses((status = 200, body = QueueSettingsResponse), (status = 401, body = QErrorBody),
        (status = 403, description = "Not an admin", body = QErrorBody)),
    security(("bearer" = [])))]
pub async fn get_settings(state: web::Data<AppState>, me: Caller<QError>) -> Result<HttpResponse, QError> {
    admin(&me)?;
    let settings = state.registry.queue().send(GetSettings).await?;
    Ok(HttpResponse::Ok().json(QueueSettingsResponse::from(settings)))
}

/// Change the queue's settings (admins): a fair start with `opensAt`, and the admission
/// policy. Kept across restarts.
#[utoipa::path(put, path = "/waiting/settings", tag = "Q: waiting queue", request_body = QueueSettingsRequest,
    responses((status = 200, body = QueueSettingsResponse),
        (status = 400, description = "A malformed or past opensAt, or a value out of range", body = QErrorBody),
        (status = 409, description = "An opensAt once a pre-queue was shuffled (one opening per queue)", body = QErrorBody),
        (status = 401, body = QErrorBody), (status = 403, description = "Not an admin", body = QErrorBody)),
    security(("bearer" = [])))]
pub async fn put_settings(
    state: web::Data<AppState>,
    me: Caller<QError>,
    body: JsonBody<QueueSettingsRequest, QError>,
) -> Result<HttpResponse, QError> {
    admin(&me)?;
    let b = body.0;
    let opens_at = match b.opens_at {
        None => None,
        Some(None) => Some(None),
        Some(Some(text)) => {
            let at = chrono::DateTime::parse_from_rfc3339(&text)
                .ok()
                .and_then(|t| u64::try_from(t.timestamp_millis()).ok())
                .ok_or_else(|| QError::bad_request("INVALID_REQUEST", "opensAt must be an RFC 3339 date-time"))?;
            Some(Some(at))
        }
    };
    let too_big = |v: Option<u64>, max: u64| v.is_some_and(|v| v > max);
    if too_big(b.admit_rate.map(u64::from), 1_000_000_000)
        || too_big(b.max_active.map(u64::from), 1_000_000_000)
        || too_big(b.active_ttl_seconds, 31_536_000)
    {
        return Err(QError::bad_request(
            "INVALID_REQUEST",
            "admitRate and maxActive are at most 1000000000, activeTtlSeconds at most 31536000",
        ));
    }
    let put = PutSettings {
        opens_at,
        admit_rate: b.admit_rate,
        max_active: b.max_active,
        active_ttl: b.active_ttl_seconds.map(std::time::Duration::from_secs),
    };
    let settings = state.registry.queue().send(put).await?.map_err(|e| match e {
        QueueError::Invalid(m) => QError::bad_request("INVALID_REQUEST", m),
        QueueError::Opened => QError::new(StatusCode::CONFLICT, "QUEUE_OPENED", QueueError::Opened.to_string()),
        other => QError::from(other),
    })?;
    Ok(HttpResponse::Ok().json(QueueSettingsResponse::from(settings)))
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
    /// `PRE_QUEUE` (before the opening), `WAITING` or `ACTIVE`.
    pub status: &'static str,
    /// When the token stops being valid (RFC 3339).
    pub expires_at: String,
    /// Seconds until admission, from the admission rate (in the pre-queue: until the
    /// opening).
    pub estimated_wait_seconds: u64,
    /// In the pre-queue: when the queue opens (RFC 3339); its order is drawn then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<String>,
}

impl From<TokenView> for QueueTokenResponse {
    fn from(v: TokenView) -> Self {
        QueueTokenResponse {
            token: v.token,
            user_id: v.user,
            position: v.position,
            active: v.active,
            status: match (v.active, v.opens_at) {
                (true, _) => "ACTIVE",
                (false, Some(_)) => "PRE_QUEUE",
                (false, None) => "WAITING",
            },
            expires_at: rfc3339(v.expires_at),
            estimated_wait_seconds: v.estimated_wait_secs,
            opens_at: v.opens_at.map(rfc3339),
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
