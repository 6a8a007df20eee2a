//! `Registry`: finds (and starts) the actor that owns an id. It holds addresses and
//! routing tables (which seat map a reservation or schedule lives on), never business
//! state. Domain actors run on a small pool of arbiters (threads), spread by id.

use super::catalog::{Catalog, CatalogSnapshot, CreateConcert, CreatePerformance, CreateSchedule, PerformanceSeats};
use super::directory::Directory;
use super::gateway::{PaymentGateway, TestGateway, TestGatewayClient};
use super::hub::Hub;
use super::room::{Room, RoomSnapshot};
use super::seat_map::booking::reservation_of_public_id;
use super::seat_map::{Booking, Reservation, SeatMap, SeatMapSnapshot};
use super::ticket_listing::{Listing, ListingBook, ListingSnapshot, TicketListing, Transaction};
use super::waiting_queue::{QueuePolicy, WaitingQueue};
use super::wallet::{ChargeLimits, Wallet};
use crate::config::Settings;
use crate::store::files::FileStore;
use crate::store::{Key, Store, StoreError};
use actix::prelude::*;
use dashmap::DashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

/// Where a booking lives: its seat map and its reservation there.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BookingRoute {
    pub seat_map: String,
    pub reservation: u64,
}

#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    settings: Settings,
    arbiters: Vec<ArbiterHandle>,
    seat_maps: DashMap<String, Addr<SeatMap>>,
    wallets: DashMap<u64, Addr<Wallet>>,
    /// schedule id -> (concert id, seat map id).
    schedules: DashMap<u64, (u64, String)>,
    /// performance id -> seat map id.
    performances: DashMap<String, String>,
    /// Chat rooms started so far (others start on first use).
    rooms: DashMap<u64, Addr<Room>>,
    /// Ticket listings (all started at start: their timers run expiries).
    listings: ListingBook,
    hub: Hub,
    files: FileStore,
    gateway: OnceLock<Arc<dyn PaymentGateway>>,
    test_gateway: OnceLock<Addr<TestGateway>>,
    queue: OnceLock<Addr<WaitingQueue>>,
    directory: OnceLock<Addr<Directory>>,
    catalog: OnceLock<Addr<Catalog>>,
}

