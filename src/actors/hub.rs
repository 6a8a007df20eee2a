//! `Hub`: routes domain events to groups of sessions (`room_{roomId}`, `user_{userId}`),
//! and counts each user's connections for presence. It knows nothing of any wire format:
//! an [`Event`] carries a domain [`ChatEvent`], and each session renders it in its own
//! protocol through its [`Render`] (an event keeps one rendered copy per protocol, so a
//! fan-out to a thousand sessions of one protocol renders it once). A rendered copy is a
//! [`Frame`] ([`crate::frame`]), whose bytes the hub only counts and hands on.
//!
//! Rooms publish through the [`Fanout`] trait, of which `Hub` is the in-process
//! implementation; events ([`ChatEvent`]) and groups ([`Group`]) are plain serializable
//! data, so another implementation can carry them between processes over a broker.
//!
//! The group tables are lookup tables (group -> sessions), not business state. A publish
//! never waits: it renders the event in the session's protocol (once per protocol, cached
//! in the event), counts the frame's bytes into the session's [`Outbox`], and offers it to
//! the session's mailbox. Two bounds apply to an outbox:
//! - **bytes**: a frame that would take the bytes queued for a session past its byte bound
//!   evicts the session at once, whatever the burst;
//! - **events**: a full mailbox is not yet a slow reader (the room's thread can outpace a
//!   session's thread for a burst of small events). The event is queued past the bound,
//!   and the session is evicted only when its queue has stayed full for
//!   [`CONGESTION_GRACE`] or has grown [`OVERFLOW_FACTOR`] times past its bound.
//!
//! An evicted session leaves every group and closes with 1008 as soon as it runs. So one
//! client that stops reading never slows a room, and its memory stays bounded.

use actix::prelude::*;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

pub use crate::frame::Frame;

/// A group of sessions an event goes to: SignalR's `room_{roomId}` and `user_{userId}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Group {
    /// The sessions subscribed to a room.
    Room(u64),
    /// All of a user's connections.
    User(u64),
}

impl std::fmt::Display for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Group::Room(id) => write!(f, "room_{id}"),
            Group::User(id) => write!(f, "user_{id}"),
        }
    }
}

/// The group of a room's subscribers.
pub fn room_group(room: u64) -> Group {
    Group::Room(room)
}

/// The group of all of a user's connections.
pub fn user_group(user: u64) -> Group {
    Group::User(user)
}

/// The seam between the actors that publish events (rooms) and the sessions that hear
/// them. [`Hub`] is the in-process implementation: it offers each event to the group's
/// sessions, which render it once per wire protocol. Another implementation can carry
/// the same events (plain serializable data with ids) to other processes over a broker.
pub trait Fanout: Send + Sync + 'static {
    /// Offer `event` to every session of `group`, in the caller's order; never waits.
    fn publish(&self, group: Group, event: &Arc<Event>);
    /// Add a session to `group`.
    fn join(&self, group: Group, sub: Subscriber);
    /// Remove a session from `group`.
    fn leave(&self, group: Group, session: u64);
}

impl Fanout for Hub {
    fn publish(&self, group: Group, event: &Arc<Event>) {
        Hub::publish(self, group, event)
    }
    fn join(&self, group: Group, sub: Subscriber) {
        Hub::join(self, group, sub)
    }
    fn leave(&self, group: Group, session: u64) {
        Hub::leave(self, group, session)
    }
}

/// How many wire protocols render events (contract C's JSON, SignalR's JSON and
/// MessagePack hub protocols): the size of an event's cache of rendered frames.
pub const PROTOCOLS: usize = 3;

/// How one wire protocol renders domain events. Sessions of one protocol share one.
pub trait Render: Send + Sync + 'static {
    /// The protocol's slot in an event's cache of rendered frames (below [`PROTOCOLS`]).
    fn slot(&self) -> usize;
    /// `event` as this protocol's frame.
    fn render(&self, event: &ChatEvent) -> Frame;
}

/// How long a session's outgoing queue may stay full before it is evicted.
pub const CONGESTION_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
/// How far past its bound (in multiples of it, at most [`MAX_OVERFLOW`] events) a
/// session's queue may grow before it is evicted.
pub const OVERFLOW_FACTOR: usize = 64;
pub const MAX_OVERFLOW: usize = 8192;

