//! `booking-rush`: contract B. Virtual users book overlapping random sets of 1 to 3 seats
//! of one performance and pay the bookings they got by card (the test gateway). Then:
//! every seat is in at most one confirmed booking, every paid booking is confirmed, and
//! the gateway kept exactly the paid bookings' amounts for this run's payment intents.

use crate::common::{jwt, map_concurrent, Common, ErrorTally, Http};
use crate::metrics::{bar, Latencies, Report, ServerProbe, ToolProbe};
use crate::queue_rush::first;
use anyhow::{anyhow, bail};
use awc::http::Method;
use rand::seq::SliceRandom;
use rand::Rng;
use serde::Deserialize;
use serde_json::json;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Virtual users (ids from --user-base on).
    #[arg(long, default_value_t = 100)]
    pub users: u64,
    /// The performance to book (ignored with --create-performance).
    #[arg(long, default_value = "perf_001")]
    pub performance: String,
    /// Create a performance of ROWSxSEATS_PER_ROW seats first (admin JWT), e.g. 26x100.
    #[arg(long, value_parser = parse_size)]
    pub create_performance: Option<(u32, u32)>,
    /// Seat price of a created performance.
    #[arg(long, default_value_t = 30_000)]
    pub price: u64,
    /// Most seats in one booking (each booking takes 1 to this many).
    #[arg(long, default_value_t = 3)]
    pub max_seats: usize,
    /// How many more random seat sets a user tries after `Seat X is not available.`
    #[arg(long, default_value_t = 2)]
    pub retries: u32,
    /// The test card that pays.
    #[arg(long, default_value = "tok_visa")]
    pub card: String,
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (r, c) = s.split_once(['x', 'X']).ok_or("write ROWSxSEATS, e.g. 26x100")?;
    let r: u32 = r.trim().parse().map_err(|_| "bad rows")?;
    let c: u32 = c.trim().parse().map_err(|_| "bad seats per row")?;
    if !(1..=26).contains(&r) || c == 0 || r * c > 10_000 {
        return Err("rows must be 1..=26 and rows x seats at most 10,000".into());
    }
    Ok((r, c))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SeatRow {
    seat_id: String,
    status: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pay {
    NotTried,
    Acked,
    Refused(u16),
    Unknown,
}

#[derive(Debug, Clone)]
struct Booked {
    user: u64,
    booking: String,
    intent: String,
    seats: Vec<String>,
    amount: u64,
    pay: Pay,
}

#[derive(Default)]
struct Counters {
    attempts: u64,
    bookings: u64,
    conflicts: u64,
    payments: u64,
}

struct Run<'a> {
    a: &'a Args,
    http: &'a Http,
    secret: &'a [u8],
    run: &'a str,
    performance: String,
    seats: Vec<String>,
    deadline: Instant,
    lat: RefCell<Latencies>,
    count: RefCell<Counters>,
    errors: RefCell<ErrorTally>,
    progress: indicatif::ProgressBar,
}

async fn seat_states(http: &Http, performance: &str, token: &str) -> anyhow::Result<HashMap<String, String>> {
    let path = format!("/performances/{performance}/seats");
    let (r, _) = http.req_retry(Method::GET, &path, Some(token), &[], None, 2).await;
    let r = r.map_err(|e| anyhow!("GET {path}: {e}"))?;
    if r.status != 200 {
        bail!("GET {path}: {}", r.snippet());
    }
    let rows: Vec<SeatRow> = r.parse().ok_or_else(|| anyhow!("GET {path}: unexpected body"))?;
    Ok(rows.into_iter().map(|s| (s.seat_id, s.status)).collect())
}

