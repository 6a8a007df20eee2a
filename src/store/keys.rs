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
    /// A user's wallet: balance, monthly charges, idempotency ledger, payments.
    Wallet(u64),
    /// One waiting-queue token, by token.
    QueueToken(String),
    /// The waiting queue's counters.
    QueueMeta,
    /// The test payment gateway's record of one charge, by the gateway-side key.
    GatewayCharge(String),
    /// A contract B `Idempotency-Key` of `POST /bookings`: the first answer, by user and key.
    BookingKey(u64, String),
    /// A chat room: its settings, participants and read positions (one snapshot).
    Room(u64),
    /// One chat message, by room and message id.
    Message(u64, u64),
    /// A user's name and picture as their latest token said (for naming participants).
    Profile(u64),
    /// A ticket listing with its payment requests (one snapshot).
    Listing(u64),
    /// Not a record: the prefix of every message of one room, for [`Store::scan_under`].
    ///
    /// [`Store::scan_under`]: super::Store::scan_under
    MessagesOf(u64),
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
            Key::GatewayCharge(k) => format!("gwcharge/{k}").into_bytes(),
            Key::BookingKey(user, k) => format!("bkey/{user:020}/{k}").into_bytes(),
            Key::Room(id) => format!("room/{id:020}").into_bytes(),
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
            Key::GatewayCharge(_) => b"gwcharge/".to_vec(),
            Key::BookingKey(..) => b"bkey/".to_vec(),
            Key::Room(_) => b"room/".to_vec(),
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
            "seatmap" => Key::SeatMap(id.to_string()),
            "resv" => Key::Reservation(id.parse().ok()?),
            "wallet" => Key::Wallet(id.parse().ok()?),
            "qtoken" => Key::QueueToken(id.to_string()),
            "gwcharge" => Key::GatewayCharge(id.to_string()),
            "room" => Key::Room(id.parse().ok()?),
            "profile" => Key::Profile(id.parse().ok()?),
            "listing" => Key::Listing(id.parse().ok()?),
            "msg" => {
                let (room, message) = id.split_once('/')?;
                Key::Message(room.parse().ok()?, message.parse().ok()?)
            }
            "bkey" => {
                let (user, key) = id.split_once('/')?;
                Key::BookingKey(user.parse().ok()?, key.to_string())
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
            Key::SeatMap("perf_001".into()),
            Key::Reservation(42),
            Key::Wallet(7),
            Key::QueueToken("abc".into()),
            Key::GatewayCharge("i0do0nHZSn4TZr0tKOa9-0".into()),
            Key::BookingKey(123, "retry/1".into()),
            Key::Room(8),
            Key::Profile(8),
            Key::Listing(3),
            Key::Message(8, 123),
        ] {
            assert_eq!(Key::parse(&k.bytes()), Some(k));
        }
    }
}
