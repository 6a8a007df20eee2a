//! A room's messages: pages, posting (durable before published), edits and deletes,
//! read positions and search. Older messages than the room keeps in memory are read from
//! the store (see [`Room::newest_first`]).

use super::*;

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
        let kept = self.visible();
        let mut page: Vec<StoredMessage> = if skip >= total {
            Vec::new()
        } else if skip + msg.size <= kept.len() || kept.len() == total {
            kept.iter().rev().skip(skip).take(msg.size).cloned().collect()
        } else {
            // Deeper than memory: skip in the store without decoding what is skipped.
            let (before, skip) = match kept.first() {
                Some(first) if skip >= kept.len() => (first.id, skip - kept.len()),
                _ => (self.published.saturating_add(1), skip),
            };
            let (all, before) = (Key::MessagesOf(self.state.id), Key::Message(self.state.id, before));
            self.store.iter_under_before_skipping(&all, &before, skip).take(msg.size).collect::<Result<_, _>>()?
        };
        page.reverse();
        Ok(MessagePage { messages: page, total, has_more: start > 0 })
    }
}

/// Post a message; answered (with the stored message) once it is durable and published.
/// With a client message id already used by its sender here, nothing is posted: the answer
/// is the message the id made (see [`ClientMsgId`]).
#[derive(Message)]
#[rtype(result = "Result<Posted, ChatError>")]
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
    /// The client's id for this post (sockets only): one id of a user in a room makes one
    /// message.
    pub client_msg_id: Option<ClientMsgId>,
}

/// What a [`PostMessage`] came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posted {
    pub message: StoredMessage,
    /// The post's client message id had made `message` before: nothing was stored or
    /// published now, and only the sender is to be told (again).
    pub replayed: bool,
}

impl Room {
    /// Post `msg`, or find the message its client message id made.
    fn append(&mut self, msg: PostMessage) -> Result<Posted, ChatError> {
        if !msg.system {
            self.member(msg.from.id)?;
        }
        // A retry is answered whatever changed since the first try: the room closed, or
        // the message replied to was deleted.
        let once = match msg.client_msg_id {
            Some(id) => {
                let print = fingerprint(msg.content.as_deref(), &msg.kind, msg.reply_to);
                if let Some(message) = self.seen(msg.from.id, &id, &print)? {
                    return Ok(Posted { message, replayed: true });
                }
                Some((id, print))
            }
            None => None,
        };
        if !msg.system && self.state.closed_at.is_some() {
            return Err(ChatError::RoomClosed);
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
        for f in m.file.iter().chain(m.images.iter()) {
            batch.put(&Key::RoomFile(m.room, f.stored.clone()), &m.id)?;
        }
        let mut counts = self.counts.clone();
        counts.messages += 1;
        for p in self.state.participants.iter().filter(|p| p.active && p.user != m.sender) {
            *counts.unread.entry(p.user).or_default() += 1;
        }
        batch.put(&Key::RoomCounts(m.room), &counts)?;
        // The room's snapshot is rewritten (and copied) only when the sender's name or
        // picture changed; its last activity is its newest message.
        let next = if !msg.system && Self::identity_changed(&self.state, &msg.from) {
            let mut next = self.state.clone();
            Self::refresh_identity(&mut next, &msg.from);
            next.updated_at = now;
            batch.put(&Key::Room(next.id), &next)?;
            Some(next)
        } else {
            None
        };
        // The id's record goes with the message: a crash keeps both or neither.
        let sent = match once {
            Some((id, print)) => {
                let record = SentId { message: m.id, at: now, fingerprint: print };
                batch.put(&Key::sent_id(m.room, m.sender, id.as_str()), &record)?;
                Some((id, record))
            }
            None => None,
        };
        self.store.apply(batch)?;
        if let Some((id, record)) = sent {
            self.sent_ids.remember(m.sender, id, record);
        }
        if let Some(next) = next {
            self.state = next;
        }
        self.counts = counts;
        self.messages.push(m.clone());
        Ok(Posted { message: m, replayed: false })
    }
}

impl Handler<PostMessage> for Room {
    type Result = ResponseActFuture<Self, Result<Posted, ChatError>>;
    fn handle(&mut self, msg: PostMessage, _: &mut Context<Self>) -> Self::Result {
        let posted = match self.append(msg) {
            Ok(p) => p,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let store = self.store.clone();
        Box::pin(fut::wrap_future::<_, Self>(async move { store.durable().await }).map(move |flushed, act, _| {
            flushed?;
            // Everything up to this message is on disk: tell everyone, in order. A replay
            // tells no one: its message was published when it was first posted, or will be
            // by the post that wrote it, which this flush covers too.
            if !posted.replayed {
                act.publish_through(posted.message.id);
            }
            Ok(posted)
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
