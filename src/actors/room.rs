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

/// Most messages a reconnecting session catches up on; older ones are paged over REST.
pub const MAX_CATCH_UP: usize = 10_000;

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

/// Who is acting, as the token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    pub id: u64,
    pub name: String,
    pub picture: Option<String>,
}

pub struct Room {
    state: RoomSnapshot,
    /// Every message, ascending id; those above `published` are waiting for their flush.
    messages: Vec<StoredMessage>,
    published: u64,
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
        let mut messages: Vec<StoredMessage> =
            store.scan_under(&Key::MessagesOf(state.id))?.into_iter().map(|(_, m)| m).collect();
        messages.sort_by_key(|m| m.id);
        let published = messages.last().map(|m| m.id).unwrap_or(0);
        Ok(Room { state, messages, published, store, hub, directory })
    }

    fn member(&self, user: u64) -> Result<&Participant, ChatError> {
        self.state.participant(user).ok_or(ChatError::NotParticipant)
    }

    /// Published messages (what readers may see).
    fn visible(&self) -> &[StoredMessage] {
        let n = self.messages.partition_point(|m| m.id <= self.published);
        &self.messages[..n]
    }

    fn position(&self, id: u64) -> Option<usize> {
        self.visible().binary_search_by_key(&id, |m| m.id).ok()
    }

    fn unread(&self, p: &Participant) -> u64 {
        let v = self.visible();
        let from = v.partition_point(|m| m.id <= p.last_read);
        v[from..].iter().filter(|m| m.sender != p.user && !m.deleted).count() as u64
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
        self.published = upto;
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
        let p = self.member(msg.user)?;
        let unread = self.unread(p);
        let last_message = self.visible().iter().rev().find(|m| !m.deleted).cloned();
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
        let v = self.visible();
        let total = v.len();
        if let Some(since) = msg.since {
            let from = v.partition_point(|m| m.id <= since);
            let page: Vec<_> = v[from..].iter().take(msg.size).cloned().collect();
            let has_more = from + page.len() < total;
            return Ok(MessagePage { messages: page, total, has_more });
        }
        let end = total.saturating_sub((msg.page - 1).saturating_mul(msg.size));
        let start = end.saturating_sub(msg.size);
        Ok(MessagePage { messages: v[start..end].to_vec(), total, has_more: start > 0 })
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
            let target = self.position(r).map(|i| &self.visible()[i]);
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
        // The room's snapshot is rewritten only when the sender's name or picture changed;
        // its last activity is its newest message.
        let mut next = self.state.clone();
        if !msg.system && Self::refresh_identity(&mut next, &msg.from) {
            next.updated_at = now;
            batch.put(&Key::Room(next.id), &next)?;
        }
        self.store.apply(batch)?;
        self.state = next;
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
        let i = self.position(id).ok_or(ChatError::MessageNotFound)?;
        let mut m = self.messages[i].clone();
        if m.deleted {
            return Err(ChatError::MessageNotFound);
        }
        if m.sender != user {
            return Err(ChatError::NotSender);
        }
        f(&mut m);
        m.updated_at = now_ms();
        self.store.put(&Key::Message(m.room, m.id), &m)?;
        self.messages[i] = m.clone();
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
            self.write_snapshot(&next)?;
            self.state = next;
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
        let hits: Vec<(&StoredMessage, String)> = self
            .visible()
            .iter()
            .rev()
            .filter(|m| !m.deleted)
            .filter_map(|m| m.content.as_deref().and_then(|c| find_ignoring_case(c, &needle)).map(|h| (m, h)))
            .collect();
        let total = hits.len();
        let from = (msg.page - 1).saturating_mul(msg.size);
        let page: Vec<_> = hits.into_iter().skip(from).take(msg.size).map(|(m, h)| (m.clone(), h)).collect();
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
        let v = self.visible();
        let from = v.partition_point(|m| m.id <= since).max(v.len().saturating_sub(MAX_CATCH_UP));
        Ok(v[from..].to_vec())
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
        self.visible()
            .iter()
            .filter(|m| !m.deleted)
            .flat_map(|m| m.file.iter().chain(m.images.iter()))
            .find(|f| f.stored == msg.stored)
            .cloned()
            .ok_or(ChatError::MessageNotFound)
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
    use super::find_ignoring_case;

    #[test]
    fn highlights_keep_the_original_case() {
        assert_eq!(find_ignoring_case("안녕하세요! Hello World", "hello"), Some("Hello".into()));
        assert_eq!(find_ignoring_case("안녕하세요! 반갑습니다", "안녕"), Some("안녕".into()));
        assert_eq!(find_ignoring_case("abc", "abcd"), None);
        assert_eq!(find_ignoring_case("xxABCxx", "bc"), Some("BC".into()));
    }
}
