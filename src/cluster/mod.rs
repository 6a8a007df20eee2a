//! More than one machine: a **core** that owns every actor and the store, and **edges**
//! that hold WebSocket and SignalR connections, joined by NATS (`async-nats`). No cluster
//! of our own: the inventory stays single-writer in the core, and the edges carry sockets.
//!
//! # What crosses NATS (subjects under `BOXOFFICE_NATS_PREFIX`, `boxoffice` by default)
//! - `{p}.room.{id}`, `{p}.user.{id}`: every domain event the core publishes, encoded once
//!   ([`WireEvent`]). An edge subscribes to a subject while one of its sessions is in the
//!   group, and renders each event per protocol itself.
//! - `{p}.core.request`: what a session asks of the core, by request-reply ([`Request`]):
//!   the participant check before a socket opens, joining a room with its catch-up, posting,
//!   typing, read marks, where groups' subjects stand. The answer is the core's ([`Answer`]).
//! - `{p}.core.presence`: edges say who came online or went offline on them, and every
//!   [`SNAPSHOT_EVERY`] the whole list ([`Presence`]); the core owns who is online.
//! - `{p}.core.hello`: the core says it is there every [`HELLO_EVERY`], with its boot id
//!   and how many times it may have lost events on the way to NATS ([`Hello`]).
//! - `{p}.node.{id}.handover`: one edge asks another for a stateful SignalR connection it
//!   holds (see `http::trade::signalr::handover`); the edge is in the subject.
//! - `{p}.queue.admission`: the waiting queue's admission state as deltas, each tick it
//!   changes and at least once a second ([`Delta`](crate::actors::waiting_queue::Delta));
//!   `{p}.queue.snapshot`: the whole state, by request-reply, for an edge that starts or
//!   missed a delta. With them an edge answers `/waiting/check` and `/waiting/ws` itself:
//!   no request reaches the core per check or per waiting socket.
//!
//! # Nothing lost, nothing twice
//! A session joining a room on an edge is in the edge's group, and the edge is subscribed
//! to the room's subject, before the core reads the catch-up; events carry their ids, so
//! the session sends each message once, in id order, across the hand-over. When an edge
//! cannot vouch for its stream (it lost NATS, the core restarted or dropped events on the
//! way), it closes its sessions with 1012: clients reconnect and catch up with `since=`.
//!
//! [`Backend`] is what a session holds: the actors themselves in a core, the core over
//! NATS in an edge; [`core`] and [`edge`] are the two sides.

pub mod core;
pub mod edge;

use crate::actors::hub::{ChatEvent, Event, Group, Hub, MessageEvent, Subscriber};
use crate::actors::room::{
    Author, CatchUp, CaughtUp, ChatError, ClientMsgId, GetRoom, Join, MarkRead, PostMessage, Posted, Typing,
};
use crate::actors::Registry;
use futures_util::future::{BoxFuture, FutureExt};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::time::Duration;

/// How often the core says it is there.
pub const HELLO_EVERY: Duration = Duration::from_secs(1);
/// An edge that has not heard the core this long is not healthy (`/healthz` 503).
pub const HELLO_STALE: Duration = Duration::from_secs(4);
/// How often an edge sends its whole presence list (which also says it is alive).
pub const SNAPSHOT_EVERY: Duration = Duration::from_secs(2);
/// An edge not heard from this long is gone: its users' connections are dropped.
pub const EDGE_STALE: Duration = Duration::from_secs(10);
/// The core publishes the queue's admission state this often (when it changed)...
pub const QUEUE_TICK: Duration = Duration::from_millis(50);
/// ...and at least this often (a heartbeat).
pub const QUEUE_HEARTBEAT: Duration = Duration::from_secs(1);
/// An edge that has had no admission delta this long stops answering queue checks (503)
/// and closes its queue sockets with 1012: the bound on how stale an answer may be.
pub const QUEUE_STALE: Duration = Duration::from_secs(3);
/// How long an edge waits for the core's answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A catch-up page's size, about (NATS messages are at most 1 MiB by default).
pub const CATCH_UP_PAGE_BYTES: usize = 256 << 10;
/// Events waiting for NATS in the core at most; past it they are dropped (and counted,
/// and the edges told, see [`Hello::epoch`]).
pub const OUTBOUND_EVENTS: usize = 8 << 10;

