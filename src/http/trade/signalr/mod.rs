//! Contract T's SignalR hub at [`HUB_PATH`] (`/hubs/chat`): the ASP.NET Core SignalR JSON
//! hub protocol, version 1, over WebSockets, so that the official clients
//! (`@microsoft/signalr`, `signalr_netcore`) connect unchanged. One [`SignalRSession`]
//! actor per socket; it is the sibling of contract C's `chat_ws` session: the same
//! [`Hub`], the same room `Join`, the same eviction of slow readers, another wire format.
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
//!   client was silent for [`IDLE_TIMEOUT`], broke the protocol, or stopped reading.
//! - Hub methods: `JoinRoom(roomId)`, `LeaveRoom(roomId)`. Server events are Invocations
//!   without `invocationId`: `ReceiveMessage`, `RoomUpdated`, `UserTyping`, `UserStatus`,
//!   `MessageRead`, `MessageUpdated`, `MessageDeleted`, each with one camelCase payload.
//!
//! After the handshake the session is in `user_{id}`; `JoinRoom` adds it to `room_{id}`
//! through the room (participants only). A message reaching it through both groups is
//! sent once.

use crate::actors::hub::{room_group, user_group, ChatEvent, Deliver, Event, Hub, MessageEvent, Subscriber};
use crate::actors::room::{Author, Join};
use crate::actors::Registry;
use crate::http::author;
use crate::http::signed::{LinkSigner, IMAGE_LINK_TTL};
use crate::http::AppState;
use crate::time::{ms, now_ms, rfc3339};
use actix::prelude::*;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use dashmap::DashMap;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use utoipa::ToSchema;

/// The hub's path; negotiation is `{HUB_PATH}/negotiate`.
pub const HUB_PATH: &str = "/hubs/chat";
/// How often the server sends a Ping record (the clients' server timeout is 30 s).
pub const PING_INTERVAL: Duration = Duration::from_secs(15);
/// A connection the client has been silent on for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A connection without a handshake after this long is closed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a connection token from negotiate may wait for its WebSocket.
pub const TOKEN_TTL: Duration = Duration::from_secs(120);
/// Most connection tokens waiting for their WebSocket at once.
pub const MAX_PENDING_TOKENS: usize = 10_000;
/// The largest record a client may send (a longer unterminated one closes the connection).
pub const MAX_RECORD: usize = 1 << 20;
/// How often timeouts are checked.
const CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// How many `ReceiveMessage` ids a connection remembers to send each message once.
const RECENT_MESSAGES: usize = 512;
/// How many recent events a connection remembers (by identity) to send each event once
/// when it was published to several groups the connection is in.
const RECENT_EVENTS: usize = 16;
/// The hub's render slot of this protocol.
const SLOT: usize = 1;
/// The record separator.
const RS: u8 = 0x1e;
const PING: &str = "{\"type\":6}\u{1e}";
const HANDSHAKE_OK: &str = "{}\u{1e}";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/hubs/chat/negotiate", web::post().to(negotiate)).route(HUB_PATH, web::get().to(connect));
}

// ---------------------------------------------------------------------------------------
// Negotiation and the upgrade

/// A connection token from negotiate, waiting for its WebSocket.
struct Pending {
    user: u64,
    issued: Instant,
}

/// Connection tokens handed out and not yet used: each is used once, within [`TOKEN_TTL`],
/// and at most [`MAX_PENDING_TOKENS`] wait at once (the oldest give way).
fn pending() -> &'static DashMap<String, Pending> {
    static PENDING: OnceLock<DashMap<String, Pending>> = OnceLock::new();
    PENDING.get_or_init(DashMap::new)
}

fn remember(token: &str, user: u64) {
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
    map.insert(token.to_string(), Pending { user, issued: Instant::now() });
}

/// The user a connection token was issued to, if it is known and fresh; it is spent.
fn redeem(token: &str) -> Option<u64> {
    pending().remove(token).filter(|(_, p)| p.issued.elapsed() < TOKEN_TTL).map(|(_, p)| p.user)
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
#[serde(rename_all = "camelCase")]
pub struct AvailableTransport {
    #[schema(example = "WebSockets")]
    pub transport: String,
    pub transfer_formats: Vec<String>,
}

/// The negotiate answer of the SignalR transport protocol.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NegotiateResponse {
    /// 1, or 0 for a client that asked for version 0.
    pub negotiate_version: u32,
    pub connection_id: String,
    /// The `id` of the WebSocket request (version 1; version 0 uses `connectionId`). Used once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_token: Option<String>,
    pub available_transports: Vec<AvailableTransport>,
}

