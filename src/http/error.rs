//! The contracts' errors. Contract Q: `{"status", "error", "code", "message"}`; contract
//! B: `{"error": "..."}`; contract C: `{"detail": "..."}`; contract T: the envelope
//! `{"message", "data", "statusCode"}`; each with its status codes.

use super::{BadRequest, Refused};
use crate::actors::catalog::CatalogError;
use crate::actors::keys::GateError;
use crate::actors::room::{ChatError, RoomRule};
use crate::actors::seat_map::SeatError;
use crate::actors::waiting_queue::QueueError;
use crate::actors::wallet::{ChargeRefusal, PayRefusal};
use crate::auth::AuthError;
use actix::MailboxError;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every contract Q error.
#[derive(Debug, Serialize, ToSchema)]
pub struct QErrorBody {
    /// The HTTP status, repeated.
    #[schema(example = 409)]
    pub status: u16,
    /// The status's reason phrase.
    #[schema(example = "Conflict")]
    pub error: String,
    /// A stable, machine-readable code.
    #[schema(example = "SEAT_ALREADY_HELD")]
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl QError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        QError { status, code, message: message.into() }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
    }
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
}

impl std::fmt::Display for QError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

/// A refusal's reason as a metric label, for the contracts whose errors carry no code.
fn reason(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "BAD_REQUEST",
        401 => "UNAUTHORIZED",
        403 => "FORBIDDEN",
        404 => "NOT_FOUND",
        405 => "METHOD_NOT_ALLOWED",
        409 => "CONFLICT",
        413 => "PAYLOAD_TOO_LARGE",
        415 => "UNSUPPORTED_MEDIA_TYPE",
        422 => "UNPROCESSABLE",
        429 => "TOO_MANY_REQUESTS",
        500..=599 => "SERVER_ERROR",
        _ => "OTHER",
    }
}

impl ResponseError for QError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        crate::observe::refusal("Q", self.code);
        HttpResponse::build(self.status).json(QErrorBody {
            status: self.status.as_u16(),
            error: self.status.canonical_reason().unwrap_or("Error").to_string(),
            code: self.code.to_string(),
            message: self.message.clone(),
        })
    }
}

impl From<AuthError> for QError {
    fn from(e: AuthError) -> Self {
        QError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", e.to_string())
    }
}

impl From<Refused> for QError {
    fn from(e: Refused) -> Self {
        QError::new(e.0, e.code(), e.1)
    }
}

impl From<BadRequest> for QError {
    fn from(e: BadRequest) -> Self {
        QError::bad_request("INVALID_REQUEST", e.0)
    }
}

impl From<MailboxError> for QError {
    fn from(_: MailboxError) -> Self {
        QError::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", "the server is busy; try again")
    }
}

impl From<GateError> for QError {
    fn from(e: GateError) -> Self {
        let (status, code) = match e {
            GateError::KeyReused => (StatusCode::UNPROCESSABLE_ENTITY, "IDEMPOTENCY_KEY_REUSED"),
            GateError::KeyInProgress => (StatusCode::CONFLICT, "IDEMPOTENCY_KEY_IN_PROGRESS"),
            GateError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
            GateError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "STORAGE_FAILURE"),
        };
        QError::new(status, code, e.to_string())
    }
}

impl From<QueueError> for QError {
    /// A failed queue gate on a gated endpoint.
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Storage(m) => QError::new(StatusCode::INTERNAL_SERVER_ERROR, "STORAGE_FAILURE", m),
            QueueError::Unavailable => {
                QError::new(StatusCode::SERVICE_UNAVAILABLE, "QUEUE_UNAVAILABLE", QueueError::Unavailable.to_string())
            }
            other => QError::new(
                StatusCode::FORBIDDEN,
                "QUEUE_TOKEN_NOT_ACTIVE",
                format!("an active queue token (X-Queue-Token) is required: {other}"),
            ),
        }
    }
}

impl From<CatalogError> for QError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::UnknownConcert => QError::not_found("CONCERT_NOT_FOUND", e.to_string()),
            CatalogError::NoSchedules => QError::not_found("NO_AVAILABLE_SCHEDULES", e.to_string()),
            CatalogError::UnknownSchedule => QError::not_found("SCHEDULE_NOT_FOUND", e.to_string()),
            CatalogError::PerformanceExists => QError::new(StatusCode::CONFLICT, "PERFORMANCE_EXISTS", e.to_string()),
            CatalogError::Storage(m) => QError::new(StatusCode::INTERNAL_SERVER_ERROR, "STORAGE_FAILURE", m),
        }
    }
}

