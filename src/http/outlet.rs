//! A session's socket, written by the publisher of an event itself while the session is
//! idle.
//!
//! An event reaches a session through its mailbox: the publisher's thread queues it, the
//! session's thread wakes, takes it in and writes its frame. While the session is idle
//! (nothing queued for the socket, nothing in its mailbox, no join or catch-up on its way)
//! that hop does nothing the publisher cannot do itself: decide whether the client is to
//! get the event (the same checks as the session's) and write the frame, which is shared
//! by every session of its protocol. The [`Outlet`] is the lock for that: it holds the
//! socket, the session's record of what it sent ([`Sent`]) and its rooms, and every write
//! to the socket, the session's own included, is made under it, so frames never
//! interleave and each event is sent once whichever way it comes.
//!
//! The session opens the outlet when it is idle and shuts it before anything that must
//! see events in order through its mailbox: a join (its catch-up comes before the room's
//! live events), a catch-up, a gate, a close, a frame the socket did not take whole. A
//! direct write the socket does not take whole shuts it too: the rest of the frame
//! ([`State::stalled`]) is the session's to write before anything else. The publisher
//! writes only while the session's outbox counts nothing: an event in the mailbox, or a
//! frame in the session's queue, keeps every later one behind it.
//!
//! Only wires whose sessions keep nothing per event sent (contract C's plain socket) open
//! their outlet; the others use it as the write lock and the record of what they sent.

use crate::actors::hub::{ChatEvent, Direct, Event, Frame, Group, Offer, Outbox};
use actix_web::web::Bytes;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::net::TcpStream;

/// Rooms whose newest sent message id a session remembers.
const ROOMS_REMEMBERED: usize = 64;
/// Non-message events a session remembers by id (one event reaches a session through at
/// most a few groups, one right after the other).
const EVENTS_REMEMBERED: usize = 16;

/// A frame waiting for the socket, and how much of it is written.
pub struct Pending {
    pub wire: Bytes,
    pub written: usize,
}

impl Pending {
    pub fn left(&self) -> usize {
        self.wire.len() - self.written
    }
}

/// What a session sent its client, so that each event is sent once.
#[derive(Default)]
pub struct Sent {
    /// (room, newest message id sent), most recently used last.
    pub messages: VecDeque<(u64, u64)>,
    /// (joined room, the newest of its messages sent, or published when it was joined):
    /// where the room's messages stand for this client (see `Session::resync`).
    pub floors: Vec<(u64, u64)>,
    /// Ids of the latest other events sent.
    pub events: VecDeque<u64>,
}

impl Sent {
    /// Whether message `id` of `room` is new to this client (remembering it).
    pub fn fresh_message(&mut self, room: u64, id: u64) -> bool {
        match self.messages.iter().position(|(r, _)| *r == room) {
            Some(i) => {
                let (_, last) = self.messages[i];
                if id <= last {
                    return false;
                }
                self.messages.remove(i);
            }
            None if self.messages.len() == ROOMS_REMEMBERED => {
                self.messages.pop_front();
            }
            None => {}
        }
        self.messages.push_back((room, id));
        // A joined room's position, kept however many other rooms' messages come.
        if let Some((_, floor)) = self.floors.iter_mut().find(|(r, _)| *r == room) {
            *floor = (*floor).max(id);
        }
        true
    }

    /// Whether `event` is new to this client (remembering it).
    pub fn fresh(&mut self, event: &Event) -> bool {
        if let ChatEvent::Message(m) = &event.kind {
            return self.fresh_message(m.room, m.id);
        }
        if self.events.contains(&event.seq) {
            return false;
        }
        if self.events.len() == EVENTS_REMEMBERED {
            self.events.pop_front();
        }
        self.events.push_back(event.seq);
        true
    }
}

