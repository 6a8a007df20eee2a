//! `Room`: one actor per chat room. It owns the room's settings, participants, their read
//! positions and the room's messages, and is the only one that orders them: message ids
//! come from the store's monotonic counter inside this actor, so a room's order is the
//! order of its ids.
//!
//! # A message is durable before anyone is told
//! `PostMessage` writes the message record, waits (outside the handler) until the store
//! has flushed it, then publishes every message up to it that is not yet published, in
//! id order. Readers (pages, search, a subscriber's catch-up) see only published
//! messages, so nothing a client learns of can be lost in a crash, and all subscribers
//! of a room get its messages in one order.
//!
//! # Subscribing without a gap
//! A session joins the room's group through [`Join`], which in one handler adds it to the
//! group and returns every published message after `since`: anything published later
//! reaches it through its mailbox, anything before is in the catch-up, and nothing is in
//! both.
//!
//! # Files
//! Here: the actor, the newest messages it keeps in memory, its settings and the rooms'
//! address book ([`Rooms`]). `records.rs`: the persisted types and [`ChatError`];
//! `messages.rs`: pages, posts, edits, deletes, read positions, search; `client_ids.rs`:
//! one message per client message id; `session.rs`: subscribing, typing, files;
//! `trade.rs`: leaving and payment requests.

use super::book::{deactivate, Activated, ActorBook, Deactivate, Lease};
use super::hub::{room_group, ChatEvent, Event, Fanout, FileRef, MessageEvent, Subscriber};
use super::ticket_listing::{ListingBook, RequestPayment, TradeError, Transaction};
use crate::store::{Batch, Key, Store, StoreError};
use crate::time::now_ms;
use actix::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

mod client_ids;
mod messages;
mod records;
mod session;
mod trade;

pub use client_ids::*;
pub use messages::*;
pub use records::*;
pub use session::*;
pub use trade::*;

/// Most messages a reconnecting session catches up on; older ones are paged over REST.
pub const MAX_CATCH_UP: usize = 10_000;

/// How many of a room's newest published messages stay in memory (up to twice as many
/// between trims); older ones are read from the store when asked for, so a room's memory
/// does not grow with its history.
pub const MESSAGES_KEPT: usize = 512;

pub struct Room {
    state: RoomSnapshot,
    /// The newest messages, ascending id: the last published ones (at most twice
    /// [`MESSAGES_KEPT`]) and, above `published`, those waiting for their flush. The
    /// store has them all.
    messages: Vec<StoredMessage>,
    /// The newest published message's id (0: none); readers see messages up to it.
    published: u64,
    /// How many messages are published.
    count: usize,
    /// The room's messages and each participant's unread ones (pending ones included),
    /// written with every change under [`Key::RoomCounts`]: a room list reads one record.
    counts: RoomCounts,
    /// The latest client message ids posted here, and the messages they made (at most
    /// [`SENT_IDS_KEPT`]; the store has every one within the retention).
    sent_ids: RecentIds,
    store: Store,
    /// Where the room publishes its events (the in-process [`Hub`], or another process's).
    fanout: Arc<dyn Fanout>,
    /// Told when a trade room closes, before the leave is answered.
    directory: Recipient<RoomClosed>,
    lease: Lease<Room>,
}

impl Room {
    pub fn restore(
        state: RoomSnapshot,
        store: Store,
        fanout: Arc<dyn Fanout>,
        directory: Recipient<RoomClosed>,
        lease: Lease<Room>,
    ) -> Result<Room, StoreError> {
        let all = Key::MessagesOf(state.id);
        let mut messages = store
            .iter_under_before::<StoredMessage>(&all, &Key::Message(state.id, u64::MAX))
            .take(MESSAGES_KEPT)
            .collect::<Result<Vec<_>, _>>()?;
        messages.reverse();
        let published = messages.last().map(|m| m.id).unwrap_or(0);
        let counts = match store.get::<RoomCounts>(&Key::RoomCounts(state.id))? {
            Some(counts) => counts,
            // No message yet (or a room older than the counts): count once.
            None => {
                let mut unread = BTreeMap::new();
                for p in state.participants.iter().filter(|p| p.active) {
                    let from = Key::Message(state.id, p.last_read.saturating_add(1));
                    let n =
                        store.count_under_from(&all, &from, |m: &StoredMessage| m.sender != p.user && !m.deleted)?;
                    unread.insert(p.user, n);
                }
                let counts = RoomCounts { messages: store.count_under(&all)? as u64, unread };
                store.put(&Key::RoomCounts(state.id), &counts)?;
                counts
            }
        };
        // Everything on disk is published now.
        let count = counts.messages as usize;
        let sent_ids = RecentIds::default();
        Ok(Room { state, messages, published, count, counts, sent_ids, store, fanout, directory, lease })
    }

