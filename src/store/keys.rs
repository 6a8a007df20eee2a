//! The key layout (layout 5). A key is one byte naming its family, then its ids:
//!
//! - a number as 8 big-endian bytes, so that a family sorts by its first id, then its
//!   second, and the keys sharing leading ids are one prefix (a room's messages, a user's
//!   bookings);
//! - a string that ends the key as its bytes;
//! - a string followed by more ids as a 4-byte big-endian length and its bytes, so that no
//!   id can pass for the start of a longer one;
//! - an idempotency key, or a client's message id, as the first 16 bytes of its SHA-256
//!   ([`IdemHash`]).
//!
//! Keys are written on every request and sled keeps them in every leaf it rewrites, so
//! they are as short as they can be while staying in order: a reservation's key is 9
//! bytes, a ledger entry's 25 (layout 4 spelt them `resv/{id:020}` and
//! `idem/{user:020}/{key}` in UTF-8, 25 and 26 + the key's length; `migrate.rs` reads
//! those). The one exception is [`Key::Format`], `format` in every layout.

use sha2::{Digest, Sha256};

/// Every kind of record the store holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// The catalog of concerts and schedules (one snapshot).
    Catalog,
    /// A seat map's seats and its live reservations' ids, by seat map id.
    SeatMap(String),
    /// One reservation (a hold of one or more seats), by reservation id.
    Reservation(u64),
    /// A user's wallet: balance and monthly charges (nothing that grows with history).
    Wallet(u64),
    /// One idempotency-ledger entry: the first answer to a user's keyed request, by user
    /// and the hash of the `Idempotency-Key` (make one with [`Key::ledger`]).
    Ledger(u64, IdemHash),
    /// One committed wallet payment, by payment id.
    Payment(u64),
    /// Present while a reservation is live (or owes a refund), by seat map and
    /// reservation: what start-up loads, and what a seat map reads when it starts again.
    SeatMapLive(String, u64),
    /// One of a user's bookings, by user and reservation id (an index entry).
    UserBooking(u64, u64),
    /// One contract T payment request (transaction), by id.
    Transaction(u64),
    /// One of a trade room's payment requests, by room and transaction id (an index entry).
    RoomTransaction(u64, u64),
    /// The version of the store's layout.
    Format,
    /// The direct room of a pair of users (smaller id first).
    DirectRoom(u64, u64),
    /// The open trade room of a listing's buyer, by listing and buyer.
    TradeRoom(u64, u64),
    /// A user is in a room, by user and room (an index entry).
    Membership(u64, u64),
    /// A live place in the waiting queue, by place number.
    QueuePlace(u64),
    /// A stretch of places that left the waiting line at once, by its first place.
    QueueStep(u64),
    /// An admitted place that ended early (paid), by place number.
    QueueEnded(u64),
    /// The waiting queue's counters.
    QueueMeta,
    /// The waiting queue's settings (over the configured ones), and its pre-queue.
    QueueSettings,
    /// The test payment gateway's record of one charge, by the gateway-side key.
    GatewayCharge(String),
    /// A chat room: its settings, participants and read positions (one snapshot).
    Room(u64),
    /// One chat message, by room and message id.
    Message(u64, u64),
    /// A user's name and picture as their latest token said (for naming participants).
    Profile(u64),
    /// A ticket listing: its stock and the ids of its open payment requests.
    Listing(u64),
    /// A room's counts: its messages, and how many each participant has not read (kept
    /// by the room with every message, so that neither a list nor a start counts them).
    RoomCounts(u64),
    /// Which message of a room holds the file stored under this name.
    RoomFile(u64, String),
    /// The message a user's post with a client message id made in a room, by room, user
    /// and the hash of the id (make one with [`Key::sent_id`]); written once, with the
    /// message.
    SentId(u64, u64, IdemHash),
    /// A stateful SignalR connection of this process, by its connection token: what a
    /// reconnect after a restart resumes from (see `http::trade::signalr::parking`).
    HubConnection(String),
    /// Not a record: the prefix of every message of one room, for [`Store::scan_under`].
    ///
    /// [`Store::scan_under`]: super::Store::scan_under
    MessagesOf(u64),
    /// Not a record: the prefix of every booking of one user.
    BookingsOf(u64),
    /// Not a record: the prefix of every payment request of one trade room.
    TransactionsOf(u64),
    /// Not a record: the prefix of every room of one user.
    RoomsOf(u64),
    /// Not a record: the prefix of the live reservations of one seat map (exactly those:
    /// the seat map's id is length-prefixed). Its family is every live reservation.
    LiveOf(String),
}

