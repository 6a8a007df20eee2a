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

use super::book::Arbiters;
use super::directory::RoomClosed;
use super::hub::{room_group, ChatEvent, Event, FileRef, Hub, MessageEvent, Subscriber};
use super::ticket_listing::{ListingBook, RequestPayment, TradeError, Transaction};
use crate::store::{Batch, Key, Store, StoreError};
use crate::time::now_ms;
use actix::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most messages a reconnecting session catches up on; older ones are paged over REST.
pub const MAX_CATCH_UP: usize = 10_000;

/// How many of a room's newest published messages stay in memory (up to twice as many
/// between trims); older ones are read from the store when asked for, so a room's memory
/// does not grow with its history.
pub const MESSAGES_KEPT: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoomKind {
    Direct,
    Group,
    /// A contract T room about a ticket listing: one buyer and the seller.
    Trade,
}

impl RoomKind {
    /// As contract C names it (a trade room is a direct room there).
    pub fn as_str(self) -> &'static str {
        match self {
            RoomKind::Direct | RoomKind::Trade => "direct",
            RoomKind::Group => "group",
        }
    }
}

/// What a trade room is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeInfo {
    pub listing: u64,
    pub buyer: u64,
    pub seller: u64,
}

impl TradeInfo {
    /// The other party of `user` (the receiver of what `user` sends).
    pub fn other(&self, user: u64) -> u64 {
        if user == self.buyer {
            self.seller
        } else {
            self.buyer
        }
    }
}

/// The text of contract T's room-closed event and refusals.
pub const ROOM_CLOSED: &str = "채팅방이 종료되었습니다.";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    /// The participant's number in the room (1, 2, ...).
    pub id: u32,
    pub user: u64,
    /// As their latest token said; `None` while the server has never seen a token of
    /// theirs (the HTTP edge names them then).
    pub name: Option<String>,
    pub picture: Option<String>,
    pub joined_at: u64,
    /// The newest message id this participant has read.
    pub last_read: u64,
    pub last_read_at: Option<u64>,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSettings {
    pub notification_enabled: bool,
    pub message_retention_days: u32,
    pub auto_delete_enabled: bool,
    pub read_receipt_enabled: bool,
}

impl Default for RoomSettings {
    fn default() -> Self {
        RoomSettings {
            notification_enabled: true,
            message_retention_days: 365,
            auto_delete_enabled: false,
            read_receipt_enabled: true,
        }
    }
}

/// A change to some settings.
#[derive(Debug, Clone, Default)]
pub struct SettingsPatch {
    pub notification_enabled: Option<bool>,
    pub message_retention_days: Option<u32>,
    pub auto_delete_enabled: Option<bool>,
    pub read_receipt_enabled: Option<bool>,
}

/// Everything about a room but its messages (persisted as one snapshot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSnapshot {
    pub id: u64,
    pub name: Option<String>,
    pub kind: RoomKind,
    pub description: Option<String>,
    pub max_participants: u32,
    pub created_by: u64,
    pub active: bool,
    pub created_at: u64,
    pub updated_at: u64,
    pub participants: Vec<Participant>,
    pub settings: RoomSettings,
    /// Set for a trade room.
    pub trade: Option<TradeInfo>,
    /// When a party left a trade room: it is closed, and left out of room lists.
    pub closed_at: Option<u64>,
}

