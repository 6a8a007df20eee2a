//! Contract Q: seat holds (`POST /reservations`) and reading them back.

use super::concerts::path_id;
use crate::actors::keys::{Answer, GateError, Reserve};
use crate::actors::seat_map::{GetReservation, Reservation, ReservationStatus};
use crate::actors::Registry;
use crate::auth::parse_user_id;
use crate::http::error::{QError, QErrorBody};
use crate::http::{fingerprint, AppState, Caller, IdempotencyKey, JsonBody};
use crate::time::rfc3339;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/reservations", web::post().to(reserve)).route("/reservations/{reservation_id}", web::get().to(get));
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = q::ReserveRequest)]
#[serde(rename_all = "camelCase")]
pub struct ReserveRequest {
    /// Your own user id.
    #[schema(schema_with = crate::http::schema::user_id, required = true)]
    pub user_id: Option<serde_json::Value>,
    #[schema(schema_with = crate::http::schema::id_or_digits, required = true)]
    pub concert_id: Option<serde_json::Value>,
    #[schema(schema_with = crate::http::schema::id_or_digits, required = true)]
    pub schedule_id: Option<serde_json::Value>,
    /// 1..=50 for the demo schedules (a number the schedule lacks is 400 `INVALID_SEAT`).
    #[schema(schema_with = crate::http::schema::id_or_digits, required = true)]
    pub seat_number: Option<serde_json::Value>,
}

/// The parsed request, which is also what its idempotency fingerprint covers.
#[derive(Debug, Serialize)]
struct Hold {
    user: u64,
    concert: u64,
    schedule: u64,
    seat: u64,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = q::ReservationResponse)]
#[serde(rename_all = "camelCase")]
pub struct ReservationResponse {
    pub reservation_id: u64,
    pub user_id: u64,
    pub concert_id: u64,
    pub schedule_id: u64,
    pub seat_number: u32,
    /// `ON_HOLD`, `CONFIRMED`, `EXPIRED` or `CANCELLED`.
    pub status: &'static str,
    /// When the hold runs out unless paid (RFC 3339).
    pub hold_expires_at: String,
    pub price: u64,
    pub created_at: String,
}

pub fn reservation_status(s: ReservationStatus) -> &'static str {
    match s {
        ReservationStatus::Held | ReservationStatus::Paying => "ON_HOLD",
        ReservationStatus::Confirmed => "CONFIRMED",
        ReservationStatus::Expired => "EXPIRED",
        ReservationStatus::Cancelled => "CANCELLED",
    }
}

impl ReservationResponse {
    pub fn new(r: &Reservation, registry: &Registry) -> Self {
        let schedule = r.seat_map.parse().unwrap_or(0);
        ReservationResponse {
            reservation_id: r.id,
            user_id: r.user,
            concert_id: registry.concert_of_schedule(schedule).unwrap_or(0),
            schedule_id: schedule,
            seat_number: r.seats.first().and_then(|s| s.parse().ok()).unwrap_or(0),
            status: reservation_status(r.status),
            hold_expires_at: rfc3339(r.hold_expires_at),
            price: r.price,
            created_at: rfc3339(r.created_at),
        }
    }
}

fn field(v: &Option<serde_json::Value>, name: &str) -> Result<u64, QError> {
    v.as_ref()
        .and_then(crate::http::schema::json_id)
        .ok_or_else(|| QError::bad_request("INVALID_REQUEST", format!("{name} must be a positive integer")))
}

/// Hold a seat for `BOXOFFICE_HOLD_TTL` (5 minutes by default).
#[utoipa::path(post, path = "/reservations", tag = "Q: reservations", request_body = ReserveRequest,
    params(("Idempotency-Key" = String, Header, description = "Required"), ("X-Queue-Token" = String, Header, description = "An active queue token")),
    responses((status = 200, description = "The seat is held", body = ReservationResponse),
        (status = 400, description = "Invalid body, seat number or missing Idempotency-Key", body = QErrorBody),
        (status = 401, body = QErrorBody),
        (status = 403, description = "Another user's id, or no active queue token", body = QErrorBody),
        (status = 404, description = "No such concert schedule", body = QErrorBody),
        (status = 409, description = "The seat is held or sold, or this key's first request is still running", body = QErrorBody),
        (status = 422, description = "This Idempotency-Key was used for another request", body = QErrorBody)),
    security(("bearer" = [])))]
pub async fn reserve(
    state: web::Data<AppState>,
    me: Caller<QError>,
    key: IdempotencyKey<QError>,
    body: JsonBody<ReserveRequest, QError>,
    req: HttpRequest,
) -> Result<HttpResponse, QError> {
    let b = body.0;
    let user = b
        .user_id
        .as_ref()
        .and_then(parse_user_id)
        .ok_or_else(|| QError::bad_request("INVALID_USER_ID", "userId must be a positive integer"))?;
    let hold = Hold {
        user,
        concert: field(&b.concert_id, "concertId")?,
        schedule: field(&b.schedule_id, "scheduleId")?,
        seat: field(&b.seat_number, "seatNumber")?,
    };
    if hold.user != me.user_id {
        return Err(QError::forbidden("userId must be the authenticated user"));
    }
    super::waiting::require_active(&state, &req, me.user_id)?;
    let seat_map = state
        .registry
        .seat_map_of_schedule(hold.concert, hold.schedule)
        .ok_or_else(|| QError::not_found("SCHEDULE_NOT_FOUND", "no such schedule of this concert"))?;
    let keys = state.registry.keys(me.user_id).map_err(GateError::from)?;
    let msg = Reserve {
        key: key.0,
        fingerprint: fingerprint("POST /reservations", &hold),
        seat_map,
        seats: vec![hold.seat.to_string()],
        ttl: state.settings.hold_ttl,
    };
    match keys.send(msg).await?? {
        Answer::Reserved(r) => Ok(HttpResponse::Ok().json(ReservationResponse::new(&r, &state.registry))),
        Answer::ReserveRefused(e) => Err(e.into()),
        other => Err(mismatch(other)),
    }
}

/// A replayed answer of another kind than the endpoint's: the key was used elsewhere.
pub fn mismatch(_: Answer) -> QError {
    QError::from(GateError::KeyReused)
}

/// A reservation of yours. Reading needs no queue token: a payment ends the token, and
/// the buyer still wants to see the confirmed seat. Holding needs one.
#[utoipa::path(get, path = "/reservations/{reservation_id}", tag = "Q: reservations",
    params(("reservation_id" = u64, Path)),
    responses((status = 200, body = ReservationResponse),
        (status = 400, description = "Malformed id", body = QErrorBody),
        (status = 401, body = QErrorBody),
        (status = 403, description = "Another user's reservation", body = QErrorBody),
        (status = 404, description = "No such reservation", body = QErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    state: web::Data<AppState>,
    me: Caller<QError>,
    path: web::Path<String>,
) -> Result<HttpResponse, QError> {
    let id = path_id(&path, "reservationId")?;
    let seat_map = state
        .registry
        .seat_map_of_reservation(id)
        .map_err(GateError::from)?
        .ok_or_else(|| QError::not_found("RESERVATION_NOT_FOUND", "reservation not found"))?;
    let r = seat_map.send(GetReservation { id }).await??;
    if r.booking.is_some() {
        // Bookings are contract B's, read through /bookings.
        return Err(QError::not_found("RESERVATION_NOT_FOUND", "reservation not found"));
    }
    if r.user != me.user_id {
        return Err(QError::forbidden("this reservation belongs to another user"));
    }
    Ok(HttpResponse::Ok().json(ReservationResponse::new(&r, &state.registry)))
}