/// Whether a session in `rooms` skips `event` of `group`: a room's event that came while
/// its join was refused or after the room was left; a joined room's message through the
/// user's group (it comes in order through the room's group; over NATS the two are
/// separate subscriptions, and the user's copy may overtake an older one).
pub fn skips(rooms: &[u64], group: Group, event: &Event) -> bool {
    match (group, &event.kind) {
        (Group::Room(room), _) => !rooms.contains(&room),
        (Group::User(_), ChatEvent::Message(m)) => rooms.contains(&m.room),
        (Group::User(_), _) => false,
    }
}

/// A session's socket and what it sent, shared with the publishers of its groups' events.
pub struct Outlet {
    state: Mutex<State>,
    /// Whether the session's wire lets publishers write (see the module's doc).
    direct: bool,
}

pub struct State {
    /// Publishers may write: the session is idle.
    open: bool,
    /// Never open again: the node lost events (the session is told to close).
    barred: bool,
    io: Option<Arc<TcpStream>>,
    /// The session's rooms, as when the outlet opened.
    rooms: Vec<u64>,
    pub sent: Sent,
    /// A publisher's frame the socket did not take whole (or at all).
    stalled: Option<Pending>,
}

impl State {
    /// Shut the outlet. The rest of a publisher's frame that the socket did not take whole
    /// goes first in the session's `queue` (which is empty while the outlet is open).
    pub fn shut(&mut self, queue: &mut VecDeque<Pending>) {
        self.open = false;
        if let Some(stalled) = self.stalled.take() {
            queue.push_front(stalled);
        }
    }

    /// Open the outlet (the session is idle), with the session's `rooms`; not after a
    /// publisher's frame stalled until the session takes it.
    pub fn open(&mut self, rooms: &[u64]) {
        if self.barred || self.io.is_none() || self.stalled.is_some() {
            return;
        }
        if self.rooms != rooms {
            self.rooms = rooms.to_vec();
        }
        self.open = true;
    }

    /// The session's socket from now on (`None`: it has none).
    pub fn attach(&mut self, io: Option<Arc<TcpStream>>) {
        self.open = false;
        self.io = io;
    }
}

impl Outlet {
    pub fn new(direct: bool) -> Arc<Outlet> {
        Arc::new(Outlet {
            state: Mutex::new(State {
                open: false,
                barred: false,
                io: None,
                rooms: Vec::new(),
                sent: Sent::default(),
                stalled: None,
            }),
            direct,
        })
    }

    /// Whether publishers may ever write to this session's socket.
    pub fn direct(&self) -> bool {
        self.direct
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding it leaves nothing half-written that matters more than the
        // session going on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Direct for Outlet {
    fn offer(&self, event: &Event, frame: &Frame, group: Group, outbox: &Outbox) -> Offer {
        let mut s = self.lock();
        // Under the lock: a frame the session is about to write is counted before it
        // takes the lock, and one it queued shut the outlet.
        let Some(io) = s.io.clone().filter(|_| s.open && outbox.queued() == 0) else {
            return Offer::Declined;
        };
        if skips(&s.rooms, group, event) || !s.sent.fresh(event) {
            return Offer::Done;
        }
        let wire = frame.wire();
        let written = match io.try_write(wire) {
            Ok(n) if n == wire.len() => return Offer::Done,
            Ok(n) => n,
            // Not writable now, or broken: the session finds out which.
            Err(_) => 0,
        };
        crate::observe::direct_stalled();
        s.open = false;
        outbox.queue(wire.len() - written);
        s.stalled = Some(Pending { wire: wire.clone(), written });
        Offer::Stalled
    }

    fn bar(&self) {
        let mut s = self.lock();
        s.barred = true;
        s.open = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A connected pair on loopback: the server's end (in an outlet) and the client's.
    async fn pair() -> (Arc<Outlet>, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let outlet = Outlet::new(true);
        outlet.lock().attach(Some(Arc::new(server)));
        (outlet, client)
    }

    fn deleted(room: u64, message: u64) -> Arc<Event> {
        Event::new(ChatEvent::MessageDeleted { room, message })
    }

    async fn read_some(client: &mut TcpStream) -> Vec<u8> {
        let mut buf = vec![0u8; 1 << 16];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), client.read(&mut buf))
            .await
            .expect("in time")
            .expect("read");
        buf.truncate(n);
        buf
    }

