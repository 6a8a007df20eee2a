//! [`SignalRWire`]: the SignalR hub protocols as a [`Wire`] of the shared
//! [`Session`] actor. It reads the handshake (which names the protocol: any of
//! [`PROTOCOLS`]), then the protocol's messages in order, runs `JoinRoom`, `LeaveRoom`
//! and `SendMessage` (a join goes through the room, and nothing after it is handled until
//! the room answers; a send does not hold up what follows), and answers invocations with
//! Completions. The session does the rest:
//! groups, presence, the outbox, pings, timeouts, and sending each event once.

use super::protocol::{message_payload, room_argument, send_arguments, Broken, HubMessage, HubProtocol, HubRender};
use super::protocol::{Outgoing, HANDSHAKE_OK, RS};
use super::{MAX_RECORD, PING_INTERVAL, PROTOCOLS};
use crate::actors::hub::Frame;
use crate::actors::room::{ChatError, Posted};
use crate::cluster::SocketPost;
use crate::http::session::{Ctx, Data, Session, Wire};
use crate::http::signed::LinkSigner;
use crate::time::now_ms;
use actix::prelude::*;
use actix_web_actors::ws;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// One hub connection's protocol state.
pub struct SignalRWire {
    links: LinkSigner,
    /// The protocol the handshake chose.
    protocol: Option<&'static dyn HubProtocol>,
    /// Bytes not yet read: the start of a message still arriving (at most [`MAX_RECORD`]).
    buf: Vec<u8>,
    /// Messages read and not yet handled, in order (those after a `JoinRoom` wait for it).
    pending: VecDeque<HubMessage>,
    /// The handshake's answer or a `JoinRoom` is waiting.
    busy: bool,
}

impl SignalRWire {
    pub fn new(links: LinkSigner) -> SignalRWire {
        SignalRWire { links, protocol: None, buf: Vec::new(), pending: VecDeque::new(), busy: false }
    }
}

type S = Session<SignalRWire>;

impl Wire for SignalRWire {
    const KIND: &'static str = "signalr";
    const PING_INTERVAL: Duration = PING_INTERVAL;

    fn opened(_: &mut S, _: &mut Ctx<Self>) {}

    fn received(s: &mut S, ctx: &mut Ctx<Self>, data: Data<'_>) {
        let bytes = match data {
            Data::Text(t) => t.as_bytes(),
            Data::Binary(b) => b,
        };
        s.wire.buf.extend_from_slice(bytes);
        if s.wire.protocol.is_none() && !handshake(s, ctx) {
            return;
        }
        let Some(protocol) = s.wire.protocol else { return };
        let SignalRWire { buf, pending, .. } = &mut s.wire;
        match protocol.read(buf, MAX_RECORD, pending) {
            Ok(()) => drain(s, ctx),
            Err(Broken::TooLarge) => s.close(ctx, ws::CloseCode::Size, "A message is larger than the server accepts."),
            Err(Broken::Invalid(e)) => s.close(ctx, ws::CloseCode::Invalid, &e),
        }
    }

    fn keepalive(&self) -> Option<Frame> {
        self.protocol.map(|p| p.write(&Outgoing::Ping))
    }

    fn farewell(&self, reason: &str, reconnect: bool) -> Option<Frame> {
        self.protocol.map(|p| p.write(&Outgoing::Close { error: reason, allow_reconnect: reconnect }))
    }
}

/// Read the handshake record if it has arrived; true once the session is connected.
fn handshake(s: &mut S, ctx: &mut Ctx<SignalRWire>) -> bool {
    #[derive(Deserialize)]
    struct Handshake {
        protocol: String,
        version: u32,
    }
    let Some(end) = s.wire.buf.iter().position(|&b| b == RS) else {
        if s.wire.buf.len() > MAX_RECORD {
            s.close(ctx, ws::CloseCode::Size, "A message is larger than the server accepts.");
        }
        return false;
    };
    let record: Vec<u8> = s.wire.buf.drain(..=end).collect();
    let refused = match serde_json::from_slice::<Handshake>(&record[..end]) {
        Err(e) => format!("Handshake request is invalid: {e}"),
        Ok(h) => match PROTOCOLS.iter().find(|p| p.name() == h.protocol) {
            None => format!("The protocol '{}' is not supported.", h.protocol),
            Some(p) if h.version != 1 => {
                format!("The server does not support version {} of the '{}' protocol.", h.version, p.name())
            }
            Some(&p) => {
                s.wire.protocol = Some(p);
                let render = Arc::new(HubRender { protocol: p, links: s.wire.links.clone() });
                // Answered once the user's group is heard here; the messages after the
                // handshake wait for the answer.
                s.wire.busy = true;
                s.go_online(ctx, render, move |s, ctx| {
                    s.write(
                        ctx,
                        if p.binary() { Frame::binary(HANDSHAKE_OK.as_bytes()) } else { Frame::text(HANDSHAKE_OK) },
                    );
                    s.wire.busy = false;
                    drain(s, ctx);
                });
                return true;
            }
        },
    };
    let mut answer = json!({ "error": refused }).to_string();
    answer.push(RS as char);
    s.write(ctx, Frame::text(answer));
    s.close_quietly(
        ctx,
        Some(ws::CloseReason { code: ws::CloseCode::Protocol, description: Some("handshake".into()) }),
    );
    false
}

