//! The address book of keyed actors ([`ActorBook`]: start on first use, stop when idle)
//! and the narrow handles actors get instead of the registry: where to start an actor
//! ([`Arbiters`]) and how to reach another kind of actor for one message ([`Lookup`]).
//!
//! An actor that must talk to another kind of actor holds a `Lookup<Id, Message>` (or a
//! small typed address book such as [`SeatMaps`](super::seat_map::SeatMaps)), so it
//! depends on the messages it sends, not on every actor the registry can start.

use crate::store::StoreError;
use actix::prelude::*;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// The pool of threads (arbiters) domain actors run on, chosen by a hash of the actor's id
/// so that one actor always lands on the same thread.
#[derive(Clone)]
pub struct Arbiters(Arc<[ArbiterHandle]>);

impl Arbiters {
    /// `n` new arbiters (at least one).
    pub fn new(n: usize) -> Arbiters {
        Arbiters((0..n.max(1)).map(|_| Arbiter::new().handle()).collect())
    }

    /// The arbiter for the actor identified by `key`.
    pub fn for_key<K: Hash + ?Sized>(&self, key: &K) -> ArbiterHandle {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        self.0[(h.finish() as usize) % self.0.len()].clone()
    }
}

type Find<K, M> = dyn Fn(K) -> Result<Option<Recipient<M>>, StoreError> + Send + Sync;

/// Finds the actor that owns id `K` and takes message `M`, starting it if it must:
/// `Ok(None)` when there is no such actor.
pub struct Lookup<K, M: Message + Send>(Arc<Find<K, M>>)
where
    M::Result: Send;

impl<K, M: Message + Send> Lookup<K, M>
where
    M::Result: Send,
{
    pub fn new(find: impl Fn(K) -> Result<Option<Recipient<M>>, StoreError> + Send + Sync + 'static) -> Self {
        Lookup(Arc::new(find))
    }

    pub fn get(&self, id: K) -> Result<Option<Recipient<M>>, StoreError> {
        (self.0)(id)
    }
}

impl<K, M: Message + Send> Clone for Lookup<K, M>
where
    M::Result: Send,
{
    fn clone(&self) -> Self {
        Lookup(self.0.clone())
    }
}

/// Sent by an [`ActorBook`] to an actor nobody has asked for in the idle window: the actor
/// stops unless it still has work (see [`Activated::busy`]).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deactivate;

/// An actor that an [`ActorBook`] starts from its records on first use and stops when it
/// has been idle: Orleans' activation and deactivation.
///
/// Its `Handler<Deactivate>` calls [`deactivate`], and its `Actor::stopping` returns
/// [`Lease::stopping`]: those two lines are all an actor writes for its lifecycle.
pub trait Activated: Actor<Context = Context<Self>> + Handler<Deactivate> + Send {
    type Id: Eq + Hash + Clone + Send + Sync + std::fmt::Debug + 'static;
    /// What activation reads besides the id: the store and what the actor reaches.
    type Env: Send + Sync + 'static;
    /// This kind's label in metrics (`wallet`, `room`, ...).
    const KIND: &'static str;
    /// The actor as its records say, or `None` when there is no such actor.
    fn activate(id: &Self::Id, env: &Self::Env, lease: Lease<Self>) -> Result<Option<Self>, StoreError>;
    /// Whether it still has work that a stop would cut short: a deadline (a timer armed),
    /// a payment or charge in flight, a write not yet durable, an answer not yet given.
    /// Everything else is in its records, so a new activation carries on from there.
    fn busy(&self) -> bool;
    fn lease(&self) -> &Lease<Self>;
}

/// An actor's tie to its [`ActorBook`]: the book, its id there, and which activation it is.
pub struct Lease<A: Activated> {
    tie: Option<(Arc<BookInner<A>>, A::Id, u64)>,
}

impl<A: Activated> Lease<A> {
    /// The lease of an actor started outside any book (unit tests): it never retires.
    pub fn detached() -> Self {
        Lease { tie: None }
    }

    /// For `Actor::stopping`: a retired actor stops once nothing can reach it; if its book
    /// handed it out again in the meantime, the stop is called off.
    pub fn stopping(&self) -> Running {
        let Some((book, id, generation)) = &self.tie else { return Running::Stop };
        let recalled = AtomicBool::new(false);
        book.slots.remove_if(id, |_, slot| {
            if slot.generation != *generation {
                return false;
            }
            match slot.state {
                SlotState::Retiring(_) => true,
                SlotState::Live { .. } => {
                    recalled.store(true, Relaxed);
                    false
                }
            }
        });
        if recalled.load(Relaxed) {
            return Running::Continue;
        }
        metrics::gauge!("boxoffice_actors_live", "kind" => A::KIND).decrement(1.0);
        Running::Stop
    }
}

