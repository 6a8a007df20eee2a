//! Client message ids: a post over a socket may carry an id of the client's choosing
//! ([`ClientMsgId`]), and one id of one user in one room makes one message.
//!
//! A post whose id its sender already used in the room within [`SENT_ID_RETENTION`] stores
//! nothing: the room answers with the message the id made (as it is now, an edit or a
//! delete since included), publishes nothing, and the session sends it to its own client
//! only. The same id with another request (content, kind or reply) is refused
//! ([`ChatError::ClientIdReused`]). So a client that lost the answer to a post (a dropped
//! socket, an edge that gave up waiting for the core) sends it again with the same id and
//! learns what became of it, and the room shows it once.
//!
//! # Written once, with the message
//! Each id is one record, [`Key::SentId`] (room, user, a hash of the id), holding the
//! message's id, when it was posted and a fingerprint of the request. It is written in the
//! batch that writes the message, so after a crash both are there or neither is: a retry of
//! an acknowledged post finds its record whether the room's actor stopped when idle or the
//! server was killed meanwhile.
//!
//! # Bounded
//! In memory a room keeps the records of its last [`SENT_IDS_KEPT`] posts with an id (a
//! retry comes soon after the first try), and reads the store for any other: the store is
//! the authority, the memory spares a quick retry the read. On disk a record older than
//! [`SENT_ID_RETENTION`] no longer counts, and the [`Janitor`](crate::actors::janitor::Janitor)
//! removes such records every hour, as it does the idempotency ledger's run-out entries:
//! what stays is one record per post with an id of the last 26 hours at most.

use super::*;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// How long a client message id stays bound to its message (the issue asks for at least
/// 24 hours; the idempotency ledger keeps its keys as long).
pub const SENT_ID_RETENTION: Duration = Duration::from_secs(25 * 3600);

/// How many of a room's latest records of client message ids stay in memory.
pub const SENT_IDS_KEPT: usize = 32;

/// The longest client message id, in bytes (each one visible ASCII character).
pub const CLIENT_MSG_ID_MAX: usize = 64;

/// A client's id for one of its posts: 1 to [`CLIENT_MSG_ID_MAX`] visible ASCII
/// characters (0x21 to 0x7E: no space, no control character, nothing outside ASCII).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClientMsgId(String);

/// Why a client message id is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be 1 to 64 visible ASCII characters (0x21 to 0x7E)")]
pub struct BadClientMsgId;

impl TryFrom<String> for ClientMsgId {
    type Error = BadClientMsgId;
    fn try_from(id: String) -> Result<Self, BadClientMsgId> {
        let visible = id.bytes().all(|b| (0x21..=0x7e).contains(&b));
        if id.is_empty() || id.len() > CLIENT_MSG_ID_MAX || !visible {
            return Err(BadClientMsgId);
        }
        Ok(ClientMsgId(id))
    }
}

impl From<ClientMsgId> for String {
    fn from(id: ClientMsgId) -> String {
        id.0
    }
}

impl ClientMsgId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a post asked for, hashed: its content, kind and reply (the first 16 bytes of a
/// SHA-256 over them, each length-prefixed so that no two requests read alike).
pub type PostFingerprint = [u8; 16];

/// The fingerprint of a post of `content` of `kind`, replying to `reply_to`.
pub fn fingerprint(content: Option<&str>, kind: &str, reply_to: Option<u64>) -> PostFingerprint {
    let mut h = Sha256::new();
    h.update((kind.len() as u64).to_be_bytes());
    h.update(kind.as_bytes());
    match content {
        Some(c) => {
            h.update([1]);
            h.update((c.len() as u64).to_be_bytes());
            h.update(c.as_bytes());
        }
        None => h.update([0]),
    }
    match reply_to {
        Some(r) => {
            h.update([1]);
            h.update(r.to_be_bytes());
        }
        None => h.update([0]),
    }
    let mut out = [0; 16];
    out.copy_from_slice(&h.finalize()[..16]);
    out
}

/// The record of a client message id ([`Key::SentId`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentId {
    /// The message the id made.
    pub message: u64,
    /// When it was posted (ms since the epoch).
    pub at: u64,
    pub fingerprint: PostFingerprint,
}

impl SentId {
    /// Still binding its id at `now`.
    fn live(&self, now: u64) -> bool {
        self.at.saturating_add(crate::time::ms(SENT_ID_RETENTION)) > now
    }
}

/// The room's memory of its latest client message ids: (sender, id, record), newest last.
#[derive(Debug, Default)]
pub struct RecentIds(std::collections::VecDeque<(u64, ClientMsgId, SentId)>);

impl RecentIds {
    fn find(&self, user: u64, id: &ClientMsgId) -> Option<&SentId> {
        self.0.iter().rev().find(|(u, i, _)| *u == user && i == id).map(|(_, _, r)| r)
    }