/// SignalR negotiation for the chat hub. Then open the WebSocket
/// `GET /hubs/chat?id={connectionToken}&access_token={JWT}` and speak the SignalR JSON hub
/// protocol, version 1: methods `JoinRoom(roomId)` and `LeaveRoom(roomId)`; events
/// `ReceiveMessage`, `RoomUpdated`, `UserTyping`, `UserStatus`, `MessageRead`,
/// `MessageUpdated`, `MessageDeleted`. A connection token works once, for two minutes;
/// clients may also skip negotiation and open the WebSocket without `id`.
#[utoipa::path(post, path = "/hubs/chat/negotiate", tag = "T: SignalR",
    params(("negotiateVersion" = Option<u32>, Query, description = "The client's negotiate protocol version (0 if absent)")),
    responses((status = 200, body = NegotiateResponse),
        (status = 400, description = "`negotiateVersion` is not a number; `{message, data: null, statusCode}`"),
        (status = 401, description = "No valid token; `{message, data: null, statusCode}`")),
    security(("bearer" = [])))]
pub async fn negotiate(req: HttpRequest) -> HttpResponse {
    let me = match crate::http::identify_with_query(&req) {
        Ok(me) => me,
        Err(e) => return refusal(StatusCode::UNAUTHORIZED, format!("Authentication required: {e}")),
    };
    let q = web::Query::<HashMap<String, String>>::from_query(req.query_string()).map(|q| q.into_inner());
    let asked = match q.as_ref().ok().and_then(|q| q.get("negotiateVersion")) {
        None => 0,
        Some(v) => match v.trim().parse::<u32>() {
            Ok(v) => v,
            Err(_) => return refusal(StatusCode::BAD_REQUEST, format!("Invalid negotiateVersion '{v}'.")),
        },
    };
    let version = asked.min(1);
    let token = random_id();
    remember(&token, me.user_id);
    let (connection_id, connection_token) = if version == 0 { (token, None) } else { (random_id(), Some(token)) };
    HttpResponse::Ok().json(NegotiateResponse {
        negotiate_version: version,
        connection_id,
        connection_token,
        available_transports: vec![AvailableTransport {
            transport: "WebSockets".into(),
            transfer_formats: vec!["Text".into(), "Binary".into()],
        }],
    })
}

/// The WebSocket: refused before the upgrade with 401 (no valid token), 404 (an `id` that
/// negotiate did not hand out, or that was used) or 403 (another user's `id`).
pub async fn connect(
    state: web::Data<AppState>,
    req: HttpRequest,
    stream: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    let me = match crate::http::identify_with_query(&req) {
        Ok(me) => me,
        Err(e) => return Ok(refusal(StatusCode::UNAUTHORIZED, format!("Authentication required: {e}"))),
    };
    if let Err(e) = ws::handshake(&req) {
        return Ok(refusal(StatusCode::BAD_REQUEST, format!("This endpoint takes WebSocket requests only: {e}")));
    }
    let q = web::Query::<HashMap<String, String>>::from_query(req.query_string()).map(|q| q.into_inner());
    if let Some(id) = q.as_ref().ok().and_then(|q| q.get("id")) {
        match redeem(id) {
            None => return Ok(refusal(StatusCode::NOT_FOUND, "No Connection with that ID")),
            Some(user) if user != me.user_id => {
                return Ok(refusal(StatusCode::FORBIDDEN, "The connection belongs to another user."))
            }
            Some(_) => {}
        }
    }
    let now = Instant::now();
    let session = SignalRSession {
        id: state.registry.hub().session_id(),
        me: author(&me),
        registry: state.registry.clone(),
        links: state.links.clone(),
        outbox: state.settings.ws_outbox.max(1),
        evicted: Arc::new(AtomicBool::new(false)),
        opened: now,
        heard: now,
        partial: Vec::new(),
        records: VecDeque::new(),
        busy: false,
        connected: false,
        closing: false,
        rooms: HashSet::new(),
        recent_ids: VecDeque::new(),
        seen_ids: HashSet::new(),
        recent_events: VecDeque::new(),
    };
    ws::WsResponseBuilder::new(session, &req, stream).frame_size(MAX_RECORD).start()
}

