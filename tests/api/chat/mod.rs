//! Contract C (seed 002), general chat over REST: rooms, messages (paging, replies, edits,
//! deletes, files), reading, search, settings, online status, and restarts. Every answer is
//! checked against the contract, and the state behind it (room lists, pages, participants)
//! after it.
//!
//! The helpers for contract C are re-exported here: `Chat` (the REST client, in
//! `client.rs`) and `WsClient` (a WebSocket subscriber, in `ws_client.rs`); `chat_ws.rs`
//! and `signalr.rs` use them too. The tests are split by feature:
//! - `rooms.rs`: creating, listing and deduplicating rooms; every endpoint's checks of
//!   the token, the participant and the room.
//! - `messages.rs`: paging; sending, replying, editing and deleting.
//! - `room_state.rs`: read positions, search, settings and online status.
//! - `files.rs`: multipart uploads and serving them to participants only.
//! - `restart.rs`: the state survives `kill -9` and a graceful restart.

mod client;
mod ws_client;

mod files;
mod messages;
mod restart;
mod room_state;
mod rooms;

pub use client::*;
pub use ws_client::*;
