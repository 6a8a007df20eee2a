//! `queue-rush`: contract Q end to end. Each virtual user takes a queue token, waits until
//! it is active, holds a free seat (another one on 409, a few times), charges its wallet
//! with the price and pays. Then the server's state is checked: no seat sold twice, no
//! schedule oversold, every acknowledged payment confirmed, every wallet exact.

use crate::common::{enter_queue, jwt, map_concurrent, Common, ErrorTally, Http};
use crate::metrics::{bar, Latencies, Report, ServerProbe, ToolProbe};
use anyhow::{anyhow, bail};
use awc::http::Method;
use rand::seq::SliceRandom;
use rand::Rng;
use serde::Deserialize;
use serde_json::json;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Virtual users (ids from --user-base on).
    #[arg(long, default_value_t = 100)]
    pub users: u64,
    /// The concert whose schedules are sold (when the tool does not create its own).
    #[arg(long, default_value_t = 1)]
    pub concert: u64,
    /// The schedules to sell, comma-separated (default: 1,2,3 of the demo concert).
    #[arg(long, value_delimiter = ',')]
    pub schedules: Vec<u64>,
    /// Create a concert with this many schedules first (admin JWT) and sell those.
    #[arg(long)]
    pub create_schedules: Option<u32>,
    /// Seats of each created schedule (the server allows 1 to 1000).
    #[arg(long, default_value_t = 1000)]
    pub seats_per_schedule: u32,
    /// Price of a seat of the created schedules.
    #[arg(long, default_value_t = 80_000)]
    pub price: u64,
    /// How many more seats a user tries after a 409.
    #[arg(long, default_value_t = 5)]
    pub hold_retries: u32,
    /// How often a waiting user polls GET /waiting/check.
    #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
    pub poll: Duration,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SeatList {
    seats: Vec<SeatRow>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SeatRow {
    seat_number: u32,
    status: SeatStatus,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[allow(clippy::upper_case_acronyms, non_camel_case_types)]
enum SeatStatus {
    AVAILABLE,
    TEMP_RESERVED,
    RESERVED,
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pay {
    NotTried,
    Acked,
    /// A definite refusal with this status.
    Refused(u16),
    /// No answer: the outcome is unknown.
    Unknown,
}

#[derive(Debug, Clone)]
struct Held {
    reservation: u64,
    schedule: u64,
    seat: u32,
    price: u64,
    pay: Pay,
}

#[derive(Debug, Clone)]
struct UserResult {
    user: u64,
    held: Option<Held>,
    /// Acknowledged charges.
    charged: u64,
    charge_unknown: bool,
    /// The balance before the run, from the first charge's answer.
    initial_balance: Option<u64>,
}

#[derive(Default)]
struct Counters {
    admitted: u64,
    hold_attempts: u64,
    holds: u64,
    conflicts: u64,
    charges: u64,
    payments: u64,
    sold_out_users: u64,
    gave_up_users: u64,
    timed_out_users: u64,
    failed_users: u64,
}

struct Run<'a> {
    a: &'a Args,
    http: &'a Http,
    secret: &'a [u8],
    run: &'a str,
    concert: u64,
    schedules: Vec<u64>,
    deadline: Instant,
    lat: RefCell<Latencies>,
    count: RefCell<Counters>,
    errors: RefCell<ErrorTally>,
    sold_out: RefCell<HashSet<u64>>,
    progress: indicatif::ProgressBar,
}

pub async fn run(a: Args, http: Http, secret: Vec<u8>, run_id: String) -> anyhow::Result<Report> {
    let started = Instant::now();
    let c = &a.common;
    let admin = c.user_base + a.users + 1;
    let verifier = c.user_base + a.users + 2;
    let admin_jwt = jwt(&secret, admin, true);
    let verifier_jwt = jwt(&secret, verifier, false);
    let setup_deadline = Instant::now() + c.timeout;

    let (concert, schedules) = match a.create_schedules {
        Some(k) => create_catalog(&http, &admin_jwt, k, a.seats_per_schedule, a.price, &run_id).await?,
        None => (a.concert, if a.schedules.is_empty() { vec![1, 2, 3] } else { a.schedules.clone() }),
    };
    let (vq, _) = enter_queue(&http, verifier, &verifier_jwt, a.poll, setup_deadline).await.map_err(|e| anyhow!(e))?;
    let mut before = BTreeMap::new();
    for &s in &schedules {
        before.insert(s, seat_map(&http, concert, s, &verifier_jwt, &vq).await?);
    }
    let available: usize = before.values().map(|m| m.values().filter(|s| **s == SeatStatus::AVAILABLE).count()).sum();

    let mut report = Report::new(
        "queue-rush",
        json!({
            "users": a.users, "user_base": c.user_base, "concurrency": c.concurrency, "concert": concert,
            "schedules": schedules, "created_schedules": a.create_schedules, "hold_retries": a.hold_retries,
            "run_id": run_id,
        }),
    );

    let progress = bar(!c.no_progress, a.users, "users");
    let r = Run {
        a: &a,
        http: &http,
        secret: &secret,
        run: &run_id,
        concert,
        schedules: schedules.clone(),
        deadline: Instant::now() + c.timeout,
        lat: RefCell::new(Latencies::default()),
        count: RefCell::new(Counters::default()),
        errors: RefCell::new(ErrorTally::default()),
        sold_out: RefCell::new(HashSet::new()),
        progress,
    };
    let store_before = http.store_counters().await;
    let server = ServerProbe::start(&c.server_pid, &c.extra_pid)?;
    let tool = ToolProbe::start();
    let users: Vec<u64> = (0..a.users).collect();
    let all = map_concurrent(users, c.concurrency, |i| r.user(c.user_base + i));
    let results = match tokio::time::timeout(c.timeout + Duration::from_secs(35), all).await {
        Ok(v) => v,
        Err(_) => bail!("the load phase did not stop within --timeout plus 35 s"),
    };
    let (wall, tool_cpu) = tool.finish();
    let store_after = http.store_counters().await;
    report.wall = wall;
    report.tool_cpu = tool_cpu;
    server.finish(&mut report);
    r.progress.finish_and_clear();

    let n = std::mem::take(&mut *r.count.borrow_mut());
    let lat = r.lat.borrow().clone();
    report.fig("users", a.users);
    report.fig("seats_available_at_start", available as u64);
    report.fig("users_admitted", n.admitted);
    report.fig("hold_attempts", n.hold_attempts);
    report.fig_f("hold_attempts_per_s", n.hold_attempts as f64 / wall.as_secs_f64().max(1e-9));
    report.fig("holds_ok", n.holds);
    report.fig("holds_409", n.conflicts);
    report.fig("charges_ok", n.charges);
    report.fig("payments_ok", n.payments);
    report.fig_f("payments_per_s", n.payments as f64 / wall.as_secs_f64().max(1e-9));
    report.fig("users_sold_out", n.sold_out_users);
    report.fig("users_gave_up", n.gave_up_users);
    report.fig("users_timed_out", n.timed_out_users);
    report.fig("users_not_admitted", n.failed_users);
    report.fig("errors", r.errors.borrow().total());
    let requests: u64 = ["queue-issue+wait", "seats", "hold", "charge", "pay"].iter().map(|op| lat.count(op)).sum();
    report.fig("requests_timed", requests);
    report.server_cpu_per("request", requests);
    report.server_cpu_per("user", a.users);
    report.server_cpu_per("payment", n.payments);
    report.flushes(store_before, store_after, "payment", n.payments);
    report.notes.extend(r.errors.borrow().notes("error"));
    report.latencies = lat;

    let verify_deadline = Instant::now() + c.verify_timeout;
    let verified = tokio::time::timeout(
        c.verify_timeout + Duration::from_secs(10),
        verify(&r, &results, &before, &verifier_jwt, verifier, verify_deadline, &mut report),
    )
    .await;
    match verified {
        Ok(Ok(())) => {}
        Ok(Err(e)) => report.check("end-of-run checks ran", false, e.to_string()),
        Err(_) => report.check("end-of-run checks ran", false, "the checks did not finish within --verify-timeout"),
    }
    report.total_wall = started.elapsed();
    Ok(report)
}

/// Create a concert and `k` schedules of `seats` seats each; their ids.
async fn create_catalog(
    http: &Http,
    admin: &str,
    k: u32,
    seats: u32,
    price: u64,
    run: &str,
) -> anyhow::Result<(u64, Vec<u64>)> {
    let body = json!({ "title": format!("load test {run}") });
    let r = http.req(Method::POST, "/concerts", Some(admin), &[], Some(&body)).await.map_err(|e| anyhow!(e))?;
    if r.status != 201 {
        bail!("POST /concerts: {}", r.snippet());
    }
    let concert = r.json()["concertId"].as_u64().ok_or_else(|| anyhow!("POST /concerts: no concertId"))?;
    let mut ids = Vec::new();
    let month = 30 * 24 * 3600 * 1000;
    for j in 0..k {
        let starts = boxoffice::time::rfc3339(boxoffice::time::now_ms() + month + j as u64 * 3_600_000);
        let body = json!({ "startsAt": starts, "totalSeats": seats, "price": price });
        let path = format!("/concerts/{concert}/schedules");
        let r = http.req(Method::POST, &path, Some(admin), &[], Some(&body)).await.map_err(|e| anyhow!(e))?;
        if r.status != 201 {
            bail!("POST {path}: {}", r.snippet());
        }
        ids.push(r.json()["scheduleId"].as_u64().ok_or_else(|| anyhow!("POST {path}: no scheduleId"))?);
    }
    Ok((concert, ids))
}

async fn seat_map(
    http: &Http,
    concert: u64,
    schedule: u64,
    jwt: &str,
    queue: &str,
) -> anyhow::Result<BTreeMap<u32, SeatStatus>> {
    let path = format!("/concerts/{concert}/schedules/{schedule}/seats");
    let (r, _) = http.req_retry(Method::GET, &path, Some(jwt), &[("X-Queue-Token", queue)], None, 2).await;
    let r = r.map_err(|e| anyhow!("GET {path}: {e}"))?;
    if r.status != 200 {
        bail!("GET {path}: {}", r.snippet());
    }
    let list: SeatList = r.parse().ok_or_else(|| anyhow!("GET {path}: unexpected body"))?;
    Ok(list.seats.into_iter().map(|s| (s.seat_number, s.status)).collect())
}

impl Run<'_> {
    fn late(&self) -> bool {
        Instant::now() >= self.deadline
    }

    fn error(&self, what: String) {
        self.errors.borrow_mut().add(what);
    }

    fn update_progress(&self) {
        let n = self.count.borrow();
        self.progress.set_message(format!(
            "holds {} 409s {} paid {} sold-out {} errors {}",
            n.holds,
            n.conflicts,
            n.payments,
            n.sold_out_users,
            self.errors.borrow().total()
        ));
    }

    async fn user(&self, user: u64) -> UserResult {
        let mut out = UserResult { user, held: None, charged: 0, charge_unknown: false, initial_balance: None };
        self.flow(&mut out).await;
        self.progress.inc(1);
        self.update_progress();
        out
    }

    async fn flow(&self, out: &mut UserResult) {
        let user = out.user;
        let http = self.http;
        if self.late() {
            self.count.borrow_mut().timed_out_users += 1;
            return;
        }
        let jwt = jwt(self.secret, user, false);
        let queue = match enter_queue(http, user, &jwt, self.a.poll, self.deadline).await {
            Ok((q, waited)) => {
                self.lat.borrow_mut().record("queue-issue+wait", waited);
                self.count.borrow_mut().admitted += 1;
                q
            }
            Err(e) => {
                self.count.borrow_mut().failed_users += 1;
                return self.error(format!("queue: {e}"));
            }
        };
        let hq = [("X-Queue-Token", queue.as_str())];

        // Hold a seat: a random free one of a schedule that has some left.
        let mut attempt = 0u32;
        let mut fetches = 0usize;
        let mut local: Option<(u64, Vec<u32>)> = None;
        let held = loop {
            if attempt > self.a.hold_retries || fetches > 2 * self.schedules.len() + self.a.hold_retries as usize {
                self.count.borrow_mut().gave_up_users += 1;
                break None;
            }
            if self.late() {
                self.count.borrow_mut().timed_out_users += 1;
                break None;
            }
            let schedule = match &local {
                Some((s, seats)) if !seats.is_empty() => *s,
                _ => {
                    let open: Vec<u64> = {
                        let sold = self.sold_out.borrow();
                        self.schedules.iter().copied().filter(|s| !sold.contains(s)).collect()
                    };
                    let Some(&s) = open.choose(&mut rand::thread_rng()) else {
                        self.count.borrow_mut().sold_out_users += 1;
                        break None;
                    };
                    fetches += 1;
                    let path = format!("/concerts/{}/schedules/{s}/seats", self.concert);
                    let (r, took) = http.req_retry(Method::GET, &path, Some(&jwt), &hq, None, 2).await;
                    self.lat.borrow_mut().record("seats", took);
                    let list = match r {
                        Ok(r) if r.status == 200 => r.parse::<SeatList>(),
                        Ok(r) => {
                            self.error(format!("GET seats: {}", r.status));
                            break None;
                        }
                        Err(e) => {
                            self.error(format!("GET seats: {e}"));
                            break None;
                        }
                    };
                    let Some(list) = list else {
                        self.error("GET seats: unexpected body".into());
                        break None;
                    };
                    let free: Vec<u32> = list
                        .seats
                        .iter()
                        .filter(|x| x.status == SeatStatus::AVAILABLE)
                        .map(|x| x.seat_number)
                        .collect();
                    if free.is_empty() {
                        self.sold_out.borrow_mut().insert(s);
                        local = None;
                        continue;
                    }
                    local = Some((s, free));
                    s
                }
            };
            let seat = {
                let seats = &mut local.as_mut().expect("a schedule was chosen").1;
                let i = rand::thread_rng().gen_range(0..seats.len());
                seats.swap_remove(i)
            };
            attempt += 1;
            self.count.borrow_mut().hold_attempts += 1;
            let key = format!("load-{}-{user}-hold-{attempt}", self.run);
            let body = json!({ "userId": user, "concertId": self.concert, "scheduleId": schedule, "seatNumber": seat });
            let headers = [("X-Queue-Token", queue.as_str()), ("Idempotency-Key", key.as_str())];
            let (r, took) = http.req_retry(Method::POST, "/reservations", Some(&jwt), &headers, Some(&body), 2).await;
            self.lat.borrow_mut().record("hold", took);
            match r {
                Ok(r) if r.status == 200 => {
                    let v = r.json();
                    match (v["reservationId"].as_u64(), v["price"].as_u64()) {
                        (Some(reservation), Some(price)) => {
                            self.count.borrow_mut().holds += 1;
                            break Some(Held { reservation, schedule, seat, price, pay: Pay::NotTried });
                        }
                        _ => {
                            self.error(format!("hold: unexpected body {}", r.snippet()));
                            break None;
                        }
                    }
                }
                Ok(r) if r.status == 409 => {
                    self.count.borrow_mut().conflicts += 1;
                    // Our picture of the schedule is stale: look again every other time.
                    if attempt % 2 == 0 {
                        local = None;
                    }
                }
                Ok(r) => {
                    self.error(format!("hold: {}", r.snippet()));
                    break None;
                }
                Err(e) => {
                    self.error(format!("hold: {e}"));
                    break None;
                }
            }
        };
        let Some(mut held) = held else { return };

        // Charge the price, then pay.
        let key = format!("load-{}-{user}-charge", self.run);
        let body = json!({ "amount": held.price });
        let headers = [("X-Queue-Token", queue.as_str()), ("Idempotency-Key", key.as_str())];
        let path = format!("/users/{user}/charge");
        let (r, took) = http.req_retry(Method::PATCH, &path, Some(&jwt), &headers, Some(&body), 2).await;
        self.lat.borrow_mut().record("charge", took);
        match r {
            Ok(r) if r.status == 200 => {
                let v = r.json();
                let (charged, balance) = (v["chargedAmount"].as_u64().unwrap_or(0), v["balance"].as_u64().unwrap_or(0));
                out.charged += charged;
                out.initial_balance = Some(balance.saturating_sub(charged));
                self.count.borrow_mut().charges += 1;
            }
            Ok(r) => {
                self.error(format!("charge: {}", r.snippet()));
                out.held = Some(held);
                return;
            }
            Err(e) => {
                out.charge_unknown = true;
                self.error(format!("charge: {e}"));
                out.held = Some(held);
                return;
            }
        }
        let key = format!("load-{}-{user}-pay", self.run);
        let body = json!({ "reservationId": held.reservation, "amount": held.price });
        let headers = [("X-Queue-Token", queue.as_str()), ("Idempotency-Key", key.as_str())];
        let (r, took) = http.req_retry(Method::POST, "/payments", Some(&jwt), &headers, Some(&body), 2).await;
        self.lat.borrow_mut().record("pay", took);
        held.pay = match r {
            Ok(r) if r.status == 200 => {
                self.count.borrow_mut().payments += 1;
                Pay::Acked
            }
            Ok(r) => {
                self.error(format!("pay: {}", r.snippet()));
                Pay::Refused(r.status)
            }
            Err(e) => {
                self.error(format!("pay: {e}"));
                Pay::Unknown
            }
        };
        out.held = Some(held);
    }
}

/// The end-of-run checks against the server's state.
async fn verify(
    r: &Run<'_>,
    results: &[UserResult],
    before: &BTreeMap<u64, BTreeMap<u32, SeatStatus>>,
    verifier_jwt: &str,
    verifier: u64,
    deadline: Instant,
    report: &mut Report,
) -> anyhow::Result<()> {
    let http = r.http;
    let conc = r.a.common.concurrency;
    let held: Vec<(u64, Held)> = results.iter().filter_map(|u| u.held.clone().map(|h| (u.user, h))).collect();

    // 1. Each held reservation's status, read by its owner.
    let statuses = map_concurrent(held.clone(), conc, |(user, h)| async move {
        let token = jwt(r.secret, user, false);
        let path = format!("/reservations/{}", h.reservation);
        let (res, _) = http.req_retry(Method::GET, &path, Some(&token), &[], None, 3).await;
        match res {
            Ok(x) if x.status == 200 => Ok(x.json()["status"].as_str().unwrap_or("?").to_string()),
            Ok(x) => Err(format!("GET {path}: {}", x.snippet())),
            Err(e) => Err(format!("GET {path}: {e}")),
        }
    })
    .await;
    let mut status_of: HashMap<u64, String> = HashMap::new();
    for ((_, h), s) in held.iter().zip(statuses) {
        status_of.insert(h.reservation, s.map_err(|e| anyhow!(e))?);
    }

    // 2. Acknowledged payments are confirmed.
    let acked: Vec<&Held> = held.iter().map(|(_, h)| h).filter(|h| h.pay == Pay::Acked).collect();
    let unconfirmed: Vec<String> = acked
        .iter()
        .filter(|h| status_of.get(&h.reservation).map(String::as_str) != Some("CONFIRMED"))
        .map(|h| format!("reservation {} is {}", h.reservation, status_of.get(&h.reservation).map_or("?", |s| s)))
        .collect();
    report.check(
        "every acknowledged payment's reservation is CONFIRMED",
        unconfirmed.is_empty(),
        if unconfirmed.is_empty() {
            format!("{} payments", acked.len())
        } else {
            format!("{} not confirmed: {}", unconfirmed.len(), first(&unconfirmed))
        },
    );

    // 3. Seats after the run against what was confirmed.
    let (vq, _) = enter_queue(http, verifier, verifier_jwt, r.a.poll, deadline).await.map_err(|e| anyhow!(e))?;
    let mut after = BTreeMap::new();
    for &s in before.keys() {
        after.insert(s, seat_map(http, r.concert, s, verifier_jwt, &vq).await?);
    }
    let mut confirmed_at: HashMap<(u64, u32), Vec<&Held>> = HashMap::new();
    for (_, h) in &held {
        if status_of.get(&h.reservation).map(String::as_str) == Some("CONFIRMED") {
            confirmed_at.entry((h.schedule, h.seat)).or_default().push(h);
        }
    }
    let mut twice = Vec::new();
    let mut inconclusive = 0;
    for (&s, seats) in &after {
        for (&seat, &st) in seats {
            let was = before.get(&s).and_then(|m| m.get(&seat)).copied();
            let list = confirmed_at.get(&(s, seat)).map(Vec::as_slice).unwrap_or(&[]);
            if list.len() > 1 {
                twice.push(format!("schedule {s} seat {seat}: {} confirmed reservations", list.len()));
            }
            if st == SeatStatus::RESERVED && was != Some(SeatStatus::RESERVED) {
                match list {
                    [h] if h.pay == Pay::Acked => {}
                    [h] if h.pay == Pay::Unknown => inconclusive += 1,
                    [h] => twice.push(format!(
                        "schedule {s} seat {seat}: sold to reservation {} whose payment was {:?}",
                        h.reservation, h.pay
                    )),
                    [] => twice.push(format!("schedule {s} seat {seat}: RESERVED without an acknowledged payment")),
                    _ => {}
                }
            }
            if !list.is_empty() && st != SeatStatus::RESERVED {
                twice.push(format!("schedule {s} seat {seat}: confirmed but shown {st:?}"));
            }
        }
    }
    report.check(
        "no seat sold twice; each newly RESERVED seat is one acknowledged payment's",
        twice.is_empty(),
        if twice.is_empty() {
            let sold: usize = confirmed_at.len();
            format!(
                "{sold} seats sold in this run{}",
                if inconclusive > 0 {
                    format!(", {inconclusive} with an unknown payment answer")
                } else {
                    String::new()
                }
            )
        } else {
            format!("{} problems: {}", twice.len(), first(&twice))
        },
    );

    // 4. No schedule oversold, and the schedule list agrees with the seat maps.
    let path = format!("/concerts/{}/schedules?includeSoldOut=true", r.concert);
    let (lr, _) = http.req_retry(Method::GET, &path, Some(verifier_jwt), &[], None, 2).await;
    let listed = lr.map_err(|e| anyhow!(e))?.json();
    let mut over = Vec::new();
    for (&s, seats) in &after {
        let free_before = before.get(&s).map_or(0, |m| m.values().filter(|x| **x == SeatStatus::AVAILABLE).count());
        let sold_now = confirmed_at.keys().filter(|(sc, _)| *sc == s).count();
        let reserved_new = seats
            .iter()
            .filter(|(n, st)| {
                **st == SeatStatus::RESERVED && before.get(&s).and_then(|m| m.get(n)) != Some(&SeatStatus::RESERVED)
            })
            .count();
        if sold_now > free_before || reserved_new > free_before {
            over.push(format!("schedule {s}: {sold_now} sold, {reserved_new} newly RESERVED, {free_before} were free"));
        }
        let entry = listed["schedules"].as_array().and_then(|l| l.iter().find(|x| x["scheduleId"].as_u64() == Some(s)));
        match entry {
            Some(e) => {
                let avail = seats.values().filter(|x| **x == SeatStatus::AVAILABLE).count() as u64;
                if e["totalSeats"].as_u64() != Some(seats.len() as u64) || e["availableSeats"].as_u64() != Some(avail) {
                    over.push(format!(
                        "schedule {s}: listed {}/{} available, seat map shows {avail}/{}",
                        e["availableSeats"],
                        e["totalSeats"],
                        seats.len()
                    ));
                }
            }
            None => over.push(format!("schedule {s}: missing from GET {path}")),
        }
    }
    report.check(
        "no schedule oversold",
        over.is_empty(),
        if over.is_empty() { format!("{} schedules", after.len()) } else { first(&over) },
    );

    // 5. Wallets: balance = initial + charged - paid (confirmed).
    let charged: Vec<&UserResult> = results.iter().filter(|u| u.charged > 0 && !u.charge_unknown).collect();
    let skipped = results.iter().filter(|u| u.charge_unknown).count();
    let balances = map_concurrent(charged.clone(), conc, |u| async move {
        let token = jwt(r.secret, u.user, false);
        let (q, _) = enter_queue(http, u.user, &token, r.a.poll, deadline).await?;
        let path = format!("/users/{}/amount", u.user);
        let (res, _) = http.req_retry(Method::GET, &path, Some(&token), &[("X-Queue-Token", &q)], None, 2).await;
        let res = res?;
        if res.status != 200 {
            return Err(format!("GET {path}: {}", res.snippet()));
        }
        res.json()["amount"].as_u64().ok_or_else(|| format!("GET {path}: no amount"))
    })
    .await;
    let mut wrong = Vec::new();
    for (u, b) in charged.iter().zip(balances) {
        let paid = u
            .held
            .as_ref()
            .filter(|h| status_of.get(&h.reservation).map(String::as_str) == Some("CONFIRMED"))
            .map_or(0, |h| h.price);
        let expected = u.initial_balance.unwrap_or(0) + u.charged - paid;
        match b {
            Ok(b) if b == expected => {}
            Ok(b) => wrong.push(format!("user {}: balance {b}, expected {expected}", u.user)),
            Err(e) => wrong.push(format!("user {}: {e}", u.user)),
        }
    }
    report.check(
        "every wallet's amount = charged - paid",
        wrong.is_empty(),
        if wrong.is_empty() {
            format!(
                "{} wallets{}",
                charged.len(),
                if skipped > 0 {
                    format!(" ({skipped} with an unknown charge answer not checked)")
                } else {
                    String::new()
                }
            )
        } else {
            format!("{} wrong: {}", wrong.len(), first(&wrong))
        },
    );
    Ok(())
}

/// The first few items of a list of problems.
pub fn first(items: &[String]) -> String {
    let mut s = items.iter().take(3).cloned().collect::<Vec<_>>().join("; ");
    if items.len() > 3 {
        s.push_str(&format!("; and {} more", items.len() - 3));
    }
    s
}
