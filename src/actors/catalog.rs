//! `Catalog`: concerts and their schedules (contract Q), and performances (contract B).
//! It owns what is for sale and when; each schedule's or performance's seats are a
//! [`SeatMap`](super::seat_map) it creates. A performance may also be another name for a
//! schedule's seat map: then both contracts sell the same seats.

use super::seat_map::{Availability, SeatMapSnapshot, SeatMaps};
use crate::store::{Batch, Key, Store, StoreError};
use crate::time::now_ms;
use actix::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Concert {
    pub id: u64,
    pub title: String,
    pub created_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub id: u64,
    pub concert: u64,
    pub starts_at: u64,
    pub seats: u32,
    pub price: u64,
}

impl Schedule {
    /// The id of the seat map that sells this schedule.
    pub fn seat_map_id(&self) -> String {
        self.id.to_string()
    }
}

/// A contract B performance: a seat map sold by bookings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Performance {
    pub id: String,
    pub title: String,
    /// The seat map that sells it (a schedule's, when it is one).
    pub seat_map: String,
    pub seats: u32,
    /// The price of a seat when it was created.
    pub price: u64,
    pub created_at: u64,
}

impl Performance {
    /// The id of the seat map of a performance created with its own seats. The prefix
    /// keeps it apart from schedules' seat maps, which are named by number.
    pub fn own_seat_map_id(id: &str) -> String {
        format!("perf:{id}")
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CatalogSnapshot {
    pub concerts: BTreeMap<u64, Concert>,
    pub schedules: BTreeMap<u64, Schedule>,
    pub performances: BTreeMap<String, Performance>,
    next_concert: u64,
    next_schedule: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("concert not found")]
    UnknownConcert,
    #[error("no schedule with seats left")]
    NoSchedules,
    #[error("schedule not found")]
    UnknownSchedule,
    #[error("a performance with this id exists")]
    PerformanceExists,
    #[error("storage failure: {0}")]
    Storage(String),
}

impl From<StoreError> for CatalogError {
    fn from(e: StoreError) -> Self {
        CatalogError::Storage(e.to_string())
    }
}

pub struct Catalog {
    state: CatalogSnapshot,
    store: Store,
    /// Starts the seat maps of new schedules and performances, and routes to them.
    seat_maps: SeatMaps,
}

impl Catalog {
    pub fn new(state: CatalogSnapshot, store: Store, seat_maps: SeatMaps) -> Self {
        Catalog { state, store, seat_maps }
    }
}

impl Actor for Catalog {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(crate::actors::MAILBOX);
    }
}

#[derive(Message)]
#[rtype(result = "Result<Concert, CatalogError>")]
pub struct CreateConcert {
    pub title: String,
}

impl Handler<CreateConcert> for Catalog {
    type Result = ResponseFuture<Result<Concert, CatalogError>>;
    fn handle(&mut self, msg: CreateConcert, _: &mut Context<Self>) -> Self::Result {
        let mut next = self.state.clone();
        next.next_concert += 1;
        let concert = Concert { id: next.next_concert, title: msg.title, created_at: now_ms() };
        next.concerts.insert(concert.id, concert.clone());
        let result = self.store.put(&Key::Catalog, &next);
        if result.is_ok() {
            self.state = next;
        }
        let store = self.store.clone();
        Box::pin(async move {
            result?;
            store.durable().await?;
            Ok(concert)
        })
    }
}

/// A schedule with `seats` seats numbered 1..=seats at `price` each.
#[derive(Message)]
#[rtype(result = "Result<Schedule, CatalogError>")]
pub struct CreateSchedule {
    pub concert: u64,
    pub starts_at: u64,
    pub seats: u32,
    pub price: u64,
}

impl Handler<CreateSchedule> for Catalog {
    type Result = ResponseFuture<Result<Schedule, CatalogError>>;
    fn handle(&mut self, msg: CreateSchedule, _: &mut Context<Self>) -> Self::Result {
        let result = self.create_schedule(msg);
        self.store.when_durable(result)
    }
}

