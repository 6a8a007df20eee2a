//! Contract B: bookings (`/bookings`) and paying them by card (`POST /payments/execute`).
//! Errors are `{"error": "..."}` with the seed's texts; see [`BError`].

use crate::actors::keys::{Answer, Execute as PayByCard, GateError};
use crate::actors::registry::BookingRoute;
use crate::actors::seat_map::booking::{CancelBooking, ExecuteBooking, ExecuteOutcome};
use crate::actors::seat_map::{BookingSpec, GetReservation, Reservation, ReservationStatus, SeatError, SeatMap};
use crate::auth::parse_user_id;
use crate::http::card;
use crate::http::error::{BError, BErrorBody};
use crate::http::{fingerprint, AppState, Caller, JsonBody, MaybeIdempotencyKey};
use crate::store::StoreError;
use crate::time::rfc3339;
use crate::usecase::seats::{book_seats, BookError};
use actix::Addr;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/bookings", web::post().to(create))
        // Its own resource, so that another method is 405 here rather than reaching
        // `/bookings/{booking_id}` with the id "my".
        .service(
            web::resource("/bookings/my")
                .route(web::get().to(mine))
                .default_service(web::to(crate::http::contract::not_found)),
        )
        .route("/bookings/{booking_id}", web::get().to(get))
        .route("/bookings/{booking_id}", web::delete().to(cancel))
        .route("/payments/execute", web::post().to(execute));
}

const REQUIRED: &str = "User, performance, and seats are required.";

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = b::BookingRequest)]
#[serde(rename_all = "camelCase")]
pub struct BookingRequest {
    #[schema(example = "perf_001", pattern = "\\S", nullable = false, required = true)]
    pub performance_id: Option<String>,
    /// The seats to lock, each listed once.
    #[schema(example = json!(["A2"]), min_items = 1, nullable = false, required = true)]
    pub seat_ids: Option<Vec<String>>,
    #[schema(example = "CREDIT_CARD")]
    pub payment_method: Option<String>,
    /// `"user_123"`, `"123"` or `123`: the token's own user.
    #[schema(schema_with = crate::http::schema::user_id, required = true)]
    pub user_id: Option<serde_json::Value>,
}

/// The parsed request, which is also what its idempotency fingerprint covers.
#[derive(Debug, Serialize)]
struct NewBooking {
    user: u64,
    performance: String,
    seats: Vec<String>,
    payment_method: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = b::BookingCreated)]
#[serde(rename_all = "camelCase")]
pub struct BookingCreated {
    #[schema(example = "Booking initiated. Please proceed to payment.")]
    pub message: &'static str,
    pub booking_id: String,
    pub payment_intent_id: String,
    pub total_amount: u64,
    /// `pending`.
    pub status: &'static str,
    /// When the seats are released unless the booking is paid (RFC 3339).
    pub locked_until: String,
}

/// A booking as `GET /bookings/my` lists it (the seed writes `total_amount` in snake case).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = b::BookingView)]
pub struct BookingView {
    #[serde(rename = "bookingId")]
    pub booking_id: String,
    #[serde(rename = "performanceId")]
    pub performance_id: String,
    #[serde(rename = "seatIds")]
    pub seat_ids: Vec<String>,
    pub total_amount: u64,
    /// `pending`, `confirmed`, `cancelled` or `expired`.
    pub status: &'static str,
    /// The user id as written when booking.
    #[serde(rename = "userId")]
    pub user_id: String,
    #[serde(rename = "createdAt")]
    pub created_at: String,
    #[serde(rename = "paymentIntentId")]
    pub payment_intent_id: String,
    #[serde(rename = "lockedUntil")]
    pub locked_until: String,
    /// `unpaid`, `processing`, `captured` or `refunded`.
    #[serde(rename = "paymentStatus")]
    pub payment_status: &'static str,
}

pub fn booking_status(s: ReservationStatus) -> &'static str {
    match s {
        ReservationStatus::Held | ReservationStatus::Paying => "pending",
        ReservationStatus::Confirmed => "confirmed",
        ReservationStatus::Expired => "expired",
        ReservationStatus::Cancelled => "cancelled",
    }
}