/// A chat message as every protocol sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageEvent {
    pub room: u64,
    pub id: u64,
    pub sender: u64,
    pub sender_name: String,
    pub sender_picture: Option<String>,
    /// `None` for a message without text (an image-only or a system card).
    pub content: Option<String>,
    /// `text`, `image`, `file`, ... for contract C; `PURCHASE_CONFIRMED` and `system`
    /// for the ticket-trade cards.
    pub kind: String,
    pub file: Option<FileRef>,
    /// Contract T's images (up to 3); each protocol renders its own links to them.
    pub images: Vec<FileRef>,
    pub reply_to: Option<u64>,
    pub created_at: u64,
    pub edited_at: Option<u64>,
    pub updated_at: u64,
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// The server's path to the file (unsigned).
    pub url: String,
    pub name: String,
    pub size: u64,
}

/// What happened, in domain terms: plain data, with the ids a receiver needs to order
/// and deduplicate it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChatEvent {
    Message(MessageEvent),
    MessageUpdated(MessageEvent),
    MessageDeleted {
        room: u64,
        message: u64,
    },
    Typing {
        room: u64,
        user: u64,
        user_name: String,
        is_typing: bool,
    },
    UserStatus {
        user: u64,
        user_name: String,
        online: bool,
    },
    MessageRead {
        room: u64,
        user: u64,
        user_name: String,
        last_read: u64,
        read_at: u64,
    },
    /// A trade room closed: a party left (contract T's `RoomUpdated` with `RoomClosed`).
    RoomClosed {
        room: u64,
    },
}

/// An event on its way to sessions.
#[derive(Debug)]
pub struct Event {
    /// Unique in this process: one event published to several groups of a session is
    /// recognised by it.
    pub seq: u64,
    /// On an edge, its number on its group's subject as the core stamped it (see
    /// [`crate::cluster::Stamp`]): a subject's events come in this order. 0 elsewhere.
    pub stamp: u64,
    pub kind: ChatEvent,
    /// Not delivered to this user's sessions (a typer does not hear their own typing).
    pub skip_user: Option<u64>,
    /// One rendered frame per wire protocol, filled by the first session that needs it.
    rendered: [OnceLock<Frame>; PROTOCOLS],
    /// The event as it crosses to other processes, encoded once (see [`crate::cluster`]).
    encoded: OnceLock<bytes::Bytes>,
}

/// Event ids of this process: they start from the clock (in units of 2^-20 ms), so that a
/// restarted core does not reuse the ids its edges' sessions remember.
static NEXT_EVENT: std::sync::LazyLock<AtomicU64> =
    std::sync::LazyLock::new(|| AtomicU64::new(crate::time::now_ms() << 20));

impl Event {
    pub fn new(kind: ChatEvent) -> Arc<Event> {
        Self::make(kind, None)
    }

    pub fn skipping(kind: ChatEvent, user: u64) -> Arc<Event> {
        Self::make(kind, Some(user))
    }

    fn make(kind: ChatEvent, skip_user: Option<u64>) -> Arc<Event> {
        let seq = NEXT_EVENT.fetch_add(1, Ordering::Relaxed);
        Self::remote(seq, kind, skip_user)
    }

    /// An event another process made, with its id there.
    pub fn remote(seq: u64, kind: ChatEvent, skip_user: Option<u64>) -> Arc<Event> {
        Self::relayed(seq, 0, kind, skip_user)
    }

    /// An event the core made, as an edge got it on a group's subject, with its `stamp`
    /// there.
    pub fn relayed(seq: u64, stamp: u64, kind: ChatEvent, skip_user: Option<u64>) -> Arc<Event> {
        Arc::new(Event { seq, stamp, kind, skip_user, rendered: Default::default(), encoded: OnceLock::new() })
    }

    /// The event encoded for other processes by `encode`, once.
    pub fn encoded(&self, encode: impl FnOnce(&Event) -> bytes::Bytes) -> bytes::Bytes {
        self.encoded.get_or_init(|| encode(self)).clone()
    }

    /// This event in `wire`'s protocol, rendered once.
    pub fn frame(&self, wire: &dyn Render) -> Frame {
        self.rendered[wire.slot()].get_or_init(|| wire.render(&self.kind)).clone()
    }
}

