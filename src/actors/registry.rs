//! `Registry`: the address book. It starts the actors and finds the one that owns an id;
//! it holds addresses and routing lookups only, never business state, and takes no
//! decision. Actors never hold it: each gets the narrow handles it needs (see
//! [`book`](super::book)). Domain actors run on a small pool of arbiters, spread by id.

use super::book::{Arbiters, Lookup};
use super::catalog::{Catalog, CatalogSnapshot, CreateConcert, CreatePerformance, CreateSchedule, PerformanceSeats};
use super::directory::Directory;
use super::gateway::{PaymentGateway, TestGateway, TestGatewayClient};
use super::hub::{room_group, ChatEvent, Event, Fanout, Hub};
use super::janitor::{Janitor, Purge};
use super::keys::{Answer, KeyGate, KeyGates, KeysEnv};
use super::room::{Room, Rooms, RoomsEnv};
use super::seat_map::booking::reservation_of_public_id;
use super::seat_map::{Booking, Reservation, SeatMap, SeatMapEnv, SeatMapSnapshot, SeatMaps, SeatMapsEnv};
use super::ticket_listing::{
    GetListing, Listing, ListingBook, ListingEnv, ListingSnapshot, ListingsEnv, TicketListing, Transaction,
};
use super::waiting_queue::watch::QueueWatch;
use super::waiting_queue::{QueueGate, QueuePolicy, TicketKey, WaitingQueue};
use super::wallet::{ChargeLimits, Wallet, WalletEnv, Wallets, WalletsEnv};
use crate::config::Settings;
use crate::store::files::FileStore;
use crate::store::{Key, Store, StoreError};
use actix::prelude::*;
use std::sync::Arc;

pub use super::seat_map::BookingRoute;

/// The longest a key gate stays unasked (shorter when `BOXOFFICE_ACTOR_IDLE` is).
pub const KEY_GATE_IDLE: std::time::Duration = std::time::Duration::from_secs(1);

/// How many keyed actors are running, by kind (those stopping included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveActors {
    pub wallets: usize,
    pub key_gates: usize,
    pub seat_maps: usize,
    pub rooms: usize,
    pub listings: usize,
}

#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    settings: Settings,
    seat_maps: SeatMaps,
    wallets: Wallets,
    /// Each user's Idempotency-Keys while their requests run.
    keys: KeyGates,
    /// Chat rooms started so far (others start on first use).
    rooms: Rooms,
    /// Ticket listings (all started at start: their timers run expiries).
    /// Ticket listings (those with open payment requests start with the server: their
    /// timers run expiries; others on first use).
    listings: ListingBook,
    hub: Hub,
    /// Where events go: the hub, and other processes too when there are edges.
    fanout: Arc<dyn Fanout>,
    files: FileStore,
    gateway: Arc<dyn PaymentGateway>,
    test_gateway: Addr<TestGateway>,
    queue: Addr<WaitingQueue>,
    /// Checks queue tokens against what the queue publishes, without messaging it.
    queue_gate: QueueGate,
    /// Pushes this node's waiting sockets their standing.
    queue_watch: Addr<QueueWatch>,
    directory: Addr<Directory>,
    catalog: Addr<Catalog>,
}

impl Registry {
    /// Bring every actor with timers back from the store (seat maps, listings, the
    /// queue), build the routing tables, and load the demo catalog into an empty store.
    pub async fn start(store: Store, settings: Settings) -> anyhow::Result<Registry> {
        let hub = Hub::default();
        Self::start_with(store, settings, hub.clone(), Arc::new(hub)).await
    }

