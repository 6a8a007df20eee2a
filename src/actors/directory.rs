//! `Directory`: the one owner of which chat rooms exist between whom. It decides whether a
//! room is created or an existing one is handed back (one direct room per pair of users;
//! one open trade room per listing and buyer), and keeps who is in which room. Its mailbox
//! serializes those decisions: no lock, no check-then-act between two requests.
//!
//! It also keeps every user's name and picture as their latest token said ([`NoteUser`],
//! sent on each authenticated request; written only when they change), which names the
//! participants of new rooms and which the HTTP edge reads to name users
//! ([`GetProfiles`]). Each is its own record; the directory keeps the
//! [`PROFILES_KEPT`] most used in memory and reads the others when asked.
//!
//! Everything else it keeps is a keyed record, written in the same atomic batch as the room
//! it concerns ([`Key::DirectRoom`], [`Key::TradeRoom`], [`Key::Membership`]), and read when
//! asked for: nothing is loaded at start, and nothing in memory grows with the number of
//! rooms. A trade room that closes tells the directory ([`RoomClosed`]) before its leave
//! is answered, so the buyer's next request opens a new room.

use super::room::{
    write_new_room, Author, ChatError, Participant, RoomClosed, RoomCounts, RoomKind, RoomRule, RoomSettings,
    RoomSnapshot, RoomSummary, StoredMessage, TradeInfo,
};
use super::ticket_listing::Listing;
use crate::store::{Batch, Key, Store, StoreError};
use crate::time::now_ms;
use actix::prelude::*;
use std::collections::HashMap;

/// A user's name and picture, as their latest token said.
pub type Profile = (String, Option<String>);

/// The profiles of some users (those the server has seen), by user id.
pub type Profiles = HashMap<u64, Profile>;

/// How many users' profiles the directory keeps in memory (the most used; the others are
/// read from their records).
pub const PROFILES_KEPT: usize = 20_000;

pub struct Directory {
    store: Store,
    /// Most participants a group room may have (`BOXOFFICE_CHAT_MAX_PARTICIPANTS`).
    max_participants: u32,
    /// Recently used profiles, as persisted under [`Key::Profile`] (`None`: no record).
    profiles: quick_cache::unsync::Cache<u64, Option<Profile>>,
}

impl Directory {
    /// The directory; it reads profiles as they are asked for.
    pub fn load(store: Store, max_participants: u32) -> Result<Directory, StoreError> {
        Ok(Directory { store, max_participants, profiles: quick_cache::unsync::Cache::new(PROFILES_KEPT) })
    }

    /// `user`'s profile, from memory or its record (kept in memory from now on).
    fn profile(&mut self, user: u64) -> Option<Profile> {
        if let Some(known) = self.profiles.get(&user) {
            return known.clone();
        }
        let read = self.store.get::<Profile>(&Key::Profile(user)).unwrap_or_else(|e| {
            tracing::warn!(user, error = %e, "could not read a user's profile");
            None
        });
        self.profiles.insert(user, read.clone());
        read
    }

    /// A participant record for `user` as the server last saw them (their latest token);
    /// one never seen has no name until their first request names them.
    fn participant(&mut self, id: u32, user: u64, author: Option<&Author>, now: u64) -> Participant {
        let (name, picture) = match author {
            Some(a) => (Some(a.name.clone()), a.picture.clone()),
            None => match self.profile(user) {
                Some((name, picture)) => (Some(name), picture),
                None => (None, None),
            },
        };
        Participant { id, user, name, picture, joined_at: now, last_read: 0, last_read_at: None, active: true }
    }