/// Handle the waiting messages until one has to wait for an answer.
fn drain(s: &mut S, ctx: &mut Ctx<SignalRWire>) {
    while !s.wire.busy && !s.closing() {
        let Some(msg) = s.wire.pending.pop_front() else { return };
        match msg {
            HubMessage::Invocation { id, call, streams } => invoke(s, ctx, id, call, streams),
            HubMessage::StreamInvocation { id } => {
                complete(s, ctx, id, Err("Streaming methods are not supported by this hub.".into()))
            }
            HubMessage::Close => s.close_quietly(ctx, Some(ws::CloseCode::Normal.into())),
            HubMessage::Ignored => {}
        }
    }
}

/// Answer an invocation that asked for an answer (void).
fn complete(s: &mut S, ctx: &mut Ctx<SignalRWire>, id: Option<String>, outcome: Result<(), String>) {
    complete_with(s, ctx, id, outcome.map(|()| None));
}

/// Answer an invocation that asked for an answer, with its result if it has one.
fn complete_with(s: &mut S, ctx: &mut Ctx<SignalRWire>, id: Option<String>, outcome: Result<Option<Value>, String>) {
    let (Some(id), Some(p)) = (id, s.wire.protocol) else { return };
    let outcome = match &outcome {
        Ok(result) => Ok(result.as_ref()),
        Err(e) => Err(e.as_str()),
    };
    s.write(ctx, p.write(&Outgoing::Completion { id: &id, outcome }));
}

fn invoke(
    s: &mut S,
    ctx: &mut Ctx<SignalRWire>,
    id: Option<String>,
    call: Result<(String, Vec<Value>), String>,
    streams: bool,
) {
    if !s.frame_allowed(ctx) {
        if !s.closing() {
            complete(s, ctx, id, Err("Too many invocations: slow down.".into()));
        }
        return;
    }
    let (target, args) = match call {
        Ok(c) => c,
        Err(e) => return complete(s, ctx, id, Err(e)),
    };
    if streams {
        return complete(s, ctx, id, Err(format!("Failed to invoke '{target}': streams are not supported.")));
    }
    if target.eq_ignore_ascii_case("SendMessage") {
        return send_message(s, ctx, id, &args);
    }
    let join = target.eq_ignore_ascii_case("JoinRoom");
    if !join && !target.eq_ignore_ascii_case("LeaveRoom") {
        return complete(s, ctx, id, Err(format!("Unknown hub method '{target}'.")));
    }
    let room = match room_argument(&args) {
        Ok(r) => r,
        Err(e) => return complete(s, ctx, id, Err(format!("Failed to invoke '{target}': {e}"))),
    };
    if !join {
        s.leave_room(room);
        return complete(s, ctx, id, Ok(()));
    }
    // Join `room_{room}` through the room (participants only): the Completion goes out
    // before the room's events, and what came after the JoinRoom waits for it.
    s.wire.busy = true;
    s.join_room(ctx, room, None, move |s, ctx, answer| {
        s.wire.busy = false;
        let outcome = match answer {
            Ok(_) => Ok(()),
            Err(ChatError::RoomNotFound) => Err(format!("Room {room} not found.")),
            Err(ChatError::Storage(e)) => Err(format!("Storage failure: {e}")),
            Err(ChatError::Unavailable(e)) => Err(format!("Cannot join room {room} now: {e}.")),
            Err(e) => Err(format!("Cannot join room {room}: {e}.")),
        };
        complete(s, ctx, id, outcome);
        drain(s, ctx);
    });
}

/// `SendMessage(roomId, message, clientMsgId?)`: post a text message to a room (participants
/// only; joining it is not needed). The Completion's result is the stored message as
/// `ReceiveMessage` renders it; with a client message id the sender used in the room
/// before, nothing is posted and the result is the message the id made. The post goes to
/// the room now, in the order of the invocations, and later ones do not wait for it; the
/// answer is awaited outside the session, so a connection that closes does not take back a
/// post it accepted.
fn send_message(s: &mut S, ctx: &mut Ctx<SignalRWire>, id: Option<String>, args: &[Value]) {
    let (room, content, client_msg_id) = match send_arguments(args) {
        Ok(a) => a,
        Err(e) => return complete(s, ctx, id, Err(format!("Failed to invoke 'SendMessage': {e}"))),
    };
    let post = SocketPost { content, kind: "text".into(), reply_to: None, client_msg_id };
    let reply = s.backend.post(room, &s.me, post);
    let session = ctx.address();
    actix_rt::spawn(async move {
        let outcome = reply.await;
        session.do_send(Sent { id, room, outcome });
    });
}

/// The answer to a `SendMessage`, back in its session.
#[derive(Message)]
#[rtype(result = "()")]
struct Sent {
    id: Option<String>,
    room: u64,
    outcome: Result<Posted, ChatError>,
}

impl Handler<Sent> for S {
    type Result = ();
    fn handle(&mut self, msg: Sent, ctx: &mut Ctx<SignalRWire>) {
        let room = msg.room;
        let outcome = match msg.outcome {
            Ok(p) => Ok(Some(message_payload(&p.message.event(), &self.wire.links, now_ms()))),
            Err(ChatError::RoomNotFound) => Err(format!("Room {room} not found.")),
            Err(ChatError::ClientIdReused) => Err("clientMsgId was already used for a different message.".into()),
            Err(ChatError::Unavailable(e)) => Err(format!("Cannot send to room {room} now: {e}.")),
            Err(e) => Err(format!("Cannot send to room {room}: {e}.")),
        };
        complete_with(self, ctx, msg.id, outcome);
    }
}
