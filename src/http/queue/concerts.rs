//! Contract Q: concerts, their schedules and seats; admin creation of catalog data.

use crate::actors::catalog::{Concert, CreateConcert, CreateSchedule, ListConcerts, ListSchedules, ScheduleView};
use crate::actors::seat_map::{GetSeatStates, SeatState, SeatStates};
use crate::http::error::{QError, QErrorBody};
use crate::http::schema::{has_text, length_within, trimmed};
use crate::http::{AppState, Caller, JsonBody};
use crate::time::rfc3339;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/concerts", web::get().to(list_concerts))
        .route("/concerts", web::post().to(create_concert))
        .route("/concerts/{concert_id}/schedules", web::get().to(list_schedules))
        .route("/concerts/{concert_id}/schedules", web::post().to(create_schedule))
        .route("/concerts/{concert_id}/schedules/{schedule_id}/seats", web::get().to(seats));
}

/// A positive integer path segment, or the contract's 400.
pub fn path_id(raw: &str, what: &str) -> Result<u64, QError> {
    crate::http::schema::path_id(raw)
        .ok_or_else(|| QError::bad_request("INVALID_REQUEST", format!("{what} must be a positive integer")))
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = q::ConcertResponse)]
#[serde(rename_all = "camelCase")]
pub struct ConcertResponse {
    pub concert_id: u64,
    pub title: String,
    pub created_at: String,
}

impl From<Concert> for ConcertResponse {
    fn from(c: Concert) -> Self {
        ConcertResponse { concert_id: c.id, title: c.title, created_at: rfc3339(c.created_at) }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = q::ScheduleResponse)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleResponse {
    pub schedule_id: u64,
    pub concert_id: u64,
    /// When the performance starts (RFC 3339).
    pub starts_at: String,
    pub total_seats: u32,
    pub available_seats: usize,
    /// Price of one seat.
    pub price: u64,
}

impl From<ScheduleView> for ScheduleResponse {
    fn from(v: ScheduleView) -> Self {
        let s = v.schedule;
        ScheduleResponse {
            schedule_id: s.id,
            concert_id: s.concert,
            starts_at: rfc3339(s.starts_at),
            total_seats: s.seats,
            available_seats: v.available,
            price: s.price,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = q::ScheduleListResponse)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleListResponse {
    pub concert_id: u64,
    pub schedules: Vec<ScheduleResponse>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = q::SeatResponse)]
#[serde(rename_all = "camelCase")]
pub struct SeatResponse {
    pub seat_number: u32,
    /// `AVAILABLE`, `TEMP_RESERVED` (held) or `RESERVED` (sold).
    pub status: &'static str,
    pub price: u64,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = q::SeatListResponse)]
#[serde(rename_all = "camelCase")]
pub struct SeatListResponse {
    pub concert_id: u64,
    pub schedule_id: u64,
    pub seats: Vec<SeatResponse>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = q::ScheduleListQuery)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleListQuery {
    /// Also list schedules with no seat left.
    #[serde(default)]
    pub include_sold_out: bool,
}

/// Every concert.
#[utoipa::path(get, path = "/concerts", tag = "Q: concerts",
    responses((status = 200, body = [ConcertResponse]), (status = 401, body = QErrorBody)), security(("bearer" = [])))]
pub async fn list_concerts(state: web::Data<AppState>, _me: Caller<QError>) -> Result<HttpResponse, QError> {
    let concerts = state.registry.catalog().send(ListConcerts).await?;
    Ok(HttpResponse::Ok().json(concerts.into_iter().map(ConcertResponse::from).collect::<Vec<_>>()))
}

/// A concert's schedules with at least one seat left (all with `includeSoldOut=true`).
#[utoipa::path(get, path = "/concerts/{concert_id}/schedules", tag = "Q: concerts",
    params(("concert_id" = u64, Path), ("includeSoldOut" = Option<bool>, Query)),
    responses((status = 200, body = ScheduleListResponse),
        (status = 400, description = "Malformed id", body = QErrorBody),
        (status = 401, body = QErrorBody),
        (status = 404, description = "No such concert, or no schedule with seats left", body = QErrorBody)),
    security(("bearer" = [])))]