impl RoomSnapshot {
    pub fn participant(&self, user: u64) -> Option<&Participant> {
        self.participants.iter().find(|p| p.user == user && p.active)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFile {
    /// The name under the room's file directory.
    pub stored: String,
    /// The name it was uploaded with.
    pub name: String,
    pub size: u64,
    pub content_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    pub id: u64,
    pub room: u64,
    pub sender: u64,
    pub sender_name: String,
    pub sender_picture: Option<String>,
    pub content: Option<String>,
    pub kind: String,
    pub file: Option<StoredFile>,
    /// Contract T's images (up to 3).
    pub images: Vec<StoredFile>,
    pub reply_to: Option<u64>,
    pub created_at: u64,
    pub edited_at: Option<u64>,
    pub deleted: bool,
    pub updated_at: u64,
}

impl StoredMessage {
    pub fn file_url(room: u64, stored: &str) -> String {
        format!("/chat/files/{room}/{stored}")
    }

    /// The unsigned path of an image; it is served only through a signed link.
    pub fn image_path(room: u64, stored: &str) -> String {
        format!("/api/chat/images/{room}/{stored}")
    }

    pub fn event(&self) -> MessageEvent {
        MessageEvent {
            room: self.room,
            id: self.id,
            sender: self.sender,
            sender_name: self.sender_name.clone(),
            sender_picture: self.sender_picture.clone(),
            content: self.content.clone(),
            kind: self.kind.clone(),
            file: self.file.as_ref().map(|f| FileRef {
                url: Self::file_url(self.room, &f.stored),
                name: f.name.clone(),
                size: f.size,
            }),
            images: self
                .images
                .iter()
                .map(|f| FileRef { url: Self::image_path(self.room, &f.stored), name: f.name.clone(), size: f.size })
                .collect(),
            reply_to: self.reply_to,
            created_at: self.created_at,
            edited_at: self.edited_at,
            updated_at: self.updated_at,
            deleted: self.deleted,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    #[error("room not found")]
    RoomNotFound,
    #[error("you are not a participant of this room")]
    NotParticipant,
    #[error("message not found")]
    MessageNotFound,
    #[error("only the sender may change this message")]
    NotSender,
    /// The room is closed: nothing more may be posted.
    #[error("the room is closed")]
    RoomClosed,
    /// A reply to a message that is not this room's.
    #[error("reply_to_message_id {0} is not a message of this room")]
    NotInRoom(u64),
    #[error("storage failure: {0}")]
    Storage(String),
}

impl From<StoreError> for ChatError {
    fn from(e: StoreError) -> Self {
        ChatError::Storage(e.to_string())
    }
}

/// A room's counts, kept with every change (see [`Key::RoomCounts`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomCounts {
    /// Messages written (deleted ones keep their place and count).
    pub messages: u64,
    /// Per participant, the messages of others they have not read (deleted ones not).
    pub unread: BTreeMap<u64, u64>,
}

/// Who is acting, as the token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    pub id: u64,
    pub name: String,
    pub picture: Option<String>,
}

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
    store: Store,
    hub: Hub,
    /// Told when a trade room closes, before the leave is answered.
    directory: Recipient<RoomClosed>,
}

impl Room {
    pub fn restore(
        state: RoomSnapshot,
        store: Store,
        hub: Hub,
        directory: Recipient<RoomClosed>,
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
                RoomCounts { messages: store.count_under(&all)? as u64, unread }
            }
        };
        // Everything on disk is published now.
        let count = counts.messages as usize;
        Ok(Room { state, messages, published, count, counts, store, hub, directory })
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
            self.hub.publish(&group, &event);
            // A trade room also tells the receiver wherever they are in the app.
            if let Some(t) = self.state.trade.filter(|_| m.sender != 0) {
                let receiver = t.other(m.sender);
                tracing::info!(
                    "[ChatController.SendMessage] Broadcasting message to {group}. MessageId: {}, SenderId: {}, ReceiverId: {receiver}",
                    m.id,
                    m.sender
                );
                self.hub.publish(&super::hub::user_group(receiver), &event);
                tracing::info!(
                    "[ChatController.SendMessage] ✅ SignalR broadcast completed: {group} and user_{receiver}"
                );
            } else if let Some(t) = self.state.trade {
                // A system message goes to both parties.
                for user in [t.buyer, t.seller] {
                    self.hub.publish(&super::hub::user_group(user), &event);
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
            act.hub.publish(&room_group(act.state.id), &Event::new(event));
            Ok(v)
        }))
    }
}