/// The first 16 bytes of the SHA-256 of an `Idempotency-Key`: what a ledger key holds
/// instead of the client's text (up to 255 bytes), so that every ledger key is 25 bytes.
/// Two of one user's keys share a hash with a probability of about n²/2¹²⁹ for n keys
/// (the ledger keeps a user's keys for 25 hours); the entry's request fingerprint is
/// checked as for any reused key, so such a pair would be refused (422), not mixed up.
/// A client message id (up to 64 bytes) is hashed alike into [`Key::SentId`]: two of one
/// user's ids in one room sharing a hash within a day is as unlikely, and would be taken
/// for one id (its request fingerprint still tells another message from a retry).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdemHash(pub [u8; 16]);

impl IdemHash {
    pub fn of(idempotency_key: &str) -> IdemHash {
        let digest = Sha256::digest(idempotency_key.as_bytes());
        let mut out = [0; 16];
        out.copy_from_slice(&digest[..16]);
        IdemHash(out)
    }
}

impl std::fmt::Debug for IdemHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The family bytes. Each family has its own, so one byte is each family's prefix. They
/// are upper-case letters because every key of layout 4 began with a lower-case one: a
/// store part way through its migration tells each key's layout by its first byte.
mod family {
    pub const CATALOG: u8 = b'C';
    pub const SEAT_MAP: u8 = b'S';
    pub const RESERVATION: u8 = b'R';
    pub const WALLET: u8 = b'W';
    /// Idempotency.
    pub const LEDGER: u8 = b'I';
    pub const PAYMENT: u8 = b'P';
    pub const SEAT_MAP_LIVE: u8 = b'L';
    pub const USER_BOOKING: u8 = b'B';
    pub const TRANSACTION: u8 = b'T';
    pub const ROOM_TRANSACTION: u8 = b'X';
    pub const DIRECT_ROOM: u8 = b'D';
    /// Exchange.
    pub const TRADE_ROOM: u8 = b'E';
    /// Joined.
    pub const MEMBERSHIP: u8 = b'J';
    pub const QUEUE_PLACE: u8 = b'Q';
    pub const QUEUE_META: u8 = b'U';
    /// Hop: a stretch of places that left the line at once.
    pub const QUEUE_STEP: u8 = b'H';
    /// Done early.
    pub const QUEUE_ENDED: u8 = b'Z';
    /// Knobs.
    pub const QUEUE_SETTINGS: u8 = b'K';
    pub const GATEWAY_CHARGE: u8 = b'G';
    pub const ROOM: u8 = b'O';
    pub const MESSAGE: u8 = b'M';
    /// Numbers.
    pub const ROOM_COUNTS: u8 = b'N';
    pub const ROOM_FILE: u8 = b'F';
    pub const PROFILE: u8 = b'Y';
    pub const LISTING: u8 = b'A';
    /// Vouched: a client message id, and the message it made.
    pub const SENT_ID: u8 = b'V';
    /// Every upper-case letter is taken: the families after these are other characters
    /// that no layout-4 key began with (those were all lower-case).
    pub const HUB_CONNECTION: u8 = b'@';
}

/// The one key every layout spells alike, so that any build can tell which layout a
/// store is in (layout 4 and before read it as `format` too).
pub(super) const FORMAT_KEY: &[u8] = b"format";

/// Builds a key: the family byte, then the ids in order.
struct Builder(Vec<u8>);

