//! [`SignalRWire`]: the SignalR hub protocols as a [`Wire`] of the shared
//! [`Session`] actor. It reads the handshake (which names the protocol: any of
//! [`PROTOCOLS`]), then the protocol's messages in order, runs `JoinRoom`, `LeaveRoom`
//! and `SendMessage` (a join goes through the room, and nothing after it is handled until
//! the room answers; a send does not hold up what follows), and answers invocations with
//! Completions. The session does the rest:
//! groups, presence, the outbox, pings, timeouts, and sending each event once.

use super::parking::{Parking, SentKind, Verdict};
use super::protocol::{message_payload, room_argument, send_arguments, Broken, HubMessage, HubProtocol, HubRender};
use super::protocol::{Outgoing, HANDSHAKE_OK, RS};
use super::{MAX_RECORD, PING_INTERVAL, PROTOCOLS};
use crate::actors::hub::{ChatEvent, Event, Frame, Group};
use crate::actors::room::ClientMsgId;
use crate::actors::room::{ChatError, Posted};
use crate::cluster::{Hello, SocketPost};
use crate::http::session::{Carried, Ctx, Data, Session, Wire};
use crate::http::signed::LinkSigner;
use crate::store::Store;
use crate::time::now_ms;
use actix::prelude::*;
use actix_web_actors::ws;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::oneshot;

/// One hub connection's protocol state.
pub struct SignalRWire {
    links: LinkSigner,
    /// The protocol the handshake chose.
    protocol: Option<&'static dyn HubProtocol>,
    /// Bytes not yet read: the start of a message still arriving (at most [`MAX_RECORD`]).
    buf: Vec<u8>,
    /// Messages read and not yet handled, in order (those after a `JoinRoom` wait for it),
    /// each with its sequence id on a stateful connection (0 otherwise).
    pending: VecDeque<(HubMessage, u64)>,
    /// The handshake's answer or a `JoinRoom` is waiting.
    busy: bool,
    /// Stateful reconnect, when negotiate agreed to it.
    pub(super) replay: Option<Replay>,
    /// `SendMessage`s whose answer has not come back yet (a connection handed to another
    /// node waits for them: their Completions go with it).
    pub(super) posting: usize,
    /// The connection is being handed to another node, once the posts in flight are
    /// answered (see [`super::handover`]).
    pub(super) leaving: Option<Leaving>,
}

/// A stateful connection's side of the replay (the hub protocol's Ack and Sequence): what
/// it sent and the client has not acknowledged, and what it has processed of the client's.
pub struct Replay {
    /// The connection token the client reconnects with.
    token: String,
    window: Duration,
    max_bytes: usize,
    /// The sequence id of the server's next tracked message (Invocation, Completion, ...).
    next_out: u64,
    /// Sent and not acknowledged, oldest first, and their bytes.
    unacked: VecDeque<(u64, Frame, SentKind)>,
    bytes: usize,
    /// The sequence id the client's next tracked message carries, and the highest one
    /// processed (anything at or below it is a duplicate from before a reconnect).
    next_in: u64,
    processed: u64,
    /// An Ack is on its way (at most one a second).
    ack_due: bool,
    /// Reopened after a restart: the client's Sequence says where its messages start
    /// (what the process before processed is not known; see [`super::parking`]).
    resync: bool,
    /// Where the connection's record is kept (a core or a single server), and the record
    /// once the handshake named the protocol.
    store: Option<Store>,
    parking: Option<Parking>,
}

impl Replay {
    pub fn new(token: String, window: Duration, max_bytes: usize) -> Replay {
        Replay {
            token,
            window,
            max_bytes,
            next_out: 1,
            unacked: VecDeque::new(),
            bytes: 0,
            next_in: 1,
            processed: 0,
            ack_due: false,
            resync: false,
            store: None,
            parking: None,
        }
    }

    /// Keep the connection's record in `store`, so that it outlives the process.
    pub fn park_in(mut self, store: Store) -> Replay {
        self.store = Some(store);
        self
    }

    /// A connection of the process before this one, resumed (see [`super::parking`]).
    pub fn reopened(token: String, window: Duration, max_bytes: usize) -> Replay {
        let mut r = Replay::new(token, window, max_bytes);
        r.resync = true;
        r
    }
}

/// How often the server acknowledges the client's messages, at most.
const ACK_INTERVAL: Duration = Duration::from_secs(1);

impl SignalRWire {
    pub fn new(links: LinkSigner, replay: Option<Replay>) -> SignalRWire {
        SignalRWire {
            links,
            protocol: None,
            buf: Vec::new(),
            pending: VecDeque::new(),
            busy: false,
            replay,
            posting: 0,
            leaving: None,
        }
    }

