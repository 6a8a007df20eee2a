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
//! # The socket
//! The session owns its socket (taken over from the HTTP dispatcher once the 101 is
//! written, see [`crate::http::upgrade`]). It writes each frame straight to the socket:
//! one `writev` of the frame's header and the event's payload, which is rendered once per
//! protocol and shared by every session; nothing is copied. A frame the socket does not
//! take at once waits in the session's queue, and the session writes it when the socket
//! is writable. Client frames are read when the socket is readable, through a scratch
//! buffer of the thread: an idle socket holds no buffer at all. While the session is idle,
//! a publisher may write an event's frame itself, under the socket's write lock, with the
//! same checks ([`outlet`](super::outlet)); every write, the session's own too, is made under
//! that lock.
//!
//! # The outbox
//! The hub counts the bytes of each frame it offers into the session's [`Outbox`]; the
//! bytes waiting in the session's queue stay counted until the socket takes them. A
//! session whose count would pass `BOXOFFICE_WS_OUTBOX_BYTES` (or whose mailbox stays over
//! `BOXOFFICE_WS_OUTBOX` events) is evicted at once: it drops what it had not started to
//! write, sends 1008, and is gone when the close is written or after `BOXOFFICE_WS_CLOSE_GRACE` (10 s). So a
//! client that stops reading holds at most its outbox bound, whatever the burst.
//!
//! # Sending each event once
//! A session may hear one event through several groups (a direct room's message reaches
//! its `room_` and `user_` groups), and a joined room's catch-up may overlap the live
//! stream. Messages are sent once by id (the newest id sent per room: a room publishes
//! its messages in id order), other events once by their event id.

use super::outlet::{skips, Outlet, Pending};
use crate::actors::hub::{room_group, user_group, ChatEvent, Deliver, Event, Frame, Group, Hub, MessageEvent, Outbox};
use crate::actors::hub::{DirectRef, Render, Subscriber};
use crate::actors::room::{Author, ChatError};
use crate::cluster::Backend;
use crate::http::frame_guard::{FrameGuard, OVERSIZED};
use crate::http::limits::{FrameBudget, FrameVerdict};
use crate::http::upgrade::Takeover;
use actix::prelude::*;
use actix_codec::Decoder;
use actix_http::ws::{Codec, Frame as WireFrame, Item};
use actix_web::web::{Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse};
use actix_web_actors::ws;
use bytestring::ByteString;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

pub type Ctx<W> = Context<Session<W>>;

/// How often timeouts and keep-alives are checked.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// A session not online (no handshake) this long after it opened is closed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// A client silent this long is closed (1001).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A catch-up moves to the socket's queue this share of the byte bound at a time, leaving
/// the rest for live events.
const CATCH_UP_SHARE: usize = 4;
/// Queued frames written by one `writev` at most.
const WRITE_BATCH: usize = 32;

/// A client's data frame.
pub enum Data<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

/// A wire protocol: what a [`Session`] does not share with the others.
pub trait Wire: Sized + Unpin + 'static {
    /// The protocol's name in metrics.
    const KIND: &'static str;
    /// Whether publishers may write events to the socket themselves while the session is
    /// idle (see [`outlet`](super::outlet)): only for a wire that keeps nothing per event
    /// sent ([`Wire::event_sent`] does nothing).
    const DIRECT: bool = false;
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
    /// message, with `allowReconnect` when the server is going away), if anything.
    fn farewell(&self, _reason: &str, _reconnect: bool) -> Option<Frame> {
        None
    }
    /// How long the connection outlives a socket that drops, waiting for the client to
    /// take it over with a new one ([`Resume`]); `None`: it ends with its socket.
    fn resumable(&self) -> Option<Duration> {
        None
    }
    /// An event's frame goes to the client (or would, while no socket is attached): a
    /// wire that replays after a reconnect keeps it.
    fn event_sent(_s: &mut Session<Self>, _ctx: &mut Ctx<Self>, _event: &Event, _group: Group, _frame: &Frame) {}
    /// A new socket took the connection over ([`Resume`]): what the wire sends first.
    fn resumed(_s: &mut Session<Self>, _ctx: &mut Ctx<Self>) {}
    /// Whether, when the events this node relays may have a gap, the connection catches up
    /// on its rooms from the durable history instead of closing with 1012 (see
    /// [`Session::resync`]).
    fn resyncs(&self) -> bool {
        false
    }
    /// Whether the connection outlives a restart of the process (see
    /// `signalr::parking`): a drain then lets it go without a close, so that its client
    /// reconnects to the restarted server as after a dropped socket.
    fn outlives_process(&self) -> bool {
        false
    }
    /// The session has stopped: `for_good` unless the process is draining.
    fn stopped(&mut self, _for_good: bool) {}
}

/// A new socket for a connection whose wire is [`Wire::resumable`]: its stream (taken out
/// of the runtime of the worker that accepted it) and the bytes the client sent after
/// its handshake. A session that is closing drops it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Resume {
    pub io: std::net::TcpStream,
    pub read: BytesMut,
    pub max_frame: usize,
}

/// One WebSocket: its user, groups, outbox and wire.
pub struct Session<W: Wire> {
    pub id: u64,
    pub me: Author,
    /// The state, in this process (a core) or over NATS (an edge).
    pub backend: Backend,
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
    /// The server is shutting down: the farewell invites the client to reconnect.
    going_away: bool,
    /// Let go without a close as the server shuts down: the connection outlives the
    /// process (its wire keeps what it needs for that).
    parked: bool,
    /// The rooms joined (or being joined), whose groups are left when the session stops.
    rooms: Vec<u64>,
    /// The socket's write lock and what the session sent, shared with publishers, which
    /// write to the socket themselves while the session is idle (see [`outlet`](super::outlet)).
    outlet: Arc<Outlet>,
    /// Joins waiting for their room's answer (the outlet stays shut meanwhile).
    joining: u32,
    /// The socket, once taken over.
    io: Option<Arc<TcpStream>>,
    /// Frames the socket has not taken yet, oldest first; whether the session waits for
    /// the socket to be writable, and whether a flush is due at the end of this turn.
    queue: VecDeque<Pending>,
    /// A catch-up (`since=`) on its way, fed to the queue as the socket takes it, and the
    /// frames that came after it (counted in the outbox, `true`); the catch-up itself is
    /// bounded by the room (10,000 messages) and does not count against the outbox.
    backlog: VecDeque<(Frame, bool)>,
    flushing: bool,
    flush_scheduled: bool,
    /// The client's allowance of posts, typing frames and invocations.
    frames: FrameBudget,
    /// How long a close waits to be written (`BOXOFFICE_WS_CLOSE_GRACE`).
    close_grace: Duration,
    /// The client's side has ended (or answered our close).
    peer_done: bool,
    /// Our side was shut down after the close frame (see `after_write`).
    shut: bool,
    /// Writes the wire waits for before the frames queued since may go (see
    /// [`Session::gate`]): those frames wait in the backlog.
    gates: u32,
    /// The session went online as its user (presence, the user's group): see `go_online`.
    present: bool,
    /// The socket's reader, and the wait for the socket to be writable: cancelled when
    /// the socket drops and the connection waits to be resumed.
    reading: Option<SpawnHandle>,
    waiting: Option<SpawnHandle>,
    /// Since when the connection has had no socket (a resumable wire's), and how many
    /// sockets it has had.
    detached: Option<Instant>,
    sockets: u32,
    /// A connection arriving from another node ([`Session::arriving`]): the events of its
    /// groups, held until the node that had it hands over what it took in ([`Session::settle`]).
    held: Option<Vec<(Arc<Event>, Frame, Group)>>,
    /// The connection is being handed to another node ([`Session::depart`]): it takes no
    /// socket and is in no group any more.
    departing: bool,
}