impl Catalog {
    fn create_schedule(&mut self, msg: CreateSchedule) -> Result<Schedule, CatalogError> {
        if !self.state.concerts.contains_key(&msg.concert) {
            return Err(CatalogError::UnknownConcert);
        }
        let mut next = self.state.clone();
        next.next_schedule += 1;
        let schedule = Schedule {
            id: next.next_schedule,
            concert: msg.concert,
            starts_at: msg.starts_at,
            seats: msg.seats,
            price: msg.price,
        };
        next.schedules.insert(schedule.id, schedule.clone());
        let seat_map = SeatMapSnapshot::new(schedule.seat_map_id(), (1..=msg.seats).map(|n| n.to_string()), msg.price);
        // The schedule and its seat map appear together or not at all.
        let mut batch = Batch::default();
        batch.put(&Key::Catalog, &next)?;
        batch.put(&Key::SeatMap(seat_map.id.clone()), &seat_map)?;
        self.store.apply(batch)?;
        self.state = next;
        self.seat_maps.start(seat_map, Vec::new())?;
        self.seat_maps.route_schedule(schedule.id, schedule.concert, schedule.seat_map_id());
        Ok(schedule)
    }
}

#[derive(Message)]
#[rtype(result = "Vec<Concert>")]
pub struct ListConcerts;

impl Handler<ListConcerts> for Catalog {
    type Result = MessageResult<ListConcerts>;
    fn handle(&mut self, _: ListConcerts, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.state.concerts.values().cloned().collect())
    }
}

/// A schedule with how many of its seats are available.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleView {
    pub schedule: Schedule,
    pub available: usize,
}

/// A concert's schedules with seats left (all of them with `include_sold_out`).
#[derive(Message)]
#[rtype(result = "Result<Vec<ScheduleView>, CatalogError>")]
pub struct ListSchedules {
    pub concert: u64,
    pub include_sold_out: bool,
}

impl Handler<ListSchedules> for Catalog {
    type Result = ResponseFuture<Result<Vec<ScheduleView>, CatalogError>>;
    fn handle(&mut self, msg: ListSchedules, _: &mut Context<Self>) -> Self::Result {
        if !self.state.concerts.contains_key(&msg.concert) {
            return Box::pin(async { Err(CatalogError::UnknownConcert) });
        }
        let schedules: Vec<(Schedule, Option<Addr<super::seat_map::SeatMap>>)> = self
            .state
            .schedules
            .values()
            .filter(|s| s.concert == msg.concert)
            .map(|s| (s.clone(), self.seat_maps.get(&s.seat_map_id())))
            .collect();
        Box::pin(async move {
            let mut out = Vec::with_capacity(schedules.len());
            for (schedule, addr) in schedules {
                let available = free_seats(addr).await;
                if available > 0 || msg.include_sold_out {
                    out.push(ScheduleView { schedule, available });
                }
            }
            if out.is_empty() {
                return Err(CatalogError::NoSchedules);
            }
            Ok(out)
        })
    }
}

/// Where a new performance's seats come from.
#[derive(Debug, Clone)]
pub enum PerformanceSeats {
    /// A new seat map with these seat labels at one price.
    New { labels: Vec<String>, price: u64 },
    /// The seat map of this schedule, shared with contract Q.
    Schedule(u64),
}

/// Create a performance (contract B).
#[derive(Message)]
#[rtype(result = "Result<Performance, CatalogError>")]
pub struct CreatePerformance {
    pub id: String,
    pub title: String,
    pub seats: PerformanceSeats,
}

impl Handler<CreatePerformance> for Catalog {
    type Result = ResponseFuture<Result<Performance, CatalogError>>;
    fn handle(&mut self, msg: CreatePerformance, _: &mut Context<Self>) -> Self::Result {
        let result = self.create_performance(msg);
        self.store.when_durable(result)
    }
}