impl BookingView {
    fn new(r: &Reservation) -> Option<BookingView> {
        let b = r.booking.as_ref()?;
        Some(BookingView {
            booking_id: b.id.clone(),
            performance_id: b.performance.clone(),
            seat_ids: r.seats.clone(),
            total_amount: r.price,
            status: booking_status(r.status),
            user_id: b.user_label.clone(),
            created_at: rfc3339(r.created_at),
            payment_intent_id: b.intent.clone(),
            locked_until: rfc3339(r.hold_expires_at),
            payment_status: card::payment_status(b.charge.status()),
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = b::MessageBody)]
pub struct MessageBody {
    #[schema(example = "Booking cancelled successfully.")]
    pub message: &'static str,
}

/// The caller's user id from a body's `userId`: 400 if it is not a user id, 403 if it is
/// someone else's. Returns the id and the label as written.
fn body_user(v: &serde_json::Value, me: u64) -> Result<String, BError> {
    let id = parse_user_id(v).ok_or_else(|| BError::bad_request("userId must be a user id such as \"user_123\"."))?;
    if id != me {
        return Err(BError::forbidden("userId must be the authenticated user."));
    }
    Ok(match v {
        serde_json::Value::String(s) => s.trim().to_string(),
        other => other.to_string(),
    })
}

/// Booking ids and intent ids: 1 to 64 letters, digits, `_` or `-`.
fn well_formed_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn storage(e: StoreError) -> BError {
    BError::from(SeatError::from(e))
}

fn seat_map_of(state: &AppState, route: &BookingRoute) -> Result<Addr<SeatMap>, BError> {
    state.registry.seat_map(&route.seat_map).ok_or_else(|| BError::not_found("Booking not found."))
}

/// Lock every listed seat, or none, and start a payment intent.
#[utoipa::path(post, path = "/bookings", tag = "B: bookings", request_body = BookingRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Optional: a retry with the same key and body gets the same booking")),
    responses((status = 201, description = "The seats are locked until `lockedUntil`", body = BookingCreated),
        (status = 400, description = "`Seat A2 is not available.`, `User, performance, and seats are required.`, an unknown performance or seat, a seat listed twice, or an invalid body", body = BErrorBody),
        (status = 401, body = BErrorBody),
        (status = 403, description = "userId is another user", body = BErrorBody),
        (status = 422, description = "This Idempotency-Key was used for another request", body = BErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    state: web::Data<AppState>,
    me: Caller<BError>,
    key: MaybeIdempotencyKey<BError>,
    body: JsonBody<BookingRequest, BError>,
) -> Result<HttpResponse, BError> {
    let b = body.0;
    let performance = b.performance_id.map(|p| p.trim().to_string()).filter(|p| !p.is_empty());
    let seats = b.seat_ids.filter(|s| !s.is_empty());
    let user = b.user_id.filter(|u| !u.is_null() && u.as_str().map(|s| !s.trim().is_empty()).unwrap_or(true));
    let (Some(performance), Some(seats), Some(user)) = (performance, seats, user) else {
        return Err(BError::bad_request(REQUIRED));
    };
    let label = body_user(&user, me.user_id)?;
    let seats: Vec<String> = seats.into_iter().map(|s| s.trim().to_string()).collect();
    if seats.iter().any(String::is_empty) {
        return Err(BError::bad_request("Seat ids must not be empty."));
    }
    let request = NewBooking { user: me.user_id, performance, seats, payment_method: b.payment_method };
    let ttl = state.settings.booking_lock_ttl;
    let key = key.0.map(|key| (key, fingerprint("POST /bookings", &request)));
    let NewBooking { performance, seats, payment_method, .. } = request;
    let spec = BookingSpec { performance: performance.clone(), user_label: label, payment_method };
    let booked = book_seats(&state.registry, me.user_id, &performance, seats, ttl, spec, key).await;
    let r = booked.map_err(|e| match e {
        BookError::NoPerformance => BError::bad_request(format!("Performance {performance} does not exist.")),
        BookError::Refused(e) => e.into(),
        BookError::Gate(e) => e.into(),
    })?;
    let booking = r.booking.as_ref().ok_or_else(|| BError::not_found("Booking not found."))?;
    Ok(HttpResponse::Created().json(BookingCreated {
        message: "Booking initiated. Please proceed to payment.",
        booking_id: booking.id.clone(),
        payment_intent_id: booking.intent.clone(),
        total_amount: r.price,
        status: booking_status(r.status),
        locked_until: rfc3339(r.hold_expires_at),
    }))
}

/// The caller's bookings, oldest first.
#[utoipa::path(get, path = "/bookings/my", tag = "B: bookings",
    responses((status = 200, body = [BookingView]), (status = 401, body = BErrorBody)),
    security(("bearer" = [])))]
pub async fn mine(state: web::Data<AppState>, me: Caller<BError>) -> Result<HttpResponse, BError> {
    let bookings = crate::usecase::seats::bookings_of(&state.registry, me.user_id).await?;
    let out: Vec<_> = bookings.iter().flat_map(BookingView::new).collect();
    Ok(HttpResponse::Ok().json(out))
}

async fn load(state: &AppState, id: &str) -> Result<(BookingRoute, Reservation), BError> {
    if !well_formed_id(id) {
        return Err(BError::bad_request("Invalid booking id."));
    }
    let route = state.registry.booking(id).map_err(storage)?.ok_or_else(|| BError::not_found("Booking not found."))?;
    let r = seat_map_of(state, &route)?.send(GetReservation { id: route.reservation }).await??;
    Ok((route, r))
}

/// One of the caller's bookings.
#[utoipa::path(get, path = "/bookings/{booking_id}", tag = "B: bookings", params(("booking_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$")),
    responses((status = 200, body = BookingView), (status = 400, description = "Malformed id", body = BErrorBody),
        (status = 401, body = BErrorBody), (status = 403, body = BErrorBody), (status = 404, body = BErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    state: web::Data<AppState>,
    me: Caller<BError>,
    path: web::Path<String>,
) -> Result<HttpResponse, BError> {
    let (_, r) = load(&state, &path).await?;
    if r.user != me.user_id {
        return Err(BError::forbidden("Unauthorized to view this booking."));
    }
    let view = BookingView::new(&r).ok_or_else(|| BError::not_found("Booking not found."))?;
    Ok(HttpResponse::Ok().json(view))
}

/// Cancel a pending booking and free its seats.
#[utoipa::path(delete, path = "/bookings/{booking_id}", tag = "B: bookings", params(("booking_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$")),
    responses((status = 200, description = "`Booking cancelled successfully.`", body = MessageBody),
        (status = 400, description = "Malformed id, or `Only pending bookings can be cancelled.`", body = BErrorBody),
        (status = 401, body = BErrorBody),
        (status = 403, description = "`Unauthorized to cancel this booking.`", body = BErrorBody),
        (status = 404, description = "`Booking not found.`", body = BErrorBody),
        (status = 409, description = "A payment for it is running", body = BErrorBody)),
    security(("bearer" = [])))]