/// What a session hands to the one that takes its connection over on another node,
/// besides its wire's state: its rooms, what it remembers having sent (so that its
/// successor sends each event once across the move), and each group it was in with how
/// far the group's subject had been relayed to it ([`Hub::leave_at`]): it took in every
/// event of the subject stamped up to there, and none after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Carried {
    pub rooms: Vec<u64>,
    pub sent_messages: Vec<(u64, u64)>,
    pub sent_events: Vec<u64>,
    pub groups: Vec<(Group, u64)>,
}

impl Carried {
    /// Whether a successor in `groups`, which hears every event of each stamped after
    /// `at` (the core's positions, asked once it was subscribed), misses nothing: it is
    /// in the same groups, and the old session took in everything up to those positions.
    pub fn covered_by(&self, groups: &[Group], at: &[u64]) -> bool {
        groups.len() == self.groups.len()
            && groups.iter().zip(at).all(|(g, at)| self.groups.iter().any(|(mine, took)| mine == g && took >= at))
    }

    fn took(&self, group: Group) -> u64 {
        self.groups.iter().find(|(g, _)| *g == group).map_or(0, |(_, took)| *took)
    }
}

/// How long a connection arriving from another node may take to be handed over and given
/// its socket before it is dropped.
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(30);

impl<W: Wire> Session<W> {
    pub fn new(state: &crate::http::Realtime, me: Author, wire: W) -> Self {
        let now = Instant::now();
        let s = &state.settings;
        Session {
            id: state.backend.hub().session_id(),
            me,
            backend: state.backend.clone(),
            wire,
            outbox: Outbox::new(s.ws_outbox, s.ws_outbox_bytes.max(MIN_OUTBOX_BYTES)),
            render: None,
            opened: now,
            heard: now,
            pinged: now,
            closing: false,
            going_away: false,
            parked: false,
            rooms: Vec::new(),
            outlet: Outlet::new(W::DIRECT),
            joining: 0,
            io: None,
            queue: VecDeque::new(),
            backlog: VecDeque::new(),
            flushing: false,
            flush_scheduled: false,
            frames: state.limits.as_ref().map_or_else(FrameBudget::unlimited, |l| l.frames()),
            close_grace: s.ws_close_grace,
            peer_done: false,
            shut: false,
            gates: 0,
            present: false,
            reading: None,
            waiting: None,
            detached: None,
            sockets: 1,
            held: None,
            departing: false,
        }
    }

    /// A session for a connection that another node holds and is about to hand over: no
    /// socket yet, not online. [`Gather`] puts it in the connection's groups (holding their
    /// events), [`Session::settle`] gives it what the other node handed over, and then
    /// [`Session::take_over`] its socket. Dropped after [`ARRIVAL_TIMEOUT`] if it never
    /// settles.
    pub fn arriving(state: &crate::http::Realtime, me: Author, wire: W) -> Self {
        let mut s = Session::new(state, me, wire);
        s.detached = Some(Instant::now());
        s.sockets = 0;
        s.held = Some(Vec::new());
        s
    }

    /// Count a client frame that acts (a post, a typing frame, an invocation) against the
    /// socket's allowance: `true` to act on it. Over the allowance the caller answers with
    /// an error; a client that keeps going over it is closed here with 1008 (after the
    /// protocol's farewell, which carries the error for SignalR).
    pub fn frame_allowed(&mut self, ctx: &mut Ctx<W>) -> bool {
        match self.frames.count() {
            FrameVerdict::Allowed => true,
            FrameVerdict::Refused => false,
            FrameVerdict::Flooding => {
                self.close(ctx, ws::CloseCode::Policy, "Too many messages: the connection is closed.");
                false
            }
        }
    }

    /// Accept the WebSocket handshake of `req` (400 if it is not one): a 101 whose socket
    /// this session runs once the 101 is written. Client frames are bounded by
    /// `max_frame` bytes (1009 past it).
    pub fn start(mut self, req: &HttpRequest, max_frame: usize) -> Result<HttpResponse, actix_web::Error> {
        upgrade(req, move |io, read| {
            let _ = io.set_nodelay(true);
            let io = Arc::new(io);
            self.io = Some(io.clone());
            self.outlet.lock().attach(Some(io.clone()));
            Session::create(move |ctx| {
                self.reading = Some(ctx.add_stream(reader(io, read, max_frame)));
                self
            });
        })
    }

    /// Accept the WebSocket handshake of `req` as a new socket for the resumable
    /// connection `session` ([`Resume`]), whichever worker thread it runs on. If the session
    /// has stopped meanwhile, the socket is dropped and the client starts a new connection.
    pub fn take_over(
        req: &HttpRequest,
        session: Addr<Self>,
        max_frame: usize,
    ) -> Result<HttpResponse, actix_web::Error> {
        upgrade(req, move |io, read| {
            // Out of this worker's runtime, into the session's.
            if let Ok(io) = io.into_std() {
                session.do_send(Resume { io, read, max_frame });
            }
        })
    }

