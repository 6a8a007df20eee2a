//! `Hub`: routes domain events to groups of sessions (`room_{roomId}`, `user_{userId}`),
//! and counts each user's connections for presence. It knows nothing of any wire format:
//! an [`Event`] carries a domain [`ChatEvent`], and each session renders it in its own
//! protocol (an event keeps one rendered copy per protocol, so a fan-out to a thousand
//! sessions of one protocol renders it once).
//!
//! Rooms publish through the [`Fanout`] trait, of which `Hub` is the in-process
//! implementation; events ([`ChatEvent`]) and groups ([`Group`]) are plain serializable
//! data, so another implementation can carry them between processes over a broker.
//!
//! The group tables are lookup tables (group -> sessions), not business state. A publish
//! never waits: it offers the event to each session's bounded mailbox (its outgoing
//! queue). A full mailbox is not yet a slow reader: the room's thread can outpace a
//! session's thread for a burst. The event is queued past the bound, and the session is
//! evicted from every group and told to close only when its queue has stayed full for
//! [`CONGESTION_GRACE`] or has grown [`OVERFLOW_FACTOR`] times past its bound. So one
//! client that stops reading never slows a room, and its memory stays bounded.

use actix::prelude::*;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

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

/// How many wire protocols render events (contract C's JSON, SignalR).
pub const PROTOCOLS: usize = 2;

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
    /// A room's state changed (contract T: `RoomClosed` when a party leaves).
    RoomUpdated {
        room: u64,
        event: String,
        status: String,
        message: String,
    },
}

/// An event on its way to sessions.
#[derive(Debug)]
pub struct Event {
    pub kind: ChatEvent,
    /// Not delivered to this user's sessions (a typer does not hear their own typing).
    pub skip_user: Option<u64>,
    /// One rendered copy per wire protocol, filled by the first session that needs it.
    pub rendered: [OnceLock<bytestring::ByteString>; PROTOCOLS],
}

impl Event {
    pub fn new(kind: ChatEvent) -> Arc<Event> {
        Arc::new(Event { kind, skip_user: None, rendered: Default::default() })
    }

    pub fn skipping(kind: ChatEvent, user: u64) -> Arc<Event> {
        Arc::new(Event { kind, skip_user: Some(user), rendered: Default::default() })
    }

    /// This event in protocol `slot`, rendered once.
    pub fn render(&self, slot: usize, f: impl FnOnce(&ChatEvent) -> String) -> bytestring::ByteString {
        self.rendered[slot].get_or_init(|| f(&self.kind).into()).clone()
    }
}

/// An event delivered to a session.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Deliver(pub Arc<Event>);

/// A session as the hub knows it.
#[derive(Clone)]
pub struct Subscriber {
    pub session: u64,
    pub user: u64,
    pub recipient: Recipient<Deliver>,
    /// Set when the hub gave up on the session (its mailbox was full): it must close.
    pub evicted: Arc<AtomicBool>,
    /// The session's outgoing queue bound, and how it is keeping up.
    pub outbox: usize,
    pub congestion: Arc<Congestion>,
}

impl Subscriber {
    pub fn new(
        session: u64,
        user: u64,
        recipient: Recipient<Deliver>,
        evicted: Arc<AtomicBool>,
        outbox: usize,
    ) -> Self {
        Subscriber { session, user, recipient, evicted, outbox, congestion: Default::default() }
    }
}