impl Catalog {
    fn create_performance(&mut self, msg: CreatePerformance) -> Result<Performance, CatalogError> {
        if self.state.performances.contains_key(&msg.id) {
            return Err(CatalogError::PerformanceExists);
        }
        let mut next = self.state.clone();
        let mut batch = Batch::default();
        let (performance, seat_map) = match msg.seats {
            PerformanceSeats::Schedule(id) => {
                let s = self.state.schedules.get(&id).ok_or(CatalogError::UnknownSchedule)?;
                let p = Performance {
                    id: msg.id.clone(),
                    title: msg.title,
                    seat_map: s.seat_map_id(),
                    seats: s.seats,
                    price: s.price,
                    created_at: now_ms(),
                };
                (p, None)
            }
            PerformanceSeats::New { labels, price } => {
                let seat_map = SeatMapSnapshot::new(Performance::own_seat_map_id(&msg.id), labels, price);
                let p = Performance {
                    id: msg.id.clone(),
                    title: msg.title,
                    seat_map: seat_map.id.clone(),
                    seats: seat_map.seats.len() as u32,
                    price,
                    created_at: now_ms(),
                };
                batch.put(&Key::SeatMap(seat_map.id.clone()), &seat_map)?;
                (p, Some(seat_map))
            }
        };
        next.performances.insert(performance.id.clone(), performance.clone());
        // The performance and its seat map appear together or not at all.
        batch.put(&Key::Catalog, &next)?;
        self.store.apply(batch)?;
        self.state = next;
        if let Some(seat_map) = seat_map {
            self.seat_maps.start(seat_map, Vec::new())?;
        }
        self.seat_maps.route_performance(&performance.id, &performance.seat_map);
        Ok(performance)
    }
}

/// A performance with how many of its seats are available.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerformanceView {
    pub performance: Performance,
    pub available: usize,
}

/// Every performance, with its availability.
#[derive(Message)]
#[rtype(result = "Vec<PerformanceView>")]
pub struct ListPerformances;

impl Handler<ListPerformances> for Catalog {
    type Result = ResponseFuture<Vec<PerformanceView>>;
    fn handle(&mut self, _: ListPerformances, _: &mut Context<Self>) -> Self::Result {
        let all: Vec<(Performance, Option<Addr<super::seat_map::SeatMap>>)> =
            self.state.performances.values().map(|p| (p.clone(), self.seat_maps.get(&p.seat_map))).collect();
        Box::pin(async move {
            let mut out = Vec::with_capacity(all.len());
            for (performance, addr) in all {
                let available = free_seats(addr).await;
                out.push(PerformanceView { performance, available });
            }
            out
        })
    }
}

/// What is left to sell, for the operators' status page: up to `limit` schedules (of every
/// concert) and up to `limit` performances, each with its free seats.
#[derive(Message)]
#[rtype(result = "(Vec<ScheduleView>, Vec<PerformanceView>)")]
pub struct SeatsLeft {
    pub limit: usize,
}

impl Handler<SeatsLeft> for Catalog {
    type Result = ResponseFuture<(Vec<ScheduleView>, Vec<PerformanceView>)>;
    fn handle(&mut self, msg: SeatsLeft, _: &mut Context<Self>) -> Self::Result {
        let book = &self.seat_maps;
        let schedules: Vec<_> =
            self.state.schedules.values().take(msg.limit).map(|s| (s.clone(), book.get(&s.seat_map_id()))).collect();
        let performances: Vec<_> =
            self.state.performances.values().take(msg.limit).map(|p| (p.clone(), book.get(&p.seat_map))).collect();
        Box::pin(async move {
            let mut out = (Vec::with_capacity(schedules.len()), Vec::with_capacity(performances.len()));
            for (schedule, addr) in schedules {
                out.0.push(ScheduleView { available: free_seats(addr).await, schedule });
            }
            for (performance, addr) in performances {
                out.1.push(PerformanceView { available: free_seats(addr).await, performance });
            }
            out
        })
    }
}

/// A seat map's free seats (0 if it is not running).
async fn free_seats(addr: Option<Addr<super::seat_map::SeatMap>>) -> usize {
    match addr {
        Some(a) => a.send(Availability).await.map(|(free, _)| free).unwrap_or(0),
        None => 0,
    }
}
