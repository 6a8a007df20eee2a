//! Use cases: one function for each thing a client does that takes more than one actor.
//!
//! A REST handler parses its request, makes one call here and renders the result in its
//! contract's shape; the WebSocket and SignalR sessions and the NATS core reach rooms
//! through [`cluster::Backend`](crate::cluster::Backend) the same way. A function here only
//! sends messages, in order, to the actors that own the state: the rules are in those
//! actors (the directory refuses a trade room on one's own listing, the key gate a key in
//! flight), so every door gets the same ones.
//!
//! - [`chat`]: opening a trade room, creating a chat room.
//! - [`seats`]: booking seats, with or without an `Idempotency-Key`; a user's bookings.

pub mod chat;
pub mod seats;