pub async fn run(a: Args, http: Http, secret: Vec<u8>, run_id: String) -> anyhow::Result<Report> {
    let started = Instant::now();
    let c = &a.common;
    let admin = c.user_base + a.users + 1;
    let admin_jwt = jwt(&secret, admin, true);

    let performance = match a.create_performance {
        Some((rows, per_row)) => {
            let id = format!("load_{run_id}");
            let body = json!({ "performanceId": id, "title": format!("load test {run_id}"), "rows": rows, "seatsPerRow": per_row, "price": a.price });
            let r = http
                .req(Method::POST, "/performances", Some(&admin_jwt), &[], Some(&body))
                .await
                .map_err(|e| anyhow!(e))?;
            if r.status != 201 {
                bail!("POST /performances: {}", r.snippet());
            }
            id
        }
        None => a.performance.clone(),
    };
    let before = seat_states(&http, &performance, &admin_jwt).await?;
    let mut free: Vec<String> = before.iter().filter(|(_, s)| *s == "available").map(|(k, _)| k.clone()).collect();
    free.sort();
    if free.is_empty() {
        bail!("performance {performance} has no available seat");
    }

    let mut report = Report::new(
        "booking-rush",
        json!({
            "users": a.users, "user_base": c.user_base, "concurrency": c.concurrency, "performance": performance,
            "created_performance": a.create_performance.map(|(r, s)| format!("{r}x{s}")), "max_seats": a.max_seats,
            "retries": a.retries, "card": a.card, "run_id": run_id,
        }),
    );
    let r = Run {
        a: &a,
        http: &http,
        secret: &secret,
        run: &run_id,
        performance: performance.clone(),
        seats: free.clone(),
        deadline: Instant::now() + c.timeout,
        lat: RefCell::new(Latencies::default()),
        count: RefCell::new(Counters::default()),
        errors: RefCell::new(ErrorTally::default()),
        progress: bar(!c.no_progress, a.users, "users"),
    };
    let store_before = http.store_counters().await;
    let server = ServerProbe::start(&c.server_pid, &c.extra_pid)?;
    let tool = ToolProbe::start();
    let users: Vec<u64> = (0..a.users).collect();
    let all = map_concurrent(users, c.concurrency, |i| r.user(c.user_base + i));
    let results: Vec<Option<Booked>> = match tokio::time::timeout(c.timeout + Duration::from_secs(35), all).await {
        Ok(v) => v,
        Err(_) => bail!("the load phase did not stop within --timeout plus 35 s"),
    };
    let (wall, tool_cpu) = tool.finish();
    let store_after = http.store_counters().await;
    report.wall = wall;
    report.tool_cpu = tool_cpu;
    server.finish(&mut report);
    r.progress.finish_and_clear();

    let booked: Vec<Booked> = results.into_iter().flatten().collect();
    {
        let n = r.count.borrow();
        let secs = wall.as_secs_f64().max(1e-9);
        report.fig("users", a.users);
        report.fig("seats_available_at_start", free.len() as u64);
        report.fig("booking_attempts", n.attempts);
        report.fig_f("booking_attempts_per_s", n.attempts as f64 / secs);
        report.fig("bookings_ok", n.bookings);
        report.fig("bookings_seat_taken", n.conflicts);
        report.fig("payments_ok", n.payments);
        report.fig_f("payments_per_s", n.payments as f64 / secs);
        report.fig(
            "seats_sold",
            booked.iter().filter(|b| b.pay == Pay::Acked).map(|b| b.seats.len() as u64).sum::<u64>(),
        );
        report.fig("errors", r.errors.borrow().total());
        let requests = r.lat.borrow().count("book") + r.lat.borrow().count("execute");
        report.fig("requests_timed", requests);
        report.server_cpu_per("request", requests);
        report.server_cpu_per("payment", n.payments);
        report.flushes(store_before, store_after, "payment", n.payments);
    }
    report.notes.extend(r.errors.borrow().notes("error"));
    report.latencies = r.lat.borrow().clone();

    let verified = tokio::time::timeout(c.verify_timeout, verify(&r, &booked, &before, &admin_jwt, &mut report)).await;
    match verified {
        Ok(Ok(())) => {}
        Ok(Err(e)) => report.check("end-of-run checks ran", false, e.to_string()),
        Err(_) => report.check("end-of-run checks ran", false, "the checks did not finish within --verify-timeout"),
    }
    report.total_wall = started.elapsed();
    Ok(report)
}