    /// The protocol the handshake chose.
    pub fn protocol(&self) -> Option<&'static dyn HubProtocol> {
        self.protocol
    }

    /// Whether every client message read has been handled (none waits behind a join).
    pub(super) fn idle(&self) -> bool {
        !self.busy && self.pending.is_empty()
    }

    /// The state of a stateful connection that another node takes over: its protocol and
    /// its side of the replay.
    pub(super) fn carried(&self) -> Option<(&'static dyn HubProtocol, ReplayState)> {
        let (p, r) = (self.protocol?, self.replay.as_ref()?);
        let unacked = r.unacked.iter().map(|(id, f, _)| (*id, f.opcode(), f.payload().to_vec())).collect();
        Some((p, ReplayState { next_out: r.next_out, unacked, processed: r.processed }))
    }

    /// Take over a connection's state from the node that held it ([`SignalRWire::carried`]).
    pub(super) fn arrived(&mut self, protocol: &'static dyn HubProtocol, replay: Replay, state: ReplayState) {
        let mut replay = replay;
        replay.next_out = state.next_out;
        replay.unacked = state
            .unacked
            .into_iter()
            .map(|(id, op, payload)| (id, Frame::new(op, &payload), SentKind::Other))
            .collect();
        replay.bytes = replay.unacked.iter().map(|(_, f, _)| f.len()).sum();
        replay.processed = state.processed;
        replay.next_in = state.processed + 1;
        self.protocol = Some(protocol);
        self.replay = Some(replay);
    }

    /// A connection of the process before this one takes back what it sent from `from` on,
    /// made again (see [`super::parking::remake`]), and its record. `None` if that passes
    /// the buffer's bound. Answers the connection token.
    pub(super) fn reinstate(
        &mut self,
        protocol: &'static dyn HubProtocol,
        from: u64,
        frames: Vec<(Frame, SentKind)>,
        parking: Parking,
    ) -> Option<String> {
        let r = self.replay.as_mut()?;
        r.next_out = from;
        for (frame, sent) in frames {
            r.bytes += frame.len();
            r.unacked.push_back((r.next_out, frame, sent));
            r.next_out += 1;
        }
        if r.bytes > r.max_bytes {
            return None;
        }
        // What the process before had processed of the client's, as far as its record says.
        r.processed = parking.processed;
        r.next_in = r.processed + 1;
        r.parking = Some(parking);
        self.protocol = Some(protocol);
        Some(r.token.clone())
    }
}

/// A stateful connection's side of the replay as it moves to another node: the sequence
/// id of the next message the server sends, the messages not acknowledged (id, opcode and
/// payload of each frame, as they were sent), and the client's messages processed. At most
/// the buffer's bound (`BOXOFFICE_SIGNALR_RECONNECT_BUFFER_BYTES`) of frames.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplayState {
    pub next_out: u64,
    pub unacked: Vec<(u64, u8, Vec<u8>)>,
    pub processed: u64,
}

type S = Session<SignalRWire>;

impl Wire for SignalRWire {
    const KIND: &'static str = "signalr";
    const PING_INTERVAL: Duration = PING_INTERVAL;