// ---------------------------------------------------------------------------------------
// The session

pub struct SignalRSession {
    id: u64,
    me: Author,
    registry: Registry,
    links: LinkSigner,
    outbox: usize,
    /// Set by the hub when it gave up on this session.
    evicted: Arc<AtomicBool>,
    opened: Instant,
    /// When the client was last heard from.
    heard: Instant,
    /// The bytes after the last `0x1E`: the start of a record still arriving. At most
    /// [`MAX_RECORD`] long.
    partial: Vec<u8>,
    /// Complete records not yet handled, in order (those after a `JoinRoom` wait for it).
    records: VecDeque<Vec<u8>>,
    /// A `JoinRoom` is waiting for its room: nothing else is handled until it is answered.
    busy: bool,
    /// The handshake was answered: only then is the session in the hub's groups and counted
    /// as a connection of its user (and `stopped` undoes that).
    connected: bool,
    /// A Close was sent or received: nothing more is read or sent.
    closing: bool,
    /// The rooms joined with `JoinRoom` (or being joined), whose groups are left when the
    /// session stops.
    rooms: HashSet<u64>,
    /// The latest `ReceiveMessage`s sent as (room, message id), oldest first, at most
    /// [`RECENT_MESSAGES`]; `seen_ids` holds the same pairs.
    recent_ids: VecDeque<(u64, u64)>,
    seen_ids: HashSet<(u64, u64)>,
    /// The latest events delivered, at most [`RECENT_EVENTS`], compared by identity: one
    /// event published to several of this session's groups arrives once per group.
    recent_events: VecDeque<Arc<Event>>,
}

impl SignalRSession {
    fn hub(&self) -> &Hub {
        self.registry.hub()
    }

    fn subscriber(&self, ctx: &mut ws::WebsocketContext<Self>) -> Subscriber {
        Subscriber::new(self.id, self.me.id, ctx.address().recipient(), self.evicted.clone(), self.outbox)
    }

    /// Tell the rooms of the user that they came online or went offline.
    fn announce(&self, online: bool) {
        let rooms = self.registry.rooms_of(self.me.id).unwrap_or_else(|e| {
            tracing::warn!(user = self.me.id, error = %e, "could not read a user's rooms to announce presence");
            Vec::new()
        });
        self.hub().announce_presence(&rooms, self.me.id, &self.me.name, online);
    }

    /// Send a Close record and close the socket.
    fn fail(&mut self, ctx: &mut ws::WebsocketContext<Self>, error: &str, code: ws::CloseCode) {
        if self.closing {
            return;
        }
        self.closing = true;
        ctx.text(record(&json!({ "type": 7, "error": error, "allowReconnect": false })));
        ctx.close(Some(ws::CloseReason { code, description: Some(error.chars().take(100).collect()) }));
        ctx.stop();
    }

    /// Answer an invocation that asked for an answer.
    fn complete(&self, ctx: &mut ws::WebsocketContext<Self>, id: Option<String>, outcome: Result<(), String>) {
        let Some(id) = id else { return };
        let v = match outcome {
            Ok(()) => json!({ "type": 3, "invocationId": id, "result": null }),
            Err(e) => json!({ "type": 3, "invocationId": id, "error": e }),
        };
        ctx.text(record(&v));
    }

    /// Bytes of a frame: split into records, then handled in order.
    fn on_bytes(&mut self, data: &[u8], ctx: &mut ws::WebsocketContext<Self>) {
        if self.closing {
            return;
        }
        let mut rest = data;
        while let Some(pos) = rest.iter().position(|&b| b == RS) {
            let mut rec = std::mem::take(&mut self.partial);
            rec.extend_from_slice(&rest[..pos]);
            self.records.push_back(rec);
            rest = &rest[pos + 1..];
        }
        self.partial.extend_from_slice(rest);
        if self.partial.len() > MAX_RECORD {
            return self.fail(ctx, "A message is larger than the server accepts.", ws::CloseCode::Size);
        }
        self.drain(ctx);
    }

