//! Contract B: performances, their seats and the seed's `occupiedSeats` lock documents;
//! admin creation of performances; the test gateway's ledger for operators.

use crate::actors::catalog::{CreatePerformance, ListPerformances, Performance, PerformanceSeats, PerformanceView};
use crate::actors::gateway::ListCharges;
use crate::actors::seat_map::SeatError;
use crate::actors::seat_map::{GetSeats, SeatState};
use crate::http::error::{BError, BErrorBody};
use crate::http::{AppState, Caller, JsonBody};
use crate::time::rfc3339;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/performances", web::get().to(list))
        .route("/performances", web::post().to(create))
        .route("/performances/{performance_id}/seats", web::get().to(seats))
        .route("/performances/{performance_id}/occupiedSeats", web::get().to(occupied))
        .route("/admin/test-gateway/charges", web::get().to(charges));
}

/// At most this many seats per performance, and rows per performance (`A`..`Z`).
const MAX_SEATS: u32 = 10_000;

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = b::PerformanceResponse)]
#[serde(rename_all = "camelCase")]
pub struct PerformanceResponse {
    pub performance_id: String,
    pub title: String,
    pub total_seats: u32,
    pub available_seats: usize,
    /// The price of a seat when the performance was created.
    pub price: u64,
    pub created_at: String,
}

impl PerformanceResponse {
    fn new(p: Performance, available: usize) -> Self {
        PerformanceResponse {
            performance_id: p.id,
            title: p.title,
            total_seats: p.seats,
            available_seats: available,
            price: p.price,
            created_at: rfc3339(p.created_at),
        }
    }
}

/// Every performance.
#[utoipa::path(get, path = "/performances", tag = "B: performances",
    responses((status = 200, body = [PerformanceResponse]), (status = 401, body = BErrorBody)),
    security(("bearer" = [])))]
pub async fn list(state: web::Data<AppState>, _me: Caller<BError>) -> Result<HttpResponse, BError> {
    let all = state.registry.catalog().send(ListPerformances).await?;
    let out: Vec<PerformanceResponse> = all
        .into_iter()
        .map(|PerformanceView { performance, available }| PerformanceResponse::new(performance, available))
        .collect();
    Ok(HttpResponse::Ok().json(out))
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = b::PerformanceRequest)]
#[serde(rename_all = "camelCase")]
pub struct PerformanceRequest {
    /// 1 to 64 letters, digits, `_` or `-`.
    #[schema(example = "perf_002", pattern = "^[A-Za-z0-9_-]{1,64}$", nullable = false, required = true)]
    pub performance_id: Option<String>,
    /// Defaults to the id.
    #[schema(max_length = 200, nullable = false)]
    pub title: Option<String>,
    /// Rows `A`, `B`, ... (at most 26) of `seatsPerRow` seats each: `A1`..`A10`, `B1`...
    /// (at most 10,000 seats in all).
    #[schema(minimum = 1, maximum = 26, nullable = false)]
    pub rows: Option<u32>,
    #[schema(minimum = 1, maximum = 10000, nullable = false)]
    pub seats_per_row: Option<u32>,
    /// Or the seat labels themselves (instead of rows).
    /// Each 1 to 16 letters or digits.
    #[schema(min_items = 1, max_items = 10000, nullable = false)]
    pub seat_ids: Option<Vec<String>>,
    /// Or sell a contract Q schedule's seat map (instead of new seats).
    #[schema(minimum = 1, maximum = 9007199254740991_u64, nullable = false)]
    pub schedule_id: Option<u64>,
    /// With `rows` or `seatIds`: the price of each seat.
    #[schema(minimum = 1, maximum = 9007199254740991_u64, nullable = false)]
    pub price: Option<u64>,
}

