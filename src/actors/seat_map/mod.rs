//! `SeatMap`: one actor per schedule (contract Q) or performance (contract B). It owns
//! every seat's state and every live reservation on it; its mailbox is the only lock.
//!
//! A reservation holds one or more seats, all or none, until `hold_expires_at`. The
//! actor's timer expires holds (once: the state moves `Held -> Expired` in one persisted
//! step). On start the actor expires what fell due while the server was down.
//!
//! # Payment, the seat map's half
//! The [`Wallet`](super::wallet) coordinates a payment; the seat map is its participant:
//! 1. `BeginPayment` moves `Held -> Paying(payment)`, if the hold is the payer's and has
//!    not run out. A paying reservation never expires: its fate is the wallet's.
//! 2. The wallet decides (debit and record, durably: the commit point) and sends
//!    `FinishPayment { commit }`: commit -> `Confirmed` and the seats `Sold`; abort ->
//!    `Held` again, or `Expired` if the hold ran out meanwhile.
//! 3. A reservation left `Paying` (a crash, a lost message) is resolved by asking the
//!    wallet whether that payment committed, at start and after [`PAYING_RESOLVE_AFTER`].
//!    The wallet answers from its durable record, so a debit always ends in a confirmed
//!    seat and an unrecorded payment always ends in a released or re-held one.
//!
//! # Bookings paid by card (contract B)
//! A booking is a reservation with a [`Booking`] attached; the card payment is run by the
//! seat map itself, without ever waiting for the gateway inside a handler: see
//! [`booking`].

pub mod booking;

pub use booking::{Booking, BookingSpec};

use super::book::{deactivate, Activated, ActorBook, Arbiters, Deactivate, Lease, Lookup};
use super::card::{self, Cards};
use super::deadline::Deadline;
use super::gateway::PaymentGateway;
use super::ledger::Keyed;
use crate::store::{Batch, Key, Store, StoreError};
use crate::time::now_ms;
use actix::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How long a reservation may stay `Paying` before the seat map asks the wallet.
pub const PAYING_RESOLVE_AFTER: Duration = Duration::from_secs(10);

/// A seat and what it is doing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Seat {
    pub label: String,
    pub price: u64,
    pub state: SeatState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeatState {
    Available,
    /// Held (or being paid for) by this reservation.
    Held(u64),
    /// Sold through this reservation.
    Sold(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReservationStatus {
    Held,
    /// A wallet is paying for it: it cannot expire until the wallet decides.
    Paying,
    Confirmed,
    Expired,
    Cancelled,
}

/// One hold of one or more seats of one seat map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub id: u64,
    pub seat_map: String,
    pub seats: Vec<String>,
    pub user: u64,
    /// The sum of the seats' prices when they were held.
    pub price: u64,
    pub status: ReservationStatus,
    pub created_at: u64,
    pub hold_expires_at: u64,
    /// The payment paying (or that paid) for it.
    pub payment: Option<u64>,
    pub paying_since: Option<u64>,
    pub updated_at: u64,
    /// Set for a contract B booking: its public ids and its card payment.
    pub booking: Option<Booking>,
}

impl Reservation {
    /// Held, paying or confirmed: its seats are taken.
    pub fn is_live(&self) -> bool {
        matches!(self.status, ReservationStatus::Held | ReservationStatus::Paying | ReservationStatus::Confirmed)
    }

    /// A finished booking whose card may still hold money: it must be refunded.
    pub fn needs_refund(&self) -> bool {
        !self.is_live() && self.booking.as_ref().is_some_and(|b| b.charge.may_hold_money())
    }
}

/// A seat map's definition (its seats and prices), written once when it is created.
///
/// Seat states are not kept here: a change writes only the reservation it touches (a few
/// hundred bytes, whatever the size of the map), and a restart rebuilds every seat's
/// state from the live reservations. So a hold costs the same on a 50-seat map and on a
/// 10,000-seat one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeatMapSnapshot {
    pub id: String,
    /// The seats, all `Available` as written.
    pub seats: Vec<Seat>,
}

