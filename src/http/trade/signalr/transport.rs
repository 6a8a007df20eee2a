//! The SignalR transport protocol for the hub: `negotiate` hands out one-time connection
//! tokens (each used once, within [`TOKEN_TTL`]), and the WebSocket upgrade checks the
//! caller and the token before it starts a [`SignalRSession`]. Refusals are in contract
//! T's envelope.

use super::session::{holder, Replay, SignalRWire};
use super::Refused;
use super::{MAX_PENDING_TOKENS, MAX_RECORD, TOKEN_TTL};
use crate::http::author;
use crate::http::error::TEnvelope;
use crate::http::session::Session;
use crate::http::Realtime;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use dashmap::DashMap;
use rand::Rng;
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Instant;
use utoipa::ToSchema;

/// A connection token from negotiate, waiting for its WebSocket.
struct Pending {
    user: u64,
    issued: Instant,
    /// Negotiated with `useStatefulReconnect=true`.
    stateful: bool,
}

/// The edge that issued a connection token (see [`super::handover`]): tokens of an edge end
/// with `.` and its id in hex.
fn issuer(token: &str) -> Option<u64> {
    let (_, node) = token.rsplit_once('.')?;
    u64::from_str_radix(node, 16).ok()
}

/// Connection tokens handed out and not yet used: each is used once, within [`TOKEN_TTL`],
/// and at most [`MAX_PENDING_TOKENS`] wait at once (the oldest give way).
fn pending() -> &'static DashMap<String, Pending> {
    static PENDING: OnceLock<DashMap<String, Pending>> = OnceLock::new();
    PENDING.get_or_init(DashMap::new)
}

fn remember(token: &str, user: u64, stateful: bool) {
    let map = pending();
    if map.len() >= 1024 {
        map.retain(|_, p| p.issued.elapsed() < TOKEN_TTL);
    }
    while map.len() >= MAX_PENDING_TOKENS {
        let oldest = map.iter().min_by_key(|e| e.value().issued).map(|e| e.key().clone());
        match oldest {
            Some(k) => map.remove(&k),
            None => break,
        };
    }
    map.insert(token.to_string(), Pending { user, issued: Instant::now(), stateful });
}

/// The user a connection token was issued to, and whether it was negotiated stateful, if
/// it is known and fresh; it is spent.
fn redeem(token: &str) -> Option<(u64, bool)> {
    pending().remove(token).filter(|(_, p)| p.issued.elapsed() < TOKEN_TTL).map(|(_, p)| (p.user, p.stateful))
}

fn random_id() -> String {
    let bytes: [u8; 16] = rand::thread_rng().gen();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A refusal in contract T's envelope: `{"message", "data": null, "statusCode"}`.
fn refusal(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    let mut res = HttpResponse::build(status);
    if status == StatusCode::UNAUTHORIZED {
        res.insert_header(("WWW-Authenticate", "Bearer"));
    }
    res.json(json!({ "message": message.into(), "data": null, "statusCode": status.as_u16() }))
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = t::AvailableTransport)]
#[serde(rename_all = "camelCase")]
pub struct AvailableTransport {
    #[schema(example = "WebSockets")]
    pub transport: String,
    pub transfer_formats: Vec<String>,
}

/// The negotiate answer of the SignalR transport protocol.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = t::NegotiateResponse)]
#[serde(rename_all = "camelCase")]
pub struct NegotiateResponse {
    /// 1, or 0 for a client that asked for version 0.
    pub negotiate_version: u32,
    pub connection_id: String,
    /// The `id` of the WebSocket request (version 1; version 0 uses `connectionId`). Used once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_token: Option<String>,
    pub available_transports: Vec<AvailableTransport>,
    /// `true` when the client asked for stateful reconnect (`useStatefulReconnect=true`);
    /// absent otherwise.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub use_stateful_reconnect: bool,
}