/// Where an event stands in the core's stream, written before it on NATS: the core's boot
/// and epoch when the event was queued (see [`Hello`]), its number among everything the
/// core published since it started, and the number of the previous event on the same
/// subject (0: none the core remembers). An edge that sees `prev` differ from the last
/// number it got on that subject, or the boot or epoch change, knows of a gap *before* it
/// hands on anything after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub boot: u64,
    pub epoch: u64,
    pub seq: u64,
    pub prev: u64,
}

impl Stamp {
    pub const LEN: usize = 32;

    /// The stamp, then `event`.
    pub fn before(&self, event: &[u8]) -> bytes::Bytes {
        let mut out = bytes::BytesMut::with_capacity(Self::LEN + event.len());
        for n in [self.boot, self.epoch, self.seq, self.prev] {
            out.extend_from_slice(&n.to_be_bytes());
        }
        out.extend_from_slice(event);
        out.freeze()
    }

    /// The stamp and the event after it.
    pub fn split(bytes: &[u8]) -> Option<(Stamp, &[u8])> {
        if bytes.len() < Self::LEN {
            return None;
        }
        let n = |i: usize| u64::from_be_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        Some((Stamp { boot: n(0), epoch: n(1), seq: n(2), prev: n(3) }, &bytes[Self::LEN..]))
    }

    pub fn hello(&self) -> Hello {
        Hello { boot: self.boot, epoch: self.epoch }
    }
}

/// An event as it crosses NATS (after its [`Stamp`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEvent {
    /// The event's id in the core (a session sends an event once by it).
    pub seq: u64,
    pub skip_user: Option<u64>,
    pub kind: ChatEvent,
}

/// Who acts, as the edge's token check said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub id: u64,
    pub name: String,
    pub picture: Option<String>,
}

impl From<&Author> for Person {
    fn from(a: &Author) -> Self {
        Person { id: a.id, name: a.name.clone(), picture: a.picture.clone() }
    }
}

impl From<Person> for Author {
    fn from(p: Person) -> Self {
        Author { id: p.id, name: p.name, picture: p.picture }
    }
}

/// What an edge asks of the core.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// May `user` open a socket on `room` (contract C's check before the upgrade)?
    Access {
        room: u64,
        user: u64,
    },
    /// The participant check of a join, and a page of its catch-up (see [`CatchUp`]).
    CatchUp {
        room: u64,
        user: u64,
        after: Option<u64>,
        upto: Option<u64>,
    },
    /// A message from a socket; not posted after `deadline` (ms since the epoch), when the
    /// edge has told its client it failed. A post already in the room's hands then is
    /// still made: the client's retry with the same client message id finds it.
    Post {
        room: u64,
        from: Person,
        post: SocketPost,
        deadline: u64,
    },
    Typing {
        room: u64,
        from: Person,
        is_typing: bool,
    },
    Read {
        room: u64,
        from: Person,
    },
    /// Where each group's subject stands: the stamp of the last event the core published
    /// on it (0: none it remembers, see [`Stamp`]). Everything the core publishes on them
    /// after the answer is stamped higher; an edge that subscribed before asking gets it.
    Positions {
        groups: Vec<Group>,
    },
}

/// The core's answer to a [`Request`].
pub type Answer = Result<Answered, ChatError>;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Answered {
    Done,
    CaughtUp(CaughtUp),
    /// A [`Request::Post`]'s message (stored now, or found by its client message id).
    Posted(Box<Posted>),
    /// A [`Request::Positions`]: the core's boot and epoch, and each group's position in
    /// the order asked.
    Positions {
        hello: Hello,
        at: Vec<u64>,
    },
}

