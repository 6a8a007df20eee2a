//! The key layout. Keys are `family/id` in UTF-8 so that a family scans as one prefix
//! and a key reads well in a debugger; numeric ids are zero-padded so they sort.

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
    /// One idempotency-ledger entry: the first answer to a user's keyed request.
    Ledger(u64, String),
    /// One committed wallet payment, by payment id.
    Payment(u64),
    /// Present while a reservation is live (or owes a refund): what start-up loads.
    LiveReservation(u64),
    /// The same, by seat map: what a seat map reads when it starts again.
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
    /// A waiting-queue token of the build before signed tokens (only ever deleted).
    QueueToken(String),
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
    /// Not a record: the prefix of the live reservations of one seat map (it may also
    /// match a seat map whose id extends this one's with `/`: check the parsed key).
    LiveOf(String),
}

impl Key {
    pub(crate) fn bytes(&self) -> Vec<u8> {
        match self {
            Key::Catalog => b"catalog".to_vec(),
            Key::SeatMap(id) => format!("seatmap/{id}").into_bytes(),
            Key::Reservation(id) => format!("resv/{id:020}").into_bytes(),
            Key::Wallet(user) => format!("wallet/{user:020}").into_bytes(),
            Key::QueueToken(t) => format!("qtoken/{t}").into_bytes(),
            Key::QueueMeta => b"qmeta".to_vec(),
            Key::QueueSettings => b"qsettings".to_vec(),
            Key::QueuePlace(seq) => format!("qplace/{seq:020}").into_bytes(),
            Key::QueueStep(seq) => format!("qstep/{seq:020}").into_bytes(),
            Key::QueueEnded(seq) => format!("qended/{seq:020}").into_bytes(),
            Key::GatewayCharge(k) => format!("gwcharge/{k}").into_bytes(),
            Key::Ledger(user, k) => format!("idem/{user:020}/{k}").into_bytes(),
            Key::Payment(id) => format!("pay/{id:020}").into_bytes(),
            Key::LiveReservation(id) => format!("live/{id:020}").into_bytes(),
            Key::SeatMapLive(seat_map, id) => format!("seatlive/{seat_map}/{id:020}").into_bytes(),
            Key::LiveOf(seat_map) => format!("seatlive/{seat_map}/").into_bytes(),
            Key::UserBooking(user, r) => format!("ubook/{user:020}/{r:020}").into_bytes(),
            Key::BookingsOf(user) => format!("ubook/{user:020}/").into_bytes(),
            Key::Transaction(id) => format!("tx/{id:020}").into_bytes(),
            Key::RoomTransaction(room, tx) => format!("roomtx/{room:020}/{tx:020}").into_bytes(),
            Key::TransactionsOf(room) => format!("roomtx/{room:020}/").into_bytes(),
            Key::Format => b"format".to_vec(),
            Key::DirectRoom(a, b) => format!("direct/{a:020}/{b:020}").into_bytes(),
            Key::TradeRoom(l, b) => format!("traderoom/{l:020}/{b:020}").into_bytes(),
            Key::Membership(u, r) => format!("member/{u:020}/{r:020}").into_bytes(),
            Key::RoomsOf(u) => format!("member/{u:020}/").into_bytes(),
            Key::Room(id) => format!("room/{id:020}").into_bytes(),
            Key::RoomCounts(id) => format!("counts/{id:020}").into_bytes(),
            Key::RoomFile(room, name) => format!("file/{room:020}/{name}").into_bytes(),
            Key::Profile(id) => format!("profile/{id:020}").into_bytes(),
            Key::Listing(id) => format!("listing/{id:020}").into_bytes(),
            Key::Message(room, id) => format!("msg/{room:020}/{id:020}").into_bytes(),
            Key::MessagesOf(room) => format!("msg/{room:020}/").into_bytes(),
        }
    }

    /// The prefix shared by every key of this key's family.
    pub(crate) fn family_prefix(&self) -> Vec<u8> {
        match self {
            Key::Catalog => b"catalog".to_vec(),
            Key::SeatMap(_) => b"seatmap/".to_vec(),
            Key::Reservation(_) => b"resv/".to_vec(),
            Key::Wallet(_) => b"wallet/".to_vec(),
            Key::QueueToken(_) => b"qtoken/".to_vec(),
            Key::QueueMeta => b"qmeta".to_vec(),
            Key::QueueSettings => b"qsettings".to_vec(),
            Key::QueuePlace(_) => b"qplace/".to_vec(),
            Key::QueueStep(_) => b"qstep/".to_vec(),
            Key::QueueEnded(_) => b"qended/".to_vec(),
            Key::GatewayCharge(_) => b"gwcharge/".to_vec(),
            Key::Ledger(..) => b"idem/".to_vec(),
            Key::Payment(_) => b"pay/".to_vec(),
            Key::LiveReservation(_) => b"live/".to_vec(),
            Key::SeatMapLive(..) | Key::LiveOf(_) => b"seatlive/".to_vec(),
            Key::UserBooking(..) | Key::BookingsOf(_) => b"ubook/".to_vec(),
            Key::Transaction(_) => b"tx/".to_vec(),
            Key::RoomTransaction(..) | Key::TransactionsOf(_) => b"roomtx/".to_vec(),
            Key::Format => b"format".to_vec(),
            Key::DirectRoom(..) => b"direct/".to_vec(),
            Key::TradeRoom(..) => b"traderoom/".to_vec(),
            Key::Membership(..) | Key::RoomsOf(_) => b"member/".to_vec(),
            Key::Room(_) => b"room/".to_vec(),
            Key::RoomCounts(_) => b"counts/".to_vec(),
            Key::RoomFile(..) => b"file/".to_vec(),
            Key::Profile(_) => b"profile/".to_vec(),
            Key::Listing(_) => b"listing/".to_vec(),
            Key::Message(..) | Key::MessagesOf(_) => b"msg/".to_vec(),
        }
    }