    /// Handle the waiting records until one has to wait for an answer.
    fn drain(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        while !self.busy && !self.closing {
            let Some(rec) = self.records.pop_front() else { return };
            self.on_record(&rec, ctx);
        }
    }

    fn on_record(&mut self, raw: &[u8], ctx: &mut ws::WebsocketContext<Self>) {
        if raw.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        if !self.connected {
            return self.on_handshake(raw, ctx);
        }
        let v: Value = match serde_json::from_slice(raw) {
            Ok(v) => v,
            Err(e) => return self.fail(ctx, &format!("Invalid message: {e}"), ws::CloseCode::Invalid),
        };
        let Some(kind) = v.get("type").and_then(Value::as_u64) else {
            return self.fail(ctx, "Invalid message: 'type' is required.", ws::CloseCode::Invalid);
        };
        let invocation_id = v.get("invocationId").and_then(Value::as_str).map(str::to_string);
        match kind {
            1 => self.on_invocation(&v, invocation_id, ctx),
            4 => self.complete(ctx, invocation_id, Err("Streaming methods are not supported by this hub.".into())),
            7 => {
                self.closing = true;
                ctx.close(Some(ws::CloseCode::Normal.into()));
                ctx.stop();
            }
            // 2 StreamItem, 3 Completion (the server invokes nothing with an id), 5
            // CancelInvocation, 6 Ping, 8 Ack and 9 Sequence (no stateful reconnect), and
            // types from later protocol versions: nothing to do.
            _ => {}
        }
    }

    fn on_handshake(&mut self, raw: &[u8], ctx: &mut ws::WebsocketContext<Self>) {
        #[derive(Deserialize)]
        struct Handshake {
            protocol: String,
            version: u32,
        }
        let refused = match serde_json::from_slice::<Handshake>(raw) {
            Err(e) => format!("Handshake request is invalid: {e}"),
            Ok(h) if h.protocol != "json" => format!("The protocol '{}' is not supported.", h.protocol),
            Ok(h) if h.version != 1 => {
                format!("The server does not support version {} of the 'json' protocol.", h.version)
            }
            Ok(_) => {
                ctx.text(HANDSHAKE_OK);
                return self.on_connected(ctx);
            }
        };
        self.closing = true;
        ctx.text(record(&json!({ "error": refused })));
        ctx.close(Some(ws::CloseReason { code: ws::CloseCode::Protocol, description: Some("handshake".into()) }));
        ctx.stop();
    }

    fn on_connected(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        self.connected = true;
        if self.hub().connected(self.me.id) {
            self.announce(true);
        }
        let sub = self.subscriber(ctx);
        self.hub().join(&user_group(self.me.id), sub);
    }

    fn on_invocation(&mut self, v: &Value, id: Option<String>, ctx: &mut ws::WebsocketContext<Self>) {
        let Some(target) = v.get("target").and_then(Value::as_str) else {
            return self.complete(ctx, id, Err("Invalid invocation: 'target' is required.".into()));
        };
        let args = match v.get("arguments") {
            Some(Value::Array(a)) => a.as_slice(),
            None | Some(Value::Null) => &[],
            Some(_) => return self.complete(ctx, id, Err("Invalid invocation: 'arguments' must be an array.".into())),
        };
        if v.get("streamIds").and_then(Value::as_array).is_some_and(|s| !s.is_empty()) {
            return self.complete(ctx, id, Err(format!("Failed to invoke '{target}': streams are not supported.")));
        }
        let join = target.eq_ignore_ascii_case("JoinRoom");
        if !join && !target.eq_ignore_ascii_case("LeaveRoom") {
            return self.complete(ctx, id, Err(format!("Unknown hub method '{target}'.")));
        }
        let room = match room_argument(args) {
            Ok(r) => r,
            Err(e) => return self.complete(ctx, id, Err(format!("Failed to invoke '{target}': {e}"))),
        };
        if join {
            self.join_room(room, id, ctx);
        } else {
            self.hub().leave(&room_group(room), self.id);
            self.rooms.remove(&room);
            self.complete(ctx, id, Ok(()));
        }
    }