pub async fn list_schedules(
    state: web::Data<AppState>,
    _me: Caller<QError>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, QError> {
    let concert = path_id(&path, "concertId")?;
    let query = web::Query::<ScheduleListQuery>::from_query(req.query_string())
        .map_err(|_| QError::bad_request("INVALID_REQUEST", "includeSoldOut must be true or false"))?
        .into_inner();
    let list =
        state.registry.catalog().send(ListSchedules { concert, include_sold_out: query.include_sold_out }).await??;
    Ok(HttpResponse::Ok()
        .json(ScheduleListResponse { concert_id: concert, schedules: list.into_iter().map(Into::into).collect() }))
}

/// The seats of a schedule. Needs an active queue token.
#[utoipa::path(get, path = "/concerts/{concert_id}/schedules/{schedule_id}/seats", tag = "Q: concerts",
    params(("concert_id" = u64, Path), ("schedule_id" = u64, Path), ("X-Queue-Token" = String, Header)),
    responses((status = 200, body = SeatListResponse),
        (status = 400, description = "Malformed id", body = QErrorBody),
        (status = 401, body = QErrorBody),
        (status = 403, description = "No active queue token", body = QErrorBody),
        (status = 404, description = "No such schedule of this concert", body = QErrorBody)),
    security(("bearer" = [])))]
pub async fn seats(
    state: web::Data<AppState>,
    me: Caller<QError>,
    path: web::Path<(String, String)>,
    req: HttpRequest,
) -> Result<HttpResponse, QError> {
    let (concert, schedule) = (path_id(&path.0, "concertId")?, path_id(&path.1, "scheduleId")?);
    super::waiting::require_active(&state, &req, me.user_id)?;
    let seat_map = state
        .registry
        .seat_map_of_schedule(concert, schedule)
        .ok_or_else(|| QError::not_found("SCHEDULE_NOT_FOUND", "no such schedule of this concert"))?;
    let seats = seat_map.send(GetSeatStates).await?;
    Ok(HttpResponse::Ok().content_type("application/json").body(render_seat_list(concert, schedule, &seats)))
}

/// The body of `GET .../seats`, written straight into one buffer: the same JSON as
/// serializing a [`SeatListResponse`] (a test holds them equal), at a fraction of the cost
/// for a 1,000-seat map, which every user in a rush fetches.
fn render_seat_list(concert: u64, schedule: u64, seats: &SeatStates) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + seats.states.len() * 56);
    let mut num = itoa::Buffer::new();
    out.extend_from_slice(b"{\"concertId\":");
    out.extend_from_slice(num.format(concert).as_bytes());
    out.extend_from_slice(b",\"scheduleId\":");
    out.extend_from_slice(num.format(schedule).as_bytes());
    out.extend_from_slice(b",\"seats\":[");
    for (i, (place, state)) in seats.places.iter().zip(&seats.states).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"seatNumber\":");
        out.extend_from_slice(num.format(seat_number(&place.label)).as_bytes());
        out.extend_from_slice(b",\"status\":\"");
        out.extend_from_slice(seat_status(*state).as_bytes());
        out.extend_from_slice(b"\",\"price\":");
        out.extend_from_slice(num.format(place.price).as_bytes());
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    out
}

/// Contract Q's seats are numbered; their labels are those numbers.
fn seat_number(label: &str) -> u32 {
    label.parse().unwrap_or(0)
}

pub fn seat_status(s: SeatState) -> &'static str {
    match s {
        SeatState::Available => "AVAILABLE",
        SeatState::Held(_) => "TEMP_RESERVED",
        SeatState::Sold(_) => "RESERVED",
    }
}

fn require_admin(me: &Caller<QError>) -> Result<(), QError> {
    if me.admin {
        Ok(())
    } else {
        Err(QError::forbidden("admin role required"))
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = q::CreateConcertRequest)]
#[serde(rename_all = "camelCase")]
pub struct CreateConcertRequest {
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    pub title: String,
}

/// Create a concert (admin).
#[utoipa::path(post, path = "/concerts", tag = "Q: admin", request_body = CreateConcertRequest,
    responses((status = 201, body = ConcertResponse), (status = 400, body = QErrorBody), (status = 401, body = QErrorBody), (status = 403, body = QErrorBody)),
    security(("bearer" = [])))]
