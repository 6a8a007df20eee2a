//! A stateful connection that outlives its process: after a restart of a single server or
//! of the core (`kill -9` or a drain), the client's reconnect with its connection token
//! resumes the connection, and what it missed comes from the durable history, once, in
//! order. Where that cannot be promised the reconnect is 404, as before, and the client
//! starts a new connection: never a resumed connection with a gap or a message twice.
//!
//! # What is kept
//! The replay buffer itself lives in memory. What the store keeps of each stateful
//! connection is one small record, [`Parked`] (`Key::HubConnection(token)`): its user, its
//! protocol and, while it holds, a [`Claim`]: "every message this connection sent with a
//! sequence id from `from` on is one of the frames kept here, at its id, or a
//! `ReceiveMessage` of one of `rooms`, newer than the room's position there, in the room's
//! order, all of them from one room". Room messages are durable before anyone is sent
//! them, so after a restart the same frames can be made again ([`remake`]): the kept ones
//! at their ids, and the room's first messages after its position at the ids between and
//! after them; the client drops those it has (by sequence id).
//!
//! # How the claim is kept true
//! - At each Ack of the client's (about once a second while messages flow), a new claim is
//!   written from the first message not acknowledged, keeping those of them the history
//!   cannot make (not waited for: until it is on disk the older claim holds, since what it
//!   kept was on disk before it was sent).
//! - Before a frame the history cannot make is sent (a Completion, a typing or presence
//!   event, an edit, a message of a second room or of a room not joined), it is kept in
//!   the record ([`Kept`], at most [`MAX_KEPT`] frames and [`MAX_KEPT_BYTES`]), and the
//!   connection's frames wait until that is on disk. Past the bound the record says the
//!   claim is broken (a 404 after a restart) until the client acknowledges past it; a
//!   broken claim costs nothing more meanwhile. A join or a leave is written at once, and
//!   the next frame waits for it too. A joined room's position starts at a fresh store id
//!   taken after the join, so a message older than the join that arrives late is kept.
//! - The connection's messages go in order through the room's group; a message of a
//!   joined room never skips the session (the outbox closes a session that falls behind).
//!
//! # After the restart
//! Start-up reads every record ([`load`]): a connection with a claim can be resumed for
//! `BOXOFFICE_SIGNALR_RECONNECT_WINDOW` after start-up, then its record is deleted. The
//! reconnect ([`super::restore::reopen`]) checks the user (403 for another's), joins the claim's rooms
//! again through each room (the participant check) with the messages after each position,
//! and resumes if at most one room has any (and fewer than a catch-up's bound): the
//! Sequence `from`, those messages, then live. Otherwise 404. Of the client's own messages
//! sent again after its Sequence, those the record counts as processed are dropped (each
//! one whose Completion went out: the Completion waited for the record); the others are
//! handled again: `JoinRoom` and `LeaveRoom` do the same twice, and `SendMessage` without
//! a `clientMsgId` gets one made from the connection token and its sequence id, so a post
//! the server had stored is found, not posted twice.
//!
//! A drain (SIGTERM) lets these connections go without a Close, so that their clients
//! reconnect statefully to the restarted server; a connection that ends for good (a Close,
//! its window) deletes its record.

use super::Refused;
use crate::actors::hub::{ChatEvent, Frame, MessageEvent, Render};
use crate::actors::room::MAX_CATCH_UP;
use crate::store::{Batch, Key, Store};
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A stateful connection's record (see the module's doc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parked {
    pub user: u64,
    pub protocol: String,
    /// `None`: what was sent since the last claim may not be made again exactly.
    pub claim: Option<Claim>,
    /// The client's messages processed when the record was written: every one whose
    /// Completion was sent (that Completion waited for the record), and perhaps more.
    pub processed: u64,
}

/// Every message sent from `from` on is one of `kept` (at its sequence id) or a message
/// of one of `rooms` newer than its position (room, newest message id the client has),
/// in order, all of one room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub from: u64,
    pub rooms: Vec<(u64, u64)>,
    pub kept: Vec<Kept>,
}

/// A message sent since the claim that the history cannot make again (a Completion, a
/// typing or presence event, a message of a second room, ...), as it was sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    pub seq: u64,
    pub opcode: u8,
    pub payload: Vec<u8>,
    /// The room message it is, if it is one.
    pub message: Option<(u64, u64)>,
}