    /// Join `room_{room}` through the room (participants only). Nothing else is handled
    /// until the room answers, so the Completion goes out before the room's events, and a
    /// `LeaveRoom` after it in the same frame comes after it.
    fn join_room(&mut self, room: u64, id: Option<String>, ctx: &mut ws::WebsocketContext<Self>) {
        let addr = match self.registry.room(room) {
            Ok(Some(a)) => a,
            Ok(None) => return self.complete(ctx, id, Err(format!("Room {room} not found."))),
            Err(e) => return self.complete(ctx, id, Err(format!("Storage failure: {e}"))),
        };
        let join = addr.send(Join { subscriber: self.subscriber(ctx), since: None });
        self.busy = true;
        // Counted as joined from now on: if the session stops before the answer, it still
        // leaves the group.
        let fresh = self.rooms.insert(room);
        ctx.wait(join.into_actor(self).map(move |answer, act, ctx| {
            act.busy = false;
            let outcome = match answer {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("Cannot join room {room}: {e}.")),
                Err(_) => Err("The room is busy; try again.".into()),
            };
            if outcome.is_err() && fresh {
                act.rooms.remove(&room);
            }
            act.complete(ctx, id, outcome);
            act.drain(ctx);
        }));
    }

    /// Whether `event` is new to this connection (remembering it).
    fn is_new(&mut self, event: &Arc<Event>) -> bool {
        if self.recent_events.iter().any(|e| Arc::ptr_eq(e, event)) {
            return false;
        }
        if self.recent_events.len() == RECENT_EVENTS {
            self.recent_events.pop_front();
        }
        self.recent_events.push_back(event.clone());
        let ChatEvent::Message(m) = &event.kind else { return true };
        if !self.seen_ids.insert((m.room, m.id)) {
            return false;
        }
        self.recent_ids.push_back((m.room, m.id));
        if self.recent_ids.len() > RECENT_MESSAGES {
            if let Some(old) = self.recent_ids.pop_front() {
                self.seen_ids.remove(&old);
            }
        }
        true
    }
}

/// A room id argument: a number, or a string of digits.
fn room_argument(args: &[Value]) -> Result<u64, String> {
    let [arg] = args else {
        return Err(format!("it takes 1 argument (roomId), not {}.", args.len()));
    };
    let id = match arg {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    id.filter(|&id| id > 0).ok_or_else(|| format!("roomId must be a room id, not {arg}."))
}

/// A value as one record: its JSON and the separator.
fn record(v: &Value) -> String {
    let mut s = v.to_string();
    s.push(RS as char);
    s
}

/// A message kind as contract T names it: `TEXT`, `IMAGE`, `FILE`, `SYSTEM`,
/// `PURCHASE_CONFIRMED`, ...
pub fn message_type(kind: &str) -> String {
    kind.to_ascii_uppercase()
}

/// A message as contract T's `ReceiveMessage` payload. Image links are signed to work
/// until `now` + [`IMAGE_LINK_TTL`].
pub fn message_payload(m: &MessageEvent, links: &LinkSigner, now: u64) -> Value {
    let images = if m.images.is_empty() {
        Value::Null
    } else {
        let expires = now + ms(IMAGE_LINK_TTL);
        m.images.iter().map(|i| json!({ "url": links.sign(&i.url, expires), "expiresAt": rfc3339(expires) })).collect()
    };
    json!({
        "messageId": m.id,
        "roomId": m.room,
        "senderId": m.sender,
        "senderNickname": m.sender_name,
        "senderProfileImage": m.sender_picture,
        "message": m.content,
        "images": images,
        "createdAt": rfc3339(m.created_at),
        "type": message_type(&m.kind),
        "replyToMessageId": m.reply_to,
        "file": m.file.as_ref().map(|f| json!({ "url": f.url, "name": f.name, "size": f.size })),
    })
}

/// An event as this protocol's record: an Invocation without `invocationId`.
pub fn render(e: &ChatEvent, links: &LinkSigner, now: u64) -> String {
    let (target, payload) = match e {
        ChatEvent::Message(m) => ("ReceiveMessage", message_payload(m, links, now)),
        ChatEvent::MessageUpdated(m) => {
            let mut p = message_payload(m, links, now);
            p["isEdited"] = json!(m.edited_at.is_some());
            p["editedAt"] = json!(m.edited_at.map(rfc3339));
            p["updatedAt"] = json!(rfc3339(m.updated_at));
            p["isDeleted"] = json!(m.deleted);
            ("MessageUpdated", p)
        }
        ChatEvent::MessageDeleted { room, message } => {
            ("MessageDeleted", json!({ "roomId": room, "messageId": message }))
        }
        ChatEvent::Typing { room, user, user_name, is_typing } => {
            ("UserTyping", json!({ "roomId": room, "userId": user, "userName": user_name, "isTyping": is_typing }))
        }
        ChatEvent::UserStatus { user, user_name, online } => (
            "UserStatus",
            json!({
                "userId": user, "userName": user_name, "isOnline": online,
                "status": if *online { "online" } else { "offline" },
            }),
        ),
        ChatEvent::MessageRead { room, user, user_name, last_read, read_at } => (
            "MessageRead",
            json!({
                "roomId": room, "userId": user, "userName": user_name,
                "lastReadMessageId": last_read, "readAt": rfc3339(*read_at),
            }),
        ),
        ChatEvent::RoomUpdated { room, event, status, message } => {
            ("RoomUpdated", json!({ "roomId": room, "event": event, "statusCode": status, "message": message }))
        }
    };
    record(&json!({ "type": 1, "target": target, "arguments": [payload] }))
}

impl Actor for SignalRSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.outbox);
        ctx.run_interval(PING_INTERVAL, |act, ctx| {
            if act.connected && !act.closing {
                ctx.text(PING);
            }
        });
        ctx.run_interval(CHECK_INTERVAL, |act, ctx| {
            if act.closing {
                return;
            }
            if !act.connected && act.opened.elapsed() > HANDSHAKE_TIMEOUT {
                act.closing = true;
                ctx.close(Some(ws::CloseReason {
                    code: ws::CloseCode::Policy,
                    description: Some("no handshake".into()),
                }));
                ctx.stop();
            } else if act.heard.elapsed() > IDLE_TIMEOUT {
                act.fail(
                    ctx,
                    "Server timeout elapsed without receiving a message from the client.",
                    ws::CloseCode::Away,
                );
            }
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if !self.connected {
            return;
        }
        let hub = self.registry.hub().clone();
        hub.leave(&user_group(self.me.id), self.id);
        for room in self.rooms.drain() {
            hub.leave(&room_group(room), self.id);
        }
        if hub.disconnected(self.me.id) {
            self.announce(false);
        }
    }
}