    /// The room under `entry` (a direct pair's, a listing and buyer's) and `false`; or a new
    /// room made by `build` with its id, written with `entry` and every member's entry in
    /// one batch, and `true`.
    fn find_or_create(
        &self,
        entry: Option<Key>,
        build: impl FnOnce(u64) -> RoomSnapshot,
    ) -> Result<(u64, bool), ChatError> {
        if let Some(entry) = &entry {
            if let Some(id) = self.store.get::<u64>(entry)? {
                return Ok((id, false));
            }
        }
        let room = build(self.store.next_id()?);
        let mut batch = Batch::default();
        if let Some(entry) = &entry {
            batch.put(entry, &room.id)?;
        }
        write_new_room(&mut batch, &room)?;
        for p in &room.participants {
            batch.put(&Key::Membership(p.user, room.id), &())?;
        }
        self.store.apply(batch)?;
        Ok((room.id, true))
    }
}

/// A new, open room of `kind` with these participants, made by `created_by` at `now`.
fn new_room(id: u64, kind: RoomKind, created_by: u64, participants: Vec<Participant>, now: u64) -> RoomSnapshot {
    RoomSnapshot {
        id,
        name: None,
        kind,
        description: None,
        max_participants: participants.len() as u32,
        created_by,
        active: true,
        created_at: now,
        updated_at: now,
        participants,
        settings: RoomSettings::default(),
        trade: None,
        closed_at: None,
    }
}

impl Actor for Directory {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(super::MAILBOX);
    }
}

/// Every room `user` is in, by id, read from the store (a lookup, not a decision).
pub fn rooms_of(store: &Store, user: u64) -> Result<Vec<u64>, StoreError> {
    Ok(store
        .keys_under(&Key::RoomsOf(user))?
        .into_iter()
        .filter_map(|k| match k {
            Key::Membership(_, room) => Some(room),
            _ => None,
        })
        .collect())
}

/// The open rooms `user` is in, each with its newest message and `user`'s unread count,
/// read from the records the rooms write (no room actor is asked or started), once
/// everything read is on disk. A room list costs three reads per room of the user,
/// whatever the rooms' histories, and no message to any room.
pub async fn summaries_of(store: &Store, user: u64) -> Result<Vec<RoomSummary>, StoreError> {
    let mut out = Vec::new();
    for id in rooms_of(store, user)? {
        match summary(store, id, user) {
            Ok(Some(s)) => out.push(s),
            Ok(None) => {}
            // One unreadable room does not take the others' list down.
            Err(e) => tracing::error!(room = id, error = %e, "a room left out of a room list"),
        }
    }
    // What was read may include writes whose flush is still running: answer after it.
    store.durable().await?;
    Ok(out)
}

/// One open room of `user` for a list. The counts are read before the newest message (a
/// post writes its message, then the counts), so a count never includes a message the
/// summary does not show.
fn summary(store: &Store, id: u64, user: u64) -> Result<Option<RoomSummary>, StoreError> {
    let Some(room) = store.get::<RoomSnapshot>(&Key::Room(id))? else { return Ok(None) };
    // A closed (left) trade room is out of every room list.
    if room.closed_at.is_some() || room.participant(user).is_none() {
        return Ok(None);
    }
    let counts = store.get::<RoomCounts>(&Key::RoomCounts(id))?;
    let unread = counts.and_then(|c| c.unread.get(&user).copied()).unwrap_or(0);
    let last_message = store.last_under(&Key::MessagesOf(id), |m: &StoredMessage| !m.deleted)?;
    Ok(Some(RoomSummary { room, last_message, unread }))
}

/// Create a room of `creator` with `others` (the creator and repeats among them count
/// once); a direct room between two users is created once: the second request gets the
/// first room, and `false`. Refused ([`ChatError::Refused`]) unless a direct room has
/// exactly one other user, and a group room a name, another user and no more than the
/// participants a room may have.
#[derive(Message)]
#[rtype(result = "Result<(u64, bool), ChatError>")]
pub struct CreateRoom {
    pub creator: Author,
    pub kind: RoomKind,
    pub name: Option<String>,
    pub description: Option<String>,
    pub others: Vec<u64>,
}

