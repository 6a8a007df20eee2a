//! One [`Session`] actor per WebSocket, generic over its wire protocol ([`Wire`]).
//!
//! The session owns what every protocol shares: the user's presence (counted and
//! announced once it is online), its groups (`user_{id}` when it goes online, `room_{id}`
//! through the room's `Join`), the outbox and its bounds, sending each event once,
//! keep-alives, timeouts, and how it stops. A [`Wire`] owns what differs: decoding the
//! client's frames (and acting on them), rendering the hub's events ([`Render`]), its
//! keep-alive frame, and what it says before closing. Contract C's JSON
//! ([`chat::ws`](crate::http::chat::ws)) and SignalR's hub protocols
//! ([`trade::signalr`](crate::http::trade::signalr)) are its wires.
//!
//! # The outbox
//! The hub counts the bytes of each frame it offers into the session's [`Outbox`], and
//! evicts a session whose queued bytes would pass `BOXOFFICE_WS_OUTBOX_BYTES` (or whose
//! mailbox stays over `BOXOFFICE_WS_OUTBOX` events); an evicted session closes with 1008 as
//! soon as it runs. A frame leaves the count when the session hands it to the socket.
//! Past that point the bytes are bounded too: the socket's writer pulls frames only while
//! its own buffer is under 32 KiB, and the session stops taking frames from its mailbox
//! after [`WRITE_BURST`] bytes until the writer pulls again. So a client that stops
//! reading holds at most its outbox bound plus ~50 KiB of the server's memory, whatever
//! the burst.
//!
//! # Sending each event once
//! A session may hear one event through several groups (a direct room's message reaches
//! its `room_` and `user_` groups), and a joined room's catch-up may overlap the live
//! stream. Messages are sent once by id (the newest id sent per room: a room publishes
//! its messages in id order), other events once by their event id.

use crate::actors::hub::{room_group, user_group, ChatEvent, Deliver, Event, Frame, Hub, Outbox, Render, Subscriber};
use crate::actors::room::{Author, ChatError, Join, Room, StoredMessage};
use crate::actors::Registry;
use actix::prelude::*;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

pub type Ctx<W> = ws::WebsocketContext<Session<W>>;

/// How often timeouts and keep-alives are checked.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// A session not online (no handshake) this long after it opened is closed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// A client silent this long is closed (1001).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes a session writes to its socket before it lets the socket's writer catch up.
pub const WRITE_BURST: usize = 16 << 10;
/// Rooms whose newest sent message id a session remembers.
const ROOMS_REMEMBERED: usize = 64;
/// Non-message events a session remembers by id (one event reaches a session through at
/// most a few groups, one right after the other).
const EVENTS_REMEMBERED: usize = 16;

/// A client's data frame.
pub enum Data<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

/// A wire protocol: what a [`Session`] does not share with the others.
pub trait Wire: Sized + Unpin + 'static {
    /// How often the server sends its keep-alive.
    const PING_INTERVAL: Duration;
    /// The socket is open. A wire may go online at once or after its handshake.
    fn opened(s: &mut Session<Self>, ctx: &mut Ctx<Self>);
    /// A data frame from the client.
    fn received(s: &mut Session<Self>, ctx: &mut Ctx<Self>, data: Data<'_>);
    /// The protocol's keep-alive frame; `None`: a WebSocket ping.
    fn keepalive(&self) -> Option<Frame> {
        None
    }
    /// What the protocol says before the server closes the socket (SignalR's Close
    /// message), if anything.
    fn farewell(&self, _reason: &str) -> Option<Frame> {
        None
    }
}

/// One WebSocket: its user, groups, outbox and wire.
pub struct Session<W: Wire> {
    pub id: u64,
    pub me: Author,
    pub registry: Registry,
    pub wire: W,
    outbox: Arc<Outbox>,
    /// How events are rendered for this socket; set when it goes online.
    render: Option<Arc<dyn Render>>,
    opened: Instant,
    /// When the client was last heard from, and the server's last keep-alive.
    heard: Instant,
    pinged: Instant,
    /// A close was sent or received: nothing more is read or sent.
    closing: bool,
    /// The rooms joined (or being joined), whose groups are left when the session stops.
    rooms: Vec<u64>,
    /// (room, newest message id sent), most recently used last.
    sent_messages: VecDeque<(u64, u64)>,
    /// Ids of the latest other events sent.
    sent_events: VecDeque<u64>,
    /// Bytes written since the socket's writer last caught up, and whether the session is
    /// waiting for it.
    burst: usize,
    paused: bool,
}