    pub fn hub(&self) -> &Hub {
        self.backend.hub()
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
            direct: self.direct(),
        })
    }

    /// The outlet, as publishers see it, if they may write to it.
    fn direct(&self) -> Option<DirectRef> {
        self.outlet.direct().then(|| self.outlet.clone() as DirectRef)
    }

    /// The session counts as a connection of its user (who comes online with their first,
    /// wherever it is) and joins `user_{id}`; events are rendered with `render` from now
    /// on. `then` runs once the group's events reach this process (at once in a core; an
    /// edge subscribes first), and nothing else is handled before it.
    pub fn go_online(
        &mut self,
        ctx: &mut Ctx<W>,
        render: Arc<dyn Render>,
        then: impl FnOnce(&mut Self, &mut Ctx<W>) + 'static,
    ) {
        if self.online() {
            return;
        }
        self.render = Some(render);
        self.present = true;
        self.backend.presence(&self.me, true);
        let group = user_group(self.me.id);
        if let Some(sub) = self.subscriber(ctx) {
            self.hub().join(group, sub);
        }
        ctx.wait(self.backend.listen(group).into_actor(self).map(move |heard, act, ctx| {
            if heard {
                then(act, ctx)
            } else {
                act.close(ctx, ws::CloseCode::Restart, "This node cannot reach the service; reconnect.")
            }
        }));
    }

    /// A socket that only listens to what the server pushes through its own messages (the
    /// queue's): it needs no handshake, joins no group and does not count as its user
    /// being online, but gets the keep-alive and the idle timeout.
    pub fn listen_only(&mut self) {
        struct Silent;
        impl Render for Silent {
            fn slot(&self) -> usize {
                0
            }
            fn render(&self, _: &ChatEvent) -> Frame {
                Frame::text("{}")
            }
        }
        static SILENT: std::sync::LazyLock<Arc<dyn Render>> = std::sync::LazyLock::new(|| Arc::new(Silent));
        self.render = Some(SILENT.clone());
    }

    /// Join `room_{room}` through the room (participants only), with the messages after
    /// `since`. Nothing else (no client frame, no event) is handled until the room
    /// answers, so `done` runs before the room's live events reach the session.
    pub fn join_room(
        &mut self,
        ctx: &mut Ctx<W>,
        room: u64,
        since: Option<u64>,
        done: impl FnOnce(&mut Self, &mut Ctx<W>, Result<Vec<MessageEvent>, ChatError>) + 'static,
    ) {
        let Some(subscriber) = self.subscriber(ctx) else { return };
        // Counted as joined from now on: if the session stops before the answer, it still
        // leaves the group.
        let fresh = !self.rooms.contains(&room);
        if fresh {
            self.rooms.push(room);
        }
        // The catch-up comes before the room's live events: through the mailbox.
        self.joining += 1;
        self.shut_outlet();
        let join = self.backend.join(room, subscriber, since);
        ctx.wait(join.into_actor(self).map(move |answer, act, ctx| {
            act.joining -= 1;
            if fresh && answer.is_err() {
                act.rooms.retain(|r| *r != room);
            }
            let answer = answer.map(|joined| {
                if fresh {
                    let mut out = act.outlet.lock();
                    out.sent.floors.retain(|(r, _)| *r != room);
                    out.sent.floors.push((room, joined.newest));
                }
                joined.missed
            });
            done(act, ctx, answer);
            act.idle();
        }));
    }

    pub fn leave_room(&mut self, room: u64) {
        self.shut_outlet();
        self.hub().leave(room_group(room), self.id);
        self.rooms.retain(|r| *r != room);
        self.outlet.lock().sent.floors.retain(|(r, _)| *r != room);
        self.idle();
    }

    /// Send stored messages (a catch-up), each once.
    pub fn send_messages(&mut self, ctx: &mut Ctx<W>, messages: Vec<MessageEvent>) {
        let Some(render) = self.render.clone() else { return };
        let mut sent = 0;
        self.shut_outlet();
        for m in messages {
            if self.outlet.lock().sent.fresh_message(m.room, m.id) {
                self.backlog.push_back((render.render(&ChatEvent::Message(m)), false));
                sent += 1;
            }
        }
        crate::observe::replay(sent);
        self.feed(ctx);
    }

    /// Move catch-up frames to the socket's queue while it holds less than its share of
    /// the byte bound (uncounted ones count in the outbox from then on).
    fn refill(&mut self) {
        if self.gates > 0 {
            return;
        }
        let mut queued: usize = self.queue.iter().map(Pending::left).sum();
        while queued < self.outbox.max_bytes() / CATCH_UP_SHARE {
            let Some((frame, counted)) = self.backlog.pop_front() else { break };
            if !counted {
                self.outbox.queue(frame.len());
            }
            queued += frame.len();
            self.queue.push_back(Pending { wire: frame.wire().clone(), written: 0 });
        }
    }

    /// Move the catch-up to the socket's queue while the queue is short (what moves counts
    /// in the outbox from then on).
    fn feed(&mut self, ctx: &mut Ctx<W>) {
        self.refill();
        if !self.queue.is_empty() && !self.flushing && !self.flush_scheduled {
            self.flush_scheduled = true;
            ctx.spawn(actix::fut::ready(()).map(|(), act: &mut Self, ctx| {
                act.flush_scheduled = false;
                act.flush(ctx);
            }));
        }
    }

    /// Hold every frame from now on (in order, in the backlog) until [`Session::ungate`]:
    /// a wire that must have something on disk before the client sees what follows.
    pub fn gate(&mut self) {
        self.gates += 1;
        self.shut_outlet();
    }

    /// The write the frames waited for failed: drop them (the connection closes).
    pub fn drop_gated(&mut self) {
        let counted: usize = self.backlog.drain(..).filter(|(_, counted)| *counted).map(|(f, _)| f.len()).sum();
        self.outbox.taken(counted);
    }

    /// One write the frames waited for is done: they go once none is left.
    pub fn ungate(&mut self, ctx: &mut Ctx<W>) {
        self.gates = self.gates.saturating_sub(1);
        if self.gates == 0 {
            self.feed(ctx);
        }
    }

    /// Send a frame to the client (nothing once the session is closing).
    pub fn write(&mut self, ctx: &mut Ctx<W>, frame: Frame) {
        if self.closing {
            return;
        }
        self.send(ctx, frame);
    }

    /// Send a frame of the session's own (not counted by the hub yet).
    fn send(&mut self, ctx: &mut Ctx<W>, frame: Frame) {
        self.outbox.queue(frame.len());
        self.push(ctx, frame);
    }

    /// Send a counted frame. When nothing else waits (not in the session's queue, not in
    /// its mailbox: the outbox counts both) it is written at once; otherwise it is queued
    /// and written when this turn of the session ends, with whatever else the turn
    /// queued (one `writev` for a backlog).
    fn push(&mut self, ctx: &mut Ctx<W>, frame: Frame) {
        let Some(io) = self.io.clone() else {
            return self.outbox.taken(frame.len());
        };
        if !self.backlog.is_empty() || self.gates > 0 {
            // Behind the catch-up, or behind a write the wire waits for.
            self.backlog.push_back((frame, true));
            if self.outbox.over() && !self.outbox.evicted() {
                self.hub().give_up(self.id, self.me.id, &self.outbox);
                self.evicted(ctx);
            }
            return;
        }
        let mut pending = Pending { wire: frame.wire().clone(), written: 0 };
        // Under the outlet's lock: a publisher writes nothing meanwhile, and its frame the
        // socket did not take whole goes first.
        let outlet = self.outlet.clone();
        let mut out = outlet.lock();
        out.shut(&mut self.queue);
        if self.queue.is_empty() && self.outbox.queued() == frame.len() {
            match io.try_write(&pending.wire) {
                Ok(n) => {
                    self.outbox.taken(n);
                    if n == pending.wire.len() {
                        if self.steady() {
                            out.open(&self.rooms);
                        }
                        drop(out);
                        return self.after_write(ctx);
                    }
                    pending.written = n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    drop(out);
                    return self.lost(ctx);
                }
            }
            drop(out);
            self.queue.push_back(pending);
            return self.wait_writable(ctx);
        }
        drop(out);
        self.queue.push_back(pending);
        if self.outbox.over() && !self.outbox.evicted() {
            self.hub().give_up(self.id, self.me.id, &self.outbox);
            return self.evicted(ctx);
        }
        if !self.flushing && !self.flush_scheduled {
            self.flush_scheduled = true;
            ctx.spawn(actix::fut::ready(()).map(|(), act: &mut Self, ctx| {
                act.flush_scheduled = false;
                act.flush(ctx);
            }));
        }
    }

    /// Everything queued is written: a closing session is done once the client has seen
    /// the close. A client still sending would lose it if the socket were dropped now
    /// (unread bytes make the kernel answer with a reset, which discards what the client
    /// had not read yet): so our side is shut down after the close frame, and the session
    /// reads on, discarding, until the client answers or goes (or after `BOXOFFICE_WS_CLOSE_GRACE` (10 s)).
    fn after_write(&mut self, ctx: &mut Ctx<W>) {
        if !self.closing || !self.queue.is_empty() {
            return;
        }
        if self.peer_done {
            return ctx.stop();
        }
        if !self.shut {
            self.shut = true;
            if let Some(io) = self.io.as_ref() {
                let _ = socket2::SockRef::from(io.as_ref()).shutdown(std::net::Shutdown::Write);
            }
        }
    }

    /// Write queued frames once the socket can take them.
    fn wait_writable(&mut self, ctx: &mut Ctx<W>) {
        let Some(io) = self.io.clone() else { return };
        if self.flushing {
            return;
        }
        self.flushing = true;
        let wait = ctx.spawn(async move { io.writable().await }.into_actor(self).map(|ready, act, ctx| {
            act.flushing = false;
            act.waiting = None;
            match ready {
                Ok(()) => act.flush(ctx),
                Err(_) => act.lost(ctx),
            }
        }));
        self.waiting = Some(wait);
    }

    /// Write what the socket takes of the queue.
    fn flush(&mut self, ctx: &mut Ctx<W>) {
        let Some(io) = self.io.clone() else { return };
        let outlet = self.outlet.clone();
        let mut out = outlet.lock();
        out.shut(&mut self.queue);
        while !self.queue.is_empty() {
            let slices: Vec<IoSlice<'_>> =
                self.queue.iter().take(WRITE_BATCH).map(|f| IoSlice::new(&f.wire[f.written..])).collect();
            let mut n = match io.try_write_vectored(&slices) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    drop(out);
                    return self.wait_writable(ctx);
                }
                Err(_) => {
                    drop(out);
                    return self.lost(ctx);
                }
            };
            drop(slices);
            self.outbox.taken(n);
            while n > 0 {
                let Some(front) = self.queue.front_mut() else { break };
                let step = n.min(front.left());
                front.written += step;
                n -= step;
                if front.left() == 0 {
                    self.queue.pop_front();
                }
            }
            if self.queue.is_empty() {
                self.refill();
            }
        }
        if self.steady() {
            out.open(&self.rooms);
        }
        drop(out);
        if self.closing {
            ctx.stop();
        }
    }

    /// Whether publishers may write to the socket themselves (see [`outlet`](super::outlet)):
    /// the wire allows it, and the session is online and idle, with nothing queued, no
    /// catch-up, gate or join on its way, and its connection in place.
    fn steady(&self) -> bool {
        W::DIRECT
            && self.online()
            && !self.closing
            && self.queue.is_empty()
            && self.backlog.is_empty()
            && self.gates == 0
            && self.joining == 0
            && self.held.is_none()
            && !self.departing
            && self.detached.is_none()
    }

    /// Open the outlet if the session is idle.
    fn idle(&mut self) {
        if self.steady() {
            self.outlet.lock().open(&self.rooms);
        }
    }

    /// Shut the outlet: what follows goes through the mailbox. A publisher's frame that
    /// the socket did not take whole goes first in the queue (the publisher told the
    /// session to write it, [`Deliver::Stalled`]).
    fn shut_outlet(&mut self) {
        self.outlet.lock().shut(&mut self.queue);
    }

    /// The socket broke or the client's side ended without a close. A connection whose
    /// wire is resumable waits for a new socket ([`Resume`]) for the wire's window, still
    /// in its groups (what it is sent meanwhile is the wire's to keep); any other stops.
    fn lost(&mut self, ctx: &mut Ctx<W>) {
        let Some(window) = self.wire.resumable() else { return ctx.stop() };
        if self.closing || !self.online() {
            return ctx.stop();
        }
        if self.detached.is_some() {
            return;
        }
        self.drop_socket(ctx);
        self.detached = Some(Instant::now());
        crate::observe::connection(W::KIND, -1);
        let socket = self.sockets;
        ctx.run_later(window, move |act, ctx| {
            if act.detached.is_some() && act.sockets == socket {
                ctx.stop();
            }
        });
    }

    /// Let go of the socket and what waits to be written to it.
    fn drop_socket(&mut self, ctx: &mut Ctx<W>) {
        if let Some(h) = self.reading.take() {
            ctx.cancel_future(h);
        }
        if let Some(h) = self.waiting.take() {
            ctx.cancel_future(h);
        }
        self.flushing = false;
        {
            let mut out = self.outlet.lock();
            out.attach(None);
            out.shut(&mut self.queue);
        }
        let queued: usize = self.queue.drain(..).map(|p| p.left()).sum();
        let counted: usize = self.backlog.drain(..).filter(|(_, counted)| *counted).map(|(f, _)| f.len()).sum();
        self.outbox.taken(queued + counted);
        if let Some(io) = self.io.take() {
            let _ = socket2::SockRef::from(io.as_ref()).shutdown(std::net::Shutdown::Both);
        }
    }

    /// A new socket takes the connection over (the old one, if the server had not noticed
    /// it drop, is let go).
    fn resume(&mut self, ctx: &mut Ctx<W>, msg: Resume) {
        if self.closing || self.departing || self.held.is_some() || !self.online() || self.wire.resumable().is_none() {
            return;
        }
        let Ok(io) = TcpStream::from_std(msg.io) else { return };
        let _ = io.set_nodelay(true);
        if self.detached.take().is_some() {
            crate::observe::connection(W::KIND, 1);
        } else {
            self.drop_socket(ctx);
        }
        self.sockets += 1;
        let io = Arc::new(io);
        self.io = Some(io.clone());
        self.outlet.lock().attach(Some(io.clone()));
        self.reading = Some(ctx.add_stream(reader(io, msg.read, msg.max_frame)));
        self.peer_done = false;
        self.shut = false;
        self.heard = Instant::now();
        self.pinged = Instant::now();
        W::resumed(self, ctx);
    }

    /// The events this node relays may have a gap (an edge after the core restarted or
    /// dropped events): instead of closing with 1012, a wire that [`Wire::resyncs`] gets
    /// each joined room's messages after the newest it was sent (or, if none, after the
    /// newest published when it joined), from the durable history, each once, before any
    /// later event. If a room cannot answer, the session closes with 1012 as any other.
    fn resync(&mut self, ctx: &mut Ctx<W>) {
        let mut positions = Vec::new();
        for &room in &self.rooms {
            let out = self.outlet.lock();
            let sent = out.sent.messages.iter().find(|(r, _)| *r == room).map(|(_, id)| *id);
            let floor = out.sent.floors.iter().find(|(r, _)| *r == room).map(|(_, id)| *id);
            drop(out);
            match sent.max(floor) {
                Some(since) => positions.push((room, since)),
                // Neither sent a message nor joined here (it came from another node with
                // nothing sent yet): where the client stands is not known.
                None => {
                    return self.close(
                        ctx,
                        ws::CloseCode::Restart,
                        "This node lost its link to the service; reconnect.",
                    )
                }
            }
        }
        crate::observe::resync(W::KIND);
        for (room, since) in positions {
            self.join_room(ctx, room, Some(since), move |act, ctx, answer| {
                let Ok(missed) = answer else {
                    return act.close(
                        ctx,
                        ws::CloseCode::Restart,
                        "This node lost its link to the service; reconnect.",
                    );
                };
                if missed.len() >= crate::actors::room::MAX_CATCH_UP {
                    // More than a catch-up gives: the oldest would be missing.
                    return act.close(
                        ctx,
                        ws::CloseCode::Restart,
                        "This node lost its link to the service; reconnect.",
                    );
                }
                let Some(render) = act.render.clone() else { return };
                for m in missed {
                    let event = Event::new(ChatEvent::Message(m));
                    let frame = render.render(&event.kind);
                    act.outbox.queue(frame.len());
                    act.take_in(ctx, event, frame, room_group(room));
                }
            });
        }
    }

    /// Whether the connection is waiting for a new socket.
    pub fn detached(&self) -> bool {
        self.detached.is_some()
    }

    /// The rooms joined (or being joined).
    pub fn rooms(&self) -> &[u64] {
        &self.rooms
    }

    /// The groups the session is in: its user's, then its rooms'.
    pub fn groups(&self) -> Vec<Group> {
        std::iter::once(user_group(self.me.id)).chain(self.rooms.iter().map(|r| room_group(*r))).collect()
    }

    /// Hand the connection to another node: let go of the socket (if the server had not
    /// noticed it drop) and leave every group, noting how far each group's subject had
    /// been relayed to it. From now on no event reaches the session but those already in
    /// its mailbox, which it takes in as before. `None` if the connection cannot move (it
    /// is closing, not online, not resumable, or moving already).
    pub fn depart(&mut self, ctx: &mut Ctx<W>) -> Option<Vec<(Group, u64)>> {
        if self.closing || self.departing || !self.online() || self.wire.resumable().is_none() || self.held.is_some() {
            return None;
        }
        if self.detached.is_none() {
            self.drop_socket(ctx);
            self.detached = Some(Instant::now());
            crate::observe::connection(W::KIND, -1);
        }
        self.departing = true;
        let hub = self.hub().clone();
        Some(self.groups().into_iter().map(|g| (g, hub.leave_at(g, self.id))).collect())
    }

    /// What the session hands over with its connection, once it took in what its mailbox
    /// held when it left its groups ([`Session::depart`]).
    pub fn carried(&self, groups: Vec<(Group, u64)>) -> Carried {
        let out = self.outlet.lock();
        Carried {
            rooms: self.rooms.clone(),
            sent_messages: out.sent.messages.iter().copied().collect(),
            sent_events: out.sent.events.iter().copied().collect(),
            groups,
        }
    }

    /// The connection arrived ([`Session::arriving`]), and its wire has taken over the
    /// wire's state: take over the rest from `carried`, and take in the events held
    /// meanwhile that the old session had not (those of each group stamped past what it
    /// took in), in the order they came. From now on the connection waits for its socket
    /// as after a drop, for the wire's window.
    pub fn settle(&mut self, ctx: &mut Ctx<W>, carried: Carried) {
        let Some(held) = self.held.take() else { return };
        {
            let mut out = self.outlet.lock();
            out.sent.messages = carried.sent_messages.iter().copied().collect();
            out.sent.events = carried.sent_events.iter().copied().collect();
        }
        for (event, frame, group) in held {
            if event.stamp <= carried.took(group) {
                self.outbox.taken(frame.len());
            } else {
                self.take_in(ctx, event, frame, group);
            }
        }
        self.await_socket(ctx);
    }

    /// A connection of the process before this one ([`Reopen`]) has its wire's state back;
    /// `sent`: the newest message of each room the client is sent already. The events
    /// held meanwhile are taken in (each once), and the connection waits for its socket as
    /// after a drop.
    pub fn reopened(&mut self, ctx: &mut Ctx<W>, sent: Vec<(u64, u64)>) {
        let Some(held) = self.held.take() else { return };
        self.outlet.lock().sent.messages = sent.into_iter().collect();
        for (event, frame, group) in held {
            self.take_in(ctx, event, frame, group);
        }
        self.await_socket(ctx);
    }

    /// A connection that existed before this session ([`Gather`], [`Reopen`]) takes up its
    /// rooms and renders with `render`; its user counts it as a connection from now on.
    fn come_back(&mut self, render: Arc<dyn Render>, rooms: Vec<u64>) {
        self.render = Some(render);
        self.present = true;
        self.backend.presence(&self.me, true);
        self.rooms = rooms;
    }

    /// A connection without a socket waits for one for the wire's window, then stops.
    fn await_socket(&mut self, ctx: &mut Ctx<W>) {
        if let Some(window) = self.wire.resumable() {
            ctx.run_later(window, |act, ctx| {
                if act.detached.is_some() && act.sockets == 0 {
                    ctx.stop();
                }
            });
        }
    }

    /// The hub gave up on this session: drop the frames not started, and close with 1008
    /// (after the one being written).
    fn evicted(&mut self, ctx: &mut Ctx<W>) {
        self.shut_outlet();
        let keep = usize::from(self.queue.front().is_some_and(|f| f.written > 0));
        let dropped: usize = self.queue.iter().skip(keep).map(Pending::left).sum();
        self.queue.truncate(keep);
        let counted: usize = self.backlog.drain(..).filter(|(_, counted)| *counted).map(|(f, _)| f.len()).sum();
        self.outbox.taken(dropped + counted);
        self.close(ctx, ws::CloseCode::Policy, "too slow: the outgoing queue is full");
    }

    /// Say the protocol's farewell, close the socket with `code` and stop.
    pub fn close(&mut self, ctx: &mut Ctx<W>, code: ws::CloseCode, reason: &str) {
        if self.closing {
            return;
        }
        let reconnect = (code == ws::CloseCode::Away && self.going_away) || code == ws::CloseCode::Restart;
        if let Some(frame) = self.wire.farewell(reason, reconnect) {
            self.write(ctx, frame);
        }
        self.close_quietly(ctx, Some(ws::CloseReason { code, description: Some(shorten(reason)) }));
    }

    /// Close the socket without the protocol's farewell: a close frame, then the session
    /// stops once it is written (or after `BOXOFFICE_WS_CLOSE_GRACE` (10 s)).
    pub fn close_quietly(&mut self, ctx: &mut Ctx<W>, reason: Option<ws::CloseReason>) {
        if self.closing {
            return;
        }
        self.closing = true;
        if self.detached.is_some() {
            // No socket to say it on.
            return ctx.stop();
        }
        let mut payload = Vec::new();
        crate::observe::close(reason.as_ref().map_or(1005, |r| u16::from(r.code)));
        if let Some(r) = reason {
            payload.extend_from_slice(&u16::from(r.code).to_be_bytes());
            payload.extend_from_slice(r.description.as_deref().map(shorten).unwrap_or_default().as_bytes());
        }
        self.send(ctx, Frame::new(Frame::CLOSE, &payload));
        // Stopped once the close is written (see `flush`), or after the grace.
        ctx.run_later(self.close_grace, |_, ctx| ctx.stop());
    }

    /// The periodic check ([`checks`]): the handshake and idle timeouts, and the keep-alive.
    fn check(&mut self, ctx: &mut Ctx<W>) {
        if self.closing || self.detached.is_some() {
            return;
        }
        if !self.online() && self.opened.elapsed() > HANDSHAKE_TIMEOUT {
            self.close_quietly(
                ctx,
                Some(ws::CloseReason { code: ws::CloseCode::Policy, description: Some("no handshake".into()) }),
            );
        } else if self.heard.elapsed() > IDLE_TIMEOUT {
            self.close(ctx, ws::CloseCode::Away, "Server timeout elapsed without receiving a message from the client.");
        } else if self.online() && self.pinged.elapsed() + CHECK_INTERVAL / 2 >= W::PING_INTERVAL {
            self.pinged = Instant::now();
            match self.wire.keepalive() {
                Some(frame) => self.write(ctx, frame),
                None => self.send(ctx, Frame::new(Frame::PING, b"")),
            }
        }
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

impl<W: Wire> Actor for Session<W> {
    type Context = Ctx<W>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.held.is_some() {
            ctx.run_later(ARRIVAL_TIMEOUT, |act, ctx| {
                if act.held.is_some() {
                    ctx.stop();
                }
            });
        }
        if self.detached.is_none() {
            crate::observe::connection(W::KIND, 1);
        }
        self.hub().opened(self.id, ctx.address().recipient(), self.direct());
        ctx.set_mailbox_capacity(self.outbox.max_events());
        W::opened(self, ctx);
        checks::register(self.id, ctx.address().recipient());
    }

    /// A last try to write what is queued (a close frame above all), without waiting.
    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        self.shut_outlet();
        if let Some(io) = self.io.as_ref() {
            while let Some(front) = self.queue.front_mut() {
                match io.try_write(&front.wire[front.written..]) {
                    Ok(n) if n > 0 && n == front.left() => {
                        self.queue.pop_front();
                    }
                    Ok(n) if n > 0 => front.written += n,
                    _ => break,
                }
            }
        }
        Running::Stop
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        // Publishers may still hold the outlet for a moment: the socket closes now.
        self.outlet.lock().attach(None);
        if self.detached.is_none() {
            crate::observe::connection(W::KIND, -1);
        }
        self.wire.stopped(!self.parked);
        checks::unregister(self.id);
        self.hub().closed(self.id);
        if !self.present {
            return;
        }
        let hub = self.hub().clone();
        hub.leave(user_group(self.me.id), self.id);
        for room in self.rooms.drain(..) {
            hub.leave(room_group(room), self.id);
        }
        self.backend.presence(&self.me, false);
    }
}