impl Builder {
    fn new(family: u8) -> Builder {
        let mut v = Vec::with_capacity(25);
        v.push(family);
        Builder(v)
    }
    fn num(mut self, n: u64) -> Builder {
        self.0.extend_from_slice(&n.to_be_bytes());
        self
    }
    /// A string followed by more ids: its length first.
    fn sized(mut self, s: &str) -> Builder {
        // Saturating is never reached: ids come from bounded requests, far below 4 GiB.
        let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    /// A string that ends the key.
    fn last(mut self, s: &[u8]) -> Builder {
        self.0.extend_from_slice(s);
        self
    }
    fn done(self) -> Vec<u8> {
        self.0
    }
}

/// Reads a key's ids back, refusing anything but the exact shape.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn num(&mut self) -> Option<u64> {
        let (head, rest) = self.0.split_first_chunk::<8>()?;
        self.0 = rest;
        Some(u64::from_be_bytes(*head))
    }
    fn sized(&mut self) -> Option<String> {
        let (len, rest) = self.0.split_first_chunk::<4>()?;
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return None;
        }
        let (s, rest) = rest.split_at(len);
        self.0 = rest;
        String::from_utf8(s.to_vec()).ok()
    }
    fn last(&mut self) -> Option<String> {
        let s = String::from_utf8(self.0.to_vec()).ok()?;
        self.0 = &[];
        Some(s)
    }
    fn hash(&mut self) -> Option<IdemHash> {
        let (head, rest) = self.0.split_first_chunk::<16>()?;
        self.0 = rest;
        Some(IdemHash(*head))
    }
    /// The value read, if nothing is left over.
    fn end<T>(&self, value: T) -> Option<T> {
        self.0.is_empty().then_some(value)
    }
}

impl Key {
    /// The ledger entry of `user`'s `idempotency_key`.
    pub fn ledger(user: u64, idempotency_key: &str) -> Key {
        Key::Ledger(user, IdemHash::of(idempotency_key))
    }

    /// The record of the message `user` posted in `room` with the client message id
    /// `client_msg_id`.
    pub fn sent_id(room: u64, user: u64, client_msg_id: &str) -> Key {
        Key::SentId(room, user, IdemHash::of(client_msg_id))
    }

    pub(crate) fn bytes(&self) -> Vec<u8> {
        use family::*;
        let b = Builder::new;
        match self {
            Key::Catalog => b(CATALOG).done(),
            Key::SeatMap(id) => b(SEAT_MAP).last(id.as_bytes()).done(),
            Key::Reservation(id) => b(RESERVATION).num(*id).done(),
            Key::Wallet(user) => b(WALLET).num(*user).done(),
            Key::QueueMeta => b(QUEUE_META).done(),
            Key::QueueSettings => b(QUEUE_SETTINGS).done(),
            Key::QueuePlace(seq) => b(QUEUE_PLACE).num(*seq).done(),
            Key::QueueStep(seq) => b(QUEUE_STEP).num(*seq).done(),
            Key::QueueEnded(seq) => b(QUEUE_ENDED).num(*seq).done(),
            Key::GatewayCharge(k) => b(GATEWAY_CHARGE).last(k.as_bytes()).done(),
            Key::Ledger(user, k) => b(LEDGER).num(*user).last(&k.0).done(),
            Key::Payment(id) => b(PAYMENT).num(*id).done(),
            Key::SeatMapLive(seat_map, id) => b(SEAT_MAP_LIVE).sized(seat_map).num(*id).done(),
            Key::LiveOf(seat_map) => b(SEAT_MAP_LIVE).sized(seat_map).done(),
            Key::UserBooking(user, r) => b(USER_BOOKING).num(*user).num(*r).done(),
            Key::BookingsOf(user) => b(USER_BOOKING).num(*user).done(),
            Key::Transaction(id) => b(TRANSACTION).num(*id).done(),
            Key::RoomTransaction(room, tx) => b(ROOM_TRANSACTION).num(*room).num(*tx).done(),
            Key::TransactionsOf(room) => b(ROOM_TRANSACTION).num(*room).done(),
            Key::Format => FORMAT_KEY.to_vec(),
            Key::DirectRoom(a, c) => b(DIRECT_ROOM).num(*a).num(*c).done(),
            Key::TradeRoom(l, buyer) => b(TRADE_ROOM).num(*l).num(*buyer).done(),
            Key::Membership(u, r) => b(MEMBERSHIP).num(*u).num(*r).done(),
            Key::RoomsOf(u) => b(MEMBERSHIP).num(*u).done(),
            Key::Room(id) => b(ROOM).num(*id).done(),
            Key::RoomCounts(id) => b(ROOM_COUNTS).num(*id).done(),
            Key::RoomFile(room, name) => b(ROOM_FILE).num(*room).last(name.as_bytes()).done(),
            Key::Profile(id) => b(PROFILE).num(*id).done(),
            Key::Listing(id) => b(LISTING).num(*id).done(),
            Key::Message(room, id) => b(MESSAGE).num(*room).num(*id).done(),
            Key::SentId(room, user, h) => b(SENT_ID).num(*room).num(*user).last(&h.0).done(),
            Key::MessagesOf(room) => b(MESSAGE).num(*room).done(),
            Key::HubConnection(token) => b(HUB_CONNECTION).last(token.as_bytes()).done(),
        }
    }