impl From<SeatError> for QError {
    fn from(e: SeatError) -> Self {
        let msg = e.to_string();
        match e {
            SeatError::NoSeats | SeatError::UnknownSeat(_) | SeatError::DuplicateSeat(_) => {
                QError::bad_request("INVALID_SEAT", msg)
            }
            SeatError::TotalTooLarge => QError::bad_request("AMOUNT_TOO_LARGE", msg),
            SeatError::Taken(_) => QError::new(StatusCode::CONFLICT, "SEAT_ALREADY_HELD", msg),
            SeatError::NotFound => QError::not_found("RESERVATION_NOT_FOUND", msg),
            SeatError::Expired => QError::not_found("RESERVATION_EXPIRED", msg),
            SeatError::Cancelled => QError::not_found("RESERVATION_CANCELLED", msg),
            SeatError::NotYours => QError::forbidden(msg),
            SeatError::AlreadyConfirmed => QError::new(StatusCode::CONFLICT, "ALREADY_CONFIRMED", msg),
            SeatError::PaymentInProgress => QError::new(StatusCode::CONFLICT, "PAYMENT_IN_PROGRESS", msg),
            SeatError::NotPending => QError::new(StatusCode::CONFLICT, "NOT_PENDING", msg),
            SeatError::Storage(m) => QError::new(StatusCode::INTERNAL_SERVER_ERROR, "STORAGE_FAILURE", m),
        }
    }
}

impl From<ChargeRefusal> for QError {
    fn from(e: ChargeRefusal) -> Self {
        let code = match e {
            ChargeRefusal::NotPositive => "INVALID_AMOUNT",
            ChargeRefusal::OverSingleLimit { .. } => "SINGLE_CHARGE_LIMIT_EXCEEDED",
            ChargeRefusal::OverMonthlyLimit { .. } => "MONTHLY_CHARGE_LIMIT_EXCEEDED",
            ChargeRefusal::OverMaxBalance => "AMOUNT_TOO_LARGE",
        };
        QError::bad_request(code, e.to_string())
    }
}

impl From<PayRefusal> for QError {
    fn from(e: PayRefusal) -> Self {
        match e {
            PayRefusal::Seat(s) => s.into(),
            PayRefusal::AmountMismatch { .. } => QError::bad_request("AMOUNT_MISMATCH", e.to_string()),
            PayRefusal::InsufficientBalance { .. } => {
                QError::new(StatusCode::PAYMENT_REQUIRED, "INSUFFICIENT_BALANCE", e.to_string())
            }
        }
    }
}

/// The body of every contract B error: `{"error": "Seat A2 is not available."}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct BErrorBody {
    #[schema(example = "Seat A2 is not available.")]
    pub error: String,
}

/// A contract B error: a status and the text of its `error` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BError {
    pub status: StatusCode,
    pub message: String,
}

impl BError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        BError { status, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl std::fmt::Display for BError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl ResponseError for BError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        crate::observe::refusal("B", reason(self.status));
        HttpResponse::build(self.status).json(BErrorBody { error: self.message.clone() })
    }
}

impl From<AuthError> for BError {
    fn from(e: AuthError) -> Self {
        BError::new(StatusCode::UNAUTHORIZED, format!("Unauthorized: {e}."))
    }
}

impl From<Refused> for BError {
    fn from(e: Refused) -> Self {
        BError::new(e.0, e.1)
    }
}

impl From<BadRequest> for BError {
    fn from(e: BadRequest) -> Self {
        BError::bad_request(e.0)
    }
}

impl From<MailboxError> for BError {
    fn from(_: MailboxError) -> Self {
        BError::new(StatusCode::SERVICE_UNAVAILABLE, "The server is busy; try again.")
    }
}

impl From<CatalogError> for BError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::PerformanceExists => BError::new(StatusCode::CONFLICT, "A performance with this id exists."),
            CatalogError::UnknownSchedule => BError::bad_request("No such schedule."),
            CatalogError::UnknownConcert | CatalogError::NoSchedules => BError::not_found(e.to_string()),
            CatalogError::Storage(m) => BError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("Storage failure: {m}")),
        }
    }
}