/// A message sent over a socket, of either wire: text, no file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketPost {
    pub content: String,
    pub kind: String,
    pub reply_to: Option<u64>,
    /// The client's id for the post: a retry with it makes no second message.
    pub client_msg_id: Option<ClientMsgId>,
}

/// What an edge tells the core about its users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Presence {
    /// `user` has a connection on `edge` now (their first there).
    Online { edge: u64, user: u64, name: String },
    /// `user`'s last connection on `edge` closed.
    Offline { edge: u64, user: u64, name: String },
    /// Every user with a connection on `edge`.
    Snapshot { edge: u64, users: Vec<(u64, String)> },
}

/// The core is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Random, new at every start of the core.
    pub boot: u64,
    /// Grows when the core may have lost events on their way to NATS (its queue was full,
    /// or its connection dropped): an edge that sees it change restarts its sessions.
    pub epoch: u64,
}

/// A value as it crosses NATS (bincode).
pub fn encode<T: Serialize>(value: &T) -> bytes::Bytes {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).expect("plain data encodes").into()
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard()).map(|(v, _)| v).map_err(|e| e.to_string())
}

/// An event's wire form, made once per event however many groups it goes to.
pub fn encoded(event: &Event) -> bytes::Bytes {
    event.encoded(|e| encode(&WireEvent { seq: e.seq, skip_user: e.skip_user, kind: e.kind.clone() }))
}

/// The subjects of one deployment.
#[derive(Debug, Clone)]
pub struct Subjects {
    prefix: String,
}

impl Subjects {
    pub fn new(prefix: &str) -> Subjects {
        Subjects { prefix: prefix.trim_end_matches('.').to_string() }
    }

    pub fn group(&self, group: Group) -> String {
        match group {
            Group::Room(id) => format!("{}.room.{id}", self.prefix),
            Group::User(id) => format!("{}.user.{id}", self.prefix),
        }
    }

    pub fn request(&self) -> String {
        format!("{}.core.request", self.prefix)
    }

    pub fn presence(&self) -> String {
        format!("{}.core.presence", self.prefix)
    }

    pub fn hello(&self) -> String {
        format!("{}.core.hello", self.prefix)
    }

    /// Requests to one node (an edge, by its id): taking over a SignalR connection it
    /// holds (see `http::trade::signalr::handover`).
    pub fn node(&self, id: u64) -> String {
        format!("{}.node.{id:016x}.handover", self.prefix)
    }

    /// The queue's admission deltas, every tick and at least once a second.
    pub fn queue_admission(&self) -> String {
        format!("{}.queue.admission", self.prefix)
    }

    /// An edge asks the core for the queue's whole admission state (at start, after a gap).
    pub fn queue_snapshot(&self) -> String {
        format!("{}.queue.snapshot", self.prefix)
    }
}

/// How a session reaches the state: the actors of this process (a core), or the core over
/// NATS (an edge). Either way, its events come through [`Backend::hub`].
#[derive(Clone)]
pub enum Backend {
    Local(Registry),
    Remote(edge::Edge),
}

impl Backend {
    /// Where this process's sessions are grouped.
    pub fn hub(&self) -> &Hub {
        match self {
            Backend::Local(r) => r.hub(),
            Backend::Remote(e) => e.hub(),
        }
    }

    /// Whether new sessions can be served (an edge that cannot reach the core cannot).
    pub fn available(&self) -> bool {
        match self {
            Backend::Local(_) => true,
            Backend::Remote(e) => e.healthy(),
        }
    }