impl<W: Wire> Session<W> {
    pub fn new(state: &crate::http::AppState, me: Author, wire: W) -> Self {
        let now = Instant::now();
        let s = &state.settings;
        Session {
            id: state.registry.hub().session_id(),
            me,
            registry: state.registry.clone(),
            wire,
            outbox: Outbox::new(s.ws_outbox, s.ws_outbox_bytes.max(MIN_OUTBOX_BYTES)),
            render: None,
            opened: now,
            heard: now,
            pinged: now,
            closing: false,
            rooms: Vec::new(),
            sent_messages: VecDeque::new(),
            sent_events: VecDeque::new(),
            burst: 0,
            paused: false,
        }
    }

    /// Upgrade `req` to a WebSocket run by this session. Client frames are bounded by
    /// `max_frame` bytes (1009 past it).
    pub fn start(
        self,
        req: &HttpRequest,
        stream: web::Payload,
        max_frame: usize,
    ) -> Result<HttpResponse, actix_web::Error> {
        let stream = crate::http::frame_guard::FrameGuard::new(stream, max_frame);
        ws::WsResponseBuilder::new(self, req, stream).frame_size(max_frame).start()
    }

    pub fn hub(&self) -> &Hub {
        self.registry.hub()
    }

    /// Whether the session went online (and is in its user's group).
    pub fn online(&self) -> bool {
        self.render.is_some()
    }

    pub fn closing(&self) -> bool {
        self.closing
    }

    fn subscriber(&self, ctx: &mut Ctx<W>) -> Option<Subscriber> {
        Some(Subscriber {
            session: self.id,
            user: self.me.id,
            recipient: ctx.address().recipient(),
            wire: self.render.clone()?,
            outbox: self.outbox.clone(),
        })
    }

    /// The session counts as a connection of its user (who comes online with their first)
    /// and joins `user_{id}`; events are rendered with `render` from now on.
    pub fn go_online(&mut self, ctx: &mut Ctx<W>, render: Arc<dyn Render>) {
        if self.online() {
            return;
        }
        self.render = Some(render);
        if self.hub().connected(self.me.id) {
            self.registry.announce_presence(self.me.id, &self.me.name, true);
        }
        if let Some(sub) = self.subscriber(ctx) {
            self.hub().join(user_group(self.me.id), sub);
        }
    }

    /// Join `room_{room}` through the room (participants only), with the messages after
    /// `since`. Nothing else (no client frame, no event) is handled until the room
    /// answers, so `done` runs before the room's live events reach the session.
    pub fn join_room(
        &mut self,
        ctx: &mut Ctx<W>,
        room: u64,
        addr: Addr<Room>,
        since: Option<u64>,
        done: impl FnOnce(&mut Self, &mut Ctx<W>, Result<Result<Vec<StoredMessage>, ChatError>, MailboxError>) + 'static,
    ) {
        let Some(subscriber) = self.subscriber(ctx) else { return };
        // Counted as joined from now on: if the session stops before the answer, it still
        // leaves the group.
        let fresh = !self.rooms.contains(&room);
        if fresh {
            self.rooms.push(room);
        }
        let join = addr.send(Join { subscriber, since });
        ctx.wait(join.into_actor(self).map(move |answer, act, ctx| {
            if fresh && !matches!(answer, Ok(Ok(_))) {
                act.rooms.retain(|r| *r != room);
            }
            done(act, ctx, answer)
        }));
    }

    pub fn leave_room(&mut self, room: u64) {
        self.hub().leave(room_group(room), self.id);
        self.rooms.retain(|r| *r != room);
    }

    /// Send stored messages (a catch-up), each once.
    pub fn send_messages(&mut self, ctx: &mut Ctx<W>, messages: &[StoredMessage]) {
        let Some(render) = self.render.clone() else { return };
        for m in messages.iter().map(StoredMessage::event) {
            if self.fresh_message(m.room, m.id) {
                let frame = render.render(&ChatEvent::Message(m));
                self.write(ctx, frame);
            }
        }
    }

    /// Write a frame to the socket. After [`WRITE_BURST`] bytes the session takes nothing
    /// more from its mailbox until the socket's writer has pulled what it wrote.
    pub fn write(&mut self, ctx: &mut Ctx<W>, frame: Frame) {
        if self.closing {
            return;
        }
        self.burst += frame.len();
        match frame {
            Frame::Text(t) => ctx.text(t),
            Frame::Binary(b) => ctx.binary(b),
        }
        if self.burst >= WRITE_BURST && !self.paused {
            self.paused = true;
            ctx.wait(YieldOnce(false).into_actor(self).map(|(), act, _| {
                act.burst = 0;
                act.paused = false;
            }));
        }
    }

    /// Say the protocol's farewell, close the socket with `code` and stop.
    pub fn close(&mut self, ctx: &mut Ctx<W>, code: ws::CloseCode, reason: &str) {
        if self.closing {
            return;
        }
        if let Some(frame) = self.wire.farewell(reason) {
            self.write(ctx, frame);
        }
        self.close_quietly(ctx, Some(ws::CloseReason { code, description: Some(shorten(reason)) }));
    }