/// At most this many messages are kept in a record, and this many bytes of them: past
/// either, the record says the claim is broken until the client acknowledges them.
const MAX_KEPT: usize = 32;
const MAX_KEPT_BYTES: usize = 16 << 10;

/// What a message the connection sent was, as far as its claim goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentKind {
    /// A `ReceiveMessage` of a joined room, through the room's group.
    Message { room: u64, id: u64 },
    /// Anything else that takes a sequence id.
    Other,
}

/// Whether a frame may go now.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Send,
    /// Once the record that keeps it (or says the claim is broken) is on disk.
    WaitDurable,
    /// The record could not be written: the connection must end.
    Fail,
}

/// One connection's side of its record.
pub struct Parking {
    store: Store,
    key: Key,
    user: u64,
    protocol: &'static str,
    /// Each joined room and the newest of its messages the client acknowledged (at least a
    /// store id taken once the join was answered).
    rooms: Vec<(u64, u64)>,
    /// The record's claim as written last (`None`: broken), and the room whose messages
    /// follow it with the last one sent, once one was.
    claim: Option<Claim>,
    stream: Option<(u64, u64)>,
    /// The claim changed in memory: the next frame waits until the record says so on disk.
    unsaved: bool,
    /// The client's messages processed (see [`Parked::processed`]).
    pub processed: u64,
}

impl Parking {
    /// A connection of the process before, resumed with its record's `claim` (see
    /// [`super::restore`]): `stream`, the room whose messages follow the claim's kept
    /// frames and the last one made again.
    pub fn reopened(
        store: Store,
        key: Key,
        user: u64,
        protocol: &'static str,
        claim: &Claim,
        stream: Option<(u64, u64)>,
        processed: u64,
    ) -> Parking {
        Parking {
            store,
            key,
            user,
            protocol,
            rooms: claim.rooms.clone(),
            claim: Some(claim.clone()),
            stream,
            unsaved: false,
            processed,
        }
    }

    /// A new connection: a record with an empty claim from the first message.
    pub fn new(store: Store, token: &str, user: u64, protocol: &'static str) -> Parking {
        let mut p = Parking {
            store,
            key: Key::HubConnection(token.to_string()),
            user,
            protocol,
            rooms: Vec::new(),
            claim: Some(Claim { from: 1, rooms: Vec::new(), kept: Vec::new() }),
            stream: None,
            unsaved: false,
            processed: 0,
        };
        if p.write().is_err() {
            p.claim = None;
        }
        p
    }

    /// The store the record is in (what a frame waits for is its flush).
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn write(&self) -> Result<(), crate::store::StoreError> {
        let record = Parked {
            user: self.user,
            protocol: self.protocol.to_string(),
            claim: self.claim.clone(),
            processed: self.processed,
        };
        self.store.put(&self.key, &record)
    }

    /// Whether `sent` continues the claim's stream `stream` (the room and last message
    /// sent): a message of a room of the claim, newer than its position there.
    fn continues(claim: &Claim, stream: Option<(u64, u64)>, sent: SentKind) -> Option<(u64, u64)> {
        let SentKind::Message { room, id } = sent else { return None };
        let newer = claim.rooms.iter().any(|(r, p)| *r == room && id > *p);
        let in_order = stream.is_none_or(|(r, last)| r == room && id > last);
        (newer && in_order).then_some((room, id))
    }

    /// Keep `frame` (sequence id `seq`) in `claim`, if its bound allows.
    fn keep(claim: &mut Claim, seq: u64, frame: &Frame, sent: SentKind) -> bool {
        let bytes: usize = claim.kept.iter().map(|k| k.payload.len()).sum();
        if claim.kept.len() >= MAX_KEPT || bytes + frame.payload().len() > MAX_KEPT_BYTES {
            return false;
        }
        let message = match sent {
            SentKind::Message { room, id } => Some((room, id)),
            SentKind::Other => None,
        };
        claim.kept.push(Kept { seq, opcode: frame.opcode(), payload: frame.payload().to_vec(), message });
        true
    }