/// What the hub tells a session.
#[derive(Message)]
#[rtype(result = "()")]
pub enum Deliver {
    /// An event of `group`, with its frame in the session's protocol.
    Event { event: Arc<Event>, frame: Frame, group: Group },
    /// The hub gave up on the session (it is out of its groups): it must close (1008).
    Evicted,
    /// The server is shutting down: say goodbye (1001, and SignalR's Close with
    /// `allowReconnect`) and close.
    GoingAway,
    /// This node lost its way to the state (an edge cut off from NATS or from the core):
    /// close with 1012 (service restart) so that the client reconnects and catches up.
    Restart,
    /// A frame a publisher wrote itself ([`Direct`]) is not all on the socket: the
    /// session writes the rest once the socket can take it.
    Stalled,
}

/// A session's socket that the publisher of an event writes to itself while the session
/// is idle (`http::outlet`): no hop through the session's mailbox.
pub trait Direct: Send + Sync {
    /// Take `event` (its `frame`, of `group`) to the socket now, if the session allows it.
    fn offer(&self, event: &Event, frame: &Frame, group: Group, outbox: &Outbox) -> Offer;
    /// No more direct writes, ever: what reaches this node may have a gap, and the
    /// session, told so through its mailbox, must not send anything newer meanwhile.
    fn bar(&self);
}

/// The most sessions a publisher offers one event to directly ([`Direct`]); the others
/// get it through their mailboxes. Each direct write is a system call on the publisher's
/// thread: a large group's are spread over the sessions' threads instead, where a session
/// that is busy writes what piled up with one `writev`. At 1 x 1,000 members and 300
/// messages a second, writing to all 1,000 directly cost 13% more CPU per delivery than
/// the mailboxes and let p99 grow from 60 to 500 ms.
pub const DIRECT_PER_EVENT: usize = 128;

/// A session's socket as publishers hold it.
pub type DirectRef = Arc<dyn Direct>;

/// Tell a session to close with 1012 and come back: no direct write reaches its socket
/// from now on (what follows may come after a gap).
fn restart(recipient: &Recipient<Deliver>, direct: Option<&DirectRef>) {
    if let Some(d) = direct {
        d.bar();
    }
    recipient.do_send(Deliver::Restart);
}

/// What became of a direct offer.
pub enum Offer {
    /// Sent (or not for the client: skipped, or sent before).
    Done,
    /// Written in part: the session is told to write the rest ([`Deliver::Stalled`]).
    Stalled,
    /// Not now: through the mailbox.
    Declined,
}

/// A session as the hub knows it: where to deliver, in which protocol, and its outbox.
#[derive(Clone)]
pub struct Subscriber {
    pub session: u64,
    pub user: u64,
    pub recipient: Recipient<Deliver>,
    pub wire: Arc<dyn Render>,
    pub outbox: Arc<Outbox>,
    /// The session's socket, if publishers may write to it themselves.
    pub direct: Option<DirectRef>,
}

/// A session's outgoing queue as the hub sees it: the bytes offered and not yet written
/// to the socket, its bounds, and whether the hub gave up on it. Shared by every group
/// the session is in.
#[derive(Debug)]
pub struct Outbox {
    evicted: AtomicBool,
    /// Bytes of frames offered to the session and not yet handed to its socket.
    queued: AtomicUsize,
    max_bytes: usize,
    /// The mailbox's bound, in events.
    max_events: usize,
    congestion: Congestion,
}

impl Outbox {
    pub fn new(max_events: usize, max_bytes: usize) -> Arc<Outbox> {
        Arc::new(Outbox {
            evicted: AtomicBool::new(false),
            queued: AtomicUsize::new(0),
            max_bytes,
            max_events: max_events.max(1),
            congestion: Congestion::default(),
        })
    }

    /// The hub gave up on the session: it must close (1008).
    pub fn evicted(&self) -> bool {
        self.evicted.load(Ordering::Relaxed)
    }

    /// `bytes` offered to the session left its outbox (written to the socket, or dropped).
    pub fn taken(&self, bytes: usize) {
        self.queued.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// `bytes` more wait in the session's own queue (for the socket).
    pub fn queue(&self, bytes: usize) {
        self.queued.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Whether more bytes wait than the bound allows.
    pub fn over(&self) -> bool {
        self.queued() > self.max_bytes
    }

    /// Bytes offered and not yet taken.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    pub fn max_events(&self) -> usize {
        self.max_events
    }

    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }
}

