//! Layout 4 to layout 5, in place, at open.
//!
//! Layout 4 spelt every key as UTF-8 text, `family/id` with numbers zero-padded to 20
//! digits, and kept a second index of live reservations, `live/{reservation}`, beside the
//! per-seat-map one. Layout 5 has the binary keys of [`keys`](super::keys) and no `live/`
//! index: start-up finds live reservations through the per-seat-map one. Values are
//! encoded alike in both.
//!
//! Every layout-4 key begins with a lower-case letter, every layout-5 key (but `format`)
//! with an upper-case one, so each key of the tree says which layout wrote it. The
//! migration first reads every layout-4 key, and refuses the store (unchanged) if one is
//! not understood. Then it sets `format` to 5 and flushes, so that from here on a build of
//! layout 4 refuses the store instead of reading half of it. Then, for each layout-4 key,
//! it writes the record under its layout-5 key and removes the old one. A `kill -9` on
//! the way leaves some records under both keys or only the new one, with the same value
//! (nothing else writes before the migration ends); every open of a layout-5 store looks
//! for layout-4 keys left (one seek when there are none) and carries on.

use super::keys::{Key, FORMAT_KEY};
use super::StoreError;

/// The layout this migrates from.
pub(super) const FROM: u32 = 4;

/// Every layout-4 key sorts in here (they begin with `a`..`z`), no layout-5 key but
/// `format` does.
const OLD_KEYS: std::ops::Range<&[u8]> = b"a".as_slice()..b"{".as_slice();

/// What a layout-4 key was.
#[derive(Debug, PartialEq, Eq)]
enum Old {
    /// A record, and its key in layout 5.
    Record(Key),
    /// `live/{reservation}`, which layout 5 does not keep. Its reservation gets a
    /// per-seat-map entry if it lacks one (a store written before that index came had
    /// its entries added by the next start; layout 5's start-up reads only that index).
    Live(u64),
    /// The layout's version.
    Format,
    /// A record layout 5 has no place for: a queue token of the build before signed
    /// tokens, which no node can check (its holder takes a new place, docs/api.md).
    Dropped,
}

/// Migrate a store of layout 4: check that every key has a layout-5 twin, mark the store
/// 5, rewrite the keys. Returns how many records were rewritten.
pub(super) fn four_to_five(db: &sled::Db, state: &sled::Tree) -> Result<usize, StoreError> {
    for item in state.range(OLD_KEYS).keys() {
        let k = item?;
        if parse_text(&k).is_none() {
            return Err(StoreError::Migration(format!(
                "no layout-5 key for {:?}; the store is left as it was",
                String::from_utf8_lossy(&k)
            )));
        }
    }
    state.insert(FORMAT_KEY, super::encode(&super::FORMAT)?)?;
    db.flush()?;
    rewrite(db, state)
}

/// Finish a migration a stop cut short, if any: rewrite the layout-4 keys left.
pub(super) fn finish(db: &sled::Db, state: &sled::Tree) -> Result<(), StoreError> {
    let mut old = state.range(OLD_KEYS).keys();
    let left = old.any(|k| k.map_or(true, |k| k != FORMAT_KEY));
    if left {
        tracing::info!("finishing the migration from layout 4 that the last stop interrupted");
        rewrite(db, state)?;
    }
    Ok(())
}

/// Write each layout-4 record under its layout-5 key, then remove it under the old one.
fn rewrite(db: &sled::Db, state: &sled::Tree) -> Result<usize, StoreError> {
    let started = std::time::Instant::now();
    let mut rewritten = 0;
    for item in state.range(OLD_KEYS) {
        let (k, v) = item?;
        match parse_text(&k) {
            Some(Old::Record(key)) => {
                state.insert(key.bytes(), v)?;
                rewritten += 1;
            }
            Some(Old::Live(id)) => match seat_map_of(state, id)? {
                Some(seat_map) => {
                    state.insert(Key::SeatMapLive(seat_map, id).bytes(), super::encode(&())?)?;
                }
                None => tracing::warn!(reservation = id, "a live entry without its reservation"),
            },
            Some(Old::Format) => continue,
            Some(Old::Dropped) => {}
            None => {
                return Err(StoreError::Migration(format!("no layout-5 key for {:?}", String::from_utf8_lossy(&k))))
            }
        }
        state.remove(k)?;
    }
    db.flush()?;
    tracing::info!(rewritten, took_ms = started.elapsed().as_millis() as u64, "store migrated from layout 4 to 5");
    Ok(rewritten)
}