/// SignalR negotiation for the chat hub. Then open the WebSocket
/// `GET /hubs/chat?id={connectionToken}&access_token={JWT}` and speak the SignalR JSON hub
/// protocol, version 1: methods `JoinRoom(roomId)`, `LeaveRoom(roomId)` and
/// `SendMessage(roomId, message, clientMsgId?)`; events
/// `ReceiveMessage`, `RoomUpdated`, `UserTyping`, `UserStatus`, `MessageRead`,
/// `MessageUpdated`, `MessageDeleted`. A connection token works once, for two minutes;
/// clients may also skip negotiation and open the WebSocket without `id`.
#[utoipa::path(post, path = "/hubs/chat/negotiate", tag = "T: SignalR",
    params(("negotiateVersion" = Option<u64>, Query, minimum = 0, maximum = 9007199254740991_u64, description = "The client's negotiate protocol version (0 if absent)"),
        ("useStatefulReconnect" = Option<bool>, Query, description = "`true`: stateful reconnect (with negotiateVersion 1); the answer then says `useStatefulReconnect: true`")),
    responses((status = 200, body = NegotiateResponse),
        (status = 400, description = "`negotiateVersion` is not a number, or `useStatefulReconnect` not `true` or `false`", body = TEnvelope),
        (status = 401, description = "No valid token", body = TEnvelope)),
    security(("bearer" = [])))]
pub async fn negotiate(state: web::Data<Realtime>, req: HttpRequest) -> HttpResponse {
    let me = match crate::http::identify_with_query(&req) {
        Ok(me) => me,
        Err(e) => return refusal(StatusCode::UNAUTHORIZED, format!("Authentication required: {e}")),
    };
    let q = web::Query::<HashMap<String, String>>::from_query(req.query_string()).map(|q| q.into_inner());
    let asked = match q.as_ref().ok().and_then(|q| q.get("negotiateVersion")) {
        None => 0,
        Some(v) => match crate::http::schema::uint(v) {
            Some(v) => v,
            None => return refusal(StatusCode::BAD_REQUEST, format!("Invalid negotiateVersion '{v}'.")),
        },
    };
    let version = asked.min(1) as u32;
    let asked_stateful = match q.as_ref().ok().and_then(|q| q.get("useStatefulReconnect")) {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(v) => return refusal(StatusCode::BAD_REQUEST, format!("Invalid useStatefulReconnect '{v}'.")),
    };
    // Stateful reconnect needs the connection token of version 1.
    let stateful = version == 1 && asked_stateful;
    // An edge's tokens name it, so that a reconnect through another edge finds it.
    let token = match &state.backend {
        crate::cluster::Backend::Remote(edge) => format!("{}.{:016x}", random_id(), edge.id()),
        crate::cluster::Backend::Local(_) => random_id(),
    };
    remember(&token, me.user_id, stateful);
    let (connection_id, connection_token) = if version == 0 { (token, None) } else { (random_id(), Some(token)) };
    HttpResponse::Ok().json(NegotiateResponse {
        negotiate_version: version,
        connection_id,
        connection_token,
        available_transports: vec![AvailableTransport {
            transport: "WebSockets".into(),
            transfer_formats: vec!["Text".into(), "Binary".into()],
        }],
        use_stateful_reconnect: stateful,
    })
}

/// The WebSocket: refused before the upgrade with 401 (no valid token), 404 (an `id` that
/// negotiate did not hand out, or that was used) or 403 (another user's `id`).
#[utoipa::path(get, path = "/hubs/chat", tag = "T: ticket trade",
    description = "The SignalR hub's WebSocket (`Upgrade: websocket`), after `POST /hubs/chat/negotiate`: the ASP.NET Core SignalR hub protocol, version 1, JSON (`{\"protocol\":\"json\",\"version\":1}` + 0x1E, text frames) or MessagePack (binary frames). Methods `JoinRoom(roomId)`, `LeaveRoom(roomId)`, `SendMessage(roomId, message, clientMsgId?)` (posts text to a room of yours; the Completion's result is the stored message as `ReceiveMessage` renders it; `clientMsgId`, 1 to 64 visible ASCII characters, makes a retry within 25 hours answer the first message instead of posting again, and is refused with a Completion error when reused with another message); events `ReceiveMessage`, `RoomUpdated`, `UserTyping`, `UserStatus`, `MessageRead`, `MessageUpdated`, `MessageDeleted`. See docs/api.md.",
    params(("id" = Option<String>, Query, description = "The connectionToken from negotiate (absent with skipNegotiation)"),
        ("access_token" = Option<String>, Query, description = "The JWT (or the Authorization header)")),
    responses((status = 101, description = "Switching Protocols: the hub connection"),
        (status = 400, description = "Not a WebSocket handshake", body = TEnvelope),
        (status = 401, description = "No valid token", body = TEnvelope),
        (status = 403, description = "Another user's connection token", body = TEnvelope),
        (status = 404, description = "A connection token negotiate did not hand out, or one already used", body = TEnvelope)),
    security(("bearer" = [])))]