impl Registry {
    /// Bring every actor with timers back from the store (seat maps, the queue), build
    /// the routing tables, and load the demo catalog into an empty store.
    pub async fn start(store: Store, settings: Settings) -> anyhow::Result<Registry> {
        let fresh = store.is_empty();
        let arbiters = (0..settings.workers.max(1)).map(|_| Arbiter::new().handle()).collect();
        let registry = Registry {
            inner: Arc::new(Inner {
                store: store.clone(),
                settings: settings.clone(),
                arbiters,
                seat_maps: DashMap::new(),
                wallets: DashMap::new(),
                schedules: DashMap::new(),
                performances: DashMap::new(),
                rooms: DashMap::new(),
                listings: ListingBook::default(),
                hub: Hub::default(),
                files: FileStore::open(&settings.data_dir)?,
                gateway: OnceLock::new(),
                test_gateway: OnceLock::new(),
                queue: OnceLock::new(),
                directory: OnceLock::new(),
                catalog: OnceLock::new(),
            }),
        };
        // The gateway comes first: seat maps settle unfinished refunds as they start.
        let gateway = TestGateway::load(store.clone())?;
        let gateway = TestGateway::start_in_arbiter(&registry.arbiter_for(&"gateway"), |_| gateway);
        let client = TestGatewayClient {
            addr: gateway.clone(),
            slow: settings.test_gateway_delay,
            stall: settings.gateway_timeout * 2,
        };
        let _ = registry.inner.gateway.set(Arc::new(client));
        let _ = registry.inner.test_gateway.set(gateway);
        // The directory before the rooms and listings, which reach it.
        let directory = Directory::load(store.clone(), settings.chat_max_participants)?;
        let directory = Directory::start_in_arbiter(&registry.arbiter_for(&"directory"), |_| directory);
        let _ = registry.inner.directory.set(directory);
        // Seat states are rebuilt from the reservations that still hold seats (or money):
        // those with a live entry. Finished ones stay on disk, read when asked for.
        let mut live = Vec::new();
        for key in store.family_keys(&Key::LiveReservation(0))? {
            let Key::LiveReservation(id) = key else { continue };
            match store.get::<Reservation>(&Key::Reservation(id))? {
                Some(r) => live.push(r),
                None => tracing::warn!(reservation = id, "a live entry without its reservation"),
            }
        }
        live.sort_by_key(|r| r.created_at);
        let mut by_seat_map: std::collections::HashMap<String, Vec<Reservation>> = Default::default();
        for r in live {
            by_seat_map.entry(r.seat_map.clone()).or_default().push(r);
        }
        for (_, snapshot) in store.scan::<SeatMapSnapshot>(&Key::SeatMap(String::new()))? {
            let live = by_seat_map.remove(&snapshot.id).unwrap_or_default();
            registry.restore_seat_map(snapshot, live)?;
        }
        for (_, listing) in store.scan::<ListingSnapshot>(&Key::Listing(0))? {
            registry.start_listing(listing)?;
        }
        let catalog_state = store.get::<CatalogSnapshot>(&Key::Catalog)?.unwrap_or_default();
        for s in catalog_state.schedules.values() {
            registry.route_schedule(s.id, s.concert, s.seat_map_id());
        }
        for p in catalog_state.performances.values() {
            registry.route_performance(&p.id, &p.seat_map);
        }
        let policy = QueuePolicy {
            admit_rate: settings.queue_admit_rate,
            max_active: settings.queue_max_active,
            active_ttl: settings.queue_active_ttl,
            wait_ttl: settings.queue_wait_ttl,
        };
        let queue = WaitingQueue::load(store.clone(), policy)?;
        let queue = WaitingQueue::start_in_arbiter(&registry.arbiter_for(&"queue"), |_| queue);
        let _ = registry.inner.queue.set(queue);
        let janitor = super::ledger::Janitor { store: store.clone() };
        actix::Actor::start_in_arbiter(&Arbiter::new().handle(), |_| janitor);
        let catalog = Catalog::new(catalog_state, store.clone(), registry.clone());
        let catalog = Catalog::start_in_arbiter(&registry.arbiter_for(&"catalog"), |_| catalog);
        let _ = registry.inner.catalog.set(catalog);
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

    fn arbiter_for<K: Hash + ?Sized>(&self, key: &K) -> ArbiterHandle {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        let i = (h.finish() as usize) % self.inner.arbiters.len();
        self.inner.arbiters[i].clone()
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    pub fn queue(&self) -> &Addr<WaitingQueue> {
        // unwrap: set in `start` before the registry is handed out.
        self.inner.queue.get().expect("queue started")
    }

    /// The owner of which rooms exist between whom.
    pub fn directory(&self) -> &Addr<Directory> {
        // unwrap: set in `start` before the registry is handed out.
        self.inner.directory.get().expect("directory started")
    }

    /// The rooms `user` is in (read from the directory's records).
    pub fn rooms_of(&self, user: u64) -> Result<Vec<u64>, StoreError> {
        super::directory::rooms_of(&self.inner.store, user)
    }

    pub fn catalog(&self) -> &Addr<Catalog> {
        // unwrap: set in `start` before the registry is handed out.
        self.inner.catalog.get().expect("catalog started")
    }

    /// Start the actor for a new seat map.
    pub fn start_seat_map(&self, snapshot: SeatMapSnapshot) -> Result<Addr<SeatMap>, StoreError> {
        self.restore_seat_map(snapshot, Vec::new())
    }

    /// Start the actor for a seat map with its live reservations (at restore).
    pub fn restore_seat_map(
        &self,
        snapshot: SeatMapSnapshot,
        live: Vec<Reservation>,
    ) -> Result<Addr<SeatMap>, StoreError> {
        let id = snapshot.id.clone();
        let seat_map = SeatMap::restore(snapshot, live, self.inner.store.clone(), self.clone())?;
        let addr = SeatMap::start_in_arbiter(&self.arbiter_for(&id), |_| seat_map);
        self.inner.seat_maps.insert(id, addr.clone());
        Ok(addr)
    }

    pub fn seat_map(&self, id: &str) -> Option<Addr<SeatMap>> {
        self.inner.seat_maps.get(id).map(|a| a.clone())
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

    /// Every booking of `user`, oldest first (reservation ids only grow).
    pub fn bookings_of(&self, user: u64) -> Result<Vec<BookingRoute>, StoreError> {
        Ok(self.inner.store.scan_under::<BookingRoute>(&Key::BookingsOf(user))?.into_iter().map(|(_, r)| r).collect())
    }

    pub fn route_performance(&self, performance: &str, seat_map: &str) {
        self.inner.performances.insert(performance.to_string(), seat_map.to_string());
    }

    pub fn seat_map_of_performance(&self, performance: &str) -> Option<Addr<SeatMap>> {
        let id = self.inner.performances.get(performance)?.clone();
        self.seat_map(&id)
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
        if let Some(a) = self.inner.rooms.get(&id) {
            return Ok(Some(a.clone()));
        }
        let Some(snapshot) = self.inner.store.get::<RoomSnapshot>(&Key::Room(id))? else { return Ok(None) };
        let entry = self.inner.rooms.entry(id);
        let addr = entry.or_try_insert_with(|| {
            let directory = self.directory().clone().recipient();
            let room = Room::restore(snapshot, self.inner.store.clone(), self.inner.hub.clone(), directory)?;
            Ok::<_, StoreError>(Room::start_in_arbiter(&self.arbiter_for(&("room", id)), |_| room))
        })?;
        Ok(Some(addr.clone()))
    }

    fn start_listing(&self, snapshot: ListingSnapshot) -> Result<Addr<TicketListing>, StoreError> {
        let id = snapshot.listing.id;
        let actor = TicketListing::load(snapshot, self.inner.store.clone(), self.clone())?;
        let addr = TicketListing::start_in_arbiter(&self.arbiter_for(&("listing", id)), |_| actor);
        self.inner.listings.insert(id, addr.clone());
        Ok(addr)
    }

    /// The listing that holds payment request `tx`, read from the request's record.
    pub fn listing_of_transaction(&self, tx: u64) -> Result<Option<Addr<TicketListing>>, StoreError> {
        let t = self.inner.store.get::<Transaction>(&Key::Transaction(tx))?;
        Ok(t.and_then(|t| self.listing(t.listing)))
    }

    pub fn listing(&self, id: u64) -> Option<Addr<TicketListing>> {
        self.inner.listings.get(id)
    }

    /// Every listing id, ascending.
    pub fn listing_ids(&self) -> Vec<u64> {
        self.inner.listings.ids()
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
        self.start_listing(snapshot)?;
        Ok(listing)
    }

    /// The payment gateway bookings are charged through.
    pub fn gateway(&self) -> Arc<dyn PaymentGateway> {
        // unwrap: set in `start` before any seat map starts.
        self.inner.gateway.get().expect("gateway started").clone()
    }

    /// The test gateway, when it is the one in use.
    pub fn test_gateway(&self) -> Option<&Addr<TestGateway>> {
        self.inner.test_gateway.get()
    }

    /// The seat map of `reservation`, read from its record.
    pub fn seat_map_of_reservation(&self, reservation: u64) -> Result<Option<Addr<SeatMap>>, StoreError> {
        let r = self.inner.store.get::<Reservation>(&Key::Reservation(reservation))?;
        Ok(r.and_then(|r| self.seat_map(&r.seat_map)))
    }

    pub fn route_schedule(&self, schedule: u64, concert: u64, seat_map: String) {
        self.inner.schedules.insert(schedule, (concert, seat_map));
    }

    /// The seat map of `schedule`, if it is a schedule of `concert`.
    pub fn seat_map_of_schedule(&self, concert: u64, schedule: u64) -> Option<Addr<SeatMap>> {
        let entry = self.inner.schedules.get(&schedule)?;
        let (c, id) = entry.value();
        if *c != concert {
            return None;
        }
        self.seat_map(id)
    }

    /// The concert a schedule belongs to.
    pub fn concert_of_schedule(&self, schedule: u64) -> Option<u64> {
        self.inner.schedules.get(&schedule).map(|e| e.value().0)
    }

    /// The wallet of `user`, started from its snapshot on first use.
    pub fn wallet(&self, user: u64) -> Result<Addr<Wallet>, StoreError> {
        if let Some(a) = self.inner.wallets.get(&user) {
            return Ok(a.clone());
        }
        let entry = self.inner.wallets.entry(user);
        let addr = entry.or_try_insert_with(|| {
            let limits = ChargeLimits {
                max_single: self.inner.settings.charge_max_single,
                max_monthly: self.inner.settings.charge_max_monthly,
            };
            let wallet = Wallet::load(user, self.inner.store.clone(), self.clone(), limits)?;
            Ok::<_, StoreError>(Wallet::start_in_arbiter(&self.arbiter_for(&user), |_| wallet))
        })?;
        Ok(addr.clone())
    }
}
