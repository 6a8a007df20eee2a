//! Seats booked for a card payment (contract B), once per `Idempotency-Key` when one is
//! given.

use crate::actors::keys::{Answer, Book, GateError};
use crate::actors::ledger::Fingerprint;
use crate::actors::seat_map::booking::BookSeats;
use crate::actors::seat_map::{BookingRoute, BookingSpec, GetReservations, Reservation, SeatError};
use crate::actors::Registry;
use crate::store::Key;
use std::time::Duration;

/// Why seats were not booked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BookError {
    /// The seat map refused (a seat taken, unknown, listed twice...).
    #[error(transparent)]
    Refused(#[from] SeatError),
    /// The key gate refused the key, or no answer came.
    #[error(transparent)]
    Gate(#[from] GateError),
    #[error("no such performance")]
    NoPerformance,
}

/// Lock `seats` of `performance` for `user` for `ttl`, all or none. With `key` (an
/// `Idempotency-Key` and the request's fingerprint) it goes through the user's key gate,
/// which answers a retry with the first answer; without, straight to the seat map.
pub async fn book_seats(
    registry: &Registry,
    user: u64,
    performance: &str,
    seats: Vec<String>,
    ttl: Duration,
    spec: BookingSpec,
    key: Option<(String, Fingerprint)>,
) -> Result<Reservation, BookError> {
    let seat_map = registry.seat_map_of_performance(performance).ok_or(BookError::NoPerformance)?;
    match key {
        Some((key, fingerprint)) => {
            let gate = registry.keys(user).map_err(GateError::from)?;
            let msg = Book { key, fingerprint, seat_map, seats, ttl, spec };
            match gate.send(msg).await.map_err(GateError::from)?? {
                Answer::Booked(r) => Ok(r),
                Answer::BookRefused(e) => Err(e.into()),
                // Recorded for another endpoint: the fingerprint says so first, but a
                // replay of another kind is the same mistake.
                _ => Err(GateError::KeyReused.into()),
            }
        }
        None => Ok(seat_map.send(BookSeats { user, seats, ttl, spec }).await.map_err(SeatError::from_mailbox)??),
    }
}

/// Every booking of `user`, oldest first (reservation ids only grow): one message to each
/// seat map they have bookings on.
pub async fn bookings_of(registry: &Registry, user: u64) -> Result<Vec<Reservation>, SeatError> {
    let routes = registry.store().scan_under::<BookingRoute>(&Key::BookingsOf(user))?;
    let mut by_seat_map: Vec<(String, Vec<u64>)> = Vec::new();
    for (_, route) in routes {
        match by_seat_map.iter_mut().find(|(id, _)| *id == route.seat_map) {
            Some((_, ids)) => ids.push(route.reservation),
            None => by_seat_map.push((route.seat_map, vec![route.reservation])),
        }
    }
    let mut out = Vec::new();
    for (id, ids) in by_seat_map {
        let Some(seat_map) = registry.seat_map(&id) else { continue };
        out.extend(seat_map.send(GetReservations { ids }).await.map_err(SeatError::from_mailbox)??);
    }
    out.retain(|r| r.user == user);
    out.sort_by_key(|r| r.id);
    Ok(out)
}