/// The body of every `Handler<Deactivate>`: when the actor has no work left and nobody asked
/// for it during the idle window, its book lets go of it. The actor then stops as soon as
/// no address of it is left and nothing runs in its context (actix stops an actor nobody
/// can reach); a request that finds it in between gets it back (see [`Lease::stopping`]).
pub fn deactivate<A: Activated>(actor: &mut A, ctx: &mut Context<A>) {
    if actor.busy() {
        return;
    }
    let Some((book, id, generation)) = &actor.lease().tie else { return };
    let now = book.clock_ms();
    let idle = book.idle_ms;
    if let Some(mut slot) = book.slots.get_mut(id) {
        if slot.generation != *generation {
            return;
        }
        let SlotState::Live { touched, .. } = &slot.state else { return };
        if now.saturating_sub(touched.load(Relaxed)) < idle {
            return;
        }
        slot.state = SlotState::Retiring(ctx.address().downgrade());
        metrics::counter!("boxoffice_actors_idle_stops_total", "kind" => A::KIND).increment(1);
    }
}

enum SlotState<A: Actor> {
    /// Running and handed out; `touched` is when it was last handed out (the book's ms).
    Live { addr: Addr<A>, touched: AtomicU64 },
    /// Let go of: it stops once nobody holds its address, unless it is handed out again.
    Retiring(actix::WeakAddr<A>),
}

struct Slot<A: Actor> {
    /// Which activation of the id this is.
    generation: u64,
    state: SlotState<A>,
}

struct BookInner<A: Activated> {
    slots: dashmap::DashMap<A::Id, Slot<A>>,
    env: A::Env,
    arbiters: Arbiters,
    idle_ms: u64,
    generations: AtomicU64,
}

impl<A: Activated> BookInner<A> {
    /// The server's clock, so that an advance of it (a test's) makes actors idle too.
    fn clock_ms(&self) -> u64 {
        crate::time::now_ms()
    }
}

/// The one address book of keyed actors (wallets, seat maps, rooms, listings): finds the
/// actor that owns an id, starts it from its records on first use (once, however many ask
/// at the same moment: the first holds the id's entry while it loads), and stops it after
/// `idle` without being asked for, unless it still has work. It holds addresses only and
/// decides nothing about the business.
pub struct ActorBook<A: Activated>(Arc<BookInner<A>>);

impl<A: Activated> Clone for ActorBook<A> {
    fn clone(&self) -> Self {
        ActorBook(self.0.clone())
    }
}