    /// The prefix shared by every key of this key's family: its family byte.
    pub(crate) fn family_prefix(&self) -> Vec<u8> {
        match self {
            Key::Format => FORMAT_KEY.to_vec(),
            _ => vec![self.bytes()[0]],
        }
    }

    pub(crate) fn parse(bytes: &[u8]) -> Option<Key> {
        use family::*;
        if bytes == FORMAT_KEY {
            return Some(Key::Format);
        }
        let (&family, rest) = bytes.split_first()?;
        let mut r = Reader(rest);
        let key = match family {
            CATALOG => Key::Catalog,
            QUEUE_META => Key::QueueMeta,
            QUEUE_SETTINGS => Key::QueueSettings,
            QUEUE_PLACE => Key::QueuePlace(r.num()?),
            QUEUE_STEP => Key::QueueStep(r.num()?),
            QUEUE_ENDED => Key::QueueEnded(r.num()?),
            SEAT_MAP => Key::SeatMap(r.last()?),
            GATEWAY_CHARGE => Key::GatewayCharge(r.last()?),
            RESERVATION => Key::Reservation(r.num()?),
            WALLET => Key::Wallet(r.num()?),
            PAYMENT => Key::Payment(r.num()?),
            TRANSACTION => Key::Transaction(r.num()?),
            ROOM => Key::Room(r.num()?),
            ROOM_COUNTS => Key::RoomCounts(r.num()?),
            PROFILE => Key::Profile(r.num()?),
            LISTING => Key::Listing(r.num()?),
            LEDGER => Key::Ledger(r.num()?, r.hash()?),
            SEAT_MAP_LIVE => Key::SeatMapLive(r.sized()?, r.num()?),
            USER_BOOKING => Key::UserBooking(r.num()?, r.num()?),
            ROOM_TRANSACTION => Key::RoomTransaction(r.num()?, r.num()?),
            DIRECT_ROOM => Key::DirectRoom(r.num()?, r.num()?),
            TRADE_ROOM => Key::TradeRoom(r.num()?, r.num()?),
            MEMBERSHIP => Key::Membership(r.num()?, r.num()?),
            MESSAGE => Key::Message(r.num()?, r.num()?),
            ROOM_FILE => Key::RoomFile(r.num()?, r.last()?),
            SENT_ID => Key::SentId(r.num()?, r.num()?, r.hash()?),
            HUB_CONNECTION => Key::HubConnection(r.last()?),
            _ => return None,
        };
        r.end(key)
    }
}

#[cfg(test)]
mod tests {
    use super::Key;

    fn records() -> Vec<Key> {
        vec![
            Key::Catalog,
            Key::QueueMeta,
            Key::QueueSettings,
            Key::SeatMap("perf_001".into()),
            Key::SeatMap(String::new()),
            Key::Reservation(42),
            Key::Wallet(7),
            Key::QueuePlace(3),
            Key::QueueStep(4),
            Key::QueueEnded(5),
            Key::GatewayCharge("i0do0nHZSn4TZr0tKOa9-0".into()),
            Key::ledger(123, "retry/1"),
            Key::Payment(9),
            Key::SeatMapLive("perf_001".into(), 10),
            Key::SeatMapLive("a/b".into(), 11),
            Key::SeatMapLive(String::new(), u64::MAX),
            Key::UserBooking(1, 2),
            Key::Transaction(11),
            Key::RoomTransaction(12, 13),
            Key::Format,
            Key::DirectRoom(1, 2),
            Key::TradeRoom(3, 4),
            Key::Membership(5, 6),
            Key::Room(8),
            Key::RoomCounts(8),
            Key::RoomFile(8, "a/b.png".into()),
            Key::Profile(8),
            Key::Listing(3),
            Key::Message(8, 123),
            Key::sent_id(8, 7, "client-1"),
            Key::HubConnection("0123abcd.1f".into()),
        ]
    }

    #[test]
    fn keys_round_trip() {
        for k in records() {
            assert_eq!(Key::parse(&k.bytes()), Some(k.clone()), "{k:?}");
        }
    }