/// Create a performance (admin only).
#[utoipa::path(post, path = "/performances", tag = "B: performances", request_body = PerformanceRequest, operation_id = "create_performance",
    responses((status = 201, body = PerformanceResponse),
        (status = 400, description = "A missing id, price or seats, or an unknown schedule", body = BErrorBody),
        (status = 401, body = BErrorBody), (status = 403, description = "Not an admin", body = BErrorBody),
        (status = 409, description = "A performance with this id exists", body = BErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    state: web::Data<AppState>,
    me: Caller<BError>,
    body: JsonBody<serde_json::Value, BError>,
) -> Result<HttpResponse, BError> {
    if !me.admin {
        return Err(BError::forbidden("Only admins may create performances."));
    }
    // A null would read as a field left out, and the document says fields are never null.
    if let Some((field, _)) = body.0.as_object().and_then(|o| o.iter().find(|(_, v)| v.is_null())) {
        return Err(BError::bad_request(format!("{field} must not be null: leave it out.")));
    }
    let b: PerformanceRequest =
        serde_json::from_value(body.0).map_err(|e| BError::bad_request(format!("invalid JSON body: {e}")))?;
    let id = b.performance_id.unwrap_or_default();
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-') {
        return Err(BError::bad_request("performanceId must be 1 to 64 letters, digits, '_' or '-'."));
    }
    let title = b.title.unwrap_or_else(|| id.clone());
    if !crate::http::schema::length_within(&title, 0, 200) {
        return Err(BError::bad_request("title must be at most 200 characters."));
    }
    let seats = match (b.schedule_id, b.seat_ids, b.rows, b.seats_per_row) {
        (Some(schedule), None, None, None) => PerformanceSeats::Schedule(schedule),
        (None, Some(labels), None, None) => {
            let mut seen = std::collections::HashSet::new();
            let ok = |l: &String| !l.is_empty() && l.len() <= 16 && l.bytes().all(|c| c.is_ascii_alphanumeric());
            if labels.is_empty() || labels.len() > MAX_SEATS as usize || !labels.iter().all(|l| ok(l) && seen.insert(l))
            {
                return Err(BError::bad_request("seatIds must be distinct labels of letters and digits."));
            }
            PerformanceSeats::New { labels, price: price(b.price)? }
        }
        (None, None, Some(rows), Some(per_row)) => {
            if !(1..=26).contains(&rows) || per_row == 0 || rows.saturating_mul(per_row) > MAX_SEATS {
                return Err(BError::bad_request("rows must be 1 to 26 and seatsPerRow positive."));
            }
            let labels = (0..rows)
                .flat_map(|r| (1..=per_row).map(move |n| format!("{}{n}", char::from(b'A' + r as u8))))
                .collect();
            PerformanceSeats::New { labels, price: price(b.price)? }
        }
        _ => return Err(BError::bad_request("Give either rows and seatsPerRow, seatIds, or scheduleId.")),
    };
    let p = state.registry.catalog().send(CreatePerformance { id, title, seats }).await??;
    let total = p.seats as usize;
    Ok(HttpResponse::Created().json(PerformanceResponse::new(p, total)))
}

fn price(p: Option<u64>) -> Result<u64, BError> {
    let p = p.filter(|p| *p > 0).ok_or_else(|| BError::bad_request("price must be a positive integer."))?;
    if p > crate::money::MAX_AMOUNT {
        return Err(BError::bad_request(format!("price must be at most {}.", crate::money::MAX_AMOUNT)));
    }
    Ok(p)
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = b::SeatResponse)]
#[serde(rename_all = "camelCase")]
pub struct SeatResponse {
    #[schema(example = "A2")]
    pub seat_id: String,
    pub price: u64,
    /// `available`, `locked` (held by a booking or a contract Q hold) or `booked`.
    pub status: &'static str,
}

fn status_of(s: SeatState) -> &'static str {
    match s {
        SeatState::Available => "available",
        SeatState::Held(_) => "locked",
        SeatState::Sold(_) => "booked",
    }
}

/// Every seat of a performance and its state.
#[utoipa::path(get, path = "/performances/{performance_id}/seats", tag = "B: performances",
    params(("performance_id" = String, Path)),
    responses((status = 200, body = [SeatResponse]), (status = 401, body = BErrorBody),
        (status = 404, description = "No such performance", body = BErrorBody)),
    security(("bearer" = [])))]
pub async fn seats(
    state: web::Data<AppState>,
    _me: Caller<BError>,
    path: web::Path<String>,
) -> Result<HttpResponse, BError> {
    let seat_map =
        state.registry.seat_map_of_performance(&path).ok_or_else(|| BError::not_found("Performance not found."))?;
    let seats = seat_map.send(GetSeats).await?;
    let out: Vec<SeatResponse> = seats
        .into_iter()
        .map(|s| SeatResponse { seat_id: s.label, price: s.price, status: status_of(s.state) })
        .collect();
    Ok(HttpResponse::Ok().json(out))
}

/// A Firestore-style timestamp, as the seed's `lockedUntil`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = b::Timestamp)]
pub struct Timestamp {
    pub seconds: u64,
    pub nanoseconds: u64,
}