impl Handler<Deliver> for SignalRSession {
    type Result = ();
    fn handle(&mut self, Deliver(event): Deliver, ctx: &mut Self::Context) {
        if self.closing {
            return;
        }
        if self.evicted.load(Ordering::Relaxed) {
            return self.fail(ctx, "too slow: the outgoing queue is full", ws::CloseCode::Policy);
        }
        if !self.is_new(&event) {
            return;
        }
        let text = event.render(SLOT, |e| render(e, &self.links, now_ms()));
        ctx.text(text);
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for SignalRSession {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.heard = Instant::now();
        match msg {
            Ok(ws::Message::Text(text)) => self.on_bytes(text.as_bytes(), ctx),
            Ok(ws::Message::Binary(bytes)) => self.on_bytes(&bytes, ctx),
            // Records may span WebSocket messages, but one message is not fragmented (the
            // clients never do; `actix_http::ws::Item` is not reachable from this crate).
            Ok(ws::Message::Continuation(_)) => {
                self.fail(ctx, "Fragmented WebSocket messages are not supported.", ws::CloseCode::Unsupported)
            }
            Ok(ws::Message::Ping(p)) => ctx.pong(&p),
            Ok(ws::Message::Pong(_)) | Ok(ws::Message::Nop) => {}
            Ok(ws::Message::Close(reason)) => {
                self.closing = true;
                ctx.close(reason);
                ctx.stop();
            }
            Err(_) => ctx.stop(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::hub::FileRef;

    fn message(kind: &str, images: Vec<FileRef>, content: Option<&str>) -> MessageEvent {
        MessageEvent {
            room: 1,
            id: 123,
            sender: 20,
            sender_name: "판매자".into(),
            sender_picture: Some("https://example.test/p.png".into()),
            content: content.map(str::to_string),
            kind: kind.into(),
            file: None,
            images,
            reply_to: None,
            created_at: 1_769_162_400_000,
            edited_at: None,
            updated_at: 1_769_162_400_000,
            deleted: false,
        }
    }

    fn parse(rec: &str) -> Value {
        assert!(rec.ends_with('\u{1e}'), "a record ends with 0x1E: {rec:?}");
        assert_eq!(rec.matches('\u{1e}').count(), 1, "one record: {rec:?}");
        serde_json::from_str(&rec[..rec.len() - 1]).expect("json")
    }

    #[test]
    fn messages_render_as_receive_message_invocations() {
        let links = LinkSigner::new(b"k");
        let img = FileRef { url: "/api/chat/images/1/a.png".into(), name: "a.png".into(), size: 3 };
        let v = parse(&render(&ChatEvent::Message(message("text", vec![img], Some("안녕하세요"))), &links, 1_000));
        assert_eq!(v["type"], 1);
        assert_eq!(v["target"], "ReceiveMessage");
        assert!(v.get("invocationId").is_none(), "{v}");
        let p = &v["arguments"][0];
        assert_eq!(
            (&p["messageId"], &p["roomId"], &p["senderId"], &p["senderNickname"], &p["message"], &p["type"]),
            (&json!(123), &json!(1), &json!(20), &json!("판매자"), &json!("안녕하세요"), &json!("TEXT"))
        );
        assert_eq!(p["senderProfileImage"], "https://example.test/p.png");
        assert_eq!(p["createdAt"], "2026-01-23T10:00:00.000Z");
        let expires = 1_000 + ms(IMAGE_LINK_TTL);
        assert_eq!(p["images"][0]["url"], links.sign("/api/chat/images/1/a.png", expires));
        assert_eq!(p["images"][0]["expiresAt"], rfc3339(expires));

        let v = parse(&render(&ChatEvent::Message(message("PURCHASE_CONFIRMED", vec![], None)), &links, 1_000));
        let p = &v["arguments"][0];
        assert_eq!(
            (&p["type"], &p["message"], &p["images"]),
            (&json!("PURCHASE_CONFIRMED"), &Value::Null, &Value::Null)
        );
        for (kind, shown) in [("image", "IMAGE"), ("file", "FILE"), ("system", "SYSTEM")] {
            assert_eq!(message_type(kind), shown);
        }
    }

    #[test]
    fn room_updates_and_other_events_have_their_targets() {
        let links = LinkSigner::new(b"k");
        let e = ChatEvent::RoomUpdated {
            room: 1,
            event: "RoomClosed".into(),
            status: "closed".into(),
            message: "채팅방이 종료되었습니다.".into(),
        };
        let v = parse(&render(&e, &links, 0));
        assert_eq!(v["target"], "RoomUpdated");
        assert_eq!(
            v["arguments"][0],
            json!({ "roomId": 1, "event": "RoomClosed", "statusCode": "closed", "message": "채팅방이 종료되었습니다." })
        );
        let typing = ChatEvent::Typing { room: 1, user: 2, user_name: "a".into(), is_typing: true };
        assert_eq!(parse(&render(&typing, &links, 0))["target"], "UserTyping");
        let status = ChatEvent::UserStatus { user: 2, user_name: "a".into(), online: false };
        assert_eq!(parse(&render(&status, &links, 0))["arguments"][0]["status"], "offline");
        let read = ChatEvent::MessageRead { room: 1, user: 2, user_name: "a".into(), last_read: 5, read_at: 0 };
        assert_eq!(parse(&render(&read, &links, 0))["arguments"][0]["lastReadMessageId"], 5);
        let deleted = ChatEvent::MessageDeleted { room: 1, message: 5 };
        assert_eq!(parse(&render(&deleted, &links, 0))["target"], "MessageDeleted");
    }

    #[test]
    fn room_arguments_are_numbers_or_numeric_strings() {
        assert_eq!(room_argument(&[json!(7)]), Ok(7));
        assert_eq!(room_argument(&[json!("7")]), Ok(7));
        assert!(room_argument(&[]).is_err());
        assert!(room_argument(&[json!(1), json!(2)]).is_err());
        for bad in [json!(-1), json!(0), json!(1.5), json!("x"), json!(null), json!({})] {
            assert!(room_argument(std::slice::from_ref(&bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn connection_tokens_work_once() {
        remember("t-once", 5);
        assert_eq!(redeem("t-once"), Some(5));
        assert_eq!(redeem("t-once"), None);
        assert_eq!(redeem("never-issued"), None);
    }
}
