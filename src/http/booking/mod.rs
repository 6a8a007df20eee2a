//! Contract B (seed 004): seat bookings paid by card through a payment gateway. REST in
//! camelCase; every error is `{"error": "..."}` (see [`BError`](crate::http::error::BError)).
//!
//! - [`bookings`]: bookings (`/bookings`) and paying them by card (`POST /payments/execute`).
//! - [`performances`]: performances, their seats and the seed's `occupiedSeats` lock
//!   documents; admin creation of performances; the test gateway's ledger for operators.

pub mod bookings;
pub mod performances;

use actix_web::web;

/// Every route of contract B.
pub fn routes(cfg: &mut web::ServiceConfig) {
    bookings::routes(cfg);
    performances::routes(cfg);
}