    /// `frame`, sequence id `seq`, is about to be sent: whether it continues the claim, or
    /// must wait until the record keeps it (or says the claim is broken).
    pub fn sending(&mut self, seq: u64, frame: &Frame, sent: SentKind) -> Verdict {
        let unsaved = std::mem::take(&mut self.unsaved);
        match self.claim.as_mut() {
            None if !unsaved => return Verdict::Send,
            None => {}
            Some(claim) => match Parking::continues(claim, self.stream, sent) {
                Some(next) => {
                    self.stream = Some(next);
                    if !unsaved {
                        return Verdict::Send;
                    }
                }
                None if Parking::keep(claim, seq, frame, sent) => {}
                None => {
                    self.claim = None;
                    self.stream = None;
                }
            },
        }
        match self.write() {
            Ok(()) => Verdict::WaitDurable,
            Err(e) => {
                tracing::warn!(error = %e, "signalr: a connection's record cannot be written");
                Verdict::Fail
            }
        }
    }

    /// The client acknowledged `acked`; `left` are still not acknowledged (with their
    /// sequence ids), and the first of them (or the next sent) is numbered `from`. A new
    /// claim from there, when they fit in one.
    pub fn acked<'a>(
        &mut self,
        acked: impl Iterator<Item = SentKind>,
        left: impl Iterator<Item = (u64, &'a Frame, SentKind)>,
        from: u64,
    ) {
        for sent in acked {
            if let SentKind::Message { room, id } = sent {
                if let Some((_, p)) = self.rooms.iter_mut().find(|(r, _)| *r == room) {
                    *p = (*p).max(id);
                }
            }
        }
        let mut claim = Claim { from, rooms: self.rooms.clone(), kept: Vec::new() };
        let mut stream = None;
        for (seq, frame, sent) in left {
            match Parking::continues(&claim, stream, sent) {
                Some(next) => stream = Some(next),
                None if Parking::keep(&mut claim, seq, frame, sent) => {}
                None => return,
            }
        }
        let old = (self.claim.replace(claim), std::mem::replace(&mut self.stream, stream));
        // Not waited for: until it is on disk the older record holds (what it kept was
        // on disk before it was sent, and nothing else broke it), or says broken.
        if self.write().is_err() {
            (self.claim, self.stream) = old;
        }
    }

    /// A room was joined (its Completion, which the record keeps, goes next and writes it):
    /// a new room's position is a fresh store id, newer than any message of it the client
    /// could have been sent. A room joined again keeps its position.
    ///
    /// The record is written at once, and the next frame (the Completion, or with a join
    /// that asked for none the room's first message) waits until that is on disk: after a
    /// restart the connection is back in the room as soon as the client could know it was.
    pub fn joined(&mut self, room: u64) {
        if self.rooms.iter().any(|(r, _)| *r == room) {
            return;
        }
        let floor = self.store.next_id().unwrap_or(u64::MAX);
        self.rooms.push((room, floor));
        if let Some(claim) = self.claim.as_mut() {
            claim.rooms.push((room, floor));
        }
        let _ = self.write();
        self.unsaved = true;
    }

    /// A room was left (its Completion goes next). The claim cannot go on making its
    /// messages again once more of them are written: if some were sent since the claim,
    /// the claim is broken (on disk before the Completion goes), else it forgets the room.
    pub fn left(&mut self, room: u64) {
        self.rooms.retain(|(r, _)| *r != room);
        let Some(claim) = self.claim.as_mut() else { return };
        if self.stream.is_some_and(|(r, _)| r == room) {
            self.claim = None;
            self.stream = None;
        } else {
            claim.rooms.retain(|(r, _)| *r != room);
        }
        // As for a join: written now, and the next frame waits for it.
        let _ = self.write();
        self.unsaved = true;
    }

    /// The connection ended for good: its record goes.
    pub fn ended(&self) {
        let mut b = Batch::default();
        b.delete(&self.key);
        let _ = self.store.apply(b);
    }
}