impl<W: Wire> Handler<Deliver> for Session<W> {
    type Result = ();
    fn handle(&mut self, deliver: Deliver, ctx: &mut Self::Context) {
        let (event, frame, group) = match deliver {
            Deliver::Event { event, frame, group } => (event, frame, group),
            Deliver::Evicted => return self.evicted(ctx),
            Deliver::GoingAway if self.wire.outlives_process() && self.online() && !self.closing => {
                // No close: the client reconnects to the restarted server, which resumes
                // the connection.
                self.going_away = true;
                self.parked = true;
                self.drop_socket(ctx);
                return ctx.stop();
            }
            Deliver::GoingAway => {
                self.going_away = true;
                return self.close(ctx, ws::CloseCode::Away, "The server is shutting down; reconnect.");
            }
            Deliver::Restart if self.wire.resyncs() && self.held.is_none() && !self.departing && self.online() => {
                return self.resync(ctx);
            }
            Deliver::Restart => {
                return self.close(ctx, ws::CloseCode::Restart, "This node lost its link to the service; reconnect.")
            }
            Deliver::Stalled => {
                // The rest of a publisher's frame, unless a write of the session's took it
                // already (a flush with nothing to write would stop a closing session early).
                self.shut_outlet();
                if self.queue.is_empty() {
                    return self.idle();
                }
                return self.flush(ctx);
            }
        };
        if let Some(held) = self.held.as_mut() {
            // Counted in the outbox until taken in (or dropped) by `settle`.
            held.push((event, frame, group));
            return;
        }
        self.take_in(ctx, event, frame, group);
    }
}