impl SeatMapSnapshot {
    /// A fresh seat map with every seat available.
    pub fn new(id: String, labels: impl IntoIterator<Item = String>, price: u64) -> Self {
        let seats = labels.into_iter().map(|label| Seat { label, price, state: SeatState::Available }).collect();
        SeatMapSnapshot { id, seats }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum SeatError {
    #[error("no seats were requested")]
    NoSeats,
    #[error("seat {0} does not exist")]
    UnknownSeat(String),
    #[error("seat {0} was requested twice")]
    DuplicateSeat(String),
    #[error("seat {0} is not available")]
    Taken(String),
    #[error("the seats' total price would pass the largest amount the server accepts")]
    TotalTooLarge,
    #[error("reservation not found")]
    NotFound,
    #[error("reservation belongs to another user")]
    NotYours,
    #[error("reservation has expired")]
    Expired,
    #[error("reservation was cancelled")]
    Cancelled,
    #[error("reservation is already confirmed")]
    AlreadyConfirmed,
    #[error("a payment for this reservation is in progress")]
    PaymentInProgress,
    #[error("the booking is not pending")]
    NotPending,
    #[error("storage failure: {0}")]
    Storage(String),
}

impl SeatError {
    /// A seat map that cannot be reached is a storage-level failure for its caller.
    pub fn from_mailbox(e: MailboxError) -> SeatError {
        SeatError::Storage(format!("seat map unavailable: {e}"))
    }
}

impl From<StoreError> for SeatError {
    fn from(e: StoreError) -> Self {
        SeatError::Storage(e.to_string())
    }
}

/// A seat as clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatView {
    pub label: String,
    pub price: u64,
    pub state: SeatState,
    /// For a held or sold seat: the reservation that has it.
    pub holder: Option<Holder>,
}

/// Who has a seat, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub reservation: u64,
    pub user: u64,
    pub until: u64,
    pub status: ReservationStatus,
    /// For a booking: its id and the user id as the client wrote it.
    pub booking: Option<(String, String)>,
}

pub struct SeatMap {
    id: String,
    seats: Vec<Seat>,
    /// Every seat's label and price, in seat order, shared with the seat-list handlers
    /// (they never change once the map exists).
    places: Arc<[SeatPlace]>,
    /// label -> index into `seats` (derived from `seats`).
    index: HashMap<String, usize>,
    /// Held, paying and confirmed reservations. Finished ones live only in the store.
    live: HashMap<u64, Reservation>,
    store: Store,
    env: SeatMapEnv,
    /// The expiry timer, aimed at the earliest deadline.
    timer: Deadline,
    /// After a failed write, no timer fires before this (no busy retry loop).
    backoff_until: u64,
    /// The earliest deadline a change has set since the timer was last armed.
    earliest_added: Option<u64>,
    /// How many live reservations have a deadline (held or paying): at none, the timer
    /// is disarmed at once rather than left to fire on nothing.
    pending: usize,
    /// The bookings' charges and refunds in flight with the gateway.
    cards: Cards,
    lease: Lease<SeatMap>,
}

/// Where a booking lives: its seat map and its reservation there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingRoute {
    pub seat_map: String,
    pub reservation: u64,
}

/// What became of a payment, as its payer's wallet knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentDecision {
    Committed,
    Aborted,
    InProgress,
}

/// A seat map asks the payer what became of a payment it was left `Paying` for (the
/// wallet answers from its durable record).
#[derive(Message)]
#[rtype(result = "PaymentDecision")]
pub struct ResolvePayment {
    pub payment: u64,
}

/// What a seat map reaches besides its own state: the card gateway (contract B) and the
/// payers' wallets, for one question.
#[derive(Clone)]
pub struct SeatMapEnv {
    pub gateway: Arc<dyn PaymentGateway>,
    pub gateway_timeout: Duration,
    pub wallets: Lookup<u64, ResolvePayment>,
}

/// The seat maps' address book: by id, and the routes to them from schedules (contract
/// Q) and performances (contract B). It decides nothing.
#[derive(Clone)]
pub struct SeatMaps(Arc<SeatMapsInner>);

struct SeatMapsInner {
    book: ActorBook<SeatMap>,
    /// schedule id -> (concert id, seat map id).
    schedules: dashmap::DashMap<u64, (u64, String)>,
    /// performance id -> seat map id.
    performances: dashmap::DashMap<String, String>,
}

/// What every seat map is activated with.
pub struct SeatMapsEnv {
    pub store: Store,
    pub env: SeatMapEnv,
}

impl SeatMaps {
    pub fn new(env: SeatMapsEnv, arbiters: Arbiters, idle: Duration) -> SeatMaps {
        SeatMaps(Arc::new(SeatMapsInner {
            book: ActorBook::new(env, arbiters, idle),
            schedules: Default::default(),
            performances: Default::default(),
        }))
    }