    fn member(&self, user: u64) -> Result<&Participant, ChatError> {
        self.state.participant(user).ok_or(ChatError::NotParticipant)
    }

    /// The published messages kept in memory (the newest ones).
    fn visible(&self) -> &[StoredMessage] {
        let n = self.messages.partition_point(|m| m.id <= self.published);
        &self.messages[..n]
    }

    /// Every published message, newest first: those in memory, then older ones read
    /// from the store as the caller goes on.
    fn newest_first(&self) -> impl Iterator<Item = Result<StoredMessage, StoreError>> + '_ {
        let kept = self.visible();
        let older = (kept.len() < self.count).then(|| {
            let before = kept.first().map_or(self.published.saturating_add(1), |m| m.id);
            self.store.iter_under_before(&Key::MessagesOf(self.state.id), &Key::Message(self.state.id, before))
        });
        kept.iter().rev().cloned().map(Ok).chain(older.into_iter().flatten())
    }

    /// The index in memory of published message `id`, if it is kept there.
    fn position(&self, id: u64) -> Option<usize> {
        self.visible().binary_search_by_key(&id, |m| m.id).ok()
    }

    /// Published message `id`, from memory or the store.
    fn message(&self, id: u64) -> Result<Option<StoredMessage>, StoreError> {
        if id > self.published {
            return Ok(None);
        }
        match self.position(id) {
            Some(i) => Ok(Some(self.visible()[i].clone())),
            None => self.store.get(&Key::Message(self.state.id, id)),
        }
    }

    /// How many messages `user` has not read among the published ones.
    fn unread(&self, user: u64) -> u64 {
        let pending = self.messages.iter().filter(|m| m.id > self.published && m.sender != user).count();
        self.counts.unread.get(&user).copied().unwrap_or(0).saturating_sub(pending as u64)
    }

    /// Publish, in id order, every message up to `upto` not yet published.
    fn publish_through(&mut self, upto: u64) {
        if upto <= self.published {
            return;
        }
        let from = self.messages.partition_point(|m| m.id <= self.published);
        let group = room_group(self.state.id);
        for m in self.messages[from..].iter().take_while(|m| m.id <= upto) {
            let event = Event::new(ChatEvent::Message(m.event()));
            self.fanout.publish(group, &event);
            // A trade room also tells the receiver wherever they are in the app.
            if let Some(t) = self.state.trade.filter(|_| m.sender != 0) {
                let receiver = t.other(m.sender);
                tracing::info!(
                    "[ChatController.SendMessage] Broadcasting message to {group}. MessageId: {}, SenderId: {}, ReceiverId: {receiver}",
                    m.id,
                    m.sender
                );
                self.fanout.publish(super::hub::user_group(receiver), &event);
                tracing::info!(
                    "[ChatController.SendMessage] ✅ SignalR broadcast completed: {group} and user_{receiver}"
                );
            } else if let Some(t) = self.state.trade {
                // A system message goes to both parties.
                for user in [t.buyer, t.seller] {
                    self.fanout.publish(super::hub::user_group(user), &event);
                }
            } else if self.state.kind == RoomKind::Direct {
                // A direct room is one room whichever dialect reads it: like a trade room's,
                // its message reaches the other party wherever they are connected (each
                // session drops a second copy by message id).
                for p in self.state.participants.iter().filter(|p| p.active && p.user != m.sender) {
                    self.fanout.publish(super::hub::user_group(p.user), &event);
                }
            }
        }
        let published = self.messages[from..].iter().take_while(|m| m.id <= upto).count();
        self.published = upto;
        self.count += published;
        // Keep the newest published messages only; the store has the rest.
        let kept = self.visible().len();
        if kept > 2 * MESSAGES_KEPT {
            self.messages.drain(..kept - MESSAGES_KEPT);
        }
    }

    fn write_snapshot(&self, state: &RoomSnapshot) -> Result<(), StoreError> {
        self.store.put(&Key::Room(state.id), state)
    }

    /// Whether a participant's name or picture differ from what their latest token says
    /// (what [`Room::refresh_identity`] would change), without copying the room.
    fn identity_changed(state: &RoomSnapshot, who: &Author) -> bool {
        let p = state.participants.iter().find(|p| p.user == who.id);
        p.is_some_and(|p| p.name.as_ref() != Some(&who.name) || p.picture != who.picture)
    }

    /// Keep a participant's name and picture as their latest token says.
    fn refresh_identity(state: &mut RoomSnapshot, who: &Author) -> bool {
        match state.participants.iter_mut().find(|p| p.user == who.id) {
            Some(p) if p.name.as_ref() != Some(&who.name) || p.picture != who.picture => {
                p.name = Some(who.name.clone());
                p.picture = who.picture.clone();
                true
            }
            _ => false,
        }
    }

    /// Answer once everything written so far is durable.
    fn when_durable<T: 'static>(&self, value: Result<T, ChatError>) -> ResponseFuture<Result<T, ChatError>> {
        self.store.when_durable(value)
    }

    /// Once everything written so far is durable, publish the event to the room and answer.
    fn publish_when_durable<T: 'static>(
        &self,
        value: Result<(T, ChatEvent), ChatError>,
    ) -> ResponseActFuture<Self, Result<T, ChatError>> {
        let (v, event) = match value {
            Ok(x) => x,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let store = self.store.clone();
        Box::pin(fut::wrap_future::<_, Self>(async move { store.durable().await }).map(move |flushed, act, _| {
            flushed?;
            act.fanout.publish(room_group(act.state.id), &Event::new(event));
            Ok(v)
        }))
    }
}