/// How far behind a session is.
#[derive(Debug, Default)]
pub struct Congestion {
    /// When its queue was first found full (0: it is keeping up).
    since: AtomicU64,
    /// Events queued past the bound since then.
    overflow: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Presence {
    connections: u32,
    last_seen: u64,
}

#[derive(Clone, Default)]
pub struct Hub {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    groups: DashMap<Group, HashMap<u64, Subscriber>>,
    presence: DashMap<u64, Presence>,
    next_session: AtomicU64,
    /// Deliveries offered and sessions evicted, for logs and the load tool.
    delivered: AtomicU64,
    evicted: AtomicU64,
}

impl Hub {
    /// A fresh session id.
    pub fn session_id(&self) -> u64 {
        self.inner.next_session.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn join(&self, group: Group, sub: Subscriber) {
        self.inner.groups.entry(group).or_default().insert(sub.session, sub);
    }

    pub fn leave(&self, group: Group, session: u64) {
        let empty = match self.inner.groups.get_mut(&group) {
            Some(mut members) => {
                members.remove(&session);
                members.is_empty()
            }
            None => false,
        };
        if empty {
            self.inner.groups.remove_if(&group, |_, members| members.is_empty());
        }
    }

    /// Offer `event` to every session of `group`, in the caller's order. Never waits.
    pub fn publish(&self, group: Group, event: &Arc<Event>) {
        let mut full = Vec::new();
        if let Some(members) = self.inner.groups.get(&group) {
            for sub in members.values() {
                if event.skip_user == Some(sub.user) || sub.evicted.load(Ordering::Relaxed) {
                    continue;
                }
                match sub.recipient.try_send(Deliver(event.clone())) {
                    Ok(()) => {
                        self.inner.delivered.fetch_add(1, Ordering::Relaxed);
                        if sub.congestion.since.load(Ordering::Relaxed) != 0 {
                            sub.congestion.since.store(0, Ordering::Relaxed);
                            sub.congestion.overflow.store(0, Ordering::Relaxed);
                        }
                    }
                    Err(SendError::Full(deliver)) => {
                        let now = crate::time::now_ms();
                        let c = &sub.congestion;
                        let since = match c.since.load(Ordering::Relaxed) {
                            0 => {
                                c.since.store(now, Ordering::Relaxed);
                                now
                            }
                            t => t,
                        };
                        let overflow = c.overflow.fetch_add(1, Ordering::Relaxed) as usize;
                        let cap = (sub.outbox * OVERFLOW_FACTOR).min(MAX_OVERFLOW);
                        if now - since > crate::time::ms(CONGESTION_GRACE) || overflow >= cap {
                            full.push(sub.clone());
                        } else {
                            // Past the bound, in order: a burst, not yet a stalled reader.
                            sub.recipient.do_send(deliver);
                            self.inner.delivered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(SendError::Closed(_)) => {}
                }
            }
        }
        for sub in full {
            self.evict(&sub);
        }
    }

    /// Give up on a session that does not keep up: it stops receiving, and closes as soon
    /// as it runs (its mailbox still holds what it was offered).
    fn evict(&self, sub: &Subscriber) {
        if sub.evicted.swap(true, Ordering::Relaxed) {
            return;
        }
        self.inner.evicted.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(session = sub.session, user = sub.user, "evicting a session that stopped reading");
        for mut members in self.inner.groups.iter_mut() {
            members.remove(&sub.session);
        }
    }

    /// A connection of `user` opened; true if it is their first (they came online).
    pub fn connected(&self, user: u64) -> bool {
        let mut p = self.inner.presence.entry(user).or_default();
        p.connections += 1;
        p.connections == 1
    }

    /// A connection of `user` closed; true if it was their last (they went offline).
    pub fn disconnected(&self, user: u64) -> bool {
        let mut p = self.inner.presence.entry(user).or_default();
        p.connections = p.connections.saturating_sub(1);
        p.last_seen = crate::time::now_ms();
        p.connections == 0
    }

    /// Tell `rooms` (the user's) that the user came online or went offline.
    pub fn announce_presence(&self, rooms: &[u64], user: u64, user_name: &str, online: bool) {
        let event = Event::new(ChatEvent::UserStatus { user, user_name: user_name.to_string(), online });
        for room in rooms {
            self.publish(room_group(*room), &event);
        }
    }

    /// Whether `user` has an open connection, and when their last one closed (0: never).
    pub fn presence(&self, user: u64) -> (bool, u64) {
        self.inner.presence.get(&user).map(|p| (p.connections > 0, p.last_seen)).unwrap_or((false, 0))
    }

    /// (deliveries offered, sessions evicted) since start.
    pub fn stats(&self) -> (u64, u64) {
        (self.inner.delivered.load(Ordering::Relaxed), self.inner.evicted.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            ChatEvent::RoomUpdated {
                room: 3,
                event: "RoomClosed".into(),
                status: "CLOSED".into(),
                message: "x".into(),
            },
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