impl<W: Wire> Session<W> {
    /// An event of `group` reaches the session: sent (or, without a socket, kept by the
    /// wire) unless the client has it or is not to get it.
    fn take_in(&mut self, ctx: &mut Ctx<W>, event: Arc<Event>, frame: Frame, group: Group) {
        if self.closing || skips(&self.rooms, group, &event) || !self.outlet.lock().sent.fresh(&event) {
            return self.outbox.taken(frame.len());
        }
        W::event_sent(self, ctx, &event, group, &frame);
        if self.closing {
            return self.outbox.taken(frame.len());
        }
        self.push(ctx, frame);
    }
}

impl<W: Wire> Handler<checks::Check> for Session<W> {
    type Result = ();
    fn handle(&mut self, _: checks::Check, ctx: &mut Self::Context) {
        self.check(ctx);
    }
}

/// Put a session arriving from another node ([`Session::arriving`]) in its connection's
/// groups: its user's (it counts as a connection of its user from now on) and `rooms`
/// (no participant check: the connection had joined them), rendering events with
/// `render` and holding them. Answers once this process hears every group (false: it
/// cannot, and the session stops).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Gather {
    pub render: Arc<dyn Render>,
    pub rooms: Vec<u64>,
}

impl<W: Wire> Handler<Gather> for Session<W> {
    type Result = ResponseActFuture<Self, bool>;
    fn handle(&mut self, msg: Gather, ctx: &mut Self::Context) -> Self::Result {
        if self.online() || self.held.is_none() {
            return Box::pin(actix::fut::ready(false));
        }
        // Online before anything is asked of the node that holds the connection, so that
        // its user does not flap offline when it lets go (NATS keeps this edge's order).
        self.come_back(msg.render, msg.rooms);
        let mut listening = Vec::new();
        for group in self.groups() {
            if let Some(sub) = self.subscriber(ctx) {
                self.hub().join(group, sub);
            }
            listening.push(self.backend.listen(group));
        }
        Box::pin(futures_util::future::join_all(listening).into_actor(self).map(|heard, _, ctx| {
            let all = heard.iter().all(|h| *h);
            if !all {
                ctx.stop();
            }
            all
        }))
    }
}