    /// `user` may see `room`: it exists and they are in it.
    pub fn access(&self, room: u64, user: u64) -> BoxFuture<'static, Result<(), ChatError>> {
        match self {
            Backend::Local(r) => {
                let addr = local_room(r, room);
                async move { addr?.send(GetRoom { user }).await.map_err(busy)?.map(|_| ()) }.boxed()
            }
            Backend::Remote(e) => {
                let e = e.clone();
                async move { e.ask(Request::Access { room, user }).await.map(|_| ()) }.boxed()
            }
        }
    }

    /// Put `sub` in `room_{room}` (participants only), with the messages published after
    /// `since` (none without it), gap-free against the live stream.
    pub fn join(
        &self,
        room: u64,
        sub: Subscriber,
        since: Option<u64>,
    ) -> BoxFuture<'static, Result<Joined, ChatError>> {
        match self {
            Backend::Local(r) => {
                let addr = local_room(r, room);
                async move {
                    let (missed, newest) = addr?.send(Join { subscriber: sub, since }).await.map_err(busy)??;
                    Ok(Joined { missed: missed.iter().map(|m| m.event()).collect(), newest })
                }
                .boxed()
            }
            Backend::Remote(e) => e.clone().join(room, sub, since).boxed(),
        }
    }

    /// Post from a socket; answered once it is durable and published, with the message
    /// (or, for a client message id used before, with the message it made).
    pub fn post(&self, room: u64, from: &Author, post: SocketPost) -> BoxFuture<'static, Result<Posted, ChatError>> {
        match self {
            Backend::Local(r) => {
                let msg = socket_post(from.clone(), post);
                // Sent now, in the caller's order, through the room's mailbox.
                let sent = local_room(r, room).map(|addr| addr.send(msg));
                async move { sent?.await.map_err(busy)? }.boxed()
            }
            Backend::Remote(e) => {
                let deadline = crate::time::now_ms() + crate::time::ms(REQUEST_TIMEOUT);
                let asked = e.ask(Request::Post { room, from: from.into(), post, deadline });
                async move {
                    match asked.await? {
                        Answered::Posted(p) => Ok(*p),
                        _ => Err(ChatError::Unavailable("the core answered something else".into())),
                    }
                }
                .boxed()
            }
        }
    }

    pub fn typing(&self, room: u64, from: &Author, is_typing: bool) {
        match self {
            Backend::Local(r) => {
                if let Ok(addr) = local_room(r, room) {
                    addr.do_send(Typing { from: from.clone(), is_typing });
                }
            }
            Backend::Remote(e) => {
                let asked = e.ask(Request::Typing { room, from: from.into(), is_typing });
                actix::spawn(async move {
                    let _ = asked.await;
                });
            }
        }
    }

    /// Mark everything published in `room` as read by `from`.
    pub fn mark_read(&self, room: u64, from: &Author) -> BoxFuture<'static, Result<(), ChatError>> {
        match self {
            Backend::Local(r) => {
                let sent = local_room(r, room).map(|addr| addr.send(MarkRead { from: from.clone() }));
                async move { sent?.await.map_err(busy)?.map(|_| ()) }.boxed()
            }
            Backend::Remote(e) => {
                let asked = e.ask(Request::Read { room, from: from.into() });
                async move { asked.await.map(|_| ()) }.boxed()
            }
        }
    }

    /// A connection of `who` went online (or closed): the first of theirs anywhere
    /// announces them online, the last one offline.
    pub fn presence(&self, who: &Author, online: bool) {
        match self {
            Backend::Local(r) => {
                let changed = if online { r.hub().connected(who.id) } else { r.hub().disconnected(who.id) };
                if changed {
                    r.announce_presence(who.id, &who.name, online);
                }
            }
            Backend::Remote(e) => e.presence(who, online),
        }
    }

    /// A session joined a group of this process (`user_{id}` when it goes online): an
    /// edge makes sure it hears the group's subject. Resolves once it does (false: it
    /// could not subscribe).
    pub fn listen(&self, group: Group) -> BoxFuture<'static, bool> {
        match self {
            Backend::Local(_) => futures_util::future::ready(true).boxed(),
            Backend::Remote(e) => e.ensure(group).boxed(),
        }
    }
}

