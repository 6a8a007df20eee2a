//! One test binary that drives the real server process over HTTP, like a client.

mod helpers;

mod auth;
mod booking_recovery;
mod bookings;
mod bookings_races;
mod chat;
mod chat_ws;
mod cluster;
mod concurrency;
mod directory;
mod edges;
mod expiry;
mod idempotency;
mod ledger;
mod lifecycle;
mod money;
mod operations;
mod queue_and_catalog;
mod reservations_and_payments;
mod restart;
mod signalr;
mod trade;
mod ws_outbox;
mod ws_violations;