    fn opened(s: &mut S, ctx: &mut Ctx<Self>) {
        if let Some(r) = &s.wire.replay {
            resumable(&r.token, s.me.id, ctx.address());
        }
    }

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
        let mut read = VecDeque::new();
        match protocol.read(&mut s.wire.buf, MAX_RECORD, &mut read) {
            Ok(()) => {}
            Err(Broken::TooLarge) => {
                return s.close(ctx, ws::CloseCode::Size, "A message is larger than the server accepts.")
            }
            Err(Broken::Invalid(e)) => return s.close(ctx, ws::CloseCode::Invalid, &e),
        }
        for msg in read {
            if s.closing() {
                return;
            }
            if s.wire.replay.is_none() {
                s.wire.pending.push_back((msg, 0));
            } else if let Err(e) = sequence(s, ctx, msg) {
                return s.close(ctx, ws::CloseCode::Protocol, &e);
            }
        }
        drain(s, ctx)
    }

    fn keepalive(&self) -> Option<Frame> {
        self.protocol.map(|p| p.write(&Outgoing::Ping))
    }

    fn farewell(&self, reason: &str, reconnect: bool) -> Option<Frame> {
        self.protocol.map(|p| p.write(&Outgoing::Close { error: reason, allow_reconnect: reconnect }))
    }

    fn resumable(&self) -> Option<Duration> {
        self.replay.as_ref().filter(|_| self.protocol.is_some()).map(|r| r.window)
    }

    fn event_sent(s: &mut S, ctx: &mut Ctx<Self>, event: &Event, group: Group, frame: &Frame) {
        let sent = match (&event.kind, group) {
            (ChatEvent::Message(m), Group::Room(room)) if m.room == room => SentKind::Message { room, id: m.id },
            _ => SentKind::Other,
        };
        track(s, ctx, frame, sent);
    }

    /// A stateful connection keeps its sequence ids across a gap in what its node relays:
    /// it catches up instead of making its client start over.
    fn resyncs(&self) -> bool {
        self.replay.is_some() && self.protocol.is_some()
    }

    fn outlives_process(&self) -> bool {
        self.replay.as_ref().is_some_and(|r| r.parking.is_some())
    }

    /// After the reconnect: a Sequence with the id of the first message not acknowledged,
    /// then those messages again, in order (the client drops what it already has), and an
    /// Ack of what the server has of the client's.
    fn resumed(s: &mut S, ctx: &mut Ctx<Self>) {
        // The start of a record that the old socket cut off is not coming.
        s.wire.buf.clear();
        let (Some(p), Some(r)) = (s.wire.protocol, s.wire.replay.as_ref()) else { return };
        let first = r.unacked.front().map_or(r.next_out, |(id, _, _)| *id);
        let again: Vec<Frame> = r.unacked.iter().map(|(_, f, _)| f.clone()).collect();
        let processed = r.processed;
        crate::observe::replay(again.len() as u64);
        s.write(ctx, p.write(&Outgoing::Sequence { id: first }));
        for frame in again {
            s.write(ctx, frame);
        }
        if processed > 0 {
            s.write(ctx, p.write(&Outgoing::Ack { id: processed }));
        }
    }

    fn stopped(&mut self, for_good: bool) {
        if let Some(r) = &self.replay {
            forget(&r.token);
            if let Some(p) = r.parking.as_ref().filter(|_| for_good) {
                p.ended();
            }
        }
    }
}

/// Keep a tracked message the server sends until the client acknowledges it. Past the
/// buffer's bound the connection ends with an error. A message that breaks the record's
/// claim (see [`super::parking`]) waits, with all that follows, until the record says so
/// on disk.
fn track(s: &mut S, ctx: &mut Ctx<SignalRWire>, frame: &Frame, sent: SentKind) {
    let Some(r) = s.wire.replay.as_mut() else { return };
    match r.parking.as_mut().map_or(Verdict::Send, |p| p.sending(r.next_out, frame, sent)) {
        Verdict::Send => {}
        Verdict::WaitDurable => {
            let store = r.parking.as_ref().map(|p| p.store().clone());
            s.gate();
            ctx.spawn(
                async move {
                    match store {
                        Some(store) => store.durable().await.is_ok(),
                        None => true,
                    }
                }
                .into_actor(s)
                .map(|durable, act, ctx| {
                    if !durable {
                        // What waited for the record does not go; the Close does.
                        act.drop_gated();
                        act.close(ctx, ws::CloseCode::Error, "The server cannot keep this connection's record.");
                    }
                    act.ungate(ctx);
                }),
            );
        }
        Verdict::Fail => {
            return s.close(ctx, ws::CloseCode::Error, "The server cannot keep this connection's record.");
        }
    }
    let Some(r) = s.wire.replay.as_mut() else { return };
    r.unacked.push_back((r.next_out, frame.clone(), sent));
    r.next_out += 1;
    r.bytes += frame.len();
    if r.bytes > r.max_bytes {
        let bound = r.max_bytes;
        s.close(
            ctx,
            ws::CloseCode::Policy,
            &format!(
                "The stateful reconnect buffer is full ({bound} bytes not acknowledged): the connection is closed."
            ),
        );
    }
}