impl Handler<CreateRoom> for Directory {
    type Result = ResponseFuture<Result<(u64, bool), ChatError>>;
    fn handle(&mut self, msg: CreateRoom, _: &mut Context<Self>) -> Self::Result {
        let now = now_ms();
        let mut users = vec![msg.creator.id];
        for user in msg.others {
            if !users.contains(&user) {
                users.push(user);
            }
        }
        let refused = match msg.kind {
            RoomKind::Direct if users.len() != 2 => Some(RoomRule::DirectNeedsOneOther),
            RoomKind::Group if msg.name.is_none() => Some(RoomRule::GroupNeedsName),
            RoomKind::Group if users.len() < 2 => Some(RoomRule::GroupNeedsOthers),
            RoomKind::Group if users.len() > self.max_participants as usize => {
                Some(RoomRule::TooMany { max: self.max_participants })
            }
            RoomKind::Trade => Some(RoomRule::TradeNeedsListing),
            _ => None,
        };
        if let Some(rule) = refused {
            return Box::pin(async move { Err(ChatError::Refused(rule)) });
        }
        let pair = (msg.kind == RoomKind::Direct && users.len() == 2)
            .then(|| Key::DirectRoom(users[0].min(users[1]), users[0].max(users[1])));
        let participants = users
            .iter()
            .enumerate()
            .map(|(i, user)| {
                self.participant(i as u32 + 1, *user, (*user == msg.creator.id).then_some(&msg.creator), now)
            })
            .collect();
        let result = self.find_or_create(pair, |id| RoomSnapshot {
            name: msg.name,
            description: msg.description,
            max_participants: self.max_participants,
            ..new_room(id, msg.kind, msg.creator.id, participants, now)
        });
        self.store.when_durable(result)
    }
}

/// The open trade room of `buyer` about `listing`, created if there is none; `true` when
/// it was created. A seller's own listing is refused ([`RoomRule::OwnListing`]).
#[derive(Message)]
#[rtype(result = "Result<(u64, bool), ChatError>")]
pub struct OpenTradeRoom {
    pub listing: Listing,
    pub buyer: Author,
}

impl Handler<OpenTradeRoom> for Directory {
    type Result = ResponseFuture<Result<(u64, bool), ChatError>>;
    fn handle(&mut self, msg: OpenTradeRoom, _: &mut Context<Self>) -> Self::Result {
        if msg.listing.seller == msg.buyer.id {
            return Box::pin(async { Err(ChatError::Refused(RoomRule::OwnListing)) });
        }
        let now = now_ms();
        let buyer = self.participant(1, msg.buyer.id, Some(&msg.buyer), now);
        let seller = self.participant(2, msg.listing.seller, None, now);
        let trade = TradeInfo { listing: msg.listing.id, buyer: msg.buyer.id, seller: msg.listing.seller };
        let result = self.find_or_create(Some(Key::TradeRoom(msg.listing.id, msg.buyer.id)), |id| RoomSnapshot {
            name: Some(msg.listing.title.clone()),
            trade: Some(trade),
            ..new_room(id, RoomKind::Trade, msg.buyer.id, vec![buyer, seller], now)
        });
        self.store.when_durable(result)
    }
}

/// A trade room closed ([`RoomClosed`], which the room sends): the next request of its
/// buyer about its listing opens a new one.
impl Handler<RoomClosed> for Directory {
    type Result = Result<(), ChatError>;
    fn handle(&mut self, msg: RoomClosed, _: &mut Context<Self>) -> Self::Result {
        let entry = Key::TradeRoom(msg.trade.listing, msg.trade.buyer);
        if self.store.get::<u64>(&entry)? == Some(msg.room) {
            let mut batch = Batch::default();
            batch.delete(&entry);
            self.store.apply(batch)?;
        }
        Ok(())
    }
}

/// A user made an authenticated request: keep their name and picture if they changed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct NoteUser {
    pub user: u64,
    pub profile: Profile,
}