    /// The migration from layout 4 tells the layouts apart by the first byte.
    #[test]
    fn no_key_begins_as_a_layout_4_key_does() {
        for k in records() {
            let first = k.bytes()[0];
            assert!(k == Key::Format || !first.is_ascii_lowercase(), "{k:?}");
        }
    }

    #[test]
    fn each_family_has_its_own_byte() {
        let mut seen = std::collections::HashMap::new();
        for k in records() {
            let family = std::mem::discriminant(&k);
            let byte = k.family_prefix();
            assert_eq!(*seen.entry(byte).or_insert(family), family, "{k:?} shares its family byte");
        }
    }

    #[test]
    fn numbers_sort_and_prefixes_scan() {
        let (a, b) = (Key::Message(1, 255).bytes(), Key::Message(1, 256).bytes());
        assert!(a < b, "message ids sort as numbers");
        assert!(Key::Message(1, u64::MAX).bytes() < Key::Message(2, 0).bytes());
        assert!(Key::Message(1, 7).bytes().starts_with(&Key::MessagesOf(1).bytes()));
        assert!(!Key::Message(10, 7).bytes().starts_with(&Key::MessagesOf(1).bytes()));
        assert!(Key::UserBooking(4, 9).bytes().starts_with(&Key::BookingsOf(4).bytes()));
        assert!(Key::Membership(4, 9).bytes().starts_with(&Key::RoomsOf(4).bytes()));
        assert!(Key::RoomTransaction(4, 9).bytes().starts_with(&Key::TransactionsOf(4).bytes()));
        // A seat map's live entries are exactly its own, whatever the ids look like.
        assert!(Key::SeatMapLive("1".into(), 9).bytes().starts_with(&Key::LiveOf("1".into()).bytes()));
        assert!(!Key::SeatMapLive("12".into(), 9).bytes().starts_with(&Key::LiveOf("1".into()).bytes()));
        assert!(!Key::SeatMapLive("1/2".into(), 9).bytes().starts_with(&Key::LiveOf("1".into()).bytes()));
        assert_eq!(Key::SeatMapLive("a".into(), 1).family_prefix(), Key::LiveOf(String::new()).family_prefix());
    }

    #[test]
    fn keys_are_short() {
        assert_eq!(Key::Reservation(u64::MAX).bytes().len(), 9);
        assert_eq!(Key::ledger(1, &"k".repeat(255)).bytes().len(), 25);
        assert_eq!(Key::SeatMapLive("1234".into(), 1).bytes().len(), 17);
        assert_eq!(Key::sent_id(1, 2, &"k".repeat(64)).bytes().len(), 33);
    }

    #[test]
    fn ledger_keys_are_per_user_and_key() {
        assert_eq!(Key::ledger(1, "a"), Key::ledger(1, "a"));
        assert_ne!(Key::ledger(1, "a"), Key::ledger(1, "b"));
        assert_ne!(Key::ledger(1, "a"), Key::ledger(2, "a"));
    }

    #[test]
    fn sent_ids_are_per_room_user_and_id() {
        assert_eq!(Key::sent_id(1, 2, "a"), Key::sent_id(1, 2, "a"));
        assert_ne!(Key::sent_id(1, 2, "a"), Key::sent_id(1, 2, "b"));
        assert_ne!(Key::sent_id(1, 2, "a"), Key::sent_id(1, 3, "a"), "another user's");
        assert_ne!(Key::sent_id(1, 2, "a"), Key::sent_id(9, 2, "a"), "another room's");
        assert_ne!(Key::sent_id(1, 2, "a").bytes()[0], Key::ledger(2, "a").bytes()[0], "not a ledger entry");
    }

    #[test]
    fn malformed_keys_are_refused() {
        assert_eq!(Key::parse(b""), None);
        assert_eq!(Key::parse(b"resv/00000000000000000042"), None, "layout 4's text is not layout 5");
        let mut long = Key::Reservation(1).bytes();
        long.push(0);
        assert_eq!(Key::parse(&long), None);
        let short = &Key::Message(1, 2).bytes()[..12];
        assert_eq!(Key::parse(short), None);
        let short = Key::sent_id(1, 2, "a").bytes();
        assert_eq!(Key::parse(&short[..short.len() - 1]), None, "a hash one byte short");
        let mut lying = Key::SeatMapLive("ab".into(), 1).bytes();
        lying[4] = 200; // a length past the end
        assert_eq!(Key::parse(&lying), None);
    }
}