/// A client message on a stateful connection: Ack and Sequence act at once; a tracked
/// message takes the next sequence id and waits its turn, unless it is one the server
/// already processed (sent again after a reconnect). An error ends the connection.
fn sequence(s: &mut S, ctx: &mut Ctx<SignalRWire>, msg: HubMessage) -> Result<(), String> {
    let Some(r) = s.wire.replay.as_mut() else { return Ok(()) };
    match msg {
        HubMessage::Ack(id) => {
            let sent = r.next_out - 1;
            let id = u64::try_from(id).map_err(|_| format!("Ack sequence id {id} is negative."))?;
            if id > sent {
                return Err(format!("Ack sequence id {id} is ahead of the {sent} messages sent."));
            }
            let mut acked = Vec::new();
            while r.unacked.front().is_some_and(|(n, _, _)| *n <= id) {
                if let Some((_, f, sent)) = r.unacked.pop_front() {
                    r.bytes -= f.len();
                    acked.push(sent);
                }
            }
            if let Some(p) = r.parking.as_mut().filter(|_| !acked.is_empty()) {
                p.acked(acked.into_iter(), r.unacked.iter().map(|(seq, f, sent)| (*seq, f, *sent)), id + 1);
            }
        }
        HubMessage::Sequence(id) => {
            if id < 1 {
                return Err(format!("Sequence id {id} is not a sequence id (they start at 1)."));
            }
            let id = id as u64;
            if r.resync {
                // Reopened after a restart: the client's messages from here on are taken
                // as new (see `super::parking`).
                r.resync = false;
                r.processed = r.processed.max(id - 1);
            } else if id > r.processed + 1 {
                return Err(format!("Sequence id {id} is ahead of the {} messages the server received.", r.processed));
            }
            r.next_in = id;
        }
        m if m.tracked() => {
            if r.resync {
                return Err("A reconnected connection's first message must be a Sequence.".into());
            }
            let id = r.next_in;
            r.next_in += 1;
            if !r.ack_due {
                r.ack_due = true;
                ctx.run_later(ACK_INTERVAL, ack);
            }
            if id <= r.processed {
                return Ok(());
            }
            r.processed = id;
            if let Some(p) = r.parking.as_mut() {
                p.processed = id;
            }
            s.wire.pending.push_back((m, id));
        }
        m => s.wire.pending.push_back((m, 0)),
    }
    Ok(())
}