impl<A: Activated> ActorBook<A> {
    /// A book whose actors stop after `idle` unasked (run inside an actix system: a task
    /// sweeps the book every half window, at most every 10 s, and whenever the clock is
    /// advanced).
    pub fn new(env: A::Env, arbiters: Arbiters, idle: Duration) -> Self {
        let inner = Arc::new(BookInner {
            slots: Default::default(),
            env,
            arbiters,
            idle_ms: idle.as_millis().max(1) as u64,
            generations: AtomicU64::new(0),
        });
        let every = (idle / 2).clamp(Duration::from_millis(10), Duration::from_secs(10));
        let weak = Arc::downgrade(&inner);
        actix_rt::spawn(async move {
            let mut tick = actix_rt::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut moved = crate::time::clock().moved();
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = moved.next() => {}
                }
                let Some(book) = weak.upgrade() else { return };
                ActorBook(book).sweep();
            }
        });
        ActorBook(inner)
    }

    /// The environment actors of this book are activated with.
    pub fn env(&self) -> &A::Env {
        &self.0.env
    }

    /// The actor of `id`, started from its records if it is not running; `None` if there
    /// is no such actor.
    pub fn get(&self, id: &A::Id) -> Result<Option<Addr<A>>, StoreError> {
        let now = self.0.clock_ms();
        if let Some(slot) = self.0.slots.get(id) {
            if let SlotState::Live { addr, touched } = &slot.state {
                touched.store(now, Relaxed);
                return Ok(Some(addr.clone()));
            }
        }
        self.find_or(id, now, |book, id, lease| A::activate(id, &book.env, lease))
    }

    /// The actor of `id`: the running one, or the one `make` builds (for an actor whose
    /// records the caller has at hand: start-up, or one just created).
    pub fn start_with(
        &self,
        id: &A::Id,
        make: impl FnOnce(Lease<A>) -> Result<A, StoreError>,
    ) -> Result<Addr<A>, StoreError> {
        let now = self.0.clock_ms();
        match self.find_or(id, now, |_, _, lease| make(lease).map(Some))? {
            Some(addr) => Ok(addr),
            None => unreachable!("`make` always builds an actor"),
        }
    }

    fn find_or(
        &self,
        id: &A::Id,
        now: u64,
        make: impl FnOnce(&BookInner<A>, &A::Id, Lease<A>) -> Result<Option<A>, StoreError>,
    ) -> Result<Option<Addr<A>>, StoreError> {
        use dashmap::mapref::entry::Entry;
        let mut entry = self.0.slots.entry(id.clone());
        if let Entry::Occupied(slot) = &mut entry {
            let slot = slot.get_mut();
            match &slot.state {
                SlotState::Live { addr, touched } => {
                    touched.store(now, Relaxed);
                    return Ok(Some(addr.clone()));
                }
                SlotState::Retiring(weak) => {
                    if let Some(addr) = weak.upgrade() {
                        // Called off: it was let go of but has not stopped yet.
                        slot.state = SlotState::Live { addr: addr.clone(), touched: AtomicU64::new(now) };
                        metrics::counter!("boxoffice_actors_recalled_total", "kind" => A::KIND).increment(1);
                        return Ok(Some(addr));
                    }
                }
            }
        }
        let generation = self.0.generations.fetch_add(1, Relaxed) + 1;
        let lease = Lease { tie: Some((self.0.clone(), id.clone(), generation)) };
        let Some(actor) = make(&self.0, id, lease)? else { return Ok(None) };
        let addr = A::start_in_arbiter(&self.0.arbiters.for_key(&(A::KIND, id)), |_| actor);
        let slot = Slot { generation, state: SlotState::Live { addr: addr.clone(), touched: AtomicU64::new(now) } };
        match entry {
            Entry::Occupied(mut e) => {
                // The one before stopped without saying so (it cannot be reached any more).
                e.insert(slot);
            }
            Entry::Vacant(e) => {
                e.insert(slot);
            }
        }
        metrics::gauge!("boxoffice_actors_live", "kind" => A::KIND).increment(1.0);
        Ok(Some(addr))
    }

    /// How many actors of this book are running (live or stopping).
    pub fn len(&self) -> usize {
        self.0.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.slots.is_empty()
    }

    /// Ask every actor unasked for during the idle window whether it may stop.
    fn sweep(&self) {
        let now = self.0.clock_ms();
        let idle: Vec<Addr<A>> = self
            .0
            .slots
            .iter()
            .filter_map(|slot| match &slot.state {
                SlotState::Live { addr, touched } if now.saturating_sub(touched.load(Relaxed)) >= self.0.idle_ms => {
                    Some(addr.clone())
                }
                _ => None,
            })
            .collect();
        for addr in idle {
            addr.do_send(Deactivate);
        }
    }
}

#[cfg(test)]
mod tests {
    //! The lifecycle on real actors: a wallet (state in its record) and a seat map (a
    //! deadline keeps it), with an idle window of a few milliseconds.

    use crate::actors::keys::Charge;
    use crate::actors::seat_map::{HoldSeats, SeatMapSnapshot};
    use crate::actors::wallet::GetBalance;
    use crate::actors::Registry;
    use crate::config::Cli;
    use crate::store::{Key, Store};
    use clap::Parser;
    use std::time::{Duration, Instant};

    async fn registry(dir: &std::path::Path, idle: &str) -> Registry {
        let data = dir.to_str().expect("utf-8").to_string();
        let settings =
            Cli::parse_from(["boxoffice", "--no-demo", "--data-dir", &data, "--actor-idle", idle]).settings.sanitize();
        let store = Store::open(dir).expect("store");
        Registry::start(store, settings).await.expect("registry")
    }

    /// Wait until `check` holds (the sweeper runs every half idle window).
    async fn until(what: &str, check: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(Instant::now() < deadline, "never: {what}");
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[actix_rt::test]
    async fn an_idle_wallet_stops_and_comes_back_from_its_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = registry(dir.path(), "20ms").await;
        let charge = || Charge { key: "c".into(), fingerprint: [1; 32], amount: 700 };
        let first = registry.keys(1).expect("gate").send(charge()).await.expect("mailbox").expect("charge");
        let idle = || registry.live_actors().wallets == 0 && registry.live_actors().key_gates == 0;
        until("the wallet and the key gate stop", idle).await;
        let wallet = registry.wallet(1).expect("wallet");
        assert_eq!(registry.live_actors().wallets, 1);
        assert_eq!(wallet.send(GetBalance).await.expect("mailbox"), 700, "the balance came back");
        let replay = registry.keys(1).expect("gate").send(charge()).await.expect("mailbox").expect("replay");
        assert_eq!(replay, first, "a keyed retry after the stop replays the first answer");
        assert_eq!(wallet.send(GetBalance).await.expect("mailbox"), 700, "and charges nothing");
    }

