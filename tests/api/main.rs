//! One test binary that drives the real server process over HTTP, like a client.

/// Poll `$check` (an expression that may `.await`) until it is true, for at most 10 s:
/// what a timer does is awaited, not slept for.
macro_rules! eventually {
    ($what:expr, $check:expr) => {{
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if $check {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "never: {}", $what);
            actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }};
}

mod helpers;

mod auth;
mod booking_recovery;
mod bookings;
mod bookings_races;
mod chat;
mod chat_ws;
mod client_ids;
mod cluster;
mod concurrency;
mod directory;
mod edges;
mod expiry;
mod hostile;
mod idempotency;
mod ledger;
mod lifecycle;
mod limits;
mod money;
mod operations;
mod queue_and_catalog;
mod queue_fair_start;
mod queue_socket;
mod reservations_and_payments;
mod restart;
mod signalr;
mod trade;
mod ws_outbox;
mod ws_violations;