    #[actix_rt::test]
    async fn publishers_write_only_to_an_open_outlet_with_nothing_counted() {
        let (outlet, mut client) = pair().await;
        let outbox = Outbox::new(16, 1 << 20);
        let frame = Frame::text("one");
        let event = deleted(7, 1);
        // Shut (a new session): through the mailbox.
        assert!(matches!(outlet.offer(&event, &frame, Group::Room(7), &outbox), Offer::Declined));
        outlet.lock().open(&[7]);
        // Something counted (an event in the mailbox, a frame the session writes): behind it.
        outbox.queue(10);
        assert!(matches!(outlet.offer(&event, &frame, Group::Room(7), &outbox), Offer::Declined));
        outbox.taken(10);
        assert!(matches!(outlet.offer(&event, &frame, Group::Room(7), &outbox), Offer::Done));
        assert_eq!(read_some(&mut client).await, frame.wire().to_vec(), "written whole");
        // The same event again (through another group): sent once.
        assert!(matches!(outlet.offer(&event, &frame, Group::User(2), &outbox), Offer::Done));
        // A room not joined: skipped, nothing written.
        assert!(matches!(outlet.offer(&deleted(8, 2), &frame, Group::Room(8), &outbox), Offer::Done));
        let last = Frame::text("last");
        assert!(matches!(outlet.offer(&deleted(7, 3), &last, Group::Room(7), &outbox), Offer::Done));
        assert_eq!(read_some(&mut client).await, last.wire().to_vec(), "only what the client is to get");
    }

    #[actix_rt::test]
    async fn a_write_the_socket_does_not_take_whole_shuts_the_outlet_and_goes_first() {
        let (outlet, _client) = pair().await;
        let outbox = Outbox::new(16, 1 << 30);
        outlet.lock().open(&[7]);
        // The client never reads: the kernel's buffers fill.
        let big = Frame::text("x".repeat(1 << 20));
        let mut stalled = false;
        for id in 1..200 {
            match outlet.offer(&deleted(7, id), &big, Group::Room(7), &outbox) {
                Offer::Done => {}
                Offer::Stalled => {
                    stalled = true;
                    break;
                }
                Offer::Declined => panic!("declined while open"),
            }
        }
        assert!(stalled, "the socket filled up");
        // What is left is counted, and nothing more is written directly until the session
        // takes it.
        let left = outbox.queued();
        assert!(left > 0 && left <= big.len(), "the rest counted: {left}");
        assert!(matches!(outlet.offer(&deleted(7, 500), &big, Group::Room(7), &outbox), Offer::Declined));
        outlet.lock().open(&[7]);
        assert!(matches!(outlet.offer(&deleted(7, 501), &big, Group::Room(7), &outbox), Offer::Declined));
        let mut queue = VecDeque::new();
        outlet.lock().shut(&mut queue);
        assert_eq!(queue.iter().map(Pending::left).collect::<Vec<_>>(), vec![left], "the stalled frame");
        outlet.lock().shut(&mut queue);
        assert_eq!(queue.len(), 1, "taken once");
    }

    #[actix_rt::test]
    async fn a_barred_outlet_never_opens_again() {
        let (outlet, _client) = pair().await;
        let outbox = Outbox::new(16, 1 << 20);
        outlet.lock().open(&[7]);
        outlet.bar();
        outlet.lock().open(&[7]);
        assert!(matches!(outlet.offer(&deleted(7, 1), &Frame::text("a"), Group::Room(7), &outbox), Offer::Declined));
    }

    #[test]
    fn sessions_skip_what_their_rooms_do_not_ask_for() {
        let message = |room| Event::new(ChatEvent::MessageDeleted { room, message: 1 });
        assert!(!skips(&[7], Group::Room(7), &message(7)));
        assert!(skips(&[7], Group::Room(8), &message(8)), "a room not joined");
        assert!(!skips(&[7], Group::User(2), &message(8)), "another room's event through the user's group");
    }
}