    /// The actor of seat map `id`, started from its definition if it is not running.
    /// `None` when there is no such seat map (or its record cannot be read: logged).
    pub fn get(&self, id: &str) -> Option<Addr<SeatMap>> {
        match self.0.book.get(&id.to_string()) {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(seat_map = id, error = %e, "could not start a seat map from its record");
                None
            }
        }
    }

    /// How many seat map actors are running.
    pub fn live(&self) -> usize {
        self.0.book.len()
    }

    /// Start seat map `snapshot` with its live reservations (start-up, or a new one).
    pub fn start(&self, snapshot: SeatMapSnapshot, live: Vec<Reservation>) -> Result<Addr<SeatMap>, StoreError> {
        let env = self.0.book.env();
        let (store, seat_map_env) = (env.store.clone(), env.env.clone());
        self.0
            .book
            .start_with(&snapshot.id.clone(), |lease| SeatMap::restore(snapshot, live, store, seat_map_env, lease))
    }

    /// The seat map of `reservation`, read from its record.
    pub fn of_reservation(&self, store: &Store, reservation: u64) -> Result<Option<Addr<SeatMap>>, StoreError> {
        let r = store.get::<Reservation>(&Key::Reservation(reservation))?;
        Ok(r.and_then(|r| self.get(&r.seat_map)))
    }

    pub fn route_schedule(&self, schedule: u64, concert: u64, seat_map: String) {
        self.0.schedules.insert(schedule, (concert, seat_map));
    }

    /// The seat map of `schedule`, if it is a schedule of `concert`.
    pub fn of_schedule(&self, concert: u64, schedule: u64) -> Option<Addr<SeatMap>> {
        let id = {
            let entry = self.0.schedules.get(&schedule)?;
            let (c, id) = entry.value();
            if *c != concert {
                return None;
            }
            id.clone()
        };
        self.get(&id)
    }

    /// The concert a schedule belongs to.
    pub fn concert_of_schedule(&self, schedule: u64) -> Option<u64> {
        self.0.schedules.get(&schedule).map(|e| e.value().0)
    }

    pub fn route_performance(&self, performance: &str, seat_map: &str) {
        self.0.performances.insert(performance.to_string(), seat_map.to_string());
    }

    pub fn of_performance(&self, performance: &str) -> Option<Addr<SeatMap>> {
        let id = self.0.performances.get(performance)?.clone();
        self.get(&id)
    }
}

impl Activated for SeatMap {
    type Id = String;
    type Env = SeatMapsEnv;
    const KIND: &'static str = "seat_map";
    /// From its definition and its live reservations (sold seats among them), read by
    /// the seat map's own index ([`Key::SeatMapLive`]).
    fn activate(id: &String, env: &SeatMapsEnv, lease: Lease<Self>) -> Result<Option<Self>, StoreError> {
        let Some(snapshot) = env.store.get::<SeatMapSnapshot>(&Key::SeatMap(id.clone()))? else { return Ok(None) };
        let mut live = Vec::new();
        for (key, ()) in env.store.scan_under::<()>(&Key::LiveOf(id.clone()))? {
            let Key::SeatMapLive(_, r) = key else { continue };
            match env.store.get::<Reservation>(&Key::Reservation(r))? {
                Some(r) => live.push(r),
                None => tracing::warn!(seat_map = id, reservation = r, "a live entry without its reservation"),
            }
        }
        live.sort_by_key(|r| r.created_at);
        SeatMap::restore(snapshot, live, env.store.clone(), env.env.clone(), lease).map(Some)
    }
    /// A reservation with a deadline (held, paying) or owed a refund, a timer, or a
    /// gateway call in flight. Sold seats alone do not keep it: they are read back.
    fn busy(&self) -> bool {
        self.pending > 0
            || self.live.values().any(Reservation::needs_refund)
            || self.timer.is_armed()
            || self.cards.busy()
    }
    fn lease(&self) -> &Lease<Self> {
        &self.lease
    }
}

impl Handler<Deactivate> for SeatMap {
    type Result = ();
    fn handle(&mut self, _: Deactivate, ctx: &mut Context<Self>) {
        deactivate(self, ctx)
    }
}