/// A message from a socket: text, no file, a person's.
fn socket_post(from: Author, post: SocketPost) -> PostMessage {
    PostMessage {
        from,
        content: Some(post.content),
        kind: post.kind,
        reply_to: post.reply_to,
        file: None,
        images: Vec::new(),
        system: false,
        client_msg_id: post.client_msg_id,
    }
}

fn local_room(r: &Registry, room: u64) -> Result<actix::Addr<crate::actors::room::Room>, ChatError> {
    r.room(room)?.ok_or(ChatError::RoomNotFound)
}

fn busy(_: actix::MailboxError) -> ChatError {
    ChatError::Unavailable("the room is busy; try again".into())
}

/// A session joined a room: the messages after its `since`, oldest first, and the newest
/// message published when it joined (every later one reaches it live).
#[derive(Debug, Default)]
pub struct Joined {
    pub missed: Vec<MessageEvent>,
    pub newest: u64,
}

/// Answer a [`Request`] with the actors of this process (the core's side).
pub async fn answer(registry: &Registry, request: Request) -> Answer {
    let room = |id| local_room(registry, id);
    match request {
        Request::Access { room: id, user } => {
            room(id)?.send(GetRoom { user }).await.map_err(busy)??;
            Ok(Answered::Done)
        }
        Request::CatchUp { room: id, user, after, upto } => {
            let page = CatchUp { user, after, upto, max_bytes: CATCH_UP_PAGE_BYTES };
            Ok(Answered::CaughtUp(room(id)?.send(page).await.map_err(busy)??))
        }
        Request::Post { room: id, from, post, deadline } => {
            if crate::time::now_ms() > deadline {
                return Err(ChatError::Unavailable("the request came too late; it was not posted".into()));
            }
            let posted = room(id)?.send(socket_post(from.into(), post)).await.map_err(busy)??;
            Ok(Answered::Posted(Box::new(posted)))
        }
        Request::Typing { room: id, from, is_typing } => {
            room(id)?.do_send(Typing { from: from.into(), is_typing });
            Ok(Answered::Done)
        }
        Request::Read { room: id, from } => {
            room(id)?.send(MarkRead { from: from.into() }).await.map_err(busy)??;
            Ok(Answered::Done)
        }
        // The publisher knows where its subjects stand (see `core::serve_requests`).
        Request::Positions { .. } => Err(ChatError::Unavailable("positions are the publisher's to answer".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What crosses NATS survives the trip whole.
    #[test]
    fn wire_forms_round_trip() {
        let e = WireEvent {
            seq: 9,
            skip_user: Some(3),
            kind: ChatEvent::Typing { room: 1, user: 3, user_name: "kim".into(), is_typing: true },
        };
        assert_eq!(decode::<WireEvent>(&encode(&e)).expect("event"), e);
        let post = SocketPost {
            content: "hi".into(),
            kind: "text".into(),
            reply_to: Some(2),
            client_msg_id: Some(ClientMsgId::try_from("retry-1".to_string()).expect("an id")),
        };
        let r = Request::Post { room: 4, from: Person { id: 3, name: "박".into(), picture: None }, post, deadline: 7 };
        assert_eq!(decode::<Request>(&encode(&r)).expect("request"), r);
        let a: Answer = Err(ChatError::NotInRoom(5));
        assert_eq!(decode::<Answer>(&encode(&a)).expect("answer").err(), Some(ChatError::NotInRoom(5)));
        let stamp = Stamp { boot: 1, epoch: 2, seq: 3, prev: u64::MAX };
        let wire = stamp.before(b"event");
        assert_eq!(Stamp::split(&wire), Some((stamp, &b"event"[..])));
        assert_eq!(Stamp::split(b"short"), None);
        let s = Subjects::new("bx.");
        assert_eq!((s.group(Group::Room(7)), s.group(Group::User(8))), ("bx.room.7".into(), "bx.user.8".into()));
    }
}