pub async fn connect(state: web::Data<Realtime>, req: HttpRequest) -> Result<HttpResponse, actix_web::Error> {
    let me = match crate::http::identify_with_query(&req) {
        Ok(me) => me,
        Err(e) => return Ok(refusal(StatusCode::UNAUTHORIZED, format!("Authentication required: {e}"))),
    };
    if let Err(e) = ws::handshake(&req) {
        return Ok(refusal(StatusCode::BAD_REQUEST, format!("This endpoint takes WebSocket requests only: {e}")));
    }
    if !state.backend.available() {
        return Ok(refusal(StatusCode::SERVICE_UNAVAILABLE, "This node cannot reach the service now; try another."));
    }
    // A record may span frames up to MAX_RECORD; one frame is bounded like the plain socket's.
    let max_frame = state.settings.ws_max_frame.clamp(1, MAX_RECORD);
    let q = web::Query::<HashMap<String, String>>::from_query(req.query_string()).map(|q| q.into_inner());
    let mut replay = None;
    if let Some(id) = q.as_ref().ok().and_then(|q| q.get("id")) {
        // A stateful connection taken over with a new socket (its token stays valid for
        // as long as the connection lives), or a token from negotiate, used once.
        if let Some((user, session)) = holder(id) {
            if user != me.user_id {
                return Ok(refusal(StatusCode::FORBIDDEN, "The connection belongs to another user."));
            }
            return Session::take_over(&req, session, max_frame);
        }
        // A connection of the process before a restart, resumed if that can be done exactly.
        match super::parking::take(id, me.user_id) {
            Err(Refused::Forbidden) => {
                return Ok(refusal(StatusCode::FORBIDDEN, "The connection belongs to another user."))
            }
            Ok(Some(parked)) => {
                return match super::restore::reopen(&state, &req, &me, id, parked, max_frame).await {
                    Ok(upgrade) => upgrade,
                    Err(_) => Ok(refusal(StatusCode::NOT_FOUND, "No Connection with that ID")),
                };
            }
            Ok(None) | Err(Refused::Gone) => {}
        }
        match redeem(id) {
            // Another edge's connection: taken over from it, if that can be done exactly.
            None => {
                let Some(node) = issuer(id) else {
                    return Ok(refusal(StatusCode::NOT_FOUND, "No Connection with that ID"));
                };
                return match super::handover::arrive(&state, &req, &me, id, node, max_frame).await {
                    Ok(upgrade) => upgrade,
                    Err(Refused::Forbidden) => {
                        Ok(refusal(StatusCode::FORBIDDEN, "The connection belongs to another user."))
                    }
                    Err(Refused::Gone) => Ok(refusal(StatusCode::NOT_FOUND, "No Connection with that ID")),
                };
            }
            Some((user, _)) if user != me.user_id => {
                return Ok(refusal(StatusCode::FORBIDDEN, "The connection belongs to another user."))
            }
            Some((_, true)) => {
                let s = &state.settings;
                let r = Replay::new(id.clone(), s.signalr_reconnect_window, s.signalr_reconnect_buffer_bytes);
                // A core or a single server keeps a record of it that outlives the process.
                replay = Some(match &state.backend {
                    crate::cluster::Backend::Local(registry) => r.park_in(registry.store().clone()),
                    crate::cluster::Backend::Remote(_) => r,
                });
            }
            Some((_, false)) => {}
        }
    }
    let session = Session::new(&state, author(&me), SignalRWire::new(state.links.clone(), replay));
    session.start(&req, max_frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_tokens_work_once() {
        remember("t-once", 5, false);
        assert_eq!(redeem("t-once"), Some((5, false)));
        assert_eq!(redeem("t-once"), None);
        assert_eq!(redeem("never-issued"), None);
    }
}