impl SeatMap {
    /// Bring a seat map back from its definition and its reservations: the live ones take
    /// their seats again, and finished bookings still owed a refund are kept to settle.
    pub fn restore(
        snapshot: SeatMapSnapshot,
        reservations: Vec<Reservation>,
        store: Store,
        env: SeatMapEnv,
        lease: Lease<SeatMap>,
    ) -> Result<SeatMap, StoreError> {
        let mut seats = snapshot.seats;
        for s in seats.iter_mut() {
            s.state = SeatState::Available;
        }
        let index: HashMap<String, usize> = seats.iter().enumerate().map(|(i, s)| (s.label.clone(), i)).collect();
        let mut live = HashMap::new();
        for mut res in reservations.into_iter().filter(|r| r.seat_map == snapshot.id) {
            if !(res.is_live() || res.needs_refund()) {
                continue;
            }
            if res.is_live() {
                let state = if res.status == ReservationStatus::Confirmed {
                    SeatState::Sold(res.id)
                } else {
                    SeatState::Held(res.id)
                };
                for label in &res.seats {
                    if let Some(&i) = index.get(label) {
                        seats[i].state = state;
                    }
                }
            }
            // A charge that was in flight when the process stopped has an unknown outcome
            // now: a retry reuses its gateway key, an expiry refunds it.
            if let Some(b) = res.booking.as_mut() {
                b.charge.restarted();
            }
            live.insert(res.id, res);
        }
        let places = seats.iter().map(|s| SeatPlace { label: s.label.clone(), price: s.price }).collect();
        let pending = live.values().filter(|r| deadline(r).is_some()).count();
        let cards = Cards::new(store.clone(), env.gateway.clone(), env.gateway_timeout);
        Ok(SeatMap {
            id: snapshot.id,
            seats,
            places,
            index,
            live,
            store,
            env,
            timer: Deadline::default(),
            backoff_until: 0,
            earliest_added: None,
            pending,
            cards,
            lease,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Apply a change to reservation `id` and its seats; persist; keep it live or not.
    fn transition(&mut self, res: Reservation, seats: SeatState) -> Result<Reservation, SeatError> {
        self.commit(res, Some(seats), Batch::default())
    }

    /// Persist a change to a reservation that leaves the seats as they are (its seats may
    /// belong to someone else by now).
    fn save(&mut self, res: Reservation) -> Result<Reservation, SeatError> {
        self.commit(res, None, Batch::default())
    }

    /// The one place reservations change, write first: the reservation, its
    /// [`Key::SeatMapLive`] entry when it just became live or stopped being so, and
    /// whatever must be written with it (`extra`: a new hold's ledger entry and booking
    /// routes) go in one atomic write; only then do its seats and the live set change. So
    /// a failed write leaves memory as it was.
    fn commit(
        &mut self,
        mut res: Reservation,
        seats: Option<SeatState>,
        extra: Batch,
    ) -> Result<Reservation, SeatError> {
        res.updated_at = now_ms();
        // Live reservations, and finished ones still owed a refund, stay in memory.
        let keep = res.is_live() || res.needs_refund();
        let before = self.live.get(&res.id);
        let was = before.map(|r| r.status);
        let had_deadline = before.is_some_and(|b| deadline(b).is_some());
        let mut batch = extra;
        batch.put(&Key::Reservation(res.id), &res)?;
        match (before.is_some(), keep) {
            (false, true) => batch.put(&Key::SeatMapLive(self.id.clone(), res.id), &())?,
            (true, false) => batch.delete(&Key::SeatMapLive(self.id.clone(), res.id)),
            _ => {}
        }
        if let Err(e) = self.store.apply(batch) {
            tracing::error!(seat_map = %self.id, error = %e, "could not persist a seat map change");
            return Err(e.into());
        }
        if let Some(state) = seats {
            for label in &res.seats {
                if let Some(&i) = self.index.get(label) {
                    self.seats[i].state = state;
                }
            }
        }
        if keep {
            self.live.insert(res.id, res.clone());
        } else {
            self.live.remove(&res.id);
        }
        match (had_deadline, keep && deadline(&res).is_some()) {
            (false, true) => self.pending += 1,
            (true, false) => self.pending = self.pending.saturating_sub(1),
            _ => {}
        }
        if let Some(at) = deadline(&res) {
            self.earliest_added = Some(self.earliest_added.map_or(at, |e| e.min(at)));
        }
        count(was, &res);
        Ok(res)
    }

    /// Hold the seats. A keyed hold (see [`ledger`](super::ledger)) records its answer with the change: the
    /// hold and its ledger entry in one write, or a refusal's entry alone.
    fn hold(&mut self, msg: HoldSeats) -> Result<Reservation, SeatError> {
        let key = msg.key.clone();
        let result = self.place(msg);
        if let (Err(e), Some(keyed)) = (&result, &key) {
            if !matches!(e, SeatError::Storage(_)) {
                let mut batch = Batch::default();
                keyed.record(&Err(e.clone()), &mut batch)?;
                self.store.apply(batch)?;
            }
        }
        result
    }

    fn place(&mut self, msg: HoldSeats) -> Result<Reservation, SeatError> {
        if msg.seats.is_empty() {
            return Err(SeatError::NoSeats);
        }
        let mut seen = std::collections::HashSet::new();
        let mut price = 0u64;
        for label in &msg.seats {
            let Some(&i) = self.index.get(label) else {
                return Err(SeatError::UnknownSeat(label.clone()));
            };
            if !seen.insert(label) {
                return Err(SeatError::DuplicateSeat(label.clone()));
            }
            if self.seats[i].state != SeatState::Available {
                return Err(SeatError::Taken(label.clone()));
            }
            price = crate::money::add(price, self.seats[i].price).ok_or(SeatError::TotalTooLarge)?;
        }
        let now = now_ms();
        let id = self.store.next_id()?;
        let booking = msg.booking.map(|spec| Booking::new(id, spec));
        let res = Reservation {
            id,
            seat_map: self.id.clone(),
            seats: msg.seats,
            user: msg.user,
            price,
            status: ReservationStatus::Held,
            created_at: now,
            hold_expires_at: now + crate::time::ms(msg.ttl),
            payment: None,
            paying_since: None,
            updated_at: now,
            booking,
        };
        let mut extra = Batch::default();
        if res.booking.is_some() {
            // The booking's and intent's ids route to it by themselves; the user's list needs
            // an entry.
            let route = BookingRoute { seat_map: self.id.clone(), reservation: id };
            extra.put(&Key::UserBooking(res.user, id), &route)?;
        }
        if let Some(keyed) = &msg.key {
            keyed.record(&Ok(res.clone()), &mut extra)?;
        }
        self.commit(res, Some(SeatState::Held(id)), extra)
    }

    /// Expire every hold that has run out, and ask wallets about stale payments.
    fn sweep(&mut self, ctx: &mut Context<Self>) {
        let now = now_ms();
        let due: Vec<Reservation> = self
            .live
            .values()
            .filter(|r| r.status == ReservationStatus::Held && r.hold_expires_at <= now)
            .cloned()
            .collect();
        for mut r in due {
            r.status = ReservationStatus::Expired;
            let id = r.id;
            match self.transition(r, SeatState::Available) {
                Ok(_) => tracing::debug!(seat_map = %self.id, reservation = id, "hold expired"),
                Err(e) => {
                    tracing::error!(seat_map = %self.id, reservation = id, error = %e, "expiry not persisted; retrying in a second");
                    self.backoff_until = now + 1000;
                }
            }
        }
        let stale: Vec<(u64, u64, u64)> = self
            .live
            .values()
            .filter(|r| r.status == ReservationStatus::Paying)
            .filter(|r| r.paying_since.unwrap_or(0) + crate::time::ms(PAYING_RESOLVE_AFTER) <= now)
            .filter_map(|r| r.payment.map(|p| (r.id, r.user, p)))
            .collect();
        for (reservation, user, payment) in stale {
            self.ask_wallet(reservation, user, payment, ctx);
        }
        card::settle(self, ctx);
        self.arm(ctx);
    }

    /// Ask the payer's wallet whether `payment` committed, and finish the reservation.
    fn ask_wallet(&mut self, reservation: u64, user: u64, payment: u64, ctx: &mut Context<Self>) {
        // Until the answer comes, do not ask again.
        if let Some(r) = self.live.get_mut(&reservation) {
            r.paying_since = Some(now_ms());
        }
        let wallet = match self.env.wallets.get(user) {
            Ok(Some(w)) => w,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, user, "wallet unavailable while resolving a payment");
                return;
            }
        };
        let fut = wallet.send(ResolvePayment { payment });
        ctx.spawn(fut.into_actor(self).map(move |answer, act, ctx| {
            let commit = match answer {
                Ok(PaymentDecision::Committed) => true,
                Ok(PaymentDecision::Aborted) => false,
                Ok(PaymentDecision::InProgress) | Err(_) => {
                    act.arm(ctx);
                    return;
                }
            };
            tracing::info!(reservation, payment, commit, "resolved a stale payment");
            let _ = act.finish_payment(reservation, payment, commit);
            act.arm(ctx);
        }));
    }

    fn finish_payment(&mut self, reservation: u64, payment: u64, commit: bool) -> Result<Reservation, SeatError> {
        let Some(r) = self.live.get(&reservation).cloned() else {
            return Err(SeatError::NotFound);
        };
        if r.payment != Some(payment) {
            return Err(SeatError::PaymentInProgress);
        }
        match (r.status, commit) {
            (ReservationStatus::Confirmed, true) => Ok(r),
            (ReservationStatus::Paying, true) => {
                let mut r = r;
                r.status = ReservationStatus::Confirmed;
                r.paying_since = None;
                self.transition(r, SeatState::Sold(reservation))
            }
            (ReservationStatus::Paying, false) => {
                let mut r = r;
                r.payment = None;
                r.paying_since = None;
                if r.hold_expires_at <= now_ms() {
                    r.status = ReservationStatus::Expired;
                    self.transition(r, SeatState::Available)
                } else {
                    r.status = ReservationStatus::Held;
                    self.transition(r, SeatState::Held(reservation))
                }
            }
            _ => Err(SeatError::PaymentInProgress),
        }
    }

    /// Arm the timer for the earliest deadline: a hold's expiry or a stale payment.
    ///
    /// The timer may fire early (its reservation was paid or cancelled meanwhile: the sweep
    /// finds nothing due and arms again), never late. So while it is armed, only a deadline
    /// added since (see `commit`) that falls before it needs a look; the full scan of the
    /// live reservations runs when no timer is armed, as after every sweep.
    fn arm(&mut self, ctx: &mut Context<Self>) {
        let added = self.earliest_added.take();
        if self.pending == 0 {
            self.timer.clear(ctx);
            return;
        }
        let next = match (self.timer.at(), added) {
            (Some(armed), Some(at)) if at.max(self.backoff_until) < armed => Some(at),
            (Some(_), _) => return,
            (None, _) => self.live.values().filter_map(deadline).min(),
        };
        let next = next.map(|at| at.max(self.backoff_until));
        let Some(at) = next else {
            self.timer.clear(ctx);
            return;
        };
        if self.timer.at().is_some_and(|armed| armed <= at) {
            return;
        }
        self.timer.set(ctx, at, |act, ctx| {
            act.timer.fired();
            act.sweep(ctx);
        });
    }

    fn view(&self, seat: &Seat) -> SeatView {
        let holder = match seat.state {
            SeatState::Held(r) | SeatState::Sold(r) => self.live.get(&r).map(|res| Holder {
                reservation: res.id,
                user: res.user,
                until: res.hold_expires_at,
                status: res.status,
                booking: res.booking.as_ref().map(|b| (b.id.clone(), b.user_label.clone())),
            }),
            SeatState::Available => None,
        };
        SeatView { label: seat.label.clone(), price: seat.price, state: seat.state, holder }
    }
}

impl SeatMap {
    /// `user`'s contract Q hold `reservation`, still `Held`: what a wallet payment or a
    /// cancellation may act on; otherwise the error that says why not. A booking is paid by
    /// card through contract B, never from a wallet, so it counts as not found here.
    fn held_by(&self, reservation: u64, user: u64) -> Result<Reservation, SeatError> {
        let Some(r) = self.live.get(&reservation) else {
            return Err(match self.store.get::<Reservation>(&Key::Reservation(reservation))? {
                Some(r) if r.booking.is_some() => SeatError::NotFound,
                Some(r) if r.user != user => SeatError::NotYours,
                Some(r) if r.status == ReservationStatus::Cancelled => SeatError::Cancelled,
                Some(_) => SeatError::Expired,
                None => SeatError::NotFound,
            });
        };
        if r.booking.is_some() {
            return Err(SeatError::NotFound);
        }
        if r.user != user {
            return Err(SeatError::NotYours);
        }
        match r.status {
            ReservationStatus::Held => Ok(r.clone()),
            ReservationStatus::Paying => Err(SeatError::PaymentInProgress),
            ReservationStatus::Confirmed => Err(SeatError::AlreadyConfirmed),
            ReservationStatus::Expired => Err(SeatError::Expired),
            ReservationStatus::Cancelled => Err(SeatError::Cancelled),
        }
    }
}

/// When the seat map must next look at `r`: its hold's expiry, or when a payment left
/// pending is to be resolved with the wallet.
fn deadline(r: &Reservation) -> Option<u64> {
    match r.status {
        ReservationStatus::Held => Some(r.hold_expires_at),
        ReservationStatus::Paying => Some(r.paying_since.unwrap_or(0) + crate::time::ms(PAYING_RESOLVE_AFTER)),
        _ => None,
    }
}

impl Actor for SeatMap {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(crate::actors::MAILBOX);
        // Expiries that fell due while the server was down fire now; payments that were
        // in flight are resolved with their wallets.
        let paying: Vec<(u64, u64, u64)> = self
            .live
            .values()
            .filter(|r| r.status == ReservationStatus::Paying)
            .filter_map(|r| r.payment.map(|p| (r.id, r.user, p)))
            .collect();
        for (reservation, user, payment) in paying {
            self.ask_wallet(reservation, user, payment, ctx);
        }
        self.sweep(ctx);
    }
    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        self.lease.stopping()
    }
}

