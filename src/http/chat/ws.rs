//! Contract C's WebSocket, `GET /chat/ws/{room_id}?token=JWT[&since=ID]`: one
//! [`ChatSession`] actor per socket speaks the plain JSON protocol (see the README).
//!
//! The session joins `user_{id}` on connect and `room_{id}` through the room (which hands
//! it the messages after `since` in the same step, so the catch-up and the live stream
//! neither overlap nor leave a gap). It renders the hub's domain events as JSON frames;
//! a room or the hub never sees this format. The session's mailbox is its bounded
//! outgoing queue: when a client stops reading, the socket stops draining, the mailbox
//! fills, the hub evicts the session, and it closes with code 1008.

use super::room_of;
use crate::actors::hub::{user_group, ChatEvent, Deliver, Hub, MessageEvent, Subscriber};
use crate::actors::room::{Author, Join, MarkRead, PostMessage, Room, StoredMessage, Typing};
use crate::actors::Registry;
use crate::http::author;
use crate::http::error::CError;
use crate::http::AppState;
use crate::time::rfc3339;
use actix::prelude::*;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the server pings.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// A socket silent this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The hub's render slot of this protocol.
const SLOT: usize = 0;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/chat/ws/{room_id}", web::get().to(connect));
}

/// Refuse before the upgrade (401, 403, 404) so clients see why.
pub async fn connect(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    stream: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    let me = crate::http::identify_with_query(&req).map_err(CError::from)?;
    let (room_id, room) = room_of(&state, &path)?;
    room.send(crate::actors::room::GetRoom { user: me.user_id }).await.map_err(CError::from)?.map_err(CError::from)?;
    let q = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map_err(|e| CError::invalid(e.to_string()))?;
    let since = match q.get("since") {
        Some(s) => Some(s.trim().parse::<u64>().map_err(|_| CError::invalid("since must be a message id"))?),
        None => None,
    };
    let session = ChatSession {
        id: state.registry.hub().session_id(),
        me: author(&me),
        room_id,
        room,
        since,
        registry: state.registry.clone(),
        outbox: state.settings.ws_outbox.max(1),
        evicted: Arc::new(AtomicBool::new(false)),
        heard: Instant::now(),
        last_message: 0,
    };
    let max = state.settings.ws_max_frame.max(1);
    let stream = crate::http::frame_guard::FrameGuard::new(stream, max);
    ws::WsResponseBuilder::new(session, &req, stream).frame_size(max).start()
}

pub struct ChatSession {
    id: u64,
    me: Author,
    room_id: u64,
    room: Addr<Room>,
    since: Option<u64>,
    registry: Registry,
    outbox: usize,
    /// Set by the hub when it gave up on this session.
    evicted: Arc<AtomicBool>,
    /// When the client was last heard from.
    heard: Instant,
    /// The newest message id sent to the client: nothing at or below it is sent again.
    last_message: u64,
}

impl ChatSession {
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

    /// Whether `m` is new to this client (and remember it as sent).
    fn fresh(&mut self, m: &MessageEvent) -> bool {
        if m.room != self.room_id {
            return true;
        }
        if m.id <= self.last_message {
            return false;
        }
        self.last_message = m.id;
        true
    }

    fn send_message(&mut self, m: &MessageEvent, ctx: &mut ws::WebsocketContext<Self>) {
        if self.fresh(m) {
            ctx.text(render(&ChatEvent::Message(m.clone())));
        }
    }

    fn error(ctx: &mut ws::WebsocketContext<Self>, detail: impl Into<String>) {
        ctx.text(json!({ "type": "error", "detail": detail.into() }).to_string());
    }