    /// [`start`](Self::start), with the sessions of this process in `hub`, and events
    /// published through `fanout` (which offers them to `hub`, and maybe elsewhere).
    pub async fn start_with(
        store: Store,
        settings: Settings,
        hub: Hub,
        fanout: Arc<dyn Fanout>,
    ) -> anyhow::Result<Registry> {
        let fresh = store.is_empty();
        let arbiters = Arbiters::new(settings.actor_threads.max(1));
        // The gateway comes first: seat maps settle unfinished refunds as they start.
        let test_gateway = TestGateway::load(store.clone())?;
        let test_gateway = TestGateway::start_in_arbiter(&arbiters.for_key(&"gateway"), |_| test_gateway);
        let gateway: Arc<dyn PaymentGateway> = Arc::new(TestGatewayClient {
            addr: test_gateway.clone(),
            slow: settings.test_gateway_delay,
            stall: settings.gateway_timeout * 2,
        });
        // The directory before the rooms and listings, which reach it.
        let directory = Directory::load(store.clone(), settings.chat_max_participants)?;
        let directory = Directory::start_in_arbiter(&arbiters.for_key(&"directory"), |_| directory);
        // The queue before the wallets, whose payments retire its tokens.
        let policy = QueuePolicy {
            admit_rate: settings.queue_admit_rate,
            max_active: settings.queue_max_active,
            active_ttl: settings.queue_active_ttl,
            wait_ttl: settings.queue_wait_ttl,
        };
        // Queue tokens are signed with a key derived from the JWT secret, which every node
        // of a deployment shares.
        let tickets = TicketKey::new(&crate::auth::load_secret(&settings)?);
        let (queue, queue_gate) = WaitingQueue::load(store.clone(), policy, tickets)?;
        let queue_watch = {
            let gate = queue_gate.clone();
            QueueWatch::start_in_arbiter(&arbiters.for_key(&"queue-watch"), |_| QueueWatch::new(gate))
        };
        let queue = WaitingQueue::start_in_arbiter(&arbiters.for_key(&"queue"), |_| queue);
        // Wallets pay at seat maps, and seat maps ask wallets about payments left
        // unfinished: the seat maps' lookup of wallets is filled once the wallets exist.
        let idle = settings.actor_idle;
        let wallets_later: Arc<std::sync::OnceLock<Wallets>> = Default::default();
        let seat_map_env = SeatMapEnv {
            gateway: gateway.clone(),
            gateway_timeout: settings.gateway_timeout,
            wallets: {
                let wallets = wallets_later.clone();
                Lookup::new(move |user| match wallets.get() {
                    Some(w) => w.get(&user).map(|w| w.map(Addr::recipient)),
                    None => Ok(None),
                })
            },
        };
        let seat_maps = SeatMaps::new(SeatMapsEnv { store: store.clone(), env: seat_map_env }, arbiters.clone(), idle);
        let limits = ChargeLimits { max_single: settings.charge_max_single, max_monthly: settings.charge_max_monthly };
        let wallet_env = WalletEnv { seat_maps: seat_maps.clone(), queue: queue.clone().recipient() };
        let wallets =
            Wallets::new(WalletsEnv { store: store.clone(), limits, env: wallet_env }, arbiters.clone(), idle);
        let _ = wallets_later.set(wallets.clone());
        // Seat states are rebuilt from the reservations that still hold seats (or money):
        // those with an entry in their seat map's index of live reservations. Finished
        // ones stay on disk, read when asked for.
        let mut live = Vec::new();
        for key in store.family_keys(&Key::LiveOf(String::new()))? {
            let Key::SeatMapLive(seat_map, id) = key else { continue };
            match store.get::<Reservation>(&Key::Reservation(id))? {
                Some(r) => live.push(r),
                None => tracing::warn!(seat_map, reservation = id, "a live entry without its reservation"),
            }
        }
        live.sort_by_key(|r| r.created_at);
        let mut by_seat_map: std::collections::HashMap<String, Vec<Reservation>> = Default::default();
        for r in live {
            by_seat_map.entry(r.seat_map.clone()).or_default().push(r);
        }
        // Only seat maps with live reservations start now (their timers run there); the
        // others start from their definitions when first asked for.
        for (seat_map, live) in by_seat_map {
            match store.get::<SeatMapSnapshot>(&Key::SeatMap(seat_map.clone()))? {
                Some(snapshot) => {
                    seat_maps.start(snapshot, live)?;
                }
                None => tracing::warn!(seat_map, "live reservations of a seat map without its definition"),
            }
        }
        let catalog_state = store.get::<CatalogSnapshot>(&Key::Catalog)?.unwrap_or_default();
        for s in catalog_state.schedules.values() {
            seat_maps.route_schedule(s.id, s.concert, s.seat_map_id());
        }
        for p in catalog_state.performances.values() {
            seat_maps.route_performance(&p.id, &p.seat_map);
        }
        let rooms_env =
            RoomsEnv { store: store.clone(), fanout: fanout.clone(), directory: directory.clone().recipient() };
        let rooms = Rooms::new(rooms_env, arbiters.clone(), idle);
        let listing_env = ListingEnv {
            rooms: {
                let rooms = rooms.clone();
                Lookup::new(move |id| rooms.get(&id).map(|r| r.map(Addr::recipient)))
            },
            gateway: gateway.clone(),
            gateway_timeout: settings.gateway_timeout,
            ttl: settings.trade_reservation_ttl,
        };
        // A key gate keeps nothing but the keys in flight, and starts again from nothing:
        // it need not wait the whole window.
        let gate_idle = idle.min(KEY_GATE_IDLE);
        let keys =
            KeyGates::new(KeysEnv { store: store.clone(), wallets: wallets.clone() }, arbiters.clone(), gate_idle);
        let purges = vec![
            Purge { what: "run-out idempotency keys", run: super::ledger::purge_expired::<Answer> },
            Purge { what: "run-out client message ids", run: super::room::purge_expired_sent_ids },
        ];
        let janitor = Janitor { store: store.clone(), purges };
        actix::Actor::start_in_arbiter(&Arbiter::new().handle(), |_| janitor);
        let catalog = Catalog::new(catalog_state, store.clone(), seat_maps.clone());
        let catalog = Catalog::start_in_arbiter(&arbiters.for_key(&"catalog"), |_| catalog);
        let registry = Registry {
            inner: Arc::new(Inner {
                store: store.clone(),
                files: FileStore::open(&settings.data_dir)?,
                settings: settings.clone(),
                seat_maps,
                wallets,
                keys,
                rooms,
                listings: ListingBook::new(
                    ListingsEnv { store: store.clone(), env: listing_env },
                    arbiters.clone(),
                    idle,
                ),
                hub,
                fanout,
                gateway,
                test_gateway,
                queue,
                queue_gate,
                queue_watch,
                directory,
                catalog,
            }),
        };
        let mut busy = Vec::new();
        for (id, listing) in store.scan::<ListingSnapshot>(&Key::Listing(0))? {
            let Key::Listing(id) = id else { continue };
            if !listing.open.is_empty() {
                busy.extend(registry.inner.listings.get(&id)?);
            }
        }
        // A listing cancels what ran out while the server was down as it starts: once each
        // has answered, the listing records the HTTP edge reads are current.
        for listing in busy {
            let _ = listing.send(GetListing).await;
        }
        if fresh && !settings.no_demo {
            registry.load_demo().await?;
        }
        Ok(registry)
    }

