//! Contract C's WebSocket, `GET /chat/ws/{room_id}?token=JWT[&since=ID]`: the plain JSON
//! protocol (see docs/api.md) as a [`Wire`] of the shared [`Session`] actor.
//!
//! The session goes online on connect (`user_{id}`) and joins `room_{id}` through the room
//! (which hands it the messages after `since` in the same step, so the catch-up and the
//! live stream neither overlap nor leave a gap). [`ChatJson`] renders the hub's domain
//! events as this protocol's JSON frames; a room or the hub never sees this format.

use crate::actors::hub::{ChatEvent, Frame, MessageEvent, Render};
use crate::actors::room::{BadClientMsgId, ClientMsgId};
use crate::cluster::SocketPost;
use crate::http::author;
use crate::http::error::{CError, CErrorBody};
use crate::http::session::{Ctx, Data, Session, Wire};
use crate::http::Realtime;
use crate::time::rfc3339;
use actix::prelude::*;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

/// How often the server pings.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/chat/ws/{room_id}", web::get().to(connect));
}

/// Contract C's WebSocket. Refused before the upgrade (401, 403, 404) so clients see why.
#[utoipa::path(get, path = "/chat/ws/{room_id}", tag = "C: chat",
    description = "A WebSocket (`Upgrade: websocket`) of JSON text frames; the token goes in `token`. Client frames: `{\"type\":\"message\",\"content\",\"message_type\",\"reply_to_message_id\",\"client_msg_id\"}` (`client_msg_id`: optional, 1 to 64 visible ASCII characters; a post retried with the same id by the same user in the same room within 25 hours stores nothing and gets the first message again, to this socket only; the same id with other content is an `error`), `{\"type\":\"typing\",\"is_typing\"}`, `{\"type\":\"read\"}`, `{\"type\":\"ping\"}`. Server events: `message`, `message_updated`, `message_deleted`, `typing`, `user_status`, `message_read`, `room_updated`, `pong`, `error` (a bad frame; the socket stays open). With `since`, every message after it comes first. Close codes: 1008 (outgoing queue over its bound), 1009 (frame over 64 KiB), 1007/1002 (protocol violations), 1001 (idle 30 s). See docs/api.md.",
    params(("room_id" = u64, Path), ("token" = String, Query, description = "The JWT"),
        ("since" = Option<u64>, Query, description = "Deliver every message after this id first")),
    responses((status = 101, description = "Switching Protocols: the WebSocket"),
        (status = 400, description = "Not a WebSocket handshake, or a bad `since`", body = CErrorBody),
        (status = 401, description = "No valid token", body = CErrorBody),
        (status = 403, description = "Not a participant", body = CErrorBody),
        (status = 404, description = "No such room", body = CErrorBody)),
    security(("query_token" = [])))]
