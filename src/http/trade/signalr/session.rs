//! One [`SignalRSession`] actor per hub socket. It splits the client's bytes into
//! records, answers the handshake, runs `JoinRoom` and `LeaveRoom` (a join through the
//! room, and nothing else handled until the room answers), sends pings and closes idle or
//! broken connections, and renders each event the hub delivers once, however many of its
//! groups it reached it through. Its mailbox is its bounded outgoing queue: a client that
//! stops reading is evicted by the hub and closed.

use super::protocol::{record, render, room_argument, HANDSHAKE_OK, PING, RS};
use super::{HANDSHAKE_TIMEOUT, IDLE_TIMEOUT, MAX_RECORD, PING_INTERVAL};
use crate::actors::hub::{room_group, user_group, ChatEvent, Deliver, Event, Hub, Subscriber};
use crate::actors::room::{Author, Join};
use crate::actors::Registry;
use crate::http::signed::LinkSigner;
use crate::time::now_ms;
use actix::prelude::*;
use actix_web_actors::ws;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often timeouts are checked.
const CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// How many `ReceiveMessage` ids a connection remembers to send each message once.
const RECENT_MESSAGES: usize = 512;
/// How many recent events a connection remembers (by identity) to send each event once
/// when it was published to several groups the connection is in.
const RECENT_EVENTS: usize = 16;
/// The hub's render slot of this protocol.
const SLOT: usize = 1;

/// One hub connection: its user, the bytes and records it has read, its groups, and the
/// recent events it has sent.
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
    /// The session of `me` on a new socket, before its handshake.
    pub(super) fn new(id: u64, me: Author, registry: Registry, links: LinkSigner, outbox: usize) -> SignalRSession {
        let now = Instant::now();
        SignalRSession {
            id,
            me,
            registry,
            links,
            outbox,
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
        }
    }

    fn hub(&self) -> &Hub {
        self.registry.hub()
    }

    fn subscriber(&self, ctx: &mut ws::WebsocketContext<Self>) -> Subscriber {
        Subscriber::new(self.id, self.me.id, ctx.address().recipient(), self.evicted.clone(), self.outbox)
    }

    /// Tell the rooms of the user that they came online or went offline.
    fn announce(&self, online: bool) {
        self.registry.announce_presence(self.me.id, &self.me.name, online);
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
        self.hub().join(user_group(self.me.id), sub);
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
            self.hub().leave(room_group(room), self.id);
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
        hub.leave(user_group(self.me.id), self.id);
        for room in self.rooms.drain() {
            hub.leave(room_group(room), self.id);
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
            Err(e) => {
                self.closing = true;
                ctx.close(Some(crate::http::ws_violation(&e)));
                ctx.stop();
            }
        }
    }
}