pub async fn cancel(
    state: web::Data<AppState>,
    me: Caller<BError>,
    path: web::Path<String>,
) -> Result<HttpResponse, BError> {
    let (route, r) = load(&state, &path).await?;
    if r.user != me.user_id {
        return Err(BError::forbidden("Unauthorized to cancel this booking."));
    }
    let msg = CancelBooking { reservation: route.reservation, user: me.user_id };
    match seat_map_of(&state, &route)?.send(msg).await? {
        Ok(_) => Ok(HttpResponse::Ok().json(MessageBody { message: "Booking cancelled successfully." })),
        Err(SeatError::NotYours) => Err(BError::forbidden("Unauthorized to cancel this booking.")),
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = b::ExecuteRequest)]
#[serde(rename_all = "camelCase")]
pub struct ExecuteRequest {
    #[schema(pattern = "\\S", nullable = false, required = true)]
    pub payment_intent_id: Option<String>,
    /// A test-gateway card token such as `tok_visa_creditCard` (see docs/api.md).
    #[schema(example = "tok_visa_creditCard", pattern = "\\S", nullable = false, required = true)]
    pub payment_method_token: Option<String>,
    #[schema(example = "123")]
    pub cvv: Option<String>,
}

#[derive(Debug, Serialize)]
struct Execute {
    intent: String,
    token: String,
    cvv: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = b::PgMockData)]
#[serde(rename_all = "camelCase")]
pub struct PgMockData {
    pub is_success: bool,
    pub processed_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = b::PaymentSuccess)]
#[serde(rename_all = "camelCase")]
pub struct PaymentSuccess {
    #[schema(example = "Payment SUCCESS")]
    pub message: &'static str,
    pub payment_intent_id: String,
    #[schema(example = "SUCCESS")]
    pub status: &'static str,
    pub pg_mock_data: PgMockData,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = b::FailureDetail)]
#[serde(rename_all = "camelCase")]
pub struct FailureDetail {
    /// `CARD_DECLINED`, `INSUFFICIENT_FUNDS`, `PROCESSING_ERROR`, `INVALID_PAYMENT_METHOD`,
    /// `GATEWAY_TIMEOUT`, `GATEWAY_UNAVAILABLE`, `BOOKING_EXPIRED`, `BOOKING_CANCELLED`,
    /// `CHARGE_VOIDED`.
    pub failure_code: &'static str,
    /// `CLIENT_ERROR` or `SERVER_ERROR`.
    pub failure_concept: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = b::PaymentFailure)]