/// What a connection of the process before sent from its claim on, made again: the kept
/// messages at their ids and, between and after them, the history's messages after each
/// room's position (`missed`, in the claim's rooms' order) that are not kept, which must
/// all be of one room. `None` where that does not add up.
pub fn remake(claim: &Claim, missed: &[Vec<MessageEvent>], render: &dyn Render) -> Option<Vec<(Frame, SentKind)>> {
    let is_kept = |room: u64, id: u64| claim.kept.iter().any(|k| k.message == Some((room, id)));
    let mut streams = missed.iter().map(|m| m.iter().filter(|m| !is_kept(m.room, m.id)).collect::<Vec<_>>());
    let mut stream: Vec<&MessageEvent> = Vec::new();
    for s in streams.by_ref() {
        if !s.is_empty() {
            if !stream.is_empty() {
                return None;
            }
            stream = s;
        }
    }
    if missed.iter().any(|m| m.len() >= MAX_CATCH_UP) {
        return None;
    }
    let mut kept: Vec<&Kept> = claim.kept.iter().collect();
    kept.sort_by_key(|k| k.seq);
    let mut out = Vec::with_capacity(kept.len() + stream.len());
    let mut next = stream.into_iter();
    let mut seq = claim.from;
    for k in kept {
        while seq < k.seq {
            let m = next.next()?;
            out.push((render.render(&ChatEvent::Message(m.clone())), SentKind::Message { room: m.room, id: m.id }));
            seq += 1;
        }
        if seq != k.seq {
            return None;
        }
        let sent = k.message.map_or(SentKind::Other, |(room, id)| SentKind::Message { room, id });
        out.push((Frame::new(k.opcode, &k.payload), sent));
        seq += 1;
    }
    for m in next {
        out.push((render.render(&ChatEvent::Message(m.clone())), SentKind::Message { room: m.room, id: m.id }));
    }
    Some(out)
}

/// The connections of the process before this one that can be resumed, until the window
/// after start-up passes (bounded by the connections it had).
fn parked() -> &'static DashMap<String, (Parked, Instant, Store)> {
    static PARKED: OnceLock<DashMap<String, (Parked, Instant, Store)>> = OnceLock::new();
    PARKED.get_or_init(DashMap::new)
}

/// Start-up: read the records the process before left. Those with a claim can be resumed
/// within `window`; the others, and those not resumed by then, are deleted.
pub fn load(store: &Store, window: Duration) -> Result<usize, crate::store::StoreError> {
    let until = Instant::now() + window;
    let mut gone = Batch::default();
    for (key, record) in store.scan::<Parked>(&Key::HubConnection(String::new()))? {
        let Key::HubConnection(token) = &key else { continue };
        if record.claim.is_some() {
            parked().insert(token.clone(), (record, until, store.clone()));
        } else {
            gone.delete(&key);
        }
    }
    store.apply(gone)?;
    let n = parked().len();
    if n > 0 {
        let store = store.clone();
        actix_rt::spawn(async move {
            actix_rt::time::sleep(window).await;
            let mut gone = Batch::default();
            parked().retain(|token, _| {
                gone.delete(&Key::HubConnection(token.clone()));
                false
            });
            let _ = store.apply(gone);
        });
    }
    Ok(n)
}