impl Run<'_> {
    fn error(&self, what: String) {
        self.errors.borrow_mut().add(what);
    }

    async fn user(&self, user: u64) -> Option<Booked> {
        let out = self.flow(user).await;
        self.progress.inc(1);
        let n = self.count.borrow();
        self.progress.set_message(format!(
            "booked {} taken {} paid {} errors {}",
            n.bookings,
            n.conflicts,
            n.payments,
            self.errors.borrow().total()
        ));
        out
    }

    async fn flow(&self, user: u64) -> Option<Booked> {
        let http = self.http;
        let token = jwt(self.secret, user, false);
        let mut booked = None;
        for attempt in 0..=self.a.retries {
            if Instant::now() >= self.deadline {
                return None;
            }
            let k = {
                let mut rng = rand::thread_rng();
                rng.gen_range(1..=self.a.max_seats.max(1)).min(self.seats.len())
            };
            let seats: Vec<String> = self.seats.choose_multiple(&mut rand::thread_rng(), k).cloned().collect();
            let key = format!("load-{}-{user}-book-{attempt}", self.run);
            let body = json!({
                "performanceId": self.performance, "seatIds": seats, "paymentMethod": "CREDIT_CARD",
                "userId": format!("user_{user}"),
            });
            self.count.borrow_mut().attempts += 1;
            let (r, took) = http
                .req_retry(Method::POST, "/bookings", Some(&token), &[("Idempotency-Key", &key)], Some(&body), 2)
                .await;
            self.lat.borrow_mut().record("book", took);
            match r {
                Ok(r) if r.status == 201 => {
                    let v = r.json();
                    match (v["bookingId"].as_str(), v["paymentIntentId"].as_str(), v["totalAmount"].as_u64()) {
                        (Some(b), Some(i), Some(amount)) => {
                            self.count.borrow_mut().bookings += 1;
                            booked = Some(Booked {
                                user,
                                booking: b.to_string(),
                                intent: i.to_string(),
                                seats,
                                amount,
                                pay: Pay::NotTried,
                            });
                            break;
                        }
                        _ => {
                            self.error(format!("book: unexpected body {}", r.snippet()));
                            return None;
                        }
                    }
                }
                Ok(r) if r.status == 400 && String::from_utf8_lossy(&r.body).contains("is not available") => {
                    self.count.borrow_mut().conflicts += 1;
                }
                Ok(r) => {
                    self.error(format!("book: {}", r.snippet()));
                    return None;
                }
                Err(e) => {
                    self.error(format!("book: {e}"));
                    return None;
                }
            }
        }
        let mut b = booked?;
        let key = format!("load-{}-{user}-execute", self.run);
        let body = json!({ "paymentIntentId": b.intent, "paymentMethodToken": self.a.card, "cvv": "123" });
        let (r, took) = http
            .req_retry(Method::POST, "/payments/execute", Some(&token), &[("Idempotency-Key", &key)], Some(&body), 2)
            .await;
        self.lat.borrow_mut().record("execute", took);
        b.pay = match r {
            Ok(r) if r.status == 200 => {
                self.count.borrow_mut().payments += 1;
                Pay::Acked
            }
            Ok(r) => {
                self.error(format!("execute: {}", r.snippet()));
                Pay::Refused(r.status)
            }
            Err(e) => {
                self.error(format!("execute: {e}"));
                Pay::Unknown
            }
        };
        Some(b)
    }
}

#[derive(Deserialize)]
struct ChargeList {
    charges: Vec<Charge>,
}

#[derive(Deserialize)]
struct Charge {
    key: String,
    amount: u64,
    refunded: bool,
}