impl Actor for Room {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(super::MAILBOX);
    }
    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        self.lease.stopping()
    }
}

/// What every room is activated with.
pub struct RoomsEnv {
    pub store: Store,
    /// Where rooms publish their events.
    pub fanout: Arc<dyn Fanout>,
    /// Told when a trade room closes.
    pub directory: Recipient<RoomClosed>,
}

impl Activated for Room {
    type Id = u64;
    type Env = RoomsEnv;
    const KIND: &'static str = "room";
    fn activate(id: &u64, env: &RoomsEnv, lease: Lease<Self>) -> Result<Option<Self>, StoreError> {
        let Some(snapshot) = env.store.get::<RoomSnapshot>(&Key::Room(*id))? else { return Ok(None) };
        Room::restore(snapshot, env.store.clone(), env.fanout.clone(), env.directory.clone(), lease).map(Some)
    }
    /// Messages written but not yet published (waiting for their flush).
    fn busy(&self) -> bool {
        self.messages.last().is_some_and(|m| m.id > self.published)
    }
    fn lease(&self) -> &Lease<Self> {
        &self.lease
    }
}

impl Handler<Deactivate> for Room {
    type Result = ();
    fn handle(&mut self, _: Deactivate, ctx: &mut Context<Self>) {
        deactivate(self, ctx)
    }
}

/// The room as `user` sees it (participants only).
#[derive(Message)]
#[rtype(result = "Result<RoomSnapshot, ChatError>")]
pub struct GetRoom {
    pub user: u64,
}

impl Handler<GetRoom> for Room {
    type Result = Result<RoomSnapshot, ChatError>;
    fn handle(&mut self, msg: GetRoom, _: &mut Context<Self>) -> Self::Result {
        self.member(msg.user)?;
        Ok(self.state.clone())
    }
}

/// A room in `user`'s room list.
#[derive(Debug, Clone)]
pub struct RoomSummary {
    pub room: RoomSnapshot,
    pub last_message: Option<StoredMessage>,
    pub unread: u64,
}

#[derive(Message)]
#[rtype(result = "Result<RoomSummary, ChatError>")]
pub struct Summary {
    pub user: u64,
}

impl Handler<Summary> for Room {
    type Result = Result<RoomSummary, ChatError>;
    fn handle(&mut self, msg: Summary, _: &mut Context<Self>) -> Self::Result {
        self.member(msg.user)?;
        let unread = self.unread(msg.user);
        let mut last_message = None;
        for m in self.newest_first() {
            let m = m?;
            if !m.deleted {
                last_message = Some(m);
                break;
            }
        }
        Ok(RoomSummary { room: self.state.clone(), last_message, unread })
    }
}

#[derive(Message)]
#[rtype(result = "Result<RoomSettings, ChatError>")]
pub struct GetSettings {
    pub user: u64,
}