    /// Concert 1 with schedules 1, 2 and 3, each of seats 1..=50 at 80,000.
    async fn load_demo(&self) -> anyhow::Result<()> {
        let concert = self.catalog().send(CreateConcert { title: "Boxoffice Live 2026".into() }).await??;
        let day = 24 * 3600 * 1000;
        let first = crate::time::now_ms() / day * day + 30 * day + 19 * 3600 * 1000;
        for n in 0..3 {
            self.catalog()
                .send(CreateSchedule { concert: concert.id, starts_at: first + n * day, seats: 50, price: 80_000 })
                .await??;
        }
        let rows = ["A", "B", "C", "D", "E", "F", "G", "H", "I", "J"];
        let labels = rows.iter().flat_map(|r| (1..=10).map(move |n| format!("{r}{n}"))).collect();
        let perf = CreatePerformance {
            id: "perf_001".into(),
            title: "Boxoffice Live 2026: the B-side".into(),
            seats: PerformanceSeats::New { labels, price: 30_000 },
        };
        self.catalog().send(perf).await??;
        let shared = CreatePerformance {
            id: "1".into(),
            title: "Boxoffice Live 2026".into(),
            seats: PerformanceSeats::Schedule(1),
        };
        self.catalog().send(shared).await??;
        tracing::info!(
            "loaded the demo catalog: concert 1 with schedules 1, 2, 3; performances perf_001 and 1 (= schedule 1)"
        );
        Ok(())
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    pub fn queue(&self) -> &Addr<WaitingQueue> {
        &self.inner.queue
    }

    /// This node's watch of waiting sockets.
    pub fn queue_watch(&self) -> &Addr<QueueWatch> {
        &self.inner.queue_watch
    }

    /// Checks queue tokens on the caller's thread (see [`QueueGate`]).
    pub fn queue_gate(&self) -> &QueueGate {
        &self.inner.queue_gate
    }

    /// The owner of which rooms exist between whom.
    pub fn directory(&self) -> &Addr<Directory> {
        &self.inner.directory
    }

    /// The rooms `user` is in (read from the directory's records).
    pub fn rooms_of(&self, user: u64) -> Result<Vec<u64>, StoreError> {
        super::directory::rooms_of(&self.inner.store, user)
    }

    /// The open rooms `user` is in with their newest message and unread count (read from
    /// the directory's and rooms' records; see [`super::directory::summaries_of`]).
    pub async fn room_summaries(&self, user: u64) -> Result<Vec<super::room::RoomSummary>, StoreError> {
        super::directory::summaries_of(&self.inner.store, user).await
    }

    /// Tell `user`'s rooms that they came online or went offline (both wire protocols'
    /// sessions call this when a user's first connection opens or last one closes).
    pub fn announce_presence(&self, user: u64, name: &str, online: bool) {
        let rooms = self.rooms_of(user).unwrap_or_else(|e| {
            tracing::warn!(user, error = %e, "could not read a user's rooms to announce presence");
            Vec::new()
        });
        let event = Event::new(ChatEvent::UserStatus { user, user_name: name.to_string(), online });
        for room in rooms {
            self.inner.fanout.publish(room_group(room), &event);
        }
    }

    pub fn catalog(&self) -> &Addr<Catalog> {
        &self.inner.catalog
    }

    /// Start the actor for a new seat map.
    pub fn start_seat_map(&self, snapshot: SeatMapSnapshot) -> Result<Addr<SeatMap>, StoreError> {
        self.inner.seat_maps.start(snapshot, Vec::new())
    }

    pub fn seat_map(&self, id: &str) -> Option<Addr<SeatMap>> {
        self.inner.seat_maps.get(id)
    }

    /// Where booking `id` lives: its id names its reservation (see `Booking`), whose record
    /// names the seat map; the booking must have exactly this id.
    pub fn booking(&self, id: &str) -> Result<Option<BookingRoute>, StoreError> {
        self.route_public_id(id, |b| b.id == id)
    }

    /// Where the booking of payment intent `intent` lives.
    pub fn booking_of_intent(&self, intent: &str) -> Result<Option<BookingRoute>, StoreError> {
        self.route_public_id(intent, |b| b.intent == intent)
    }

    fn route_public_id(&self, id: &str, is_it: impl Fn(&Booking) -> bool) -> Result<Option<BookingRoute>, StoreError> {
        let Some(reservation) = reservation_of_public_id(id) else { return Ok(None) };
        let Some(r) = self.inner.store.get::<Reservation>(&Key::Reservation(reservation))? else { return Ok(None) };
        Ok(r.booking.as_ref().filter(|b| is_it(b)).map(|_| BookingRoute { seat_map: r.seat_map.clone(), reservation }))
    }

    pub fn seat_map_of_performance(&self, performance: &str) -> Option<Addr<SeatMap>> {
        self.inner.seat_maps.of_performance(performance)
    }

    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    pub fn files(&self) -> &FileStore {
        &self.inner.files
    }

    /// The actor of room `id`, started from its snapshot on first use; `None` if there is
    /// no such room.
    pub fn room(&self, id: u64) -> Result<Option<Addr<Room>>, StoreError> {
        self.inner.rooms.get(&id)
    }

    /// The listing that holds payment request `tx`, read from the request's record.
    pub fn listing_of_transaction(&self, tx: u64) -> Result<Option<Addr<TicketListing>>, StoreError> {
        match self.inner.store.get::<Transaction>(&Key::Transaction(tx))? {
            Some(t) => self.listing(t.listing),
            None => Ok(None),
        }
    }

    /// The actor of listing `id`, started from its record on first use.
    pub fn listing(&self, id: u64) -> Result<Option<Addr<TicketListing>>, StoreError> {
        self.inner.listings.get(&id)
    }

    /// Every listing as its record says, ascending id (each listing writes its record
    /// before it answers a change), once what was read is on disk: no actor is asked.
    pub async fn listings(&self) -> Result<Vec<Listing>, StoreError> {
        let all = self.inner.store.scan::<ListingSnapshot>(&Key::Listing(0))?;
        self.inner.store.durable().await?;
        Ok(all.into_iter().map(|(_, s)| s.listing).collect())
    }

    /// The listing actors' address book (for actors that reach listings).
    pub fn listing_book(&self) -> ListingBook {
        self.inner.listings.clone()
    }

    /// List tickets for sale.
    pub async fn create_listing(
        &self,
        seller: u64,
        title: String,
        description: Option<String>,
        unit_price: u64,
        quantity: u32,
    ) -> Result<Listing, StoreError> {
        let store = &self.inner.store;
        let listing = Listing {
            id: store.next_id()?,
            seller,
            title,
            description,
            unit_price,
            total_quantity: quantity,
            remaining_quantity: quantity,
            created_at: crate::time::now_ms(),
        };
        let snapshot = ListingSnapshot { listing: listing.clone(), open: Vec::new() };
        store.put(&Key::Listing(listing.id), &snapshot)?;
        store.durable().await?;
        self.inner.listings.get(&listing.id)?;
        Ok(listing)
    }

    /// The payment gateway bookings are charged through.
    pub fn gateway(&self) -> Arc<dyn PaymentGateway> {
        self.inner.gateway.clone()
    }

    /// The test gateway, when it is the one in use.
    pub fn test_gateway(&self) -> Option<&Addr<TestGateway>> {
        Some(&self.inner.test_gateway)
    }

    /// The seat map of `reservation`, read from its record.
    pub fn seat_map_of_reservation(&self, reservation: u64) -> Result<Option<Addr<SeatMap>>, StoreError> {
        self.inner.seat_maps.of_reservation(&self.inner.store, reservation)
    }

    /// The seat map of `schedule`, if it is a schedule of `concert`.
    pub fn seat_map_of_schedule(&self, concert: u64, schedule: u64) -> Option<Addr<SeatMap>> {
        self.inner.seat_maps.of_schedule(concert, schedule)
    }

    /// The concert a schedule belongs to.
    pub fn concert_of_schedule(&self, schedule: u64) -> Option<u64> {
        self.inner.seat_maps.concert_of_schedule(schedule)
    }

    /// How many actors of each kind are running.
    pub fn live_actors(&self) -> LiveActors {
        LiveActors {
            wallets: self.inner.wallets.len(),
            key_gates: self.inner.keys.len(),
            seat_maps: self.inner.seat_maps.live(),
            rooms: self.inner.rooms.len(),
            listings: self.inner.listings.len(),
        }
    }

    /// The gate of `user`'s Idempotency-Keys: every keyed request goes through it.
    pub fn keys(&self, user: u64) -> Result<Addr<KeyGate>, StoreError> {
        match self.inner.keys.get(&user)? {
            Some(gate) => Ok(gate),
            None => unreachable!("every user has a key gate"),
        }
    }

    /// The wallet of `user`, started from its record on first use.
    pub fn wallet(&self, user: u64) -> Result<Addr<Wallet>, StoreError> {
        match self.inner.wallets.get(&user)? {
            Some(wallet) => Ok(wallet),
            None => unreachable!("every user has a wallet"),
        }
    }
}