/// The seat map of reservation `id`, read from its record under either layout's key
/// (the migration may have moved it already).
fn seat_map_of(state: &sled::Tree, id: u64) -> Result<Option<String>, StoreError> {
    /// How every reservation record begins: `seat_map::Reservation`'s first two fields
    /// (bincode reads a struct's fields in order and ignores what follows them; the
    /// tests below encode a real reservation).
    #[derive(serde::Deserialize)]
    struct Head {
        _id: u64,
        seat_map: String,
    }
    let value = match state.get(Key::Reservation(id).bytes())? {
        Some(v) => v,
        None => match state.get(format!("resv/{id:020}"))? {
            Some(v) => v,
            None => return Ok(None),
        },
    };
    Ok(Some(super::decode::<Head>(&value, &Key::Reservation(id))?.seat_map))
}

/// Layout 4's text keys (this parser is kept for the migration only).
fn parse_text(bytes: &[u8]) -> Option<Old> {
    let s = std::str::from_utf8(bytes).ok()?;
    let (family, id) = s.split_once('/').unwrap_or((s, ""));
    let two = |id: &str| -> Option<(u64, u64)> {
        let (a, b) = id.split_once('/')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    };
    let record = match family {
        "format" if id.is_empty() => return Some(Old::Format),
        "live" => return Some(Old::Live(id.parse().ok()?)),
        "catalog" if id.is_empty() => Key::Catalog,
        "qmeta" if id.is_empty() => Key::QueueMeta,
        "qsettings" if id.is_empty() => Key::QueueSettings,
        "qplace" => Key::QueuePlace(id.parse().ok()?),
        "qstep" => Key::QueueStep(id.parse().ok()?),
        "qended" => Key::QueueEnded(id.parse().ok()?),
        "qtoken" => return Some(Old::Dropped),
        "seatmap" => Key::SeatMap(id.to_string()),
        "resv" => Key::Reservation(id.parse().ok()?),
        "wallet" => Key::Wallet(id.parse().ok()?),
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
            let (room, message) = two(id)?;
            Key::Message(room, message)
        }
        "idem" => {
            let (user, key) = id.split_once('/')?;
            Key::ledger(user.parse().ok()?, key)
        }
        "pay" => Key::Payment(id.parse().ok()?),
        "seatlive" => {
            let (seat_map, r) = id.rsplit_once('/')?;
            Key::SeatMapLive(seat_map.to_string(), r.parse().ok()?)
        }
        "ubook" => {
            let (user, r) = two(id)?;
            Key::UserBooking(user, r)
        }
        "tx" => Key::Transaction(id.parse().ok()?),
        "roomtx" => {
            let (room, tx) = two(id)?;
            Key::RoomTransaction(room, tx)
        }
        "direct" => {
            let (a, b) = two(id)?;
            Key::DirectRoom(a, b)
        }
        "traderoom" => {
            let (l, b) = two(id)?;
            Key::TradeRoom(l, b)
        }
        "member" => {
            let (u, r) = two(id)?;
            Key::Membership(u, r)
        }
        _ => return None,
    };
    Some(Old::Record(record))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::seat_map::{Reservation, ReservationStatus};
    use crate::store::{encode, Store, FORMAT};
    use std::path::Path;

    #[test]
    fn every_layout_4_key_has_a_layout_5_one() {
        for (text, key) in [
            ("catalog", Key::Catalog),
            ("qmeta", Key::QueueMeta),
            ("seatmap/perf_001", Key::SeatMap("perf_001".into())),
            ("resv/00000000000000000042", Key::Reservation(42)),
            ("wallet/00000000000000000007", Key::Wallet(7)),
            ("qsettings", Key::QueueSettings),
            ("qplace/09223372036854775809", Key::QueuePlace((1 << 63) | 1)),
            ("qstep/00000000000000000004", Key::QueueStep(4)),
            ("qended/00000000000000000005", Key::QueueEnded(5)),
            ("gwcharge/i0do0n-0", Key::GatewayCharge("i0do0n-0".into())),
            ("idem/00000000000000000123/retry/1", Key::ledger(123, "retry/1")),
            ("pay/00000000000000000009", Key::Payment(9)),
            ("seatlive/a/b/00000000000000000011", Key::SeatMapLive("a/b".into(), 11)),
            ("ubook/00000000000000000001/00000000000000000002", Key::UserBooking(1, 2)),
            ("tx/00000000000000000011", Key::Transaction(11)),
            ("roomtx/00000000000000000012/00000000000000000013", Key::RoomTransaction(12, 13)),
            ("direct/00000000000000000001/00000000000000000002", Key::DirectRoom(1, 2)),
            ("traderoom/00000000000000000003/00000000000000000004", Key::TradeRoom(3, 4)),
            ("member/00000000000000000005/00000000000000000006", Key::Membership(5, 6)),
            ("room/00000000000000000008", Key::Room(8)),
            ("counts/00000000000000000008", Key::RoomCounts(8)),
            ("file/00000000000000000008/a/b.png", Key::RoomFile(8, "a/b.png".into())),
            ("profile/00000000000000000008", Key::Profile(8)),
            ("listing/00000000000000000003", Key::Listing(3)),
            ("msg/00000000000000000008/00000000000000000123", Key::Message(8, 123)),
        ] {
            assert_eq!(parse_text(text.as_bytes()), Some(Old::Record(key)), "{text}");
        }
        assert_eq!(parse_text(b"live/00000000000000000010"), Some(Old::Live(10)));
        assert_eq!(parse_text(b"format"), Some(Old::Format));
        assert_eq!(parse_text(b"qtoken/abc"), Some(Old::Dropped));
        assert_eq!(parse_text(b"nonsense/1"), None);
    }

    fn reservation(id: u64, seat_map: &str, status: ReservationStatus) -> Reservation {
        Reservation {
            id,
            seat_map: seat_map.into(),
            seats: vec!["7".into()],
            user: 1,
            price: 80_000,
            status,
            created_at: 1,
            hold_expires_at: u64::MAX,
            payment: None,
            paying_since: None,
            updated_at: 1,
            booking: None,
        }
    }

    /// `open()` once the last user of the directory has let go of its lock (sled's own
    /// threads hold it a moment after a `Db` is dropped).
    fn when_free<T, E: std::fmt::Display>(open: impl Fn() -> Result<T, E>) -> Result<T, E> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match open() {
                Err(e) if e.to_string().contains("lock") && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                other => break other,
            }
        }
    }

    fn sled_at(dir: &Path) -> sled::Db {
        when_free(|| sled::Config::new().path(dir.join("db")).open()).expect("sled")
    }

    /// A store as a layout-4 build left it, written with the raw bytes of its keys.
    fn write_layout_4(dir: &Path, records: &[(&str, Vec<u8>)]) {
        let db = sled_at(dir);
        let state = db.open_tree("state").expect("tree");
        state.insert(FORMAT_KEY, encode(&FROM).expect("encode")).expect("format");
        for (k, v) in records {
            state.insert(k.as_bytes(), v.as_slice()).expect("insert");
        }
        db.flush().expect("flush");
    }

    fn enc<T: serde::Serialize>(value: &T) -> Vec<u8> {
        encode(value).expect("encode")
    }

    fn layout_4_records() -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("resv/00000000000000000005", enc(&reservation(5, "12", ReservationStatus::Held))),
            ("live/00000000000000000005", enc(&())),
            ("seatlive/12/00000000000000000005", enc(&())),
            // Written before the per-seat-map index: its live entry only.
            ("resv/00000000000000000006", enc(&reservation(6, "perf_001", ReservationStatus::Confirmed))),
            ("live/00000000000000000006", enc(&())),
            // Finished: in neither index.
            ("resv/00000000000000000004", enc(&reservation(4, "12", ReservationStatus::Expired))),
            ("idem/00000000000000000001/hold-1", enc(&String::from("the first answer"))),
            ("msg/00000000000000000009/00000000000000000100", enc(&100u64)),
            ("msg/00000000000000000009/00000000000000000099", enc(&99u64)),
            ("msg/00000000000000000010/00000000000000000001", enc(&1u64)),
            ("seatmap/12", enc(&String::from("definition"))),
            ("qmeta", enc(&3u64)),
            ("qplace/00000000000000000003", enc(&7u64)),
            ("qstep/00000000000000000002", enc(&2u64)),
            ("qtoken/abc", enc(&String::from("a token no node can check"))),
        ]
    }

    fn check_layout_5(store: &Store) {
        assert_eq!(store.get::<u32>(&Key::Format).expect("format"), Some(FORMAT));
        let old = store.state.range(OLD_KEYS).keys().filter(|k| k.as_ref().map_or(true, |k| k != FORMAT_KEY));
        assert_eq!(old.count(), 0, "no layout-4 key is left");
        let held: Reservation = store.get(&Key::Reservation(5)).expect("get").expect("reservation 5");
        assert_eq!((held.seat_map.as_str(), held.status), ("12", ReservationStatus::Held));
        assert!(store.get::<Reservation>(&Key::Reservation(4)).expect("get").is_some());
        let live = store.family_keys(&Key::LiveOf(String::new())).expect("live");
        assert_eq!(
            live,
            vec![Key::SeatMapLive("12".into(), 5), Key::SeatMapLive("perf_001".into(), 6)],
            "every live reservation has its per-seat-map entry, the one written before that index too"
        );
        assert_eq!(
            store.get::<String>(&Key::ledger(1, "hold-1")).expect("get"),
            Some("the first answer".to_string()),
            "a keyed retry still finds its first answer"
        );
        let messages: Vec<(Key, u64)> = store.scan_under(&Key::MessagesOf(9)).expect("scan");
        assert_eq!(messages, vec![(Key::Message(9, 99), 99), (Key::Message(9, 100), 100)], "in id order");
        assert_eq!(store.get::<String>(&Key::SeatMap("12".into())).expect("get"), Some("definition".into()));
        assert_eq!(store.get::<u64>(&Key::QueueMeta).expect("get"), Some(3));
        assert_eq!(store.get::<u64>(&Key::QueuePlace(3)).expect("get"), Some(7));
        assert_eq!(store.get::<u64>(&Key::QueueStep(2)).expect("get"), Some(2));
        let everything = store.state.iter().keys().count();
        // 15 layout-4 records: less the old queue token and the two `live/` entries, plus
        // reservation 6's per-seat-map entry, plus `format`.
        assert_eq!(everything, 14, "nothing else is left or added");
    }

    #[test]
    fn a_layout_4_store_is_migrated_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_layout_4(dir.path(), &layout_4_records());
        let store = when_free(|| Store::open(dir.path())).expect("open migrates");
        check_layout_5(&store);
    }

    /// A `kill -9` part way: `format` says 5, some records moved, some under both keys,
    /// the rest not yet. The next open finishes the work.
    #[test]
    fn an_interrupted_migration_is_finished_at_the_next_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let records = layout_4_records();
        write_layout_4(dir.path(), &records);
        {
            let db = sled_at(dir.path());
            let state = db.open_tree("state").expect("tree");
            state.insert(FORMAT_KEY, enc(&FORMAT)).expect("format");
            for (i, (k, v)) in records.iter().enumerate().take(7) {
                let Some(Old::Record(key)) = parse_text(k.as_bytes()) else { continue };
                state.insert(key.bytes(), v.as_slice()).expect("insert");
                if i % 2 == 0 {
                    state.remove(k.as_bytes()).expect("remove");
                }
            }
            db.flush().expect("flush");
        }
        let store = when_free(|| Store::open(dir.path())).expect("open finishes the migration");
        check_layout_5(&store);
    }

    #[test]
    fn a_store_with_a_key_no_layout_knows_is_left_as_it_was() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut records = layout_4_records();
        records.push(("mystery/1", vec![1]));
        write_layout_4(dir.path(), &records);
        let err = when_free(|| Store::open(dir.path())).err().expect("refused");
        assert!(matches!(err, StoreError::Migration(_)), "{err}");
        let db = sled_at(dir.path());
        let state = db.open_tree("state").expect("tree");
        assert_eq!(state.len(), records.len() + 1, "nothing was rewritten");
    }
}