/// Put a session for a connection of the process before this one ([`Session::arriving`],
/// see `signalr::parking`) back in its groups: its user's (it counts as a connection of
/// its user from now on) and each room's, through the room (the participant check), with
/// the messages after the room's position. Events are held until
/// [`Session::reopened`]. Answers each room's messages in the rooms' order, or `None`
/// (a room refused: the session stops).
#[derive(Message)]
#[rtype(result = "Option<Vec<Vec<MessageEvent>>>")]
pub struct Reopen {
    pub render: Arc<dyn Render>,
    pub rooms: Vec<(u64, u64)>,
}

impl<W: Wire> Handler<Reopen> for Session<W> {
    type Result = ResponseActFuture<Self, Option<Vec<Vec<MessageEvent>>>>;
    fn handle(&mut self, msg: Reopen, ctx: &mut Self::Context) -> Self::Result {
        if self.online() || self.held.is_none() {
            return Box::pin(actix::fut::ready(None));
        }
        self.come_back(msg.render, msg.rooms.iter().map(|(r, _)| *r).collect());
        if let Some(sub) = self.subscriber(ctx) {
            self.hub().join(user_group(self.me.id), sub);
        }
        let mut joins = Vec::new();
        for &(room, since) in &msg.rooms {
            if let Some(sub) = self.subscriber(ctx) {
                joins.push(self.backend.join(room, sub, Some(since)));
            }
        }
        let positions = msg.rooms;
        Box::pin(futures_util::future::join_all(joins).into_actor(self).map(move |answers, act, ctx| {
            let missed: Result<Vec<_>, _> = answers.into_iter().map(|a| a.map(|j| j.missed)).collect();
            if missed.is_err() {
                ctx.stop();
            }
            act.outlet.lock().sent.floors = positions;
            missed.ok()
        }))
    }
}