pub async fn connect(
    state: web::Data<Realtime>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, actix_web::Error> {
    let me = crate::http::identify_with_query(&req).map_err(CError::from)?;
    if let Err(e) = ws::handshake(&req) {
        return Err(CError::bad_request(format!("This endpoint takes WebSocket requests only: {e}")).into());
    }
    let room_id = super::int(&path, "room_id")?;
    state.backend.access(room_id, me.user_id).await.map_err(CError::from)?;
    let q = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map_err(|e| CError::invalid(e.to_string()))?;
    let since = match q.get("since") {
        Some(s) => Some(crate::http::schema::uint(s).ok_or_else(|| CError::invalid("since must be a message id"))?),
        None => None,
    };
    let wire = ChatWire { room_id, since };
    Session::new(&state, author(&me), wire).start(&req, state.settings.ws_max_frame.max(1))
}

/// Contract C's JSON over one socket: the room it was opened on.
pub struct ChatWire {
    room_id: u64,
    since: Option<u64>,
}

/// Contract C's rendering of the hub's events.
pub struct ChatJson;

/// The one [`ChatJson`] every session shares.
static CHAT_JSON: std::sync::LazyLock<std::sync::Arc<dyn Render>> =
    std::sync::LazyLock::new(|| std::sync::Arc::new(ChatJson));

impl Render for ChatJson {
    fn slot(&self) -> usize {
        0
    }
    fn render(&self, event: &ChatEvent) -> Frame {
        Frame::text(render(event))
    }
}

fn error(s: &mut Session<ChatWire>, ctx: &mut Ctx<ChatWire>, detail: impl Into<String>) {
    let frame = json!({ "type": "error", "detail": detail.into() }).to_string();
    s.write(ctx, Frame::text(frame));
}

/// A post the room refused: the session tells its client.
#[derive(Message)]
#[rtype(result = "()")]
struct Refused(String);

impl Handler<Refused> for Session<ChatWire> {
    type Result = ();
    fn handle(&mut self, msg: Refused, ctx: &mut Ctx<ChatWire>) {
        error(self, ctx, msg.0);
    }
}

/// A post whose client message id made a message before: the session sends that message
/// to its client again (the room published it once, when it was first posted).
#[derive(Message)]
#[rtype(result = "()")]
struct Replayed(MessageEvent);

impl Handler<Replayed> for Session<ChatWire> {
    type Result = ();
    fn handle(&mut self, msg: Replayed, ctx: &mut Ctx<ChatWire>) {
        self.write(ctx, Frame::text(render(&ChatEvent::Message(msg.0))));
    }
}

impl Wire for ChatWire {
    const KIND: &'static str = "chat";
    const DIRECT: bool = true;
    const PING_INTERVAL: Duration = HEARTBEAT;

    fn opened(s: &mut Session<Self>, ctx: &mut Ctx<Self>) {
        s.go_online(ctx, CHAT_JSON.clone(), |s, ctx| {
            let (room, since) = (s.wire.room_id, s.wire.since);
            s.join_room(ctx, room, since, |s, ctx, answer| match answer {
                Ok(backlog) => s.send_messages(ctx, backlog),
                Err(crate::actors::room::ChatError::Unavailable(_)) => {
                    s.close(ctx, ws::CloseCode::Restart, "This node cannot reach the service; reconnect.")
                }
                Err(_) => s.close_quietly(
                    ctx,
                    Some(ws::CloseReason { code: ws::CloseCode::Policy, description: Some("cannot join".into()) }),
                ),
            });
        });
    }

    fn received(s: &mut Session<Self>, ctx: &mut Ctx<Self>, data: Data<'_>) {
        let Data::Text(text) = data else { return error(s, ctx, "frames are JSON text") };
        let frame: ClientFrame = match serde_json::from_str(text) {
            Ok(f) => f,
            Err(e) => return error(s, ctx, format!("invalid frame: {e}")),
        };
        let acts = matches!(frame, ClientFrame::Message { .. } | ClientFrame::Typing { .. });
        if acts && !s.frame_allowed(ctx) {
            if !s.closing() {
                error(s, ctx, "too many messages: slow down");
            }
            return;
        }
        match frame {
            ClientFrame::Message { content, message_type, reply_to_message_id, client_msg_id } => {
                let kind = message_type.unwrap_or_else(|| "text".into());
                let text = content.unwrap_or_default();
                if !["text", "voice", "location"].contains(&kind.as_str()) {
                    return error(s, ctx, "message_type over the socket must be text, voice or location");
                }
                if text.trim().is_empty() || text.chars().count() > 5000 {
                    return error(s, ctx, "content must be 1 to 5000 characters");
                }
                let client_msg_id = match client_msg_id {
                    None | Some(Value::Null) => None,
                    Some(Value::String(id)) => match ClientMsgId::try_from(id) {
                        Ok(id) => Some(id),
                        Err(e) => return error(s, ctx, format!("client_msg_id {e}")),
                    },
                    Some(_) => return error(s, ctx, format!("client_msg_id {BadClientMsgId}")),
                };
                // Sent in order through the room's mailbox; the room echoes it to every
                // subscriber (this one too) once it is durable. A post whose client id made
                // a message before is answered with that message, to this socket only. The
                // answer is awaited outside the session: a session that stops (the client
                // left, or was closed) must not take back a post it accepted, which
                // dropping the answer would do (actix skips a message whose asker is gone).
                let post = SocketPost { content: text, kind, reply_to: reply_to_message_id, client_msg_id };
                let reply = s.backend.post(s.wire.room_id, &s.me, post);
                let session = ctx.address();
                actix_rt::spawn(async move {
                    match reply.await {
                        Ok(p) if p.replayed => session.do_send(Replayed(p.message.event())),
                        Ok(_) => {}
                        Err(e) => session.do_send(Refused(e.to_string())),
                    }
                });
            }
            ClientFrame::Typing { is_typing: Some(is_typing) } => s.backend.typing(s.wire.room_id, &s.me, is_typing),
            ClientFrame::Typing { is_typing: None } => error(s, ctx, "typing needs is_typing: true or false"),
            ClientFrame::Read {} => {
                let reply = s.backend.mark_read(s.wire.room_id, &s.me);
                ctx.spawn(reply.into_actor(s).map(|r, s, ctx| {
                    if let Err(e) = r {
                        error(s, ctx, e.to_string());
                    }
                }));
            }
            ClientFrame::Ping {} => s.write(ctx, Frame::text(r#"{"type":"pong"}"#)),
        }
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientFrame {
    Message {
        content: Option<String>,
        message_type: Option<String>,
        reply_to_message_id: Option<u64>,
        /// Read as any JSON value, so that a wrong type gets the id's own refusal.
        client_msg_id: Option<Value>,
    },
    Typing {
        is_typing: Option<bool>,
    },
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
        ChatEvent::RoomClosed { room } => json!({
            "type": "room_updated", "room_id": room, "event": "RoomClosed", "status": "closed",
            "message": crate::http::ROOM_CLOSED,
        }),
    };
    v.to_string()
}
