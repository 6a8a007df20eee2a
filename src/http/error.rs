//! Contract Q's error: `{"status", "error", "code", "message"}` with the contract's status.

use super::BadRequest;
use crate::actors::catalog::CatalogError;
use crate::actors::seat_map::SeatError;
use crate::actors::waiting_queue::QueueError;
use crate::actors::wallet::{ChargeRefusal, PayRefusal, WalletError};
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

impl ResponseError for QError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
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

impl From<WalletError> for QError {
    fn from(e: WalletError) -> Self {
        let (status, code) = match e {
            WalletError::KeyReused => (StatusCode::UNPROCESSABLE_ENTITY, "IDEMPOTENCY_KEY_REUSED"),
            WalletError::KeyInProgress => (StatusCode::CONFLICT, "IDEMPOTENCY_KEY_IN_PROGRESS"),
            WalletError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
            WalletError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "STORAGE_FAILURE"),
        };
        QError::new(status, code, e.to_string())
    }
}

impl From<QueueError> for QError {
    /// A failed queue gate on a gated endpoint.
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Storage(m) => QError::new(StatusCode::INTERNAL_SERVER_ERROR, "STORAGE_FAILURE", m),
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
            SeatError::Taken(_) => QError::new(StatusCode::CONFLICT, "SEAT_ALREADY_HELD", msg),
            SeatError::NotFound => QError::not_found("RESERVATION_NOT_FOUND", msg),
            SeatError::Expired => QError::not_found("RESERVATION_EXPIRED", msg),
            SeatError::Cancelled => QError::not_found("RESERVATION_CANCELLED", msg),
            SeatError::NotYours => QError::forbidden(msg),
            SeatError::AlreadyConfirmed => QError::new(StatusCode::CONFLICT, "ALREADY_CONFIRMED", msg),
            SeatError::PaymentInProgress => QError::new(StatusCode::CONFLICT, "PAYMENT_IN_PROGRESS", msg),
            SeatError::KeyReused => QError::new(StatusCode::UNPROCESSABLE_ENTITY, "IDEMPOTENCY_KEY_REUSED", msg),
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