impl From<GateError> for BError {
    fn from(e: GateError) -> Self {
        match e {
            GateError::KeyReused => {
                BError::new(StatusCode::UNPROCESSABLE_ENTITY, "This Idempotency-Key was used with a different request.")
            }
            GateError::KeyInProgress => {
                BError::new(StatusCode::CONFLICT, "A request with this Idempotency-Key is still in progress.")
            }
            GateError::Unavailable => BError::new(StatusCode::SERVICE_UNAVAILABLE, "The server is busy; try again."),
            GateError::Storage(m) => BError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("Storage failure: {m}")),
        }
    }
}

/// The seat map's refusals in contract B's words. Endpoints that word 403 and 404 their
/// own way map those first.
impl From<SeatError> for BError {
    fn from(e: SeatError) -> Self {
        match e {
            SeatError::Taken(seat) => BError::bad_request(format!("Seat {seat} is not available.")),
            SeatError::UnknownSeat(seat) => BError::bad_request(format!("Seat {seat} does not exist.")),
            SeatError::DuplicateSeat(seat) => BError::bad_request(format!("Seat {seat} is listed more than once.")),
            SeatError::NoSeats => BError::bad_request("User, performance, and seats are required."),
            SeatError::TotalTooLarge => BError::bad_request(format!(
                "The total amount would pass {}, the largest amount accepted.",
                crate::money::MAX_AMOUNT
            )),
            SeatError::NotFound => BError::not_found("Booking not found."),
            SeatError::NotYours => BError::forbidden("Unauthorized to access this booking."),
            SeatError::NotPending | SeatError::Expired | SeatError::Cancelled | SeatError::AlreadyConfirmed => {
                BError::bad_request("Only pending bookings can be cancelled.")
            }
            SeatError::PaymentInProgress => {
                BError::new(StatusCode::CONFLICT, "A payment for this booking is already in progress.")
            }
            SeatError::Storage(m) => BError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("Storage failure: {m}")),
        }
    }
}

/// The body of every contract C error, as FastAPI writes it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CErrorBody {
    #[schema(example = "You are not a participant of this room.")]
    pub detail: String,
}

/// A contract C error: a status and its `detail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CError {
    pub status: StatusCode,
    pub detail: String,
}

impl CError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        CError { status, detail: detail.into() }
    }
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }
}

impl std::fmt::Display for CError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.detail)
    }
}

impl ResponseError for CError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        crate::observe::refusal("C", reason(self.status));
        HttpResponse::build(self.status).json(CErrorBody { detail: self.detail.clone() })
    }
}

impl From<AuthError> for CError {
    fn from(e: AuthError) -> Self {
        CError::new(StatusCode::UNAUTHORIZED, format!("Could not validate credentials: {e}"))
    }
}

/// A body that is not the JSON the endpoint takes fails validation, as in FastAPI (422).
impl From<Refused> for CError {
    fn from(e: Refused) -> Self {
        CError::new(e.0, e.1)
    }
}

impl From<BadRequest> for CError {
    fn from(e: BadRequest) -> Self {
        CError::invalid(e.0)
    }
}

impl From<MailboxError> for CError {
    fn from(_: MailboxError) -> Self {
        CError::new(StatusCode::SERVICE_UNAVAILABLE, "The server is busy; try again.")
    }
}

impl From<ChatError> for CError {
    fn from(e: ChatError) -> Self {
        match e {
            ChatError::RoomNotFound => CError::not_found("Chat room not found."),
            ChatError::NotParticipant => CError::new(StatusCode::FORBIDDEN, "You are not a participant of this room."),
            ChatError::MessageNotFound => CError::not_found("Message not found."),
            ChatError::NotSender => CError::new(StatusCode::FORBIDDEN, "Only the sender may change this message."),
            ChatError::RoomClosed => CError::bad_request(crate::http::ROOM_CLOSED),
            e @ ChatError::NotInRoom(_) => CError::bad_request(e.to_string()),
            // Only socket posts carry client message ids; REST never meets this.
            e @ ChatError::ClientIdReused => CError::bad_request(e.to_string()),
            ChatError::Storage(m) => CError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("Storage failure: {m}")),
            ChatError::Unavailable(m) => CError::new(StatusCode::SERVICE_UNAVAILABLE, format!("Unavailable: {m}")),
            ChatError::Refused(rule) => CError::invalid(match rule {
                RoomRule::DirectNeedsOneOther => "a direct room has exactly one other participant".to_string(),
                RoomRule::GroupNeedsName => "a group room needs a room_name".to_string(),
                RoomRule::GroupNeedsOthers => "a group room needs at least one other participant".to_string(),
                RoomRule::TooMany { max } => format!("a room has at most {max} participants"),
                RoomRule::OwnListing => "you cannot open a trade room on your own listing".to_string(),
                RoomRule::TradeNeedsListing => "room_type must be \"direct\" or \"group\"".to_string(),
            }),
        }
    }
}