/// What a hold comes to: the reservation, or why not.
pub type HoldOutcome = Result<Reservation, SeatError>;

/// Hold every listed seat for `user`, or none.
#[derive(Message)]
#[rtype(result = "Result<Reservation, SeatError>")]
pub struct HoldSeats {
    pub user: u64,
    pub seats: Vec<String>,
    pub ttl: Duration,
    /// The keyed request this hold answers: its outcome (the hold or a refusal) goes into
    /// the ledger with the change. The caller's key gate has checked the key.
    pub key: Option<Keyed<HoldOutcome>>,
    /// Make the hold a contract B booking.
    pub booking: Option<BookingSpec>,
}

impl Handler<HoldSeats> for SeatMap {
    type Result = Result<Reservation, SeatError>;
    fn handle(&mut self, msg: HoldSeats, ctx: &mut Context<Self>) -> Self::Result {
        let res = self.hold(msg)?;
        self.arm(ctx);
        Ok(res)
    }
}

/// Every seat with its state.
#[derive(Message)]
#[rtype(result = "Vec<SeatView>")]
pub struct GetSeats;

impl Handler<GetSeats> for SeatMap {
    type Result = MessageResult<GetSeats>;
    fn handle(&mut self, _: GetSeats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.seats.iter().map(|s| self.view(s)).collect())
    }
}