/// A connection arriving from another node did not come after all: the session stops.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Abandon;

impl<W: Wire> Handler<Abandon> for Session<W> {
    type Result = ();
    fn handle(&mut self, _: Abandon, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl<W: Wire> Handler<Resume> for Session<W> {
    type Result = ();
    fn handle(&mut self, msg: Resume, ctx: &mut Self::Context) {
        self.resume(ctx, msg);
    }
}

impl<W: Wire> StreamHandler<Result<ws::Message, ws::ProtocolError>> for Session<W> {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.heard = Instant::now();
        if self.closing {
            // The client's answer to our close (or a broken stream) ends the session once
            // the close is written; anything else is discarded.
            if matches!(msg, Ok(ws::Message::Close(_)) | Err(_)) {
                self.peer_done = true;
                self.after_write(ctx);
            }
            return;
        }
        match msg {
            Ok(ws::Message::Text(text)) => W::received(self, ctx, Data::Text(&text)),
            Ok(ws::Message::Binary(bytes)) => W::received(self, ctx, Data::Binary(&bytes)),
            Ok(ws::Message::Ping(p)) => self.send(ctx, Frame::new(Frame::PONG, &p)),
            // The reader hands over whole messages.
            Ok(ws::Message::Continuation(_)) | Ok(ws::Message::Pong(_)) | Ok(ws::Message::Nop) => {}
            Ok(ws::Message::Close(reason)) => {
                // The client closed first: our echo is all it waits for.
                self.peer_done = true;
                self.close_quietly(ctx, reason)
            }
            // The socket broke (not a violation of the protocol).
            Err(ws::ProtocolError::Io(e)) if e.kind() != std::io::ErrorKind::InvalidData => self.lost(ctx),
            Err(e) => self.close_quietly(ctx, Some(crate::http::ws_violation(&e))),
        }
    }

    /// The client's side ended: stop (or, resumable, wait for a new socket), unless a
    /// close is on its way out (the session stops once it is written).
    fn finished(&mut self, ctx: &mut Self::Context) {
        if self.detached.is_some() {
            // The reader of a socket already let go.
            return;
        }
        if !self.closing {
            return self.lost(ctx);
        }
        self.peer_done = true;
        self.after_write(ctx);
    }
}

/// A 101 for the WebSocket handshake of `req` (400 if it is not one), whose socket goes to
/// `run` once the 101 is written ([`Takeover`]).
fn upgrade(
    req: &HttpRequest,
    run: impl FnOnce(TcpStream, BytesMut) + 'static,
) -> Result<HttpResponse, actix_web::Error> {
    let mut res = ws::handshake(req)?.finish();
    res.extensions_mut().insert(Takeover(Box::new(run)));
    Ok(res)
}

/// A client's frames, read when the socket is readable: whole messages (fragments are put
/// together, up to `max` bytes), pings, pongs and closes; an error for a protocol
/// violation (the session closes with 1002, 1007 or 1009).
fn reader(
    io: Arc<TcpStream>,
    read: BytesMut,
    max: usize,
) -> impl futures_util::Stream<Item = Result<ws::Message, ws::ProtocolError>> {
    let mut guard = FrameGuard::new((), max);
    let oversized = !guard.scan(&read);
    let r = Reader { io, buf: read, codec: Codec::new().max_size(max), guard, fragments: None, max, done: false };
    futures_util::stream::unfold(r, move |mut r| async move {
        if oversized && !r.done {
            r.done = true;
            return Some((Err(oversize()), r));
        }
        loop {
            if r.done {
                return None;
            }
            match r.decode() {
                Ok(Some(m)) => return Some((Ok(m), r)),
                Ok(None) => {}
                Err(e) => {
                    r.done = true;
                    return Some((Err(e), r));
                }
            }
            if r.buf.is_empty() && r.buf.capacity() > 0 {
                // Idle: hold no buffer.
                r.buf = BytesMut::new();
            }
            if let Err(e) = r.io.readable().await {
                r.done = true;
                return Some((Err(ws::ProtocolError::Io(e)), r));
            }
            match r.fill() {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    r.done = true;
                    return Some((Err(ws::ProtocolError::Io(e)), r));
                }
            }
        }
    })
}