impl From<crate::store::StoreError> for CError {
    fn from(e: crate::store::StoreError) -> Self {
        ChatError::from(e).into()
    }
}

/// Contract T's envelope around every answer, errors included (`data` null).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TEnvelope<T = serde_json::Value> {
    pub message: String,
    /// The answer's data; `null` in an error.
    #[schema(value_type = Option<Object>)]
    pub data: Option<T>,
    /// The HTTP status, repeated.
    pub status_code: u16,
}

/// Contract T's envelope around a successful answer, for the OpenAPI document (the
/// handlers write [`TEnvelope`] with `data` set).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TData<T> {
    pub message: String,
    pub data: T,
    /// The HTTP status, repeated.
    pub status_code: u16,
}

/// A contract T error: a status and the envelope's `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TError {
    pub status: StatusCode,
    pub message: String,
}

impl TError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        TError { status, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl std::fmt::Display for TError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl ResponseError for TError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        crate::observe::refusal("T", reason(self.status));
        HttpResponse::build(self.status).json(TEnvelope::<serde_json::Value> {
            message: self.message.clone(),
            data: None,
            status_code: self.status.as_u16(),
        })
    }
}

impl From<AuthError> for TError {
    fn from(e: AuthError) -> Self {
        TError::new(StatusCode::UNAUTHORIZED, format!("인증이 필요합니다: {e}"))
    }
}

impl From<Refused> for TError {
    fn from(e: Refused) -> Self {
        TError::new(e.0, e.1)
    }
}

impl From<BadRequest> for TError {
    fn from(e: BadRequest) -> Self {
        TError::bad_request(e.0)
    }
}

impl From<MailboxError> for TError {
    fn from(_: MailboxError) -> Self {
        TError::new(StatusCode::SERVICE_UNAVAILABLE, "서버가 바쁩니다. 잠시 후 다시 시도해 주세요.")
    }
}

impl From<crate::store::StoreError> for TError {
    fn from(e: crate::store::StoreError) -> Self {
        TError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("저장소 오류: {e}"))
    }
}

/// Contract T's refusal when a listing has fewer tickets left than asked for (seed 001).
pub const NOT_ENOUGH: &str = "판매 가능한 수량이 부족합니다.";

impl From<crate::actors::ticket_listing::TradeError> for TError {
    fn from(e: crate::actors::ticket_listing::TradeError) -> Self {
        use crate::actors::ticket_listing::TradeError;
        match e {
            TradeError::ListingNotFound => TError::not_found("티켓을 찾을 수 없습니다."),
            TradeError::TxNotFound => TError::not_found("거래를 찾을 수 없습니다."),
            TradeError::NotParty => TError::forbidden("이 거래의 구매자 또는 판매자만 할 수 있습니다."),
            TradeError::ZeroQuantity => TError::bad_request("quantity must be at least 1"),
            TradeError::NotEnoughStock => TError::bad_request(NOT_ENOUGH),
            TradeError::AmountTooLarge => {
                TError::bad_request(format!("결제 금액은 {} 이하여야 합니다.", crate::money::MAX_AMOUNT))
            }
            TradeError::Expired => TError::bad_request(crate::actors::room::EXPIRED_NOTICE),
            TradeError::Cancelled => TError::bad_request("the payment request was cancelled"),
            TradeError::NotPaidYet => TError::bad_request("the payment request is not paid yet"),
            TradeError::ConfirmedIsFinal => TError::bad_request("a confirmed purchase cannot be cancelled"),
            TradeError::PartialCancel => {
                TError::bad_request("부분 취소는 지원하지 않습니다. 전체 수량을 취소해 주세요.")
            }
            TradeError::InProgress => TError::new(StatusCode::CONFLICT, "이 결제 요청의 결제가 이미 진행 중입니다."),
            TradeError::Storage(m) => TError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("저장소 오류: {m}")),
        }
    }
}