    fn on_frame(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        let frame: ClientFrame = match serde_json::from_str(text) {
            Ok(f) => f,
            Err(e) => return Self::error(ctx, format!("invalid frame: {e}")),
        };
        match frame {
            ClientFrame::Message { content, message_type, reply_to_message_id } => {
                let kind = message_type.unwrap_or_else(|| "text".into());
                let text = content.unwrap_or_default();
                if !["text", "voice", "location"].contains(&kind.as_str()) {
                    return Self::error(ctx, "message_type over the socket must be text, voice or location");
                }
                if text.trim().is_empty() || text.chars().count() > 5000 {
                    return Self::error(ctx, "content must be 1 to 5000 characters");
                }
                let msg = PostMessage {
                    from: self.me.clone(),
                    content: Some(text),
                    kind,
                    reply_to: reply_to_message_id,
                    file: None,
                    images: Vec::new(),
                    system: false,
                };
                // Sent in order through the room's mailbox; the room echoes it to every
                // subscriber (this one too) once it is durable.
                let reply = self.room.send(msg);
                ctx.spawn(reply.into_actor(self).map(|r, _, ctx| match r {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => Self::error(ctx, e.to_string()),
                    Err(_) => Self::error(ctx, "the room is busy; try again"),
                }));
            }
            ClientFrame::Typing { is_typing: Some(is_typing) } => {
                self.room.do_send(Typing { from: self.me.clone(), is_typing });
            }
            ClientFrame::Typing { is_typing: None } => Self::error(ctx, "typing needs is_typing: true or false"),
            ClientFrame::Read {} => {
                let reply = self.room.send(MarkRead { from: self.me.clone() });
                ctx.spawn(reply.into_actor(self).map(|r, _, ctx| {
                    if let Ok(Err(e)) = r {
                        Self::error(ctx, e.to_string());
                    }
                }));
            }
            ClientFrame::Ping {} => ctx.text(r#"{"type":"pong"}"#),
        }
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientFrame {
    Message { content: Option<String>, message_type: Option<String>, reply_to_message_id: Option<u64> },
    Typing { is_typing: Option<bool> },
    Read {},
    Ping {},
}

/// An event as this protocol's JSON frame.
pub fn render(e: &ChatEvent) -> String {
    let message = |m: &MessageEvent, kind: &str| {
        let file = m.file.as_ref();
        json!({
            "type": kind,
            "message_id": m.id,
            "room_id": m.room,
            "sender_id": m.sender,
            "sender_name": m.sender_name,
            "content": m.content.clone().unwrap_or_default(),
            "message_type": m.kind,
            "timestamp": rfc3339(m.created_at),
            "reply_to_message_id": m.reply_to,
            "file_url": file.map(|f| f.url.clone()),
            "file_name": file.map(|f| f.name.clone()),
            "file_size": file.map(|f| f.size),
            "is_edited": m.edited_at.is_some(),
            "is_deleted": m.deleted,
        })
    };
    let v = match e {
        ChatEvent::Message(m) => message(m, "message"),
        ChatEvent::MessageUpdated(m) => {
            // The message as REST shows it, plus the event's own fields.
            let mut v = message(m, "message_updated");
            v["message_content"] = json!(m.content.clone().unwrap_or_default());
            v["edited_at"] = json!(m.edited_at.map(rfc3339));
            v["created_at"] = json!(rfc3339(m.created_at));
            v["updated_at"] = json!(rfc3339(m.updated_at));
            v
        }
        ChatEvent::MessageDeleted { room, message } => {
            json!({ "type": "message_deleted", "room_id": room, "message_id": message })
        }
        ChatEvent::Typing { room, user, user_name, is_typing } => {
            json!({ "type": "typing", "room_id": room, "user_id": user, "user_name": user_name, "is_typing": is_typing })
        }
        ChatEvent::UserStatus { user, user_name, online } => json!({
            "type": "user_status", "user_id": user, "user_name": user_name,
            "status": if *online { "online" } else { "offline" },
        }),
        ChatEvent::MessageRead { room, user, user_name, last_read, read_at } => json!({
            "type": "message_read", "room_id": room, "user_id": user, "user_name": user_name,
            "last_read_message_id": last_read, "read_at": rfc3339(*read_at),
        }),
        ChatEvent::RoomUpdated { room, event, status, message } => json!({
            "type": "room_updated", "room_id": room, "event": event, "status": status, "message": message,
        }),
    };
    v.to_string()
}

impl Actor for ChatSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.outbox);
        if self.hub().connected(self.me.id) {
            self.announce(true);
        }
        let sub = self.subscriber(ctx);
        self.hub().join(user_group(self.me.id), sub.clone());
        // Nothing else is handled until the room has answered: the catch-up goes out
        // before any live event that queued meanwhile.
        let join = self.room.send(Join { subscriber: sub, since: self.since });
        ctx.wait(join.into_actor(self).map(|answer, act, ctx| match answer {
            Ok(Ok(backlog)) => {
                for m in backlog.iter().map(StoredMessage::event) {
                    act.send_message(&m, ctx);
                }
            }
            _ => {
                ctx.close(Some(ws::CloseReason {
                    code: ws::CloseCode::Policy,
                    description: Some("cannot join".into()),
                }));
                ctx.stop();
            }
        }));
        ctx.run_interval(HEARTBEAT, |act, ctx| {
            if act.heard.elapsed() > IDLE_TIMEOUT {
                ctx.close(Some(ws::CloseReason { code: ws::CloseCode::Away, description: Some("idle".into()) }));
                ctx.stop();
                return;
            }
            ctx.ping(b"");
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        let hub = self.registry.hub().clone();
        hub.leave(user_group(self.me.id), self.id);
        hub.leave(crate::actors::hub::room_group(self.room_id), self.id);
        if hub.disconnected(self.me.id) {
            self.announce(false);
        }
    }
}

impl Handler<Deliver> for ChatSession {
    type Result = ();
    fn handle(&mut self, Deliver(event): Deliver, ctx: &mut Self::Context) {
        if self.evicted.load(Ordering::Relaxed) {
            ctx.close(Some(ws::CloseReason {
                code: ws::CloseCode::Policy,
                description: Some("too slow: the outgoing queue is full".into()),
            }));
            ctx.stop();
            return;
        }
        if let ChatEvent::Message(m) = &event.kind {
            if !self.fresh(m) {
                return;
            }
        }
        ctx.text(event.render(SLOT, render));
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for ChatSession {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.heard = Instant::now();
        match msg {
            Ok(ws::Message::Text(text)) => self.on_frame(&text, ctx),
            Ok(ws::Message::Ping(p)) => ctx.pong(&p),
            Ok(ws::Message::Pong(_)) => {}
            Ok(ws::Message::Binary(_)) => Self::error(ctx, "frames are JSON text"),
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Ok(ws::Message::Continuation(_)) | Ok(ws::Message::Nop) => {}
            Err(e) => {
                ctx.close(Some(crate::http::ws_violation(&e)));
                ctx.stop();
            }
        }
    }
}