    /// Close the socket without the protocol's farewell.
    pub fn close_quietly(&mut self, ctx: &mut Ctx<W>, reason: Option<ws::CloseReason>) {
        if self.closing {
            return;
        }
        self.closing = true;
        ctx.close(reason);
        ctx.stop();
    }

    /// Whether message `id` of `room` is new to this client (remembering it).
    fn fresh_message(&mut self, room: u64, id: u64) -> bool {
        match self.sent_messages.iter().position(|(r, _)| *r == room) {
            Some(i) => {
                let (_, last) = self.sent_messages[i];
                if id <= last {
                    return false;
                }
                self.sent_messages.remove(i);
            }
            None if self.sent_messages.len() == ROOMS_REMEMBERED => {
                self.sent_messages.pop_front();
            }
            None => {}
        }
        self.sent_messages.push_back((room, id));
        true
    }

    /// Whether `event` is new to this client (remembering it).
    fn fresh(&mut self, event: &Event) -> bool {
        if let ChatEvent::Message(m) = &event.kind {
            return self.fresh_message(m.room, m.id);
        }
        if self.sent_events.contains(&event.seq) {
            return false;
        }
        if self.sent_events.len() == EVENTS_REMEMBERED {
            self.sent_events.pop_front();
        }
        self.sent_events.push_back(event.seq);
        true
    }
}

/// The smallest byte bound of an outbox: room for a few of the largest events.
pub const MIN_OUTBOX_BYTES: usize = 64 << 10;

/// A close reason's text: at most 123 bytes on the wire (RFC 6455 §5.5), cut at a
/// character boundary.
fn shorten(reason: &str) -> String {
    let mut end = reason.len().min(120);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_string()
}

/// Ready on its second poll: lets the task that runs the session (the socket's writer)
/// take what was written before the session goes on.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<W: Wire> Actor for Session<W> {
    type Context = Ctx<W>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.outbox.max_events());
        W::opened(self, ctx);
        ctx.run_interval(CHECK_INTERVAL, |act, ctx| {
            if act.closing {
                return;
            }
            if !act.online() && act.opened.elapsed() > HANDSHAKE_TIMEOUT {
                act.close_quietly(
                    ctx,
                    Some(ws::CloseReason { code: ws::CloseCode::Policy, description: Some("no handshake".into()) }),
                );
            } else if act.heard.elapsed() > IDLE_TIMEOUT {
                act.close(
                    ctx,
                    ws::CloseCode::Away,
                    "Server timeout elapsed without receiving a message from the client.",
                );
            } else if act.online() && act.pinged.elapsed() + CHECK_INTERVAL / 2 >= W::PING_INTERVAL {
                act.pinged = Instant::now();
                match act.wire.keepalive() {
                    Some(frame) => act.write(ctx, frame),
                    None => ctx.ping(b""),
                }
            }
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if !self.online() {
            return;
        }
        let hub = self.registry.hub().clone();
        hub.leave(user_group(self.me.id), self.id);
        for room in self.rooms.drain(..) {
            hub.leave(room_group(room), self.id);
        }
        if hub.disconnected(self.me.id) {
            self.registry.announce_presence(self.me.id, &self.me.name, false);
        }
    }
}

impl<W: Wire> Handler<Deliver> for Session<W> {
    type Result = ();
    fn handle(&mut self, Deliver { event, frame }: Deliver, ctx: &mut Self::Context) {
        self.outbox.taken(frame.len());
        if self.closing {
            return;
        }
        if self.outbox.evicted() {
            return self.close(ctx, ws::CloseCode::Policy, "too slow: the outgoing queue is full");
        }
        if self.fresh(&event) {
            self.write(ctx, frame);
        }
    }
}

impl<W: Wire> StreamHandler<Result<ws::Message, ws::ProtocolError>> for Session<W> {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.heard = Instant::now();
        if self.closing {
            return;
        }
        match msg {
            Ok(ws::Message::Text(text)) => W::received(self, ctx, Data::Text(&text)),
            Ok(ws::Message::Binary(bytes)) => W::received(self, ctx, Data::Binary(&bytes)),
            // Clients send each message in one frame (`actix_http::ws::Item` is not
            // reachable from this crate to reassemble fragments).
            Ok(ws::Message::Continuation(_)) => {
                self.close(ctx, ws::CloseCode::Unsupported, "Fragmented WebSocket messages are not supported.")
            }
            Ok(ws::Message::Ping(p)) => ctx.pong(&p),
            Ok(ws::Message::Pong(_)) | Ok(ws::Message::Nop) => {}
            Ok(ws::Message::Close(reason)) => self.close_quietly(ctx, reason),
            Err(e) => self.close_quietly(ctx, Some(crate::http::ws_violation(&e))),
        }
    }
}
