//! Contract T's SignalR hub at [`HUB_PATH`] (`/hubs/chat`): the ASP.NET Core SignalR JSON
//! hub protocol, version 1, over WebSockets, so that the official clients
//! (`@microsoft/signalr`, `signalr_netcore`) connect unchanged, with the JSON or the
//! MessagePack hub protocol. Each socket is a shared
//! [`Session`](crate::http::session::Session) whose wire is a [`SignalRWire`]: the same
//! [`Hub`](crate::actors::hub::Hub), room `Join`, outbox and eviction of slow readers as
//! contract C's [`ws`](crate::http::chat::ws), another wire format.
//!
//! # The protocol in brief
//! - `POST /hubs/chat/negotiate?negotiateVersion=1` (bearer token) answers a one-time
//!   `connectionToken` and the one transport, WebSockets. The client then opens
//!   `GET /hubs/chat?id=<connectionToken>` with the token as `access_token` (or the
//!   `Authorization` header); clients with `skipNegotiation` open it without `id`.
//! - Every message is a JSON record ended by `0x1E`; a frame may carry several records and
//!   a record may span frames. The first record is the handshake
//!   `{"protocol":"json","version":1}`, answered `{}` (or `{"error":...}` and a close).
//! - Then: Invocation (1) `{"type":1,"invocationId":"7","target":"JoinRoom","arguments":[1]}`
//!   answered by a Completion (3) `{"type":3,"invocationId":"7","result":null}` or
//!   `{..."error":"..."}` (no Completion without `invocationId`); Ping (6) both ways,
//!   the server's every [`PING_INTERVAL`]; Close (7) both ways, the server's when the
//!   client was silent for [`IDLE_TIMEOUT`](crate::http::session::IDLE_TIMEOUT), broke the protocol, or stopped reading.
//! - Hub methods: `JoinRoom(roomId)`, `LeaveRoom(roomId)`, and
//!   `SendMessage(roomId, message, clientMsgId?)`, which posts text to a room of the
//!   caller's and completes with the stored message as `ReceiveMessage` renders it (a
//!   `clientMsgId` used before by the caller in the room posts nothing and completes with
//!   the message it made; see [`ClientMsgId`](crate::actors::room::ClientMsgId)). Server events are Invocations
//!   without `invocationId`: `ReceiveMessage`, `RoomUpdated`, `UserTyping`, `UserStatus`,
//!   `MessageRead`, `MessageUpdated`, `MessageDeleted`, each with one camelCase payload.
//!
//! After the handshake the session is in `user_{id}`; `JoinRoom` adds it to `room_{id}`
//! through the room (participants only). A message reaching it through both groups is
//! sent once.
//!
//! # Files
//! - [`transport`]: `negotiate`, its one-time connection tokens, and the WebSocket upgrade.
//! - [`protocol`]: what the hub protocols share: messages, the [`HubProtocol`] trait, hub
//!   method arguments, and the domain's events as Invocations.
//! - [`json`], [`msgpack`]: the two encodings.
//! - [`session`]: [`SignalRWire`]: the handshake, invocations, `JoinRoom`/`LeaveRoom`/`SendMessage`;
//!   the stateful connections a reconnect may take over (by token), and a connection's state
//!   as it moves to another edge ([`session::Handed`]).
//! - [`handover`]: a stateful connection taken over through another edge.
//! - [`parking`]: a stateful connection's record, which outlives the process.
//! - [`restore`]: a connection of the process before resumed from its record.

pub mod handover;
pub mod json;
pub mod msgpack;
pub mod parking;
pub mod protocol;
pub mod restore;
pub mod session;
pub mod transport;

pub use protocol::HubProtocol;
pub use session::SignalRWire;

/// The hub protocols a handshake may choose.
pub const PROTOCOLS: &[&dyn HubProtocol] = &[&json::Json, &msgpack::MessagePack];

use actix_web::web;
use std::time::Duration;

/// Why a reconnect cannot resume a connection here (held by another node, or parked by
/// the process before this one).
pub enum Refused {
    /// Another user's (403).
    Forbidden,
    /// No such connection, or none that can be resumed without a gap (404).
    Gone,
}

/// The hub's path; negotiation is `{HUB_PATH}/negotiate`.
pub const HUB_PATH: &str = "/hubs/chat";
/// How often the server sends a Ping record (the clients' server timeout is 30 s).
pub const PING_INTERVAL: Duration = Duration::from_secs(15);
/// How long a connection token from negotiate may wait for its WebSocket.
pub const TOKEN_TTL: Duration = Duration::from_secs(120);
/// Most connection tokens waiting for their WebSocket at once.
pub const MAX_PENDING_TOKENS: usize = 10_000;
/// The largest record a client may send (a longer unterminated one closes the connection).
pub const MAX_RECORD: usize = 1 << 20;

/// The hub's routes: negotiation and the WebSocket.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/hubs/chat/negotiate", web::post().to(transport::negotiate))
        .route(HUB_PATH, web::get().to(transport::connect));
}