    #[actix_rt::test]
    async fn a_storm_of_first_requests_starts_one_actor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = registry(dir.path(), "1m").await;
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let registry = registry.clone();
                std::thread::spawn(move || (0..50).map(|_| registry.wallet(9).expect("wallet")).collect::<Vec<_>>())
            })
            .collect();
        let addrs: Vec<_> = threads.into_iter().flat_map(|t| t.join().expect("thread")).collect();
        assert!(addrs.iter().all(|a| *a == addrs[0]), "every caller got the same actor");
        assert_eq!(registry.live_actors().wallets, 1);
    }

    #[actix_rt::test]
    async fn a_stop_is_called_off_while_someone_still_holds_the_actor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = registry(dir.path(), "20ms").await;
        let charge = Charge { key: "k".into(), fingerprint: [0; 32], amount: 5 };
        registry.keys(3).expect("gate").send(charge).await.expect("mailbox").expect("charged");
        let held = registry.wallet(3).expect("wallet");
        // Past several sweeps: the book let go of it, but a holder can still reach it, so it
        // runs on, and whoever asks next gets that same actor back, not a second one.
        actix_rt::time::sleep(Duration::from_millis(120)).await;
        assert!(held.connected(), "an actor somebody holds does not stop");
        let again = registry.wallet(3).expect("wallet");
        assert_eq!(again, held, "the stop was called off");
        assert_eq!(held.send(GetBalance).await.expect("mailbox"), 5, "and it still serves");
        let weak = held.downgrade();
        drop((held, again));
        until("the wallet stops once nobody holds it", || registry.live_actors().wallets == 0).await;
        assert!(weak.upgrade().is_none(), "the old actor is gone");
        let fresh = registry.wallet(3).expect("wallet");
        assert_eq!(fresh.send(GetBalance).await.expect("mailbox"), 5);
    }

    #[actix_rt::test]
    async fn a_seat_map_with_a_deadline_stays_until_it_has_fired() {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = registry(dir.path(), "20ms").await;
        let definition = SeatMapSnapshot::new("m".into(), ["1".to_string()], 100);
        registry.store().put(&Key::SeatMap("m".into()), &definition).expect("definition");
        let seat_map = registry.seat_map("m").expect("started from its definition");
        let hold =
            HoldSeats { user: 1, seats: vec!["1".into()], ttl: Duration::from_millis(300), key: None, booking: None };
        seat_map.send(hold).await.expect("mailbox").expect("hold");
        drop(seat_map);
        let held_at = Instant::now();
        until("the hold expires and the seat map stops", || registry.live_actors().seat_maps == 0).await;
        assert!(held_at.elapsed() >= Duration::from_millis(300), "it stopped before its deadline fired");
        // Started again from its definition: the seat is free, as the expiry left it.
        let seats = registry.seat_map("m").expect("seat map").send(crate::actors::seat_map::GetSeats).await;
        assert_eq!(seats.expect("mailbox")[0].state, crate::actors::seat_map::SeatState::Available);
    }

    #[actix_rt::test]
    async fn a_seat_map_whose_last_deadline_went_away_does_not_wait_for_its_timer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = registry(dir.path(), "20ms").await;
        let definition = SeatMapSnapshot::new("c".into(), ["1".to_string()], 100);
        registry.store().put(&Key::SeatMap("c".into()), &definition).expect("definition");
        let seat_map = registry.seat_map("c").expect("started from its definition");
        let hold =
            HoldSeats { user: 1, seats: vec!["1".into()], ttl: Duration::from_secs(600), key: None, booking: None };
        let r = seat_map.send(hold).await.expect("mailbox").expect("hold");
        let cancel = crate::actors::seat_map::CancelReservation { reservation: r.id, user: 1 };
        seat_map.send(cancel).await.expect("mailbox").expect("cancelled");
        drop(seat_map);
        // Not ten minutes: the timer of the cancelled hold is disarmed with it.
        until("the seat map stops", || registry.live_actors().seat_maps == 0).await;
    }
}
