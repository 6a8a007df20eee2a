//! What a live session asks of a room: subscribing with a gap-free catch-up, typing
//! notices, and the files it may download.

use super::*;

/// Subscribe a session to the room: it joins `room_{id}` and gets back every published
/// message after `since` (none without `since`), with no gap before the live stream.
#[derive(Message)]
#[rtype(result = "Result<(Vec<StoredMessage>, u64), ChatError>")]
pub struct Join {
    pub subscriber: Subscriber,
    pub since: Option<u64>,
}

/// The answer to a [`Join`]: the catch-up, and the newest message published when the
/// session joined (everything after it reaches the session live).
impl Handler<Join> for Room {
    type Result = Result<(Vec<StoredMessage>, u64), ChatError>;
    fn handle(&mut self, msg: Join, _: &mut Context<Self>) -> Self::Result {
        self.member(msg.subscriber.user)?;
        self.fanout.join(room_group(self.state.id), msg.subscriber);
        let newest = self.published;
        let Some(since) = msg.since else { return Ok((Vec::new(), newest)) };
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
        Ok((missed, newest))
    }
}

/// A session of another process (an edge) joins: the participant check, and the published
/// messages after `after` up to `upto` (the newest published one when `None`), oldest
/// first, at most [`MAX_CATCH_UP`] in all and about `max_bytes` per answer. The answer
/// says where it stopped (`upto`) and whether more follow; the edge asks again from
/// the last one it got. The edge subscribed to the room's events before asking, so
/// whatever is published after this answer reaches it that way.
#[derive(Message)]
#[rtype(result = "Result<CaughtUp, ChatError>")]
pub struct CatchUp {
    pub user: u64,
    pub after: Option<u64>,
    pub upto: Option<u64>,
    pub max_bytes: usize,
}

/// A page of a [`CatchUp`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaughtUp {
    pub messages: Vec<MessageEvent>,
    /// The newest message id the catch-up goes to.
    pub upto: u64,
    /// More messages follow up to `upto`.
    pub more: bool,
}

impl Handler<CatchUp> for Room {
    type Result = Result<CaughtUp, ChatError>;
    fn handle(&mut self, msg: CatchUp, _: &mut Context<Self>) -> Self::Result {
        self.member(msg.user)?;
        let upto = msg.upto.unwrap_or(self.published).min(self.published);
        let Some(after) = msg.after else { return Ok(CaughtUp { messages: Vec::new(), upto, more: false }) };
        // The window is the newest MAX_CATCH_UP up to `upto`, the same for every page
        // whatever is published meanwhile.
        let mut page = Vec::new();
        let mut counted = 0;
        for m in self.newest_first() {
            let m = m?;
            if m.id > upto {
                continue;
            }
            if m.id <= after || counted == MAX_CATCH_UP {
                break;
            }
            counted += 1;
            page.push(m);
        }
        page.reverse();
        let mut bytes = 0;
        let mut messages = Vec::new();
        let mut more = false;
        for m in page {
            let files = m.file.iter().chain(&m.images).map(|f| 64 + f.name.len() + f.stored.len()).sum::<usize>();
            let text = m.content.as_ref().map_or(0, String::len) + m.sender_picture.as_ref().map_or(0, String::len);
            let size = 128 + text + m.sender_name.len() + m.kind.len() + files;
            if bytes + size > msg.max_bytes && !messages.is_empty() {
                more = true;
                break;
            }
            bytes += size;
            messages.push(m.event());
        }
        Ok(CaughtUp { messages, upto, more })
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
        self.fanout.publish(room_group(self.state.id), &Event::skipping(event, msg.from.id));
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
        // The message that holds it, through the room's file index.
        let Some(id) = self.store.get::<u64>(&Key::RoomFile(self.state.id, msg.stored.clone()))? else {
            return Err(ChatError::MessageNotFound);
        };
        let m = self.message(id)?.filter(|m| !m.deleted).ok_or(ChatError::MessageNotFound)?;
        m.file.iter().chain(m.images.iter()).find(|f| f.stored == msg.stored).cloned().ok_or(ChatError::MessageNotFound)
    }
}
