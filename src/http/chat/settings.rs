//! Contract C's room settings: reading them, and changing some of them (any participant).

use super::room_of;
use crate::actors::room::{GetSettings, RoomSettings, SettingsPatch, UpdateSettings};
use crate::http::error::{CError, CErrorBody};
use crate::http::{AppState, Caller, JsonBody};
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = c::SettingsView)]
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
#[schema(as = c::SettingsRequest)]
#[serde(deny_unknown_fields)]
pub struct SettingsRequest {
    pub notification_enabled: Option<bool>,
    /// 1..=3650.
    #[schema(minimum = 1, maximum = 3650)]
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