impl Handler<GetSettings> for Room {
    type Result = Result<RoomSettings, ChatError>;
    fn handle(&mut self, msg: GetSettings, _: &mut Context<Self>) -> Self::Result {
        self.member(msg.user)?;
        Ok(self.state.settings.clone())
    }
}

#[derive(Message)]
#[rtype(result = "Result<RoomSettings, ChatError>")]
pub struct UpdateSettings {
    pub user: u64,
    pub patch: SettingsPatch,
}

impl Handler<UpdateSettings> for Room {
    type Result = ResponseFuture<Result<RoomSettings, ChatError>>;
    fn handle(&mut self, msg: UpdateSettings, _: &mut Context<Self>) -> Self::Result {
        let r = (|| {
            self.member(msg.user)?;
            let mut next = self.state.clone();
            let (s, p) = (&mut next.settings, msg.patch);
            if let Some(v) = p.notification_enabled {
                s.notification_enabled = v;
            }
            if let Some(v) = p.message_retention_days {
                s.message_retention_days = v;
            }
            if let Some(v) = p.auto_delete_enabled {
                s.auto_delete_enabled = v;
            }
            if let Some(v) = p.read_receipt_enabled {
                s.read_receipt_enabled = v;
            }
            next.updated_at = now_ms();
            self.write_snapshot(&next)?;
            self.state = next;
            Ok(self.state.settings.clone())
        })();
        self.when_durable(r)
    }
}

/// Told to the directory when a trade room closes (before the leave is answered): the
/// next request of its buyer about its listing opens a new room.
#[derive(Message)]
#[rtype(result = "Result<(), ChatError>")]
pub struct RoomClosed {
    pub room: u64,
    pub trade: TradeInfo,
}

/// Add a new room's first record to `batch` (the directory writes it with its own entries
/// for the room, in one batch; from then on only the room's actor writes it).
pub fn write_new_room(batch: &mut Batch, room: &RoomSnapshot) -> Result<(), StoreError> {
    batch.put(&Key::Room(room.id), room)
}