fn oversize() -> ws::ProtocolError {
    ws::ProtocolError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, OVERSIZED))
}

struct Reader {
    io: Arc<TcpStream>,
    /// Bytes read and not yet decoded (the start of a frame still arriving).
    buf: BytesMut,
    codec: Codec,
    guard: FrameGuard<()>,
    /// A fragmented message being put together: whether it is text, and its bytes.
    fragments: Option<(bool, BytesMut)>,
    max: usize,
    done: bool,
}

thread_local! {
    /// Where a thread's sessions read their sockets into, before the bytes are decoded.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; 16 << 10].into_boxed_slice());
}

impl Reader {
    /// Read what the socket has: the number of bytes (0: the client closed it).
    fn fill(&mut self) -> std::io::Result<usize> {
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let n = self.io.try_read(&mut scratch)?;
            if !self.guard.scan(&scratch[..n]) {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, OVERSIZED));
            }
            self.buf.extend_from_slice(&scratch[..n]);
            Ok(n)
        })
    }

    /// The next whole message in the buffer, if there is one.
    fn decode(&mut self) -> Result<Option<ws::Message>, ws::ProtocolError> {
        loop {
            let Some(frame) = self.codec.decode(&mut self.buf)? else { return Ok(None) };
            return Ok(Some(match frame {
                WireFrame::Text(b) => ws::Message::Text(text(b)?),
                WireFrame::Binary(b) => ws::Message::Binary(b),
                WireFrame::Ping(b) => ws::Message::Ping(b),
                WireFrame::Pong(b) => ws::Message::Pong(b),
                WireFrame::Close(r) => ws::Message::Close(r),
                WireFrame::Continuation(item) => {
                    let (first, bytes, last) = match item {
                        Item::FirstText(b) => (Some(true), b, false),
                        Item::FirstBinary(b) => (Some(false), b, false),
                        Item::Continue(b) => (None, b, false),
                        Item::Last(b) => (None, b, true),
                    };
                    if let Some(is_text) = first {
                        self.fragments = Some((is_text, BytesMut::new()));
                    }
                    let Some((_, whole)) = self.fragments.as_mut() else {
                        return Err(ws::ProtocolError::ContinuationNotStarted);
                    };
                    if whole.len() + bytes.len() > self.max {
                        return Err(ws::ProtocolError::Overflow);
                    }
                    whole.extend_from_slice(&bytes);
                    if !last {
                        continue;
                    }
                    let Some((is_text, whole)) = self.fragments.take() else { continue };
                    let whole = whole.freeze();
                    if is_text {
                        ws::Message::Text(text(whole)?)
                    } else {
                        ws::Message::Binary(whole)
                    }
                }
            }));
        }
    }
}

/// A text frame's payload, which must be UTF-8 (1007 otherwise).
fn text(b: Bytes) -> Result<ByteString, ws::ProtocolError> {
    ByteString::try_from(b).map_err(|_| {
        ws::ProtocolError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, "invalid UTF-8 in a text frame"))
    })
}

/// One check timer per thread, not one per session: an interval of its own would be
/// polled on every wake of its session (each event delivered), and it is one more timer
/// per socket. Each thread's sessions are told to check every [`CHECK_INTERVAL`].
mod checks {
    use super::CHECK_INTERVAL;
    use actix::prelude::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    #[derive(Message)]
    #[rtype(result = "()")]
    pub struct Check;

    #[derive(Default)]
    struct Thread {
        sessions: HashMap<u64, Recipient<Check>>,
        ticking: bool,
    }

    thread_local! {
        static SESSIONS: RefCell<Thread> = RefCell::new(Thread::default());
    }

    /// Check the session `id` every [`CHECK_INTERVAL`] from now on (it runs on this thread).
    pub fn register(id: u64, to: Recipient<Check>) {
        let start = SESSIONS.with(|t| {
            let mut t = t.borrow_mut();
            t.sessions.insert(id, to);
            !std::mem::replace(&mut t.ticking, true)
        });
        if start {
            actix_rt::spawn(async {
                loop {
                    actix_rt::time::sleep(CHECK_INTERVAL).await;
                    let idle = SESSIONS.with(|t| {
                        let mut t = t.borrow_mut();
                        t.sessions.retain(|_, s| s.connected());
                        for s in t.sessions.values() {
                            s.do_send(Check);
                        }
                        if t.sessions.is_empty() {
                            t.ticking = false;
                        }
                        t.sessions.is_empty()
                    });
                    if idle {
                        break;
                    }
                }
            });
        }
    }

    pub fn unregister(id: u64) {
        SESSIONS.with(|t| t.borrow_mut().sessions.remove(&id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A successor misses nothing only if it is in the same groups and the old session took
    /// in every group's events up to where the successor started hearing them.
    #[test]
    fn a_handover_is_exact_only_when_the_old_session_took_in_up_to_the_new_start() {
        let carried = Carried {
            rooms: vec![7],
            sent_messages: vec![(7, 40)],
            sent_events: vec![],
            groups: vec![(Group::User(2), 0), (Group::Room(7), 12)],
        };
        let groups = [Group::User(2), Group::Room(7)];
        assert!(carried.covered_by(&groups, &[0, 12]), "took in up to the start");
        assert!(carried.covered_by(&groups, &[0, 9]), "and past it (the overlap is dropped by stamp)");
        assert!(!carried.covered_by(&groups, &[0, 13]), "event 13 would be in neither");
        assert!(!carried.covered_by(&groups, &[3, 12]), "nor 1 to 3 of the user's group");
        assert!(!carried.covered_by(&[Group::User(2)], &[0]), "another set of groups");
        assert!(!carried.covered_by(&[Group::User(2), Group::Room(8)], &[0, 0]));
        assert_eq!((carried.took(Group::Room(7)), carried.took(Group::Room(8))), (12, 0));
    }
}