/// How far behind a session is.
#[derive(Debug, Default)]
struct Congestion {
    /// When its queue was first found full (0: it is keeping up).
    since: AtomicU64,
    /// Events queued past the bound since then.
    overflow: AtomicU64,
}

/// How many offline users' last-seen times the hub remembers (the most recent ones).
const LAST_SEEN_KEPT: usize = 100_000;

#[derive(Clone, Default)]
pub struct Hub {
    inner: Arc<Inner>,
}

/// A group's sessions, and (on an edge) how far its subject has been relayed to them.
#[derive(Default)]
struct Members {
    sessions: HashMap<u64, Subscriber>,
    /// On an edge: every event of the group's subject stamped up to this number that
    /// reaches the edge has been offered to the sessions in the group at the time (see
    /// [`Hub::publish_relayed`]). Read with a session's leave, under the same lock, it says
    /// exactly which of the subject's events that session took in.
    relayed: AtomicU64,
}

struct Inner {
    groups: DashMap<Group, Members>,
    /// On an edge, each subscribed subject's relayed position (as [`Members::relayed`]),
    /// kept while the group has no session, so that a group formed again starts from it.
    /// One entry per subscription, removed with it ([`Hub::forget_relayed`]).
    relayed: DashMap<Group, u64>,
    /// Open connections of each online user (an offline user has no entry).
    online: DashMap<u64, u32>,
    /// When a user's last connection closed, for recent users (bounded).
    last_seen: quick_cache::sync::Cache<u64, u64>,
    next_session: AtomicU64,
    /// Every open session, to tell when the server shuts down.
    sessions: DashMap<u64, (Recipient<Deliver>, Option<DirectRef>)>,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            groups: Default::default(),
            relayed: Default::default(),
            online: Default::default(),
            last_seen: quick_cache::sync::Cache::new(LAST_SEEN_KEPT),
            next_session: Default::default(),
            sessions: Default::default(),
        }
    }
}