/// Acknowledge what the server has processed of the client's messages (while a socket is
/// attached: after a reconnect the resume says it).
fn ack(s: &mut S, ctx: &mut Ctx<SignalRWire>) {
    let Some(r) = s.wire.replay.as_mut() else { return };
    r.ack_due = false;
    let id = r.processed;
    if id == 0 || s.detached() {
        return;
    }
    if let Some(p) = s.wire.protocol {
        s.write(ctx, p.write(&Outgoing::Ack { id }));
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
            // Version 2 adds Ack and Sequence (stateful reconnect); a client that negotiated
            // stateful reconnect asks for it, and a server without it would refuse it.
            Some(p) if h.version != 1 && h.version != 2 => {
                format!("The server does not support version {} of the '{}' protocol.", h.version, p.name())
            }
            Some(&p) => {
                s.wire.protocol = Some(p);
                let user = s.me.id;
                if let Some(r) = s.wire.replay.as_mut() {
                    if let Some(store) = r.store.clone() {
                        r.parking = Some(Parking::new(store, &r.token, user, p.name()));
                    }
                }
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
        let Some((msg, seq)) = s.wire.pending.pop_front() else { return };
        match msg {
            HubMessage::Invocation { id, call, streams } => invoke(s, ctx, id, call, streams, seq),
            HubMessage::StreamInvocation { id } => {
                complete(s, ctx, id, Err("Streaming methods are not supported by this hub.".into()))
            }
            HubMessage::Close => s.close_quietly(ctx, Some(ws::CloseCode::Normal.into())),
            // Without stateful reconnect, Ack and Sequence mean nothing.
            HubMessage::Ignored | HubMessage::IgnoredTracked | HubMessage::Ack(_) | HubMessage::Sequence(_) => {}
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
    let frame = p.write(&Outgoing::Completion { id: &id, outcome });
    track(s, ctx, &frame, SentKind::Other);
    s.write(ctx, frame);
}

fn invoke(
    s: &mut S,
    ctx: &mut Ctx<SignalRWire>,
    id: Option<String>,
    call: Result<(String, Vec<Value>), String>,
    streams: bool,
    seq: u64,
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
        return send_message(s, ctx, id, &args, seq);
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
        if let Some(p) = s.wire.replay.as_mut().and_then(|r| r.parking.as_mut()) {
            p.left(room);
        }
        return complete(s, ctx, id, Ok(()));
    }
    // Join `room_{room}` through the room (participants only): the Completion goes out
    // before the room's events, and what came after the JoinRoom waits for it.
    s.wire.busy = true;
    s.join_room(ctx, room, None, move |s, ctx, answer| {
        s.wire.busy = false;
        if answer.is_ok() {
            if let Some(p) = s.wire.replay.as_mut().and_then(|r| r.parking.as_mut()) {
                p.joined(room);
            }
        }
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
fn send_message(s: &mut S, ctx: &mut Ctx<SignalRWire>, id: Option<String>, args: &[Value], seq: u64) {
    let (room, content, client_msg_id) = match send_arguments(args) {
        Ok(a) => a,
        Err(e) => return complete(s, ctx, id, Err(format!("Failed to invoke 'SendMessage': {e}"))),
    };
    // A connection that outlives the process may get this invocation again after a
    // restart (see `super::parking`): without an id of the client's, one made from the
    // connection and the invocation's sequence id answers the stored message then.
    let client_msg_id = client_msg_id.or_else(|| {
        let r = s.wire.replay.as_ref().filter(|r| r.parking.is_some() && seq > 0)?;
        implicit_id(&r.token, seq)
    });
    let post = SocketPost { content, kind: "text".into(), reply_to: None, client_msg_id };
    let reply = s.backend.post(room, &s.me, post);
    s.wire.posting += 1;
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
        self.wire.posting -= 1;
        complete_with(self, ctx, msg.id, outcome);
        if self.wire.posting == 0 && self.wire.leaving.is_some() {
            release(self, ctx);
        }
    }
}

/// The client message id a `SendMessage` without one gets on a connection that outlives
/// the process: `~` and 32 hex digits of the SHA-256 of the connection token and the
/// invocation's sequence id (visible ASCII, as the room asks).
fn implicit_id(token: &str, seq: u64) -> Option<ClientMsgId> {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{token}:{seq}").as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    ClientMsgId::try_from(format!("~{hex}")).ok()
}

// A connection handed over to another edge (see `handover`).

/// A connection's state as it moves: the core's stream as the holder saw it, the protocol,
/// the wire's replay and the session's part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handed {
    pub hello: Option<Hello>,
    pub protocol: String,
    pub replay: ReplayState,
    pub session: Carried,
}

/// A connection being handed over, waiting for its posts in flight and its mailbox.
pub struct Leaving {
    groups: Vec<(Group, u64)>,
    hello: Option<Hello>,
    reply: oneshot::Sender<Option<Handed>>,
    /// The mailbox has been taken in up to the moment the session left its groups.
    drained: bool,
}

impl Leaving {
    /// Leaving `groups` (each with how far its subject had been relayed to the session);
    /// `reply` gets the state once the mailbox is drained.
    pub fn new(groups: Vec<(Group, u64)>, hello: Option<Hello>, reply: oneshot::Sender<Option<Handed>>) -> Leaving {
        Leaving { groups, hello, reply, drained: false }
    }

    /// The mailbox has been taken in up to the moment the session left its groups.
    pub fn drained(&mut self) {
        self.drained = true;
    }
}

/// Answer the connection's state to the edge taking it over, and stop (the session took in
/// everything it is answerable for).
pub fn release(s: &mut S, ctx: &mut Ctx<SignalRWire>) {
    if !s.wire.leaving.as_ref().is_some_and(|l| l.drained) {
        return;
    }
    let Some(leaving) = s.wire.leaving.take() else { return };
    let handed = s.wire.carried().map(|(protocol, replay)| Handed {
        hello: leaving.hello,
        protocol: protocol.name().to_string(),
        replay,
        session: s.carried(leaving.groups),
    });
    let _ = leaving.reply.send(handed);
    ctx.stop();
}

// The stateful connections of this process that a client may take over with a new socket,
// by connection token: a reconnect (`transport`), another edge asking for one (`handover`)
// and a connection resumed after a restart (`parking`) find them here.

/// A stateful connection a client may take over with a new socket, by its token.
struct Resumable {
    user: u64,
    session: Addr<S>,
}

/// The stateful connections of this process (as many as its SignalR sessions with
/// stateful reconnect, each removed when its session stops).
fn resumables() -> &'static DashMap<String, Resumable> {
    static RESUMABLE: OnceLock<DashMap<String, Resumable>> = OnceLock::new();
    RESUMABLE.get_or_init(DashMap::new)
}

/// A stateful connection's session, reachable by its token from now on.
pub fn resumable(token: &str, user: u64, session: Addr<S>) {
    resumables().insert(token.to_string(), Resumable { user, session });
}

/// The user and session of the stateful connection `token` of this process, if it holds it.
pub fn holder(token: &str) -> Option<(u64, Addr<S>)> {
    resumables().get(token).map(|r| (r.user, r.session.clone()))
}

/// The session of a stateful connection has stopped: its token is spent.
pub fn forget(token: &str) {
    resumables().remove(token);
}
