//! Contract Q (seed 003): concert seats behind a waiting queue, paid from a wallet. REST in
//! camelCase; every error is `{"status", "error", "code", "message"}` (see
//! [`QError`](crate::http::error::QError)).
//!
//! - [`waiting`]: the queue tokens (`/waiting/issue`, `/waiting/check`) and the gate that
//!   the seat, reservation, wallet and payment endpoints pass through.
//! - [`socket`]: `GET /waiting/ws`, the token's standing pushed.
//! - [`concerts`]: concerts, their schedules and seats; admin creation of catalog data.
//! - [`reservations`]: seat holds (`POST /reservations`) and reading them back.
//! - [`users`]: the wallet (`/users/{userId}/amount`, `/users/{userId}/charge`).
//! - [`payments`]: paying a held reservation from the wallet (`POST /payments`).

pub mod concerts;
pub mod payments;
pub mod reservations;
pub mod socket;
pub mod users;
pub mod waiting;

use actix_web::web;

/// Every route of contract Q.
pub fn routes(cfg: &mut web::ServiceConfig) {
    waiting::routes(cfg);
    concerts::routes(cfg);
    reservations::routes(cfg);
    socket::routes(cfg);
    users::routes(cfg);
    payments::routes(cfg);
}