async fn verify(
    r: &Run<'_>,
    booked: &[Booked],
    before: &HashMap<String, String>,
    admin_jwt: &str,
    report: &mut Report,
) -> anyhow::Result<()> {
    let http = r.http;
    // 1. Every booking of the run as its owner sees it.
    let views = map_concurrent(booked.to_vec(), r.a.common.concurrency, |b| async move {
        let token = jwt(r.secret, b.user, false);
        let path = format!("/bookings/{}", b.booking);
        let (res, _) = http.req_retry(Method::GET, &path, Some(&token), &[], None, 3).await;
        match res {
            Ok(x) if x.status == 200 => Ok(x.json()),
            Ok(x) => Err(format!("GET {path}: {}", x.snippet())),
            Err(e) => Err(format!("GET {path}: {e}")),
        }
    })
    .await;
    let mut status: HashMap<&str, String> = HashMap::new();
    for (b, v) in booked.iter().zip(views) {
        let v = v.map_err(|e| anyhow!(e))?;
        status.insert(&b.booking, v["status"].as_str().unwrap_or("?").to_string());
    }
    let confirmed: Vec<&Booked> =
        booked.iter().filter(|b| status.get(b.booking.as_str()).map(String::as_str) == Some("confirmed")).collect();

    // 2. Paid means confirmed.
    let bad: Vec<String> = booked
        .iter()
        .filter(|b| b.pay == Pay::Acked && status.get(b.booking.as_str()).map(String::as_str) != Some("confirmed"))
        .map(|b| format!("booking {} is {}", b.booking, status.get(b.booking.as_str()).map_or("?", |s| s)))
        .collect();
    let paid = booked.iter().filter(|b| b.pay == Pay::Acked).count();
    report.check(
        "every 200 execute's booking is confirmed",
        bad.is_empty(),
        if bad.is_empty() {
            format!("{paid} paid bookings")
        } else {
            format!("{} not confirmed: {}", bad.len(), first(&bad))
        },
    );

    // 3. A seat is in at most one confirmed booking, and the seat map agrees.
    let after = seat_states(http, &r.performance, admin_jwt).await?;
    let mut owner: HashMap<&str, Vec<&str>> = HashMap::new();
    for b in &confirmed {
        for s in &b.seats {
            owner.entry(s.as_str()).or_default().push(b.booking.as_str());
        }
    }
    let mut problems = Vec::new();
    for (seat, list) in &owner {
        if list.len() > 1 {
            problems.push(format!("seat {seat} in {} confirmed bookings", list.len()));
        }
        if after.get(*seat).map(String::as_str) != Some("booked") {
            problems.push(format!("seat {seat} is confirmed but shown {:?}", after.get(*seat)));
        }
    }
    for (seat, st) in &after {
        if st == "booked"
            && before.get(seat).map(String::as_str) == Some("available")
            && !owner.contains_key(seat.as_str())
        {
            problems.push(format!("seat {seat} became booked without a confirmed booking of this run"));
        }
    }
    let unacked_confirmed = confirmed.iter().filter(|b| b.pay != Pay::Acked).count();
    for b in confirmed.iter().filter(|b| matches!(b.pay, Pay::Refused(_) | Pay::NotTried)) {
        problems.push(format!("booking {} is confirmed though its payment answered {:?}", b.booking, b.pay));
    }
    report.check(
        "every seat is in at most one confirmed booking",
        problems.is_empty(),
        if problems.is_empty() {
            format!(
                "{} seats in {} confirmed bookings{}",
                owner.len(),
                confirmed.len(),
                if unacked_confirmed > 0 {
                    format!(" ({unacked_confirmed} with an unknown execute answer)")
                } else {
                    String::new()
                }
            )
        } else {
            format!("{} problems: {}", problems.len(), first(&problems))
        },
    );

    // 4. The gateway kept exactly the paid bookings' amounts (keys `{intent}-{attempt}`).
    let (res, _) = http.req_retry(Method::GET, "/admin/test-gateway/charges", Some(admin_jwt), &[], None, 2).await;
    let res = res.map_err(|e| anyhow!("GET /admin/test-gateway/charges: {e}"))?;
    if res.status != 200 {
        bail!("GET /admin/test-gateway/charges: {}", res.snippet());
    }
    let list: ChargeList = res.parse().ok_or_else(|| anyhow!("GET /admin/test-gateway/charges: unexpected body"))?;
    let intents: HashMap<&str, &Booked> = booked.iter().map(|b| (b.intent.as_str(), b)).collect();
    let mut kept: HashMap<&str, (u64, u64)> = HashMap::new();
    for ch in list.charges.iter().filter(|c| !c.refunded) {
        if let Some((intent, _)) = ch.key.rsplit_once('-') {
            if let Some(b) = intents.get(intent) {
                let e = kept.entry(b.intent.as_str()).or_insert((0, 0));
                e.0 += 1;
                e.1 += ch.amount;
            }
        }
    }
    let mut money = Vec::new();
    let confirmed_ids: HashSet<&str> = confirmed.iter().map(|b| b.booking.as_str()).collect();
    for b in booked {
        let (n, sum) = kept.get(b.intent.as_str()).copied().unwrap_or((0, 0));
        let should = confirmed_ids.contains(b.booking.as_str()) || b.pay == Pay::Acked;
        if should && (n != 1 || sum != b.amount) {
            money.push(format!("intent {}: {n} kept charges totalling {sum}, booking amount {}", b.intent, b.amount));
        }
        if !should && n > 0 {
            money.push(format!("intent {} (unpaid): {n} kept charges totalling {sum}", b.intent));
        }
    }
    let kept_total: u64 = kept.values().map(|(_, s)| s).sum();
    let paid_total: u64 = confirmed.iter().map(|b| b.amount).sum();
    if kept_total != paid_total {
        money.push(format!("kept {kept_total} in all, paid bookings total {paid_total}"));
    }
    report.check(
        "the gateway kept exactly the paid bookings' amounts",
        money.is_empty(),
        if money.is_empty() {
            format!("{kept_total} kept for {} intents", kept.len())
        } else {
            format!("{} problems: {}", money.len(), first(&money))
        },
    );
    Ok(())
}