/// The rooms' address book: a room's actor, started from its record on first use (rooms
/// are many and mostly idle, so none starts before it is asked for).
pub type Rooms = ActorBook<Room>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::directory::Directory;

    fn person(id: u32, user: u64) -> Participant {
        let name = Some(format!("u{user}"));
        Participant { id, user, name, picture: None, joined_at: 1, last_read: 0, last_read_at: None, active: true }
    }

    fn start(store: &Store, snapshot: &RoomSnapshot) -> Addr<Room> {
        let directory = Directory::load(store.clone(), 100).expect("directory").start().recipient();
        let room = Room::restore(
            snapshot.clone(),
            store.clone(),
            Arc::new(crate::actors::hub::Hub::default()),
            directory,
            Lease::detached(),
        )
        .expect("restore");
        room.start()
    }

    fn ids(ms: &[StoredMessage]) -> Vec<u64> {
        ms.iter().map(|m| m.id).collect()
    }

    fn group(id: u64) -> RoomSnapshot {
        RoomSnapshot {
            id,
            name: Some("ids".into()),
            kind: RoomKind::Group,
            description: None,
            max_participants: 3,
            created_by: 1,
            active: true,
            created_at: 1,
            updated_at: 1,
            participants: vec![person(1, 1), person(2, 2)],
            settings: RoomSettings::default(),
            trade: None,
            closed_at: None,
        }
    }

    fn post(user: u64, text: &str, id: Option<&str>) -> PostMessage {
        PostMessage {
            from: Author { id: user, name: format!("u{user}"), picture: None },
            content: Some(text.into()),
            kind: "text".into(),
            reply_to: None,
            file: None,
            images: Vec::new(),
            system: false,
            client_msg_id: id.map(|id| ClientMsgId::try_from(id.to_string()).expect("an id")),
        }
    }

    /// One client message id of one user in one room makes one message: a retry gets it
    /// back (also from a room started again, which has it only in the store, and after
    /// more posts than the room remembers), the id with other content is refused, and
    /// another user's same id is another message.
    #[actix_rt::test]
    async fn a_client_message_id_makes_one_message() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let snapshot = group(5);
        let room = start(&store, &snapshot);
        let send = |p| room.send(p);
        let first = send(post(1, "hi", Some("c-1"))).await.expect("mailbox").expect("posted");
        assert!(!first.replayed);
        // Sent at once, before the first is durable: found in memory, answered alike.
        let (again, other) =
            futures_util::future::join(send(post(1, "hi", Some("c-1"))), send(post(2, "hi", Some("c-1")))).await;
        let again = again.expect("mailbox").expect("a retry");
        assert_eq!((again.replayed, again.message.id), (true, first.message.id));
        let other = other.expect("mailbox").expect("another user's id");
        assert!(!other.replayed && other.message.id != first.message.id);
        let refused = send(post(1, "hi, edited", Some("c-1"))).await.expect("mailbox");
        assert_eq!(refused, Err(ChatError::ClientIdReused));
        let list = |room: Addr<Room>| async move {
            let page = room.send(ListMessages { user: 1, page: 1, size: 100, since: None }).await;
            page.expect("mailbox").expect("page").messages.iter().map(|m| m.id).collect::<Vec<_>>()
        };
        assert_eq!(list(room.clone()).await, vec![first.message.id, other.message.id]);
        // More posts with ids than the room keeps in memory: the first id is read back.
        for i in 0..SENT_IDS_KEPT {
            send(post(1, "more", Some(&format!("m-{i}")))).await.expect("mailbox").expect("posted");
        }
        let again = send(post(1, "hi", Some("c-1"))).await.expect("mailbox").expect("a retry");
        assert_eq!((again.replayed, again.message.id), (true, first.message.id));
        // A room started again from the store.
        let restarted = start(&store, &snapshot);
        let again = restarted.send(post(1, "hi", Some("c-1"))).await.expect("mailbox").expect("a retry");
        assert_eq!((again.replayed, again.message.id), (true, first.message.id));
        assert_eq!(
            restarted.send(post(1, "other", Some("c-1"))).await.expect("mailbox"),
            Err(ChatError::ClientIdReused)
        );
        assert_eq!(list(restarted).await.len(), 2 + SENT_IDS_KEPT, "nothing posted twice");
        // The same id in another room is another message.
        let elsewhere = start(&store, &group(6));
        let there = elsewhere.send(post(1, "hi", Some("c-1"))).await.expect("mailbox").expect("posted");
        assert!(!there.replayed);
    }

    /// A write that fails (a post that also renames its sender, a read mark, an edit)
    /// changes nothing in memory: no message, no new name, the same unread counts; the
    /// same post succeeds once the store works again.
    #[actix_rt::test]
    async fn a_failed_write_leaves_the_room_as_it_was() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let room = start(&store, &group(7));
        let first = room.send(post(1, "hi", None)).await.expect("mailbox").expect("posted");
        let summary = || async { room.send(Summary { user: 2 }).await.expect("mailbox").expect("summary") };
        let before = summary().await;
        store.fail_writes(true);
        let mut renamed = post(1, "again", Some("c-1"));
        renamed.from.name = "new name".into();
        let failed = room.send(renamed).await.expect("mailbox");
        assert!(matches!(failed, Err(ChatError::Storage(_))), "{failed:?}");
        let read = room.send(MarkRead { from: Author { id: 2, name: "u2".into(), picture: None } }).await;
        assert!(matches!(read.expect("mailbox"), Err(ChatError::Storage(_))));
        let edit = room.send(EditMessage { user: 1, message: first.message.id, content: "edited".into() }).await;
        assert!(matches!(edit.expect("mailbox"), Err(ChatError::Storage(_))));
        let after = summary().await;
        assert_eq!(after.room, before.room, "the sender keeps their name");
        assert_eq!(after.unread, 1, "no message added, nothing marked read");
        assert_eq!(after.last_message, before.last_message, "the message is not edited");
        store.fail_writes(false);
        let mut renamed = post(1, "again", Some("c-1"));
        renamed.from.name = "new name".into();
        let posted = room.send(renamed).await.expect("mailbox").expect("posted");
        assert!(!posted.replayed, "the failed post left no trace of its client message id");
        let after = summary().await;
        assert_eq!(after.unread, 2);
        assert_eq!(after.room.participant(1).and_then(|p| p.name.clone()).as_deref(), Some("new name"));
    }

    /// A room with far more messages than it keeps in memory answers every read as if
    /// it kept them all (pages, `since`, search, edits and deletes of old messages, files,
    /// unread counts), before and after a restart.
    #[actix_rt::test]
    async fn a_long_room_reads_old_messages_from_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let snapshot = RoomSnapshot { name: Some("long".into()), max_participants: 2, ..group(9) };
        let room = start(&store, &snapshot);
        let n = 3 * MESSAGES_KEPT + 7;
        let posts = (0..n).map(|i| {
            let file = (i == 5).then(|| StoredFile {
                stored: "f5.png".into(),
                name: "f5.png".into(),
                size: 1,
                content_type: "image/png".into(),
            });
            let content = Some(if i % 7 == 0 { format!("Needle {i}") } else { format!("hay {i}") });
            room.send(PostMessage {
                from: Author { id: 1, name: "u1".into(), picture: None },
                content,
                kind: "text".into(),
                reply_to: None,
                file,
                images: Vec::new(),
                system: false,
                client_msg_id: None,
            })
        });
        let mut all = Vec::new();
        for m in futures_util::future::join_all(posts).await {
            all.push(m.expect("mailbox").expect("posted").message);
        }
        all.sort_by_key(|m| m.id);
        let first: Vec<u64> = all.iter().take(10).map(|m| m.id).collect();
        let id = |i: usize| first[i];
        let edited = room.send(EditMessage { user: 1, message: id(3), content: "edited".into() }).await;
        assert_eq!(edited.expect("mailbox").expect("an old message is edited").content.as_deref(), Some("edited"));
        let reply = PostMessage {
            from: Author { id: 2, name: "u2".into(), picture: None },
            content: Some("re".into()),
            kind: "text".into(),
            reply_to: Some(id(4)),
            file: None,
            images: Vec::new(),
            system: false,
            client_msg_id: None,
        };
        all.push(room.send(reply).await.expect("mailbox").expect("a reply to an old message").message);
        room.send(DeleteMessage { user: 1, message: id(4) }).await.expect("mailbox").expect("deleted");
        let total = all.len();

        for room in [room.clone(), start(&store, &snapshot)] {
            let list = |page, size, since| room.send(ListMessages { user: 2, page, size, since });
            let p = list(1, 50, None).await.expect("mailbox").expect("page");
            assert_eq!((p.total, p.has_more), (total, true));
            assert_eq!(ids(&p.messages), ids(&all[total - 50..]));
            // Every page of 50 (in memory, straddling, from the store), and one past the end.
            for page in 1..=total.div_ceil(50) + 1 {
                let p = list(page, 50, None).await.expect("mailbox").expect("page");
                let end = total.saturating_sub((page - 1) * 50);
                assert_eq!(ids(&p.messages), ids(&all[end.saturating_sub(50)..end]), "page {page}");
                assert_eq!(p.has_more, end > 50, "page {page}");
            }
            let p = list(usize::MAX, 50, None).await.expect("mailbox").expect("a page far past the end");
            assert!(p.messages.is_empty() && !p.has_more);
            let p = list(1, 20, Some(id(2))).await.expect("mailbox").expect("since");
            assert_eq!(ids(&p.messages), ids(&all[3..23]));
            assert_eq!(p.messages[0].content.as_deref(), Some("edited"));
            assert!(p.messages[1].deleted, "the deleted one keeps its place, emptied");
            assert!(p.has_more);
            let p = list(1, 20, Some(all[total - 5].id)).await.expect("mailbox").expect("since");
            assert_eq!((ids(&p.messages), p.has_more), (ids(&all[total - 4..]), false));

            let found = room.send(Search { user: 2, query: "needle".into(), page: 2, size: 10 }).await;
            let (hits, hits_total, more) = found.expect("mailbox").expect("search");
            let expected: Vec<u64> = all
                .iter()
                .rev()
                .filter(|m| m.content.as_deref().is_some_and(|c| c.starts_with("Needle")))
                .map(|m| m.id)
                .collect();
            assert_eq!((hits_total, more), (expected.len(), true));
            assert_eq!(hits.iter().map(|(m, _)| m.id).collect::<Vec<_>>(), expected[10..20]);
            assert_eq!(hits[0].1, "Needle");

            let file = room.send(FindFile { user: Some(2), stored: "f5.png".into() }).await.expect("mailbox");
            assert_eq!(file.expect("an old message's file").name, "f5.png");
            let summary = room.send(Summary { user: 2 }).await.expect("mailbox").expect("summary");
            assert_eq!(summary.unread, total as u64 - 2, "everything but the deleted one and user 2's own");
            assert_eq!(summary.last_message.map(|m| m.content), Some(Some("re".into())));
        }
    }
}