    pub(crate) fn parse(bytes: &[u8]) -> Option<Key> {
        let s = std::str::from_utf8(bytes).ok()?;
        let (family, id) = s.split_once('/').unwrap_or((s, ""));
        Some(match family {
            "catalog" => Key::Catalog,
            "qmeta" => Key::QueueMeta,
            "qsettings" => Key::QueueSettings,
            "seatmap" => Key::SeatMap(id.to_string()),
            "resv" => Key::Reservation(id.parse().ok()?),
            "wallet" => Key::Wallet(id.parse().ok()?),
            "qtoken" => Key::QueueToken(id.to_string()),
            "qplace" => Key::QueuePlace(id.parse().ok()?),
            "qstep" => Key::QueueStep(id.parse().ok()?),
            "qended" => Key::QueueEnded(id.parse().ok()?),
            "gwcharge" => Key::GatewayCharge(id.to_string()),
            "room" => Key::Room(id.parse().ok()?),
            "counts" => Key::RoomCounts(id.parse().ok()?),
            "file" => {
                let (room, name) = id.split_once('/')?;
                Key::RoomFile(room.parse().ok()?, name.to_string())
            }
            "profile" => Key::Profile(id.parse().ok()?),
            "listing" => Key::Listing(id.parse().ok()?),
            "msg" => {
                let (room, message) = id.split_once('/')?;
                Key::Message(room.parse().ok()?, message.parse().ok()?)
            }
            "idem" => {
                let (user, key) = id.split_once('/')?;
                Key::Ledger(user.parse().ok()?, key.to_string())
            }
            "pay" => Key::Payment(id.parse().ok()?),
            "live" => Key::LiveReservation(id.parse().ok()?),
            "seatlive" => {
                let (seat_map, r) = id.rsplit_once('/')?;
                Key::SeatMapLive(seat_map.to_string(), r.parse().ok()?)
            }
            "ubook" => {
                let (user, r) = id.split_once('/')?;
                Key::UserBooking(user.parse().ok()?, r.parse().ok()?)
            }
            "tx" => Key::Transaction(id.parse().ok()?),
            "roomtx" => {
                let (room, tx) = id.split_once('/')?;
                Key::RoomTransaction(room.parse().ok()?, tx.parse().ok()?)
            }
            "format" => Key::Format,
            "direct" => {
                let (a, b) = id.split_once('/')?;
                Key::DirectRoom(a.parse().ok()?, b.parse().ok()?)
            }
            "traderoom" => {
                let (l, b) = id.split_once('/')?;
                Key::TradeRoom(l.parse().ok()?, b.parse().ok()?)
            }
            "member" => {
                let (u, r) = id.split_once('/')?;
                Key::Membership(u.parse().ok()?, r.parse().ok()?)
            }
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Key;

    #[test]
    fn keys_round_trip() {
        for k in [
            Key::Catalog,
            Key::QueueMeta,
            Key::QueueSettings,
            Key::SeatMap("perf_001".into()),
            Key::Reservation(42),
            Key::Wallet(7),
            Key::QueueToken("abc".into()),
            Key::QueuePlace(3),
            Key::QueueStep(4),
            Key::QueueEnded(5),
            Key::GatewayCharge("i0do0nHZSn4TZr0tKOa9-0".into()),
            Key::Ledger(123, "retry/1".into()),
            Key::Payment(9),
            Key::LiveReservation(10),
            Key::SeatMapLive("perf_001".into(), 10),
            Key::SeatMapLive("a/b".into(), 11),
            Key::UserBooking(1, 2),
            Key::Transaction(11),
            Key::RoomTransaction(12, 13),
            Key::Format,
            Key::Room(8),
            Key::RoomCounts(8),
            Key::RoomFile(8, "a/b.png".into()),
            Key::Profile(8),
            Key::Listing(3),
            Key::Message(8, 123),
        ] {
            assert_eq!(Key::parse(&k.bytes()), Some(k));
        }
    }
}