/// The seed's `/occupiedSeats/{performanceId}_{seatId}` document.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = b::OccupiedSeat)]
#[serde(rename_all = "camelCase")]
pub struct OccupiedSeat {
    #[schema(example = "perf_001_A2")]
    pub id: String,
    pub seat_id: String,
    /// The booking that locked the seat; only shown to its owner (null otherwise, and
    /// for seats held through contract Q).
    pub booking_id: Option<String>,
    /// The owner's user id as written when booking; only shown to its owner.
    pub user_id: Option<String>,
    pub locked_until: Timestamp,
    /// `locked` or `booked`.
    pub status: &'static str,
}

/// The lock documents of every seat that is not available.
#[utoipa::path(get, path = "/performances/{performance_id}/occupiedSeats", tag = "B: performances",
    params(("performance_id" = String, Path)),
    responses((status = 200, body = [OccupiedSeat]), (status = 401, body = BErrorBody),
        (status = 404, description = "No such performance", body = BErrorBody)),
    security(("bearer" = [])))]
pub async fn occupied(
    state: web::Data<AppState>,
    me: Caller<BError>,
    path: web::Path<String>,
) -> Result<HttpResponse, BError> {
    let seat_map =
        state.registry.seat_map_of_performance(&path).ok_or_else(|| BError::not_found("Performance not found."))?;
    let seats = seat_map.send(GetSeats).await?;
    let out: Vec<OccupiedSeat> = seats
        .into_iter()
        .filter(|s| s.state != SeatState::Available)
        .map(|s| {
            let holder = s.holder.as_ref();
            let mine = holder.filter(|h| h.user == me.user_id);
            let booking = mine.and_then(|h| h.booking.clone());
            let until = holder.map(|h| h.until).unwrap_or(0);
            OccupiedSeat {
                id: format!("{}_{}", path.as_str(), s.label),
                seat_id: s.label.clone(),
                booking_id: booking.as_ref().map(|(b, _)| b.clone()),
                user_id: booking.map(|(_, u)| u),
                locked_until: Timestamp { seconds: until / 1000, nanoseconds: until % 1000 * 1_000_000 },
                status: if matches!(s.state, SeatState::Sold(_)) { "booked" } else { "locked" },
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(out))
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = b::ChargeResponse)]
#[serde(rename_all = "camelCase")]
pub struct ChargeResponse {
    pub id: String,
    /// The gateway-side idempotency key: `{paymentIntentId}-{attempt}`.
    pub key: String,
    pub amount: u64,
    pub captured_at: String,
    pub refunded: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = b::ChargeList)]
#[serde(rename_all = "camelCase")]
pub struct ChargeList {
    pub charges: Vec<ChargeResponse>,
    /// How many charges are captured and not refunded.
    pub kept: usize,
    pub kept_amount: u64,
}

/// The test gateway's record of charges (admin only), to reconcile bookings with money.
#[utoipa::path(get, path = "/admin/test-gateway/charges", tag = "B: payments",
    responses((status = 200, body = ChargeList), (status = 401, body = BErrorBody),
        (status = 403, description = "Not an admin", body = BErrorBody),
        (status = 404, description = "The test gateway is not in use", body = BErrorBody)),
    security(("bearer" = [])))]
pub async fn charges(state: web::Data<AppState>, me: Caller<BError>) -> Result<HttpResponse, BError> {
    if !me.admin {
        return Err(BError::forbidden("Only admins may read the gateway's charges."));
    }
    let gateway = state.registry.test_gateway().ok_or_else(|| BError::not_found("The test gateway is not in use."))?;
    let all = gateway.send(ListCharges).await?.map_err(|e| BError::from(SeatError::from(e)))?;
    // Report only what the gateway would still know after a crash: its records are
    // written before they are durable, and a test that sees a charge and then kills the
    // server must find it again.
    state.registry.store().durable().await.map_err(|e| BError::from(SeatError::Storage(e.to_string())))?;
    let kept = all.iter().filter(|c| !c.refunded);
    let (kept, kept_amount) = kept.fold((0, 0), |(n, sum), c| (n + 1, sum + c.amount));
    let charges = all
        .into_iter()
        .map(|c| ChargeResponse {
            id: c.id,
            key: c.key,
            amount: c.amount,
            captured_at: rfc3339(c.captured_at),
            refunded: c.refunded,
        })
        .collect();
    Ok(HttpResponse::Ok().json(ChargeList { charges, kept, kept_amount }))
}