impl Handler<NoteUser> for Directory {
    type Result = ();
    fn handle(&mut self, msg: NoteUser, _: &mut Context<Self>) {
        if self.profile(msg.user).as_ref() == Some(&msg.profile) {
            return;
        }
        // Rides the next flush: a name is not an answer anyone waits for.
        match self.store.put(&Key::Profile(msg.user), &msg.profile) {
            Ok(()) => {
                self.profiles.insert(msg.user, Some(msg.profile));
            }
            Err(e) => tracing::warn!(user = msg.user, error = %e, "could not keep a user's profile"),
        }
    }
}

/// The profiles of `users` that the server has seen (others are left out).
#[derive(Message)]
#[rtype(result = "Profiles")]
pub struct GetProfiles {
    pub users: Vec<u64>,
}

impl Handler<GetProfiles> for Directory {
    type Result = MessageResult<GetProfiles>;
    fn handle(&mut self, msg: GetProfiles, _: &mut Context<Self>) -> Self::Result {
        MessageResult(msg.users.into_iter().filter_map(|u| self.profile(u).map(|p| (u, p))).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Profiles are read from their records on demand, not loaded at start: one written
    /// before the directory started, or pushed out of memory by many others, is found.
    #[actix_rt::test]
    async fn profiles_past_the_memory_bound_are_read_from_their_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        store.put(&Key::Profile(1), &("kim".to_string(), None::<String>)).expect("put");
        let directory = Directory::load(store, 10).expect("directory").start();
        let users = (2..PROFILES_KEPT as u64 + 1_000).collect::<Vec<_>>();
        for &user in &users {
            directory.do_send(NoteUser { user, profile: (format!("u{user}"), None) });
        }
        let found = directory.send(GetProfiles { users: vec![1, 2, 3] }).await.expect("mailbox");
        assert_eq!(found.get(&1).map(|p| p.0.as_str()), Some("kim"));
        assert_eq!(found.get(&2).map(|p| p.0.as_str()), Some("u2"), "pushed out of memory, read back");
        assert_eq!(found.len(), 3);
        assert!(directory.send(GetProfiles { users: vec![u64::MAX] }).await.expect("mailbox").is_empty());
    }

    /// The rules of a new room hold whoever asks: not only the REST handlers.
    #[actix_rt::test]
    async fn the_directory_refuses_rooms_against_its_rules() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let directory = Directory::load(store, 3).expect("directory").start();
        let kim = Author { id: 1, name: "kim".into(), picture: None };
        let create = |kind, name: Option<&str>, others: Vec<u64>| CreateRoom {
            creator: kim.clone(),
            kind,
            name: name.map(String::from),
            description: None,
            others,
        };
        let refused = |rule| Err(ChatError::Refused(rule));
        for (msg, rule) in [
            (create(RoomKind::Direct, None, vec![1, 1]), RoomRule::DirectNeedsOneOther),
            (create(RoomKind::Direct, None, vec![2, 3]), RoomRule::DirectNeedsOneOther),
            (create(RoomKind::Group, None, vec![2]), RoomRule::GroupNeedsName),
            (create(RoomKind::Group, Some("g"), vec![1]), RoomRule::GroupNeedsOthers),
            (create(RoomKind::Group, Some("g"), vec![2, 3, 4]), RoomRule::TooMany { max: 3 }),
            (create(RoomKind::Trade, Some("t"), vec![2]), RoomRule::TradeNeedsListing),
        ] {
            assert_eq!(directory.send(msg).await.expect("mailbox"), refused(rule));
        }
        let made = directory.send(create(RoomKind::Group, Some("g"), vec![2, 3, 2, 1])).await.expect("mailbox");
        assert!(matches!(made, Ok((_, true))), "repeats and the creator count once: {made:?}");
        let listing = Listing {
            id: 5,
            seller: 1,
            title: "t".into(),
            description: None,
            unit_price: 1,
            total_quantity: 1,
            remaining_quantity: 1,
            created_at: 0,
        };
        let own = directory.send(OpenTradeRoom { listing, buyer: kim.clone() }).await.expect("mailbox");
        assert_eq!(own, refused(RoomRule::OwnListing));
    }
}