/// The record of `token` if a connection of the process before had it and can be resumed
/// for `user` (it is taken: one reconnect resumes it); `Err(Forbidden)` for another user's.
pub fn take(token: &str, user: u64) -> Result<Option<Parked>, Refused> {
    let map = parked();
    match map.get(token) {
        None => return Ok(None),
        Some(e) if e.0.user != user => return Err(Refused::Forbidden),
        Some(_) => {}
    }
    let Some((_, (record, until, store))) = map.remove(token) else { return Ok(None) };
    if Instant::now() < until {
        return Ok(Some(record));
    }
    let mut gone = Batch::default();
    gone.delete(&Key::HubConnection(token.to_string()));
    let _ = store.apply(gone);
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Ids;
    impl Render for Ids {
        fn slot(&self) -> usize {
            0
        }
        fn render(&self, e: &ChatEvent) -> Frame {
            match e {
                ChatEvent::Message(m) => Frame::text(format!("m{}", m.id)),
                _ => Frame::text("other"),
            }
        }
    }

    fn message(room: u64, id: u64) -> MessageEvent {
        MessageEvent {
            room,
            id,
            sender: 1,
            sender_name: String::new(),
            sender_picture: None,
            content: None,
            kind: "text".into(),
            file: None,
            images: Vec::new(),
            reply_to: None,
            created_at: 0,
            edited_at: None,
            updated_at: 0,
            deleted: false,
        }
    }

    fn kept(seq: u64, text: &str, message: Option<(u64, u64)>) -> Kept {
        let f = Frame::text(text);
        Kept { seq, opcode: f.opcode(), payload: f.payload().to_vec(), message }
    }

    fn texts(frames: &[(Frame, SentKind)]) -> Vec<String> {
        frames.iter().map(|(f, _)| String::from_utf8(f.payload().to_vec()).expect("text")).collect()
    }

    #[test]
    fn frames_the_history_cannot_make_wait_for_the_record_and_room_messages_do_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let key = Key::HubConnection("t.1".into());
        let read = || store.get::<Parked>(&key).expect("read").expect("a record");
        let mut p = Parking::new(store.clone(), "t.1", 7, "json");
        assert_eq!(read().claim, Some(Claim { from: 1, rooms: Vec::new(), kept: Vec::new() }));
        // A join is written at once, with a position newer than any message sent before.
        p.joined(5);
        let floor = read().claim.expect("a claim").rooms[0].1;
        let (other, message) = (Frame::text("completion"), Frame::text("m"));
        assert_eq!(p.sending(1, &other, SentKind::Other), Verdict::WaitDurable);
        assert_eq!(read().claim.expect("a claim").kept.len(), 1, "the Completion is kept");
        // The room's newer messages go at once; one older than the join is kept.
        assert_eq!(p.sending(2, &message, SentKind::Message { room: 5, id: floor + 1 }), Verdict::Send);
        assert_eq!(p.sending(3, &message, SentKind::Message { room: 5, id: floor }), Verdict::WaitDurable);
        assert_eq!(read().claim.expect("a claim").kept.len(), 2);
        // Up to the bound each is kept; the one past it makes the record say broken (that
        // write is waited for too), and then nothing more waits.
        let last = 4 + MAX_KEPT as u64 - 2;
        for seq in 4..=last {
            assert_eq!(p.sending(seq, &other, SentKind::Other), Verdict::WaitDurable);
            assert_eq!(read().claim.is_some(), seq < last, "frame {seq}");
        }
        assert_eq!(p.sending(40, &other, SentKind::Other), Verdict::Send);
        // An Ack of everything: a claim again, from the next id.
        p.processed = 3;
        p.acked(std::iter::empty(), std::iter::empty(), 41);
        let record = read();
        assert_eq!(record.claim.map(|c| (c.from, c.rooms.len())), Some((41, 1)));
        assert_eq!(record.processed, 3);
        p.ended();
        assert_eq!(store.get::<Parked>(&key).expect("read"), None);
    }

    #[test]
    fn kept_messages_take_their_ids_and_the_room_fills_the_rest() {
        let claim = Claim {
            from: 5,
            rooms: vec![(1, 10), (2, 20)],
            kept: vec![kept(6, "completion", None), kept(8, "m21", Some((2, 21)))],
        };
        // Room 1 has three messages after 10; room 2's one new message is the kept one.
        let missed = vec![vec![message(1, 11), message(1, 12), message(1, 13)], vec![message(2, 21)]];
        let frames = remake(&claim, &missed, &Ids).expect("exact");
        assert_eq!(texts(&frames), ["m11", "completion", "m12", "m21", "m13"]);
        assert_eq!(frames[3].1, SentKind::Message { room: 2, id: 21 });
    }

    #[test]
    fn two_rooms_with_messages_not_kept_or_too_few_messages_are_not_exact() {
        let claim = Claim { from: 1, rooms: vec![(1, 0), (2, 0)], kept: Vec::new() };
        assert!(remake(&claim, &[vec![message(1, 1)], vec![message(2, 2)]], &Ids).is_none());
        // A kept message at 3 needs two messages of the room before it.
        let claim = Claim { from: 1, rooms: vec![(1, 0)], kept: vec![kept(3, "x", None)] };
        assert!(remake(&claim, &[vec![message(1, 1)]], &Ids).is_none());
        assert_eq!(
            texts(&remake(&claim, &[vec![message(1, 1), message(1, 2)]], &Ids).expect("exact")),
            ["m1", "m2", "x"]
        );
    }
}