/// A seat's label and price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatPlace {
    pub label: String,
    pub price: u64,
}

/// Every seat's state, in seat order, beside the shared list of places: what a public seat
/// list shows, without copying labels or looking up who holds what.
pub struct SeatStates {
    pub places: Arc<[SeatPlace]>,
    pub states: Vec<SeatState>,
}

#[derive(Message)]
#[rtype(result = "SeatStates")]
pub struct GetSeatStates;

impl Handler<GetSeatStates> for SeatMap {
    type Result = MessageResult<GetSeatStates>;
    fn handle(&mut self, _: GetSeatStates, _: &mut Context<Self>) -> Self::Result {
        MessageResult(SeatStates { places: self.places.clone(), states: self.seats.iter().map(|s| s.state).collect() })
    }
}

/// How many seats are available, of how many.
#[derive(Message)]
#[rtype(result = "(usize, usize)")]
pub struct Availability;

impl Handler<Availability> for SeatMap {
    type Result = MessageResult<Availability>;
    fn handle(&mut self, _: Availability, _: &mut Context<Self>) -> Self::Result {
        let free = self.seats.iter().filter(|s| s.state == SeatState::Available).count();
        MessageResult((free, self.seats.len()))
    }
}

/// One reservation, live or finished.
#[derive(Message)]
#[rtype(result = "Result<Reservation, SeatError>")]
pub struct GetReservation {
    pub id: u64,
}