pub async fn create_concert(
    state: web::Data<AppState>,
    me: Caller<QError>,
    body: JsonBody<CreateConcertRequest, QError>,
) -> Result<HttpResponse, QError> {
    require_admin(&me)?;
    let title = &body.0.title;
    if !length_within(title, 1, 200) || !has_text(title) {
        return Err(QError::bad_request("INVALID_REQUEST", "title must be 1 to 200 characters, not only spaces"));
    }
    let title = trimmed(title).to_string();
    let concert = state.registry.catalog().send(CreateConcert { title }).await??;
    Ok(HttpResponse::Created().json(ConcertResponse::from(concert)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = q::CreateScheduleRequest)]
#[serde(rename_all = "camelCase")]
pub struct CreateScheduleRequest {
    /// RFC 3339 start time.
    #[schema(format = DateTime)]
    pub starts_at: String,
    /// Seats numbered 1..=totalSeats (default 50, at most 1000).
    #[schema(minimum = 1, maximum = 1000)]
    pub total_seats: Option<u32>,
    /// Price of one seat.
    #[schema(maximum = 9007199254740991_u64)]
    pub price: u64,
}

/// Create a schedule of a concert with its seat map (admin).
#[utoipa::path(post, path = "/concerts/{concert_id}/schedules", tag = "Q: admin", request_body = CreateScheduleRequest,
    params(("concert_id" = u64, Path)),
    responses((status = 201, body = ScheduleResponse), (status = 400, body = QErrorBody), (status = 401, body = QErrorBody), (status = 403, body = QErrorBody), (status = 404, body = QErrorBody)),
    security(("bearer" = [])))]
pub async fn create_schedule(
    state: web::Data<AppState>,
    me: Caller<QError>,
    path: web::Path<String>,
    body: JsonBody<CreateScheduleRequest, QError>,
) -> Result<HttpResponse, QError> {
    require_admin(&me)?;
    let concert = path_id(&path, "concertId")?;
    let body = body.0;
    let starts_at = chrono::DateTime::parse_from_rfc3339(&body.starts_at)
        .map_err(|_| QError::bad_request("INVALID_REQUEST", "startsAt must be an RFC 3339 time"))?;
    let seats = body.total_seats.unwrap_or(50);
    if !(1..=1000).contains(&seats) {
        return Err(QError::bad_request("INVALID_REQUEST", "totalSeats must be 1 to 1000"));
    }
    if body.price > crate::money::MAX_AMOUNT {
        return Err(QError::bad_request(
            "INVALID_REQUEST",
            format!("price must be at most {}", crate::money::MAX_AMOUNT),
        ));
    }
    let schedule = state
        .registry
        .catalog()
        .send(CreateSchedule {
            concert,
            starts_at: starts_at.timestamp_millis().max(0) as u64,
            seats,
            price: body.price,
        })
        .await??;
    Ok(HttpResponse::Created()
        .json(ScheduleResponse::from(ScheduleView { available: schedule.seats as usize, schedule })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::seat_map::SeatPlace;

    #[test]
    fn the_written_seat_list_is_the_serialized_one() {
        let places: Vec<SeatPlace> =
            (1..=4).map(|n| SeatPlace { label: n.to_string(), price: 1000 * n as u64 }).collect();
        let states = vec![SeatState::Available, SeatState::Held(7), SeatState::Sold(9), SeatState::Available];
        let seats = SeatStates { places: places.clone().into(), states: states.clone() };
        let written: serde_json::Value =
            serde_json::from_slice(&render_seat_list(12, 34, &seats)).expect("the body is JSON");
        let expected = SeatListResponse {
            concert_id: 12,
            schedule_id: 34,
            seats: places
                .iter()
                .zip(&states)
                .map(|(p, s)| SeatResponse {
                    seat_number: seat_number(&p.label),
                    status: seat_status(*s),
                    price: p.price,
                })
                .collect(),
        };
        assert_eq!(written, serde_json::to_value(&expected).expect("serialize"));
        assert_eq!(written["seats"][1]["status"], "TEMP_RESERVED");
        assert_eq!(written["seats"][2]["seatNumber"], 3);
    }
}