impl Actor for Room {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(super::MAILBOX);
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

/// A page of messages: page 1 is the newest `size`, ascending within the page; or, with
/// `since`, the first `size` messages after it.
#[derive(Message)]
#[rtype(result = "Result<MessagePage, ChatError>")]
pub struct ListMessages {
    pub user: u64,
    pub page: usize,
    pub size: usize,
    pub since: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct MessagePage {
    pub messages: Vec<StoredMessage>,
    pub total: usize,
    pub has_more: bool,
}

impl Handler<ListMessages> for Room {
    type Result = Result<MessagePage, ChatError>;
    fn handle(&mut self, msg: ListMessages, _: &mut Context<Self>) -> Self::Result {
        self.member(msg.user)?;
        let total = self.count;
        if let Some(since) = msg.since {
            let kept = self.visible();
            let page: Vec<StoredMessage> = if kept.len() == total || kept.first().is_some_and(|m| m.id <= since) {
                let from = kept.partition_point(|m| m.id <= since);
                kept[from..].iter().take(msg.size).cloned().collect()
            } else {
                let (all, from) =
                    (Key::MessagesOf(self.state.id), Key::Message(self.state.id, since.saturating_add(1)));
                let published = self.published;
                self.store
                    .iter_under_from::<StoredMessage>(&all, &from)
                    .take_while(|m| m.as_ref().map_or(true, |m| m.id <= published))
                    .take(msg.size)
                    .collect::<Result<_, _>>()?
            };
            // The page runs to the newest published message, or there is more after it.
            let has_more = page.last().is_some_and(|m| m.id < self.published);
            return Ok(MessagePage { messages: page, total, has_more });
        }
        let skip = (msg.page - 1).saturating_mul(msg.size);
        let start = total.saturating_sub(skip).saturating_sub(msg.size);
        let mut page = self.newest_first().skip(skip).take(msg.size).collect::<Result<Vec<_>, _>>()?;
        page.reverse();
        Ok(MessagePage { messages: page, total, has_more: start > 0 })
    }
}

/// Post a message; answered (with the stored message) once it is durable and published.
#[derive(Message)]
#[rtype(result = "Result<StoredMessage, ChatError>")]
pub struct PostMessage {
    pub from: Author,
    pub content: Option<String>,
    pub kind: String,
    pub reply_to: Option<u64>,
    pub file: Option<StoredFile>,
    pub images: Vec<StoredFile>,
    /// Posted by the server itself (a listing's notices): no membership check, and
    /// allowed in a closed room. `from.id` 0 means no person sent it.
    pub system: bool,
}

impl Room {
    fn append(&mut self, msg: PostMessage) -> Result<StoredMessage, ChatError> {
        if !msg.system {
            self.member(msg.from.id)?;
            if self.state.closed_at.is_some() {
                return Err(ChatError::RoomClosed);
            }
        }
        if let Some(r) = msg.reply_to {
            let target = self.message(r)?;
            if target.is_none_or(|m| m.deleted) {
                return Err(ChatError::NotInRoom(r));
            }
        }
        let now = now_ms();
        // A notice posted on a participant's behalf without a name (a purchase card) is
        // signed with the name the room knows them by.
        let (sender_name, sender_picture) = match (msg.from.name.is_empty(), self.state.participant(msg.from.id)) {
            (true, Some(p)) => (p.name.clone().unwrap_or_default(), p.picture.clone()),
            _ => (msg.from.name.clone(), msg.from.picture.clone()),
        };
        let m = StoredMessage {
            id: self.store.next_id()?,
            room: self.state.id,
            sender: msg.from.id,
            sender_name,
            sender_picture,
            content: msg.content,
            kind: msg.kind,
            file: msg.file,
            images: msg.images,
            reply_to: msg.reply_to,
            created_at: now,
            edited_at: None,
            deleted: false,
            updated_at: now,
        };
        let mut batch = Batch::default();
        batch.put(&Key::Message(m.room, m.id), &m)?;
        let mut counts = self.counts.clone();
        counts.messages += 1;
        for p in self.state.participants.iter().filter(|p| p.active && p.user != m.sender) {
            *counts.unread.entry(p.user).or_default() += 1;
        }
        batch.put(&Key::RoomCounts(m.room), &counts)?;
        // The room's snapshot is rewritten only when the sender's name or picture changed;
        // its last activity is its newest message.
        let mut next = self.state.clone();
        if !msg.system && Self::refresh_identity(&mut next, &msg.from) {
            next.updated_at = now;
            batch.put(&Key::Room(next.id), &next)?;
        }
        self.store.apply(batch)?;
        self.state = next;
        self.counts = counts;
        self.messages.push(m.clone());
        Ok(m)
    }
}

impl Handler<PostMessage> for Room {
    type Result = ResponseActFuture<Self, Result<StoredMessage, ChatError>>;
    fn handle(&mut self, msg: PostMessage, _: &mut Context<Self>) -> Self::Result {
        let m = match self.append(msg) {
            Ok(m) => m,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let store = self.store.clone();
        Box::pin(fut::wrap_future::<_, Self>(async move { store.durable().await }).map(move |flushed, act, _| {
            flushed?;
            // Everything up to this message is on disk: tell everyone, in order.
            act.publish_through(m.id);
            Ok(m)
        }))
    }
}

/// Edit a message's text (its sender only).
#[derive(Message)]
#[rtype(result = "Result<StoredMessage, ChatError>")]
pub struct EditMessage {
    pub user: u64,
    pub message: u64,
    pub content: String,
}

/// Delete a message (its sender only); it keeps its place, emptied.
#[derive(Message)]
#[rtype(result = "Result<StoredMessage, ChatError>")]
pub struct DeleteMessage {
    pub user: u64,
    pub message: u64,
}

impl Room {
    /// Change one of `user`'s messages with `f` and persist it; returns it and its event.
    fn change(
        &mut self,
        user: u64,
        id: u64,
        f: impl FnOnce(&mut StoredMessage),
        event: impl FnOnce(&StoredMessage) -> ChatEvent,
    ) -> Result<(StoredMessage, ChatEvent), ChatError> {
        self.member(user)?;
        let mut m = self.message(id)?.ok_or(ChatError::MessageNotFound)?;
        if m.deleted {
            return Err(ChatError::MessageNotFound);
        }
        if m.sender != user {
            return Err(ChatError::NotSender);
        }
        f(&mut m);
        m.updated_at = now_ms();
        let mut batch = Batch::default();
        batch.put(&Key::Message(m.room, m.id), &m)?;
        // A deleted message is no longer unread for those who had not read it.
        let mut counts = self.counts.clone();
        if m.deleted {
            for p in self.state.participants.iter().filter(|p| p.active && p.user != m.sender && p.last_read < m.id) {
                if let Some(n) = counts.unread.get_mut(&p.user) {
                    *n = n.saturating_sub(1);
                }
            }
            batch.put(&Key::RoomCounts(m.room), &counts)?;
        }
        self.store.apply(batch)?;
        self.counts = counts;
        if let Some(i) = self.position(id) {
            self.messages[i] = m.clone();
        }
        let event = event(&m);
        Ok((m, event))
    }
}

impl Handler<EditMessage> for Room {
    type Result = ResponseActFuture<Self, Result<StoredMessage, ChatError>>;
    fn handle(&mut self, msg: EditMessage, _: &mut Context<Self>) -> Self::Result {
        let content = msg.content;
        let r = self.change(
            msg.user,
            msg.message,
            |m| {
                m.content = Some(content);
                m.edited_at = Some(now_ms());
            },
            |m| ChatEvent::MessageUpdated(m.event()),
        );
        self.publish_when_durable(r)
    }
}

impl Handler<DeleteMessage> for Room {
    type Result = ResponseActFuture<Self, Result<StoredMessage, ChatError>>;
    fn handle(&mut self, msg: DeleteMessage, _: &mut Context<Self>) -> Self::Result {
        let room = self.state.id;
        let r = self.change(
            msg.user,
            msg.message,
            |m| {
                m.deleted = true;
                m.content = Some(String::new());
                m.file = None;
            },
            |m| ChatEvent::MessageDeleted { room, message: m.id },
        );
        self.publish_when_durable(r)
    }
}

/// Mark everything published so far as read by `from`.
#[derive(Message)]
#[rtype(result = "Result<(u64, u64), ChatError>")]
pub struct MarkRead {
    pub from: Author,
}

impl Handler<MarkRead> for Room {
    type Result = ResponseActFuture<Self, Result<(u64, u64), ChatError>>;
    fn handle(&mut self, msg: MarkRead, _: &mut Context<Self>) -> Self::Result {
        let r = (|| {
            self.member(msg.from.id)?;
            let now = now_ms();
            let last = self.published;
            let mut next = self.state.clone();
            if let Some(p) = next.participants.iter_mut().find(|p| p.user == msg.from.id) {
                p.last_read = p.last_read.max(last);
                p.last_read_at = Some(now);
            }
            Self::refresh_identity(&mut next, &msg.from);
            // What is left unread: messages still waiting for their flush.
            let mut counts = self.counts.clone();
            let pending = self.messages.iter().filter(|m| m.id > last && m.sender != msg.from.id).count();
            counts.unread.insert(msg.from.id, pending as u64);
            let mut batch = Batch::default();
            batch.put(&Key::Room(next.id), &next)?;
            batch.put(&Key::RoomCounts(next.id), &counts)?;
            self.store.apply(batch)?;
            self.state = next;
            self.counts = counts;
            let read = ChatEvent::MessageRead {
                room: self.state.id,
                user: msg.from.id,
                user_name: msg.from.name.clone(),
                last_read: last,
                read_at: now,
            };
            Ok(((last, now), read))
        })();
        self.publish_when_durable(r)
    }
}

/// Messages whose text contains `query` (case-insensitive), newest first.
#[derive(Message)]
#[rtype(result = "Result<(Vec<(StoredMessage, String)>, usize, bool), ChatError>")]
pub struct Search {
    pub user: u64,
    pub query: String,
    pub page: usize,
    pub size: usize,
}

/// Where `needle` (already lowercase) occurs in `hay`, ignoring case: the matched text.
fn find_ignoring_case(hay: &str, needle: &str) -> Option<String> {
    let lower: Vec<(usize, char)> = hay.char_indices().collect();
    let needle: Vec<char> = needle.chars().collect();
    if needle.is_empty() {
        return None;
    }
    'outer: for start in 0..lower.len() {
        let mut end = start;
        for n in &needle {
            let Some((_, c)) = lower.get(end) else { continue 'outer };
            if c.to_lowercase().ne(n.to_lowercase()) {
                continue 'outer;
            }
            end += 1;
        }
        let from = lower[start].0;
        let to = lower.get(end).map(|(i, _)| *i).unwrap_or(hay.len());
        return Some(hay[from..to].to_string());
    }
    None
}

impl Handler<Search> for Room {
    type Result = Result<(Vec<(StoredMessage, String)>, usize, bool), ChatError>;
    fn handle(&mut self, msg: Search, _: &mut Context<Self>) -> Self::Result {
        self.member(msg.user)?;
        let needle = msg.query.to_lowercase();
        // Every hit is counted (the answer has the total); only the page's are kept.
        let from = (msg.page - 1).saturating_mul(msg.size);
        let (mut total, mut page) = (0, Vec::new());
        for m in self.newest_first() {
            let m = m?;
            if m.deleted {
                continue;
            }
            let Some(hit) = m.content.as_deref().and_then(|c| find_ignoring_case(c, &needle)) else { continue };
            if total >= from && page.len() < msg.size {
                page.push((m, hit));
            }
            total += 1;
        }
        let has_more = from + page.len() < total;
        Ok((page, total, has_more))
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

/// Subscribe a session to the room: it joins `room_{id}` and gets back every published
/// message after `since` (none without `since`), with no gap before the live stream.
#[derive(Message)]
#[rtype(result = "Result<Vec<StoredMessage>, ChatError>")]
pub struct Join {
    pub subscriber: Subscriber,
    pub since: Option<u64>,
}

impl Handler<Join> for Room {
    type Result = Result<Vec<StoredMessage>, ChatError>;
    fn handle(&mut self, msg: Join, _: &mut Context<Self>) -> Self::Result {
        self.member(msg.subscriber.user)?;
        self.hub.join(&room_group(self.state.id), msg.subscriber);
        let Some(since) = msg.since else { return Ok(Vec::new()) };
        // The newest MAX_CATCH_UP messages after `since` at most.
        let mut missed = Vec::new();
        for m in self.newest_first().take(MAX_CATCH_UP) {
            let m = m?;
            if m.id <= since {
                break;
            }
            missed.push(m);
        }
        missed.reverse();
        Ok(missed)
    }
}

/// Tell the room's other sessions that `from` is (not) typing.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Typing {
    pub from: Author,
    pub is_typing: bool,
}

impl Handler<Typing> for Room {
    type Result = ();
    fn handle(&mut self, msg: Typing, _: &mut Context<Self>) {
        if self.member(msg.from.id).is_err() {
            return;
        }
        let event = ChatEvent::Typing {
            room: self.state.id,
            user: msg.from.id,
            user_name: msg.from.name,
            is_typing: msg.is_typing,
        };
        self.hub.publish(&room_group(self.state.id), &Event::skipping(event, msg.from.id));
    }
}

/// A stored file of the room, for a participant.
#[derive(Message)]
#[rtype(result = "Result<StoredFile, ChatError>")]
pub struct FindFile {
    /// The participant asking (`None`: the caller holds a signed link).
    pub user: Option<u64>,
    pub stored: String,
}

impl Handler<FindFile> for Room {
    type Result = Result<StoredFile, ChatError>;
    fn handle(&mut self, msg: FindFile, _: &mut Context<Self>) -> Self::Result {
        if let Some(user) = msg.user {
            self.member(user)?;
        }
        for m in self.newest_first() {
            let m = m?;
            if m.deleted {
                continue;
            }
            if let Some(f) = m.file.iter().chain(m.images.iter()).find(|f| f.stored == msg.stored) {
                return Ok(f.clone());
            }
        }
        Err(ChatError::MessageNotFound)
    }
}

/// Close a trade room because `user` (a party) left: it stays readable but takes no new
/// messages, drops out of room lists, and `RoomUpdated` goes to the room and both parties.
#[derive(Message)]
#[rtype(result = "Result<RoomSnapshot, ChatError>")]
pub struct Leave {
    pub user: u64,
}

impl Handler<Leave> for Room {
    type Result = ResponseActFuture<Self, Result<RoomSnapshot, ChatError>>;
    fn handle(&mut self, msg: Leave, _: &mut Context<Self>) -> Self::Result {
        let r = (|| {
            self.member(msg.user)?;
            if self.state.closed_at.is_none() {
                let mut next = self.state.clone();
                next.closed_at = Some(now_ms());
                next.updated_at = now_ms();
                self.write_snapshot(&next)?;
                self.state = next;
            }
            Ok(self.state.clone())
        })();
        let r = match r {
            Ok(s) => s,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let store = self.store.clone();
        // The directory forgets the open trade room (so the buyer's next request opens a
        // new one) before anyone hears that this one closed.
        let directory = self.directory.clone();
        let closed = r.trade.map(|trade| RoomClosed { room: r.id, trade });
        let settled = async move {
            store.durable().await?;
            if let Some(closed) = closed {
                directory
                    .send(closed)
                    .await
                    .map_err(|e| ChatError::Storage(format!("directory unavailable: {e}")))??;
            }
            Ok::<_, ChatError>(())
        };
        Box::pin(fut::wrap_future::<_, Self>(settled).map(move |settled, act, _| {
            settled?;
            let event = Event::new(ChatEvent::RoomUpdated {
                room: r.id,
                event: "RoomClosed".into(),
                status: "closed".into(),
                message: ROOM_CLOSED.into(),
            });
            act.hub.publish(&room_group(r.id), &event);
            for p in &r.participants {
                act.hub.publish(&super::hub::user_group(p.user), &event);
            }
            Ok(r)
        }))
    }
}

/// A party of a trade room asks for payment of `quantity` tickets. The room checks that it
/// is a trade room, open, and that the caller is a party, then reserves at the listing
/// before it handles any other message: a `Leave` sent meanwhile waits, so a payment
/// request never lands in a room that had closed. The outer error is the room's, the inner
/// the listing's.
#[derive(Message)]
#[rtype(result = "Result<Result<Transaction, TradeError>, ChatError>")]
pub struct RequestTradePayment {
    pub user: u64,
    pub quantity: u32,
    pub listings: ListingBook,
}

impl Handler<RequestTradePayment> for Room {
    type Result = AtomicResponse<Self, Result<Result<Transaction, TradeError>, ChatError>>;
    fn handle(&mut self, msg: RequestTradePayment, _: &mut Context<Self>) -> Self::Result {
        let checked = (|| {
            self.member(msg.user)?;
            let trade = self.state.trade.ok_or(ChatError::RoomNotFound)?;
            if self.state.closed_at.is_some() {
                return Err(ChatError::RoomClosed);
            }
            Ok(trade)
        })();
        let trade = match checked {
            Ok(t) => t,
            Err(e) => return AtomicResponse::new(Box::pin(fut::ready(Err(e)))),
        };
        let Some(listing) = msg.listings.get(trade.listing) else {
            return AtomicResponse::new(Box::pin(fut::ready(Ok(Err(TradeError::ListingNotFound)))));
        };
        let request = RequestPayment { room: self.state.id, buyer: trade.buyer, quantity: msg.quantity };
        AtomicResponse::new(Box::pin(fut::wrap_future::<_, Self>(listing.send(request)).map(|answer, _, _| {
            Ok(answer.unwrap_or_else(|e| Err(TradeError::Storage(format!("listing unavailable: {e}")))))
        })))
    }
}

/// The rooms' address book: a room's actor, started from its record on first use (rooms
/// are many and mostly idle, so none starts before it is asked for).
#[derive(Clone)]
pub struct Rooms(std::sync::Arc<RoomsInner>);

struct RoomsInner {
    by_id: dashmap::DashMap<u64, Addr<Room>>,
    store: Store,
    hub: Hub,
    directory: Recipient<RoomClosed>,
    arbiters: Arbiters,
}

impl Rooms {
    pub fn new(store: Store, hub: Hub, directory: Recipient<RoomClosed>, arbiters: Arbiters) -> Rooms {
        Rooms(std::sync::Arc::new(RoomsInner { by_id: Default::default(), store, hub, directory, arbiters }))
    }