    /// Keep `record` of `user`'s `id` (once it is in the store), forgetting the oldest
    /// past [`SENT_IDS_KEPT`].
    pub(super) fn remember(&mut self, user: u64, id: ClientMsgId, record: SentId) {
        if self.0.len() >= SENT_IDS_KEPT {
            self.0.pop_front();
        }
        self.0.push_back((user, id, record));
    }
}

impl Room {
    /// What `user`'s client message id `id` made in this room within the retention, for a
    /// post whose request has `fingerprint`: the message to answer again (`None`: the id is
    /// new, post), or [`ChatError::ClientIdReused`] if the id made a message of another
    /// request.
    pub(super) fn seen(
        &self,
        user: u64,
        id: &ClientMsgId,
        fingerprint: &PostFingerprint,
    ) -> Result<Option<StoredMessage>, ChatError> {
        let record = match self.sent_ids.find(user, id) {
            Some(r) => Some(r.clone()),
            None => self.store.get::<SentId>(&Key::sent_id(self.state.id, user, id.as_str()))?,
        };
        let Some(record) = record.filter(|r| r.live(now_ms())) else { return Ok(None) };
        if record.fingerprint != *fingerprint {
            return Err(ChatError::ClientIdReused);
        }
        // The message may still wait for its flush: it is in memory then.
        let kept = self.messages.binary_search_by_key(&record.message, |m| m.id).ok();
        let message = match kept {
            Some(i) => Some(self.messages[i].clone()),
            None => self.store.get::<StoredMessage>(&Key::Message(self.state.id, record.message))?,
        };
        // Written in one batch with its record: a record without its message is a store
        // that lost a write.
        match message {
            Some(m) => Ok(Some(m)),
            None => Err(ChatError::Storage(format!("message {} of a client message id is missing", record.message))),
        }
    }
}

/// Remove every record of a client message id older than [`SENT_ID_RETENTION`]; returns
/// how many. A record rewritten meanwhile (an id used again after its record ran out) is
/// left alone. A room that still remembers a removed record in memory does not count it
/// either (it is past the retention there too).
pub fn purge_expired_sent_ids(store: &Store) -> Result<usize, StoreError> {
    let now = now_ms();
    store.remove_where::<SentId>(&Key::sent_id(0, 0, ""), |r| !r.live(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_msg_ids_are_1_to_64_visible_ascii_characters() {
        for good in ["a", "!", "~", "0123456789abcdef-ABCDEF_{}[]", &"x".repeat(64)] {
            assert_eq!(ClientMsgId::try_from(good.to_string()).map(String::from), Ok(good.to_string()), "{good:?}");
        }
        for bad in ["", " ", "a b", "tab\t", "new\nline", "\u{7f}", "é", "아이디", &"x".repeat(65)] {
            assert_eq!(ClientMsgId::try_from(bad.to_string()), Err(BadClientMsgId), "{bad:?}");
        }
        // What crosses NATS is checked as it is read.
        let wire = bincode::serde::encode_to_vec("a b", bincode::config::standard()).expect("encode");
        let read = bincode::serde::decode_from_slice::<ClientMsgId, _>(&wire, bincode::config::standard());
        assert!(read.is_err(), "a bad id does not decode");
    }

    #[test]
    fn fingerprints_tell_requests_apart() {
        let f = fingerprint(Some("hi"), "text", None);
        assert_eq!(f, fingerprint(Some("hi"), "text", None));
        assert_ne!(f, fingerprint(Some("hi!"), "text", None), "content");
        assert_ne!(f, fingerprint(Some("hi"), "voice", None), "kind");
        assert_ne!(f, fingerprint(Some("hi"), "text", Some(1)), "reply");
        assert_ne!(f, fingerprint(None, "text", None), "no content");
        assert_ne!(fingerprint(Some("ab"), "c", None), fingerprint(Some("b"), "ca", None), "lengths keep fields apart");
    }

    #[test]
    fn records_past_the_retention_are_purged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let fresh = SentId { message: 1, at: now_ms(), fingerprint: [1; 16] };
        let old = SentId { at: now_ms() - crate::time::ms(SENT_ID_RETENTION) - 1, ..fresh.clone() };
        store.put(&Key::sent_id(1, 2, "fresh"), &fresh).expect("put");
        store.put(&Key::sent_id(1, 2, "old"), &old).expect("put");
        assert!(!old.live(now_ms()) && fresh.live(now_ms()));
        assert_eq!(purge_expired_sent_ids(&store).expect("purge"), 1);
        assert!(store.contains(&Key::sent_id(1, 2, "fresh")).expect("contains"));
        assert!(!store.contains(&Key::sent_id(1, 2, "old")).expect("contains"));
    }
}