impl Hub {
    /// A fresh session id.
    pub fn session_id(&self) -> u64 {
        self.inner.next_session.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A session opened: it is told when the server shuts down.
    pub fn opened(&self, session: u64, recipient: Recipient<Deliver>, direct: Option<DirectRef>) {
        self.inner.sessions.insert(session, (recipient, direct));
    }

    /// A session ended.
    pub fn closed(&self, session: u64) {
        self.inner.sessions.remove(&session);
    }

    /// How many sessions are open.
    pub fn open_sessions(&self) -> usize {
        self.inner.sessions.len()
    }

    /// Tell every open session that the server is going away.
    pub fn going_away(&self) {
        for s in self.inner.sessions.iter() {
            s.value().0.do_send(Deliver::GoingAway);
        }
    }

    /// Tell every open session to close with 1012 and come back (see [`Deliver::Restart`]).
    pub fn restart_all(&self) -> usize {
        for s in self.inner.sessions.iter() {
            let (recipient, direct) = s.value();
            restart(recipient, direct.as_ref());
        }
        self.inner.sessions.len()
    }

    /// Tell the sessions of `group` to close with 1012 and come back.
    pub fn restart_group(&self, group: Group) -> usize {
        let Some(members) = self.inner.groups.get(&group) else { return 0 };
        for sub in members.sessions.values() {
            restart(&sub.recipient, sub.direct.as_ref());
        }
        members.sessions.len()
    }

    /// Whether `session` is in `group`.
    pub fn is_member(&self, group: Group, session: u64) -> bool {
        self.inner.groups.get(&group).is_some_and(|m| m.sessions.contains_key(&session))
    }

    /// Whether any session of this process is in `group`.
    pub fn has_group(&self, group: Group) -> bool {
        self.inner.groups.get(&group).is_some_and(|m| !m.sessions.is_empty())
    }

    pub fn join(&self, group: Group, sub: Subscriber) {
        let relayed = &self.inner.relayed;
        self.inner
            .groups
            .entry(group)
            .or_insert_with(|| Members {
                sessions: HashMap::new(),
                relayed: AtomicU64::new(relayed.get(&group).map_or(0, |r| *r)),
            })
            .sessions
            .insert(sub.session, sub);
    }

    pub fn leave(&self, group: Group, session: u64) {
        self.leave_at(group, session);
    }

    /// Take `session` out of `group`, and say how far the group's subject had been relayed
    /// to it ([`Members::relayed`]; 0 on a core): it took in every event of the subject
    /// stamped up to that number from its join on, and none after.
    pub fn leave_at(&self, group: Group, session: u64) -> u64 {
        let (empty, relayed) = match self.inner.groups.get_mut(&group) {
            Some(mut members) => {
                members.sessions.remove(&session);
                (members.sessions.is_empty(), members.relayed.load(Ordering::Relaxed))
            }
            None => (false, 0),
        };
        if empty {
            self.inner.groups.remove_if(&group, |_, members| members.sessions.is_empty());
        }
        relayed
    }

    /// Offer an event an edge got on `group`'s subject, stamped `stamp` there, to the
    /// group's sessions ([`Hub::publish`]); the group's relayed position moves to it while
    /// the sessions are held still, so that a session leaving knows what it took in.
    pub fn publish_relayed(&self, group: Group, event: &Arc<Event>, stamp: u64) {
        let full = match self.inner.groups.get(&group) {
            Some(members) => {
                let full = self.offer(group, event, &members);
                members.relayed.fetch_max(stamp, Ordering::Relaxed);
                full
            }
            None => self.offer(group, event, &Members::default()),
        };
        self.inner.relayed.entry(group).and_modify(|r| *r = (*r).max(stamp)).or_insert(stamp);
        for sub in full {
            self.evict(&sub);
        }
    }

    /// Every event of `group`'s subject stamped up to `stamp` that will reach this edge has
    /// been relayed (what the core had published when the edge's subscription was in
    /// place, see [`crate::cluster::edge`]): the position moves up to it.
    pub fn relayed_through(&self, group: Group, stamp: u64) {
        if let Some(m) = self.inner.groups.get(&group) {
            m.relayed.fetch_max(stamp, Ordering::Relaxed);
        }
        self.inner.relayed.entry(group).and_modify(|r| *r = (*r).max(stamp)).or_insert(stamp);
    }

    /// The edge no longer follows `group`'s subject: its position means nothing any more.
    /// (A session that joined meanwhile took nothing from the old subscription: the
    /// subscription's task stopped first.)
    pub fn forget_relayed(&self, group: Group) {
        self.inner.relayed.remove(&group);
        if let Some(m) = self.inner.groups.get(&group) {
            m.relayed.store(0, Ordering::Relaxed);
        }
    }

    /// Offer `event` to every session of `group`, in the caller's order. Never waits.
    pub fn publish(&self, group: Group, event: &Arc<Event>) {
        let full = match self.inner.groups.get(&group) {
            Some(members) => self.offer(group, event, &members),
            None => self.offer(group, event, &Members::default()),
        };
        for sub in full {
            self.evict(&sub);
        }
    }

    /// Offer `event` to `members` (held still by the caller); the sessions over their
    /// bounds, to be evicted once the group is let go.
    fn offer(&self, group: Group, event: &Arc<Event>, members: &Members) -> Vec<Subscriber> {
        crate::observe::published();
        let mut full = Vec::new();
        let mut delivered = 0;
        let mut written = 0;
        for sub in members.sessions.values() {
            let outbox = &sub.outbox;
            if event.skip_user == Some(sub.user) || outbox.evicted() {
                continue;
            }
            let frame = event.frame(&*sub.wire);
            let bytes = frame.len();
            if let Some(direct) = sub.direct.as_ref().filter(|_| written < DIRECT_PER_EVENT) {
                match direct.offer(event, &frame, group, outbox) {
                    Offer::Done => {
                        written += 1;
                        delivered += 1;
                        continue;
                    }
                    Offer::Stalled => {
                        written += 1;
                        delivered += 1;
                        sub.recipient.do_send(Deliver::Stalled);
                        continue;
                    }
                    Offer::Declined => {}
                }
            }
            if outbox.queued.fetch_add(bytes, Ordering::Relaxed) + bytes > outbox.max_bytes {
                // Over the byte bound: evicted at once, whatever the burst.
                full.push(sub.clone());
                continue;
            }
            match sub.recipient.try_send(Deliver::Event { event: event.clone(), frame, group }) {
                Ok(()) => {
                    delivered += 1;
                    let c = &outbox.congestion;
                    if c.since.load(Ordering::Relaxed) != 0 {
                        c.since.store(0, Ordering::Relaxed);
                        c.overflow.store(0, Ordering::Relaxed);
                    }
                }
                Err(SendError::Full(deliver)) => {
                    let now = crate::time::now_ms();
                    let c = &outbox.congestion;
                    let since = match c.since.load(Ordering::Relaxed) {
                        0 => {
                            c.since.store(now, Ordering::Relaxed);
                            now
                        }
                        t => t,
                    };
                    let overflow = c.overflow.fetch_add(1, Ordering::Relaxed) as usize;
                    let cap = (outbox.max_events * OVERFLOW_FACTOR).min(MAX_OVERFLOW);
                    if now - since > crate::time::ms(CONGESTION_GRACE) || overflow >= cap {
                        full.push(sub.clone());
                    } else {
                        // Past the bound, in order: a burst, not yet a stalled reader.
                        sub.recipient.do_send(deliver);
                        delivered += 1;
                    }
                }
                Err(SendError::Closed(_)) => outbox.taken(bytes),
            }
        }
        crate::observe::delivered(delivered);
        full
    }

    /// Give up on a session that does not keep up: it stops receiving, and is told to
    /// close (after what its mailbox holds).
    fn evict(&self, sub: &Subscriber) {
        if self.give_up(sub.session, sub.user, &sub.outbox) {
            sub.recipient.do_send(Deliver::Evicted);
        }
    }

    /// Take a session that does not keep up out of every group; false if it already was.
    pub fn give_up(&self, session: u64, user: u64, outbox: &Outbox) -> bool {
        if outbox.evicted.swap(true, Ordering::Relaxed) {
            return false;
        }
        crate::observe::eviction(if outbox.queued() > outbox.max_bytes { "bytes" } else { "events" });
        tracing::warn!(session, user, queued = outbox.queued(), "evicting a session that stopped reading");
        for mut members in self.inner.groups.iter_mut() {
            members.sessions.remove(&session);
        }
        true
    }

    /// A connection of `user` opened; true if it is their first (they came online).
    pub fn connected(&self, user: u64) -> bool {
        let mut n = self.inner.online.entry(user).or_default();
        *n += 1;
        *n == 1
    }

    /// A connection of `user` closed; true if it was their last (they went offline).
    pub fn disconnected(&self, user: u64) -> bool {
        use dashmap::mapref::entry::Entry;
        self.inner.last_seen.insert(user, crate::time::now_ms());
        match self.inner.online.entry(user) {
            Entry::Occupied(mut n) if *n.get() > 1 => {
                *n.get_mut() -= 1;
                false
            }
            Entry::Occupied(n) => {
                n.remove();
                true
            }
            Entry::Vacant(_) => true,
        }
    }

    /// Whether `user` has an open connection, and when their last one closed (0: never,
    /// or too long ago to remember).
    pub fn presence(&self, user: u64) -> (bool, u64) {
        let online = self.inner.online.contains_key(&user);
        (online, self.inner.last_seen.get(&user).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session's socket as a publisher sees it: counts its offers, takes them until barred.
    #[derive(Default)]
    struct Probe {
        offers: AtomicUsize,
        barred: AtomicBool,
    }

    impl Direct for Probe {
        fn offer(&self, _: &Event, _: &Frame, _: Group, _: &Outbox) -> Offer {
            self.offers.fetch_add(1, Ordering::Relaxed);
            if self.barred.load(Ordering::Relaxed) {
                Offer::Declined
            } else {
                Offer::Done
            }
        }
        fn bar(&self) {
            self.barred.store(true, Ordering::Relaxed);
        }
    }

    /// Every session's mailbox: counts the events and the restarts it was sent.
    #[derive(Default)]
    struct Mailboxes {
        events: usize,
        restarts: usize,
    }

    impl Actor for Mailboxes {
        type Context = Context<Self>;
    }

    impl Handler<Deliver> for Mailboxes {
        type Result = ();
        fn handle(&mut self, d: Deliver, _: &mut Context<Self>) {
            match d {
                Deliver::Event { .. } => self.events += 1,
                Deliver::Restart => self.restarts += 1,
                _ => {}
            }
        }
    }

    #[derive(Message)]
    #[rtype(result = "(usize, usize)")]
    struct Counts;

    impl Handler<Counts> for Mailboxes {
        type Result = MessageResult<Counts>;
        fn handle(&mut self, _: Counts, _: &mut Context<Self>) -> Self::Result {
            MessageResult((self.events, self.restarts))
        }
    }

    struct Plain;
    impl Render for Plain {
        fn slot(&self) -> usize {
            0
        }
        fn render(&self, _: &ChatEvent) -> Frame {
            Frame::text("e")
        }
    }

    /// A publisher writes one event to at most `DIRECT_PER_EVENT` sessions itself; the
    /// others get it through their mailboxes. A restart bars every session's direct writes
    /// before telling it to close, so nothing newer than a gap reaches its socket.
    #[actix_rt::test]
    async fn direct_writes_are_capped_per_event_and_barred_by_a_restart() {
        let hub = Hub::default();
        let mailboxes = Mailboxes::default().start();
        let group = Group::Room(1);
        let probes: Vec<Arc<Probe>> = (0..200).map(|_| Arc::new(Probe::default())).collect();
        for (i, probe) in probes.iter().enumerate() {
            let sub = Subscriber {
                session: i as u64 + 1,
                user: 2,
                recipient: mailboxes.clone().recipient(),
                wire: Arc::new(Plain),
                outbox: Outbox::new(1 << 16, usize::MAX / 2),
                direct: Some(probe.clone() as DirectRef),
            };
            hub.join(group, sub);
        }
        let event = || Event::new(ChatEvent::MessageDeleted { room: 1, message: 1 });
        hub.publish(group, &event());
        let offered: usize = probes.iter().map(|p| p.offers.load(Ordering::Relaxed)).sum();
        assert_eq!(offered, DIRECT_PER_EVENT, "written directly");
        assert_eq!(mailboxes.send(Counts).await.expect("counts"), (200 - DIRECT_PER_EVENT, 0), "the rest mailed");

        assert_eq!(hub.restart_group(group), 200);
        assert!(probes.iter().all(|p| p.barred.load(Ordering::Relaxed)), "every socket barred");
        hub.publish(group, &event());
        assert_eq!(mailboxes.send(Counts).await.expect("counts"), (400 - DIRECT_PER_EVENT, 200), "all mailed now");
    }

    /// Connections are counted for online users only: one who went offline leaves a
    /// last-seen time in a bounded cache, not an entry in the counts.
    #[test]
    fn presence_keeps_online_users_only() {
        let hub = Hub::default();
        assert!(hub.connected(7), "the first connection comes online");
        assert!(!hub.connected(7));
        assert!(!hub.disconnected(7));
        assert!(hub.presence(7).0);
        assert!(hub.disconnected(7), "the last one goes offline");
        let (online, last_seen) = hub.presence(7);
        assert!(!online && last_seen > 0);
        assert!(hub.inner.online.is_empty(), "an offline user leaves no entry");
        assert_eq!(hub.presence(8), (false, 0), "never seen");
    }

    /// Events cross the fan-out seam as plain data: each survives a serialization round
    /// trip whole, and groups keep SignalR's names.
    #[test]
    fn events_and_groups_are_plain_data() {
        let m = MessageEvent {
            room: 3,
            id: 42,
            sender: 7,
            sender_name: "kim".into(),
            sender_picture: None,
            content: Some("안녕".into()),
            kind: "text".into(),
            file: Some(FileRef { url: "/chat/files/3/a.png".into(), name: "a.png".into(), size: 9 }),
            images: Vec::new(),
            reply_to: Some(41),
            created_at: 1,
            edited_at: None,
            updated_at: 1,
            deleted: false,
        };
        let events = [
            ChatEvent::Message(m.clone()),
            ChatEvent::MessageUpdated(m),
            ChatEvent::MessageDeleted { room: 3, message: 42 },
            ChatEvent::Typing { room: 3, user: 7, user_name: "kim".into(), is_typing: true },
            ChatEvent::UserStatus { user: 7, user_name: "kim".into(), online: false },
            ChatEvent::MessageRead { room: 3, user: 7, user_name: "kim".into(), last_read: 42, read_at: 5 },
            ChatEvent::RoomClosed { room: 3 },
        ];
        for e in events {
            let json = serde_json::to_string(&e).expect("serialize");
            assert_eq!(serde_json::from_str::<ChatEvent>(&json).expect("deserialize"), e);
        }
        assert_eq!((room_group(3).to_string(), user_group(15).to_string()), ("room_3".into(), "user_15".into()));
        let g: Group = serde_json::from_str(&serde_json::to_string(&Group::User(15)).expect("ser")).expect("de");
        assert_eq!(g, user_group(15));
    }
}