#[serde(rename_all = "camelCase")]
pub struct PaymentFailure {
    #[schema(example = "Payment FAILURE")]
    pub message: &'static str,
    pub payment_intent_id: String,
    #[schema(example = "FAILURE")]
    pub status: &'static str,
    pub error: FailureDetail,
}

/// What `POST /payments/execute` answers with 400: the gateway's failure, or a refusal
/// of the request itself.
#[allow(dead_code)] // a documentation type: the handler writes either body itself
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = b::ExecuteBadRequest)]
#[serde(untagged)]
pub enum ExecuteBadRequest {
    Failure(PaymentFailure),
    Invalid(crate::http::error::BErrorBody),
}

/// Charge the booking's card through the payment gateway, at most once per intent.
#[utoipa::path(post, path = "/payments/execute", tag = "B: payments", request_body = ExecuteRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Optional: a retry with the same key and body gets the first answer")),
    responses((status = 200, description = "`Payment SUCCESS`: the booking is confirmed (also for an intent paid before)", body = PaymentSuccess),
        (status = 400, description = "`Payment FAILURE` with the gateway's failureCode (the booking stays payable until its lock runs out), or `{error}` for a body without paymentIntentId or paymentMethodToken", body = ExecuteBadRequest),
        (status = 401, body = BErrorBody),
        (status = 403, description = "Another user's booking", body = BErrorBody),
        (status = 404, description = "`Payment intent not found.`", body = BErrorBody),
        (status = 409, description = "A payment for this booking is already running", body = BErrorBody),
        (status = 422, description = "This Idempotency-Key was used for another request", body = BErrorBody)),
    security(("bearer" = [])))]
pub async fn execute(
    state: web::Data<AppState>,
    me: Caller<BError>,
    key: MaybeIdempotencyKey<BError>,
    body: JsonBody<ExecuteRequest, BError>,
) -> Result<HttpResponse, BError> {
    let b = body.0;
    let intent = b.payment_intent_id.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let token = b.payment_method_token.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let (Some(intent), Some(token)) = (intent, token) else {
        return Err(BError::bad_request("paymentIntentId and paymentMethodToken are required."));
    };
    let cvv = b.cvv.map(|s| s.trim().to_string()).unwrap_or_default();
    let cvv_ok = cvv.is_empty() || ((3..=4).contains(&cvv.len()) && cvv.bytes().all(|c| c.is_ascii_digit()));
    if !cvv_ok {
        return Err(BError::bad_request("cvv must be 3 or 4 digits."));
    }
    if !well_formed_id(&intent) {
        return Err(BError::bad_request("Invalid paymentIntentId."));
    }
    let route = state
        .registry
        .booking_of_intent(&intent)
        .map_err(storage)?
        .ok_or_else(|| BError::not_found("Payment intent not found."))?;
    let request = Execute { intent: intent.clone(), token, cvv };
    let seat_map = seat_map_of(&state, &route)?;
    let refused = |e: SeatError| match e {
        SeatError::NotYours => BError::forbidden("Unauthorized to pay for this booking."),
        SeatError::NotFound => BError::not_found("Payment intent not found."),
        e => e.into(),
    };
    let outcome = match key.0 {
        // A keyed payment goes through the caller's key gate; the first definite
        // outcome is recorded with the change and replayed as it was.
        Some(key) => {
            let fingerprint = fingerprint("POST /payments/execute", &request);
            let keys = state.registry.keys(me.user_id).map_err(storage)?;
            let msg = PayByCard {
                key,
                fingerprint,
                seat_map,
                reservation: route.reservation,
                token: request.token,
                cvv: request.cvv,
            };
            match keys.send(msg).await?? {
                Answer::Executed(o) => o,
                Answer::ExecuteRefused(e) => return Err(refused(e)),
                _ => return Err(BError::from(GateError::KeyReused)),
            }
        }
        None => {
            let msg = ExecuteBooking {
                reservation: route.reservation,
                user: me.user_id,
                token: request.token,
                cvv: request.cvv,
                key: None,
            };
            seat_map.send(msg).await?.map_err(refused)?
        }
    };
    Ok(match outcome {
        ExecuteOutcome::Paid { processed_at } => HttpResponse::Ok().json(PaymentSuccess {
            message: "Payment SUCCESS",
            payment_intent_id: intent,
            status: "SUCCESS",
            pg_mock_data: PgMockData { is_success: true, processed_at: rfc3339(processed_at) },
        }),
        ExecuteOutcome::Failed(f) => HttpResponse::BadRequest().json(PaymentFailure {
            message: "Payment FAILURE",
            payment_intent_id: intent,
            status: "FAILURE",
            error: FailureDetail { failure_code: card::failure_code(f), failure_concept: card::failure_concept(f) },
        }),
    })
}