    /// The actor of room `id`; `None` if there is no such room.
    pub fn get(&self, id: u64) -> Result<Option<Addr<Room>>, StoreError> {
        if let Some(a) = self.0.by_id.get(&id) {
            return Ok(Some(a.clone()));
        }
        let Some(snapshot) = self.0.store.get::<RoomSnapshot>(&Key::Room(id))? else { return Ok(None) };
        let entry = self.0.by_id.entry(id);
        let addr = entry.or_try_insert_with(|| {
            let room = Room::restore(snapshot, self.0.store.clone(), self.0.hub.clone(), self.0.directory.clone())?;
            Ok::<_, StoreError>(Room::start_in_arbiter(&self.0.arbiters.for_key(&("room", id)), |_| room))
        })?;
        Ok(Some(addr.clone()))
    }
}

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
        let room = Room::restore(snapshot.clone(), store.clone(), Hub::default(), directory).expect("restore");
        room.start()
    }

    fn ids(ms: &[StoredMessage]) -> Vec<u64> {
        ms.iter().map(|m| m.id).collect()
    }

    /// A room with far more messages than it keeps in memory answers every read as if
    /// it kept them all (pages, `since`, search, edits and deletes of old messages, files,
    /// unread counts), before and after a restart.
    #[actix_rt::test]
    async fn a_long_room_reads_old_messages_from_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let snapshot = RoomSnapshot {
            id: 9,
            name: Some("long".into()),
            kind: RoomKind::Group,
            description: None,
            max_participants: 2,
            created_by: 1,
            active: true,
            created_at: 1,
            updated_at: 1,
            participants: vec![person(1, 1), person(2, 2)],
            settings: RoomSettings::default(),
            trade: None,
            closed_at: None,
        };
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
            })
        });
        let mut all = Vec::new();
        for m in futures_util::future::join_all(posts).await {
            all.push(m.expect("mailbox").expect("posted"));
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
        };
        all.push(room.send(reply).await.expect("mailbox").expect("a reply to an old message"));
        room.send(DeleteMessage { user: 1, message: id(4) }).await.expect("mailbox").expect("deleted");
        let total = all.len();

        for room in [room.clone(), start(&store, &snapshot)] {
            let list = |page, size, since| room.send(ListMessages { user: 2, page, size, since });
            let p = list(1, 50, None).await.expect("mailbox").expect("page");
            assert_eq!((p.total, p.has_more), (total, true));
            assert_eq!(ids(&p.messages), ids(&all[total - 50..]));
            let p = list(30, 50, None).await.expect("mailbox").expect("page");
            assert_eq!(ids(&p.messages), ids(&all[total - 1500..total - 1450]));
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

    #[test]
    fn highlights_keep_the_original_case() {
        assert_eq!(find_ignoring_case("안녕하세요! Hello World", "hello"), Some("Hello".into()));
        assert_eq!(find_ignoring_case("안녕하세요! 반갑습니다", "안녕"), Some("안녕".into()));
        assert_eq!(find_ignoring_case("abc", "abcd"), None);
        assert_eq!(find_ignoring_case("xxABCxx", "bc"), Some("BC".into()));
    }
}