impl Handler<GetReservation> for SeatMap {
    type Result = Result<Reservation, SeatError>;
    fn handle(&mut self, msg: GetReservation, _: &mut Context<Self>) -> Self::Result {
        if let Some(r) = self.live.get(&msg.id) {
            return Ok(r.clone());
        }
        match self.store.get::<Reservation>(&Key::Reservation(msg.id))? {
            Some(r) if r.seat_map == self.id => Ok(r),
            _ => Err(SeatError::NotFound),
        }
    }
}

/// Several reservations of this seat map (those it does not have are left out), in the
/// order asked.
#[derive(Message)]
#[rtype(result = "Result<Vec<Reservation>, SeatError>")]
pub struct GetReservations {
    pub ids: Vec<u64>,
}

impl Handler<GetReservations> for SeatMap {
    type Result = Result<Vec<Reservation>, SeatError>;
    fn handle(&mut self, msg: GetReservations, ctx: &mut Context<Self>) -> Self::Result {
        let mut out = Vec::with_capacity(msg.ids.len());
        for id in msg.ids {
            match self.handle(GetReservation { id }, ctx) {
                Ok(r) => out.push(r),
                Err(SeatError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// Step 1 of a payment: lock the reservation for `payment` so it cannot expire.
#[derive(Message)]
#[rtype(result = "Result<Reservation, SeatError>")]
pub struct BeginPayment {
    pub reservation: u64,
    pub user: u64,
    pub payment: u64,
}

impl Handler<BeginPayment> for SeatMap {
    type Result = Result<Reservation, SeatError>;
    fn handle(&mut self, msg: BeginPayment, ctx: &mut Context<Self>) -> Self::Result {
        let r = self.held_by(msg.reservation, msg.user)?;
        if r.hold_expires_at <= now_ms() {
            // The timer has not fired yet, but the hold is over: expire it now.
            let mut r = r;
            r.status = ReservationStatus::Expired;
            self.transition(r, SeatState::Available)?;
            self.arm(ctx);
            return Err(SeatError::Expired);
        }
        let mut r = r;
        r.status = ReservationStatus::Paying;
        r.payment = Some(msg.payment);
        r.paying_since = Some(now_ms());
        let id = r.id;
        let r = self.transition(r, SeatState::Held(id))?;
        self.arm(ctx);
        Ok(r)
    }
}

/// Step 2 of a payment: the wallet's decision.
#[derive(Message)]
#[rtype(result = "Result<Reservation, SeatError>")]
pub struct FinishPayment {
    pub reservation: u64,
    pub payment: u64,
    pub commit: bool,
}

impl Handler<FinishPayment> for SeatMap {
    type Result = Result<Reservation, SeatError>;
    fn handle(&mut self, msg: FinishPayment, ctx: &mut Context<Self>) -> Self::Result {
        let r = self.finish_payment(msg.reservation, msg.payment, msg.commit);
        self.arm(ctx);
        r
    }
}

/// Cancel a held reservation of `user` and free its seats.
#[derive(Message)]
#[rtype(result = "Result<Reservation, SeatError>")]
pub struct CancelReservation {
    pub reservation: u64,
    pub user: u64,
}

impl Handler<CancelReservation> for SeatMap {
    type Result = Result<Reservation, SeatError>;
    fn handle(&mut self, msg: CancelReservation, ctx: &mut Context<Self>) -> Self::Result {
        let mut r = self.held_by(msg.reservation, msg.user)?;
        r.status = ReservationStatus::Cancelled;
        let r = self.transition(r, SeatState::Available)?;
        self.arm(ctx);
        Ok(r)
    }
}

/// The metrics of a reservation's change from `was` (`None`: new) to `res`'s status.
fn count(was: Option<ReservationStatus>, res: &Reservation) {
    if was == Some(res.status) {
        return;
    }
    use crate::observe::Sale;
    let sale = if res.booking.is_some() { Sale::Booking } else { Sale::Seats };
    match res.status {
        ReservationStatus::Held if was.is_none() => crate::observe::hold(sale),
        ReservationStatus::Expired => crate::observe::expiry(sale),
        ReservationStatus::Confirmed => crate::observe::payment(sale, res.price),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::Registry;
    use crate::config::Cli;
    use clap::Parser;

    /// A hold and a cancellation whose writes fail change nothing in memory: the seats
    /// keep their states and the reservation its status, and both succeed once the store
    /// works again.
    #[actix_rt::test]
    async fn a_failed_write_leaves_the_seat_map_as_it_was() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().to_str().expect("utf-8").to_string();
        let settings = Cli::parse_from(["boxoffice", "--no-demo", "--data-dir", &data]).settings.sanitize();
        let store = Store::open(dir.path()).expect("store");
        let registry = Registry::start(store.clone(), settings).await.expect("registry");
        let definition = SeatMapSnapshot::new("f".into(), ["1".to_string(), "2".to_string()], 100);
        store.put(&Key::SeatMap("f".into()), &definition).expect("definition");
        let seat_map = registry.start_seat_map(definition).expect("seat map");
        let hold = |seat: &str| HoldSeats {
            user: 1,
            seats: vec![seat.into()],
            ttl: Duration::from_secs(60),
            key: None,
            booking: None,
        };
        let held = seat_map.send(hold("1")).await.expect("mailbox").expect("hold");
        let states = || async { seat_map.send(GetSeatStates).await.expect("mailbox").states };
        store.fail_writes(true);
        let failed = seat_map.send(hold("2")).await.expect("mailbox");
        assert!(matches!(failed, Err(SeatError::Storage(_))), "{failed:?}");
        let cancel = CancelReservation { reservation: held.id, user: 1 };
        let failed = seat_map.send(cancel).await.expect("mailbox");
        assert!(matches!(failed, Err(SeatError::Storage(_))), "{failed:?}");
        assert_eq!(states().await, vec![SeatState::Held(held.id), SeatState::Available]);
        let r = seat_map.send(GetReservation { id: held.id }).await.expect("mailbox").expect("reservation");
        assert_eq!(r, held, "the reservation is as it was");
        store.fail_writes(false);
        let second = seat_map.send(hold("2")).await.expect("mailbox").expect("hold");
        let cancel = CancelReservation { reservation: held.id, user: 1 };
        seat_map.send(cancel).await.expect("mailbox").expect("cancel");
        assert_eq!(states().await, vec![SeatState::Available, SeatState::Held(second.id)]);
    }
}
