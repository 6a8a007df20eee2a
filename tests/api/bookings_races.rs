//! Contract B under concurrency: many bookings at once, contract Q and contract B racing for
//! one seat map, executes racing each other and cancels. Invariants are checked on the final
//! state (seat maps, bookings, `occupiedSeats`, gateway charges), not only on status codes.

use crate::bookings::*;
use crate::helpers::*;
use futures_util::future::{join, join_all, LocalBoxFuture};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// A small deterministic PRNG (splitmix64): the same run every time, no extra crate.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The seat a refusal names (`Seat X is not available.`), which must be one of `seats`.
fn refused_seat<'a>(r: &Reply, seats: &'a [String]) -> &'a str {
    assert_error(r, 400, None);
    let text = r.body["error"].as_str().expect("error");
    seats
        .iter()
        .find(|s| text == not_available(s))
        .unwrap_or_else(|| panic!("a refusal names one of the requested seats {seats:?}: {r:?}"))
}

/// Poll until the intent has no charge kept (or `within` passed); returns what is kept.
async fn kept_after_settling(api: &Api, intent: &str, within: Duration) -> Vec<u64> {
    let deadline = Instant::now() + within;
    loop {
        let k = kept(&intent_charges(api, intent).await);
        if k.is_empty() || Instant::now() >= deadline {
            return k;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A booking plan: who books, the `userId` as sent, which seats.
type Plan = (u64, Value, Vec<String>);

#[actix_rt::test]
async fn a_thousand_concurrent_bookings_each_hold_all_their_seats_or_none() {
    let server = TestServer::spawn(&[]);
    let api = server.api();
    let all_seats = perf_001_seats();
    let mut rng = SplitMix64(0x0B0C_5EED);
    let plans: Vec<Plan> = (0..1000u64)
        .map(|i| {
            let user = 10_000 + i % 200;
            let user_id = match (i / 200) % 3 {
                0 => json!(format!("user_{user}")),
                1 => json!(user.to_string()),
                _ => json!(user),
            };
            let n = 1 + rng.below(3);
            let mut seats: Vec<String> = Vec::new();
            while seats.len() < n {
                let s = &all_seats[rng.below(all_seats.len())];
                if !seats.contains(s) {
                    seats.push(s.clone());
                }
            }
            (user, user_id, seats)
        })
        .collect();
    let replies = join_all(plans.iter().map(|(user, user_id, seats)| {
        let api = api.clone();
        let body =
            json!({ "performanceId": "perf_001", "seatIds": seats, "paymentMethod": "CREDIT_CARD", "userId": user_id });
        let token = jwt(*user);
        async move { api.call("POST", "/bookings", Some(&token), &[], Some(body)).await }
    }))
    .await;

    // Every answer is a booking of all its seats, or a refusal naming one of them.
    let mut won: BTreeMap<String, &Plan> = BTreeMap::new();
    let mut refused_on: Vec<&str> = Vec::new();
    for (plan, r) in plans.iter().zip(&replies) {
        if r.status == 201 {
            let b = assert_initiated(r, PRICE * plan.2.len() as u64);
            assert!(won.insert(b.id.clone(), plan).is_none(), "bookingIds are unique: {}", b.id);
        } else {
            refused_on.push(refused_seat(r, &plan.2));
        }
    }
    assert!(!won.is_empty() && won.len() < plans.len(), "{} of {} won", won.len(), plans.len());

    // No seat is in two bookings.
    let mut owner: HashMap<&str, &str> = HashMap::new();
    for (id, plan) in &won {
        for s in &plan.2 {
            if let Some(other) = owner.insert(s.as_str(), id.as_str()) {
                panic!("seat {s} is in two live bookings: {other} and {id}");
            }
        }
    }
    let held: usize = won.values().map(|p| p.2.len()).sum();

    // The seat map: exactly the seats of the bookings that won are locked.
    let map = seat_map(&api, 1, "perf_001").await;
    assert!(map.iter().all(|(_, s)| s == "available" || s == "locked"), "{map:?}");
    let locked: BTreeSet<&str> = map.iter().filter(|(_, s)| s == "locked").map(|(id, _)| id.as_str()).collect();
    assert_eq!(locked.len(), held, "locked seats = the sum of the seats of successful bookings");
    assert_eq!(locked, owner.keys().copied().collect::<BTreeSet<&str>>());
    // Nothing is released in this test, so a seat a refusal named is still locked; if it is
    // not, a booking that failed had locked part of its seats where others could see it.
    for s in &refused_on {
        assert!(locked.contains(s), "a booking was refused on {s}, which no booking holds");
    }

    // Each user, as the owner: their bookings and their locks, and nobody else's.
    let users: Vec<u64> = (10_000..10_200).collect();
    let views = join_all(users.iter().map(|u| {
        let api = api.clone();
        async move { (my_bookings(&api, *u).await, occupied(&api, *u, "perf_001").await) }
    }))
    .await;
    for (user, (mine, docs)) in users.iter().zip(&views) {
        let expected: BTreeMap<&str, &Plan> =
            won.iter().filter(|(_, p)| p.0 == *user).map(|(id, p)| (id.as_str(), *p)).collect();
        let listed: BTreeSet<&str> = mine.iter().map(|b| b["bookingId"].as_str().expect("bookingId")).collect();
        assert_eq!(listed, expected.keys().copied().collect::<BTreeSet<&str>>(), "user {user}'s bookings");
        assert_eq!(listed.len(), mine.len(), "each booking listed once");
        for b in mine {
            let (_, sent, seats) = expected[b["bookingId"].as_str().expect("bookingId")];
            assert_eq!((&b["status"], &b["paymentStatus"]), (&json!("pending"), &json!("unpaid")), "{b}");
            assert_eq!(b["performanceId"], "perf_001", "{b}");
            let mut listed_seats: Vec<&str> =
                b["seatIds"].as_array().expect("seatIds").iter().map(|s| s.as_str().expect("seat")).collect();
            let mut sent_seats: Vec<&str> = seats.iter().map(String::as_str).collect();
            listed_seats.sort_unstable();
            sent_seats.sort_unstable();
            assert_eq!(listed_seats, sent_seats, "{b}");
            assert_eq!(b["total_amount"].as_u64(), Some(PRICE * seats.len() as u64), "{b}");
            if sent.is_string() {
                assert_eq!(&b["userId"], sent, "userId as sent: {b}");
            }
        }
        assert_eq!(docs.len(), held, "occupiedSeats lists every lock, whoever holds it");
        let own: BTreeMap<&str, &str> = docs
            .iter()
            .filter(|d| !d["bookingId"].is_null())
            .map(|d| (d["seatId"].as_str().expect("seatId"), d["bookingId"].as_str().expect("bookingId")))
            .collect();
        let want: BTreeMap<&str, &str> =
            expected.iter().flat_map(|(id, p)| p.2.iter().map(move |s| (s.as_str(), *id))).collect();
        assert_eq!(own, want, "user {user}'s own locks carry their bookingIds, and only those");
        for d in docs {
            assert_eq!(d["status"], "locked", "{d}");
            assert_eq!(d["bookingId"].is_null(), d["userId"].is_null(), "{d}");
            assert_eq!(d["id"], format!("perf_001_{}", d["seatId"].as_str().expect("seatId")), "{d}");
        }
    }
    let list = api.get("/performances", &jwt(1), &[]).await;
    let p = list.body.as_array().expect("performances").iter().find(|p| p["performanceId"] == "perf_001").cloned();
    assert_eq!(p.expect("perf_001")["availableSeats"].as_u64(), Some(100 - held as u64));
}

#[actix_rt::test]
async fn contracts_q_and_b_sell_from_one_seat_map() {
    let server = TestServer::spawn(&fast_queue());
    let api = server.api();
    let kim = Buyer::enter(&api, 1).await; // buys through contract Q
    let lee = 2u64; // buys through contract B

    // A contract Q hold is a seat contract B can't have, all or none.
    let held = kim.hold(&api, 1, 1, "h1").await;
    assert_eq!(held.status, 200, "{held:?}");
    let reservation = held.body["reservationId"].as_u64().expect("reservationId");
    assert_error(&book(&api, lee, "1", &["2", "1"]).await, 400, Some(&not_available("1")));
    assert_error(&book(&api, kim.id, "1", &["1"]).await, 400, Some(&not_available("1")));
    let map = seat_map(&api, lee, "1").await;
    assert_eq!(taken(&map), ["1"]);
    assert_eq!(status_of(&map, "1"), "locked");

    // A contract B booking is a seat contract Q can't hold.
    let b = assert_initiated(&book(&api, lee, "1", &["2", "3"]).await, 160_000);
    assert_q_error(&kim.hold(&api, 1, 2, "h2").await, 409);
    assert_q_error(&kim.hold(&api, 1, 3, "h3").await, 409);
    let q = seat_statuses(&kim.seats(&api, 1).await);
    let first4: Vec<&str> = q.iter().take(4).map(|(_, s)| s.as_str()).collect();
    assert_eq!(first4, ["TEMP_RESERVED", "TEMP_RESERVED", "TEMP_RESERVED", "AVAILABLE"]);
    let docs = occupied(&api, lee, "1").await;
    assert_eq!(docs.len(), 3, "{docs:?}");
    assert_eq!(doc_of(&docs, "2")["bookingId"], b.id.as_str());
    assert_eq!(doc_of(&docs, "3")["bookingId"], b.id.as_str());
    assert!(doc_of(&docs, "1")["bookingId"].is_null(), "not lee's lock");
    assert_eq!(doc_of(&docs, "1")["status"], "locked");

    // Paid through B: sold in Q's view.
    assert_paid(&execute(&api, lee, &b.intent, "tok_visa").await, &b.intent);
    let q = seat_statuses(&kim.seats(&api, 1).await);
    assert_eq!((q[1].1.as_str(), q[2].1.as_str()), ("RESERVED", "RESERVED"));
    let map = seat_map(&api, lee, "1").await;
    assert_eq!((status_of(&map, "2"), status_of(&map, "3")), ("booked", "booked"));
    assert_q_error(&kim.hold(&api, 1, 3, "h3b").await, 409);

    // A contract B cancel frees the seat for contract Q.
    let c = assert_initiated(&book(&api, lee, "1", &["4"]).await, 80_000);
    assert_q_error(&kim.hold(&api, 1, 4, "h4").await, 409);
    let r = cancel(&api, lee, &c.id).await;
    assert_eq!((r.status, &r.body["message"]), (200, &json!(CANCELLED)), "{r:?}");
    assert_eq!(kim.hold(&api, 1, 4, "h4b").await.status, 200);
    assert_eq!(status_of(&seat_map(&api, lee, "1").await, "4"), "locked");
    assert_error(&book(&api, lee, "1", &["4"]).await, 400, Some(&not_available("4")));

    // Performance "1" is schedule 1 only: schedule 2's seat 5 is another seat.
    assert_eq!(kim.hold(&api, 2, 5, "h5").await.status, 200);
    assert_eq!(status_of(&seat_map(&api, lee, "1").await, "5"), "available");
    assert_initiated(&book(&api, lee, "1", &["5"]).await, 80_000);
    assert_eq!(seat_statuses(&kim.seats(&api, 1).await)[4].1, "TEMP_RESERVED");

    // Both catalogs count the same five seats gone.
    let list = api.get("/performances", &jwt(lee), &[]).await;
    let one = list.body.as_array().expect("performances").iter().find(|p| p["performanceId"] == "1").cloned();
    assert_eq!(one.expect("performance 1")["availableSeats"].as_u64(), Some(45));
    let schedules = api.get("/concerts/1/schedules?includeSoldOut=true", &kim.jwt, &[]).await;
    let s1 = schedules.body["schedules"].as_array().expect("schedules").iter().find(|s| s["scheduleId"] == 1).cloned();
    assert_eq!(s1.expect("schedule 1")["availableSeats"].as_u64(), Some(45), "{schedules:?}");

    // Paid through Q: sold in B's view.
    assert_eq!(kim.charge(&api, 80_000, "c1").await.status, 200);
    let paid = kim.pay(&api, reservation, 80_000, "p1").await;
    assert_eq!(paid.status, 200, "{paid:?}");
    let map = seat_map(&api, lee, "1").await;
    assert_eq!(status_of(&map, "1"), "booked");
    assert_eq!(taken(&map), ["1", "2", "3", "4", "5"]);
}

/// A seat map's timer armed for a far deadline (an hour's booking lock) must still fire for
/// a nearer one set later (a 5 minute hold): the seat map re-arms from the changed
/// reservation instead of scanning them all, and this fails if it ever skips an earlier
/// deadline. The test moves the server's clock: both held 10 s before the hold's end,
/// the hold gone and the lock kept just after.
#[actix_rt::test]
async fn a_short_hold_expires_on_time_beside_a_long_booking_lock() {
    let mut env = fast_queue();
    env.extend([("BOXOFFICE_HOLD_TTL", "5m"), ("BOXOFFICE_BOOKING_LOCK_TTL", "1h")]);
    let server = TestServer::spawn(&env);
    let api = server.api();
    let lee = 2u64;
    assert_initiated(&book(&api, lee, "1", &["2"]).await, 80_000);
    let kim = Buyer::enter(&api, 1).await;
    let held = kim.hold(&api, 1, 1, "h1").await;
    assert_eq!(held.status, 200, "{held:?}");
    let id = held.body["reservationId"].as_u64().expect("reservationId");
    server.advance(Duration::from_secs(5 * 60 - 10)).await;
    actix_rt::time::sleep(NOTHING_FIRES).await;
    let q = seat_statuses(&kim.seats(&api, 1).await);
    assert_eq!((q[0].1.as_str(), q[1].1.as_str()), ("TEMP_RESERVED", "TEMP_RESERVED"), "{q:?}");
    server.advance(Duration::from_secs(11)).await;
    eventually!("the hold expires", kim.reservation(&api, id).await.body["status"] == "EXPIRED");
    let q = seat_statuses(&kim.seats(&api, 1).await);
    assert_eq!((q[0].1.as_str(), q[1].1.as_str()), ("AVAILABLE", "TEMP_RESERVED"), "{q:?}");
}

enum Attempt {
    Q(u64, Reply),
    B(Vec<String>, Reply),
}

#[actix_rt::test]
async fn contract_q_holds_and_contract_b_bookings_racing_never_sell_a_seat_twice() {
    let server = TestServer::spawn(&fast_queue());
    let api = server.api();
    let q_ids: Vec<u64> = (20_000..20_100).collect();
    let q_buyers: Vec<Buyer> = join_all(q_ids.iter().map(|id| Buyer::enter(&api, *id))).await;
    // Q: two holds for every seat 1..50. B: two single-seat bookings for every seat 1..30,
    // and for 31..50 a ring of two-seat bookings ({31,32}, {32,33}, .., {50,31}).
    let q_seats: Vec<u64> = (1..=50u64).flat_map(|s| [s, s]).collect();
    let mut b_plans: Vec<Vec<String>> = (1..=30u64).flat_map(|s| [vec![s.to_string()], vec![s.to_string()]]).collect();
    for i in 0..20u64 {
        b_plans.push(vec![(31 + i).to_string(), (31 + (i + 1) % 20).to_string()]);
    }
    let mut attempts: Vec<LocalBoxFuture<'_, Attempt>> = Vec::new();
    for (i, (buyer, seat)) in q_buyers.iter().zip(&q_seats).enumerate() {
        let (api_q, seat) = (api.clone(), *seat);
        attempts.push(Box::pin(async move { Attempt::Q(seat, buyer.hold(&api_q, 1, seat, "race").await) }));
        if let Some(seats) = b_plans.get(i).cloned() {
            let (api_b, user) = (api.clone(), 30_000 + i as u64);
            attempts.push(Box::pin(async move {
                let refs: Vec<&str> = seats.iter().map(String::as_str).collect();
                let r = book(&api_b, user, "1", &refs).await;
                Attempt::B(seats, r)
            }));
        }
    }
    let results = join_all(attempts).await;

    let mut winners: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut refused_on: Vec<u64> = Vec::new();
    for a in &results {
        match a {
            Attempt::Q(seat, r) if r.status == 200 => {
                assert_eq!(r.body["seatNumber"].as_u64(), Some(*seat), "{r:?}");
                winners.entry(*seat).or_default().push(format!("Q reservation {}", r.body["reservationId"]));
            }
            Attempt::Q(seat, r) => {
                assert_q_error(r, 409);
                refused_on.push(*seat);
            }
            Attempt::B(seats, r) if r.status == 201 => {
                let b = assert_initiated(r, 80_000 * seats.len() as u64);
                for s in seats {
                    winners.entry(s.parse().expect("seat number")).or_default().push(format!("B booking {}", b.id));
                }
            }
            Attempt::B(seats, r) => refused_on.push(refused_seat(r, seats).parse().expect("seat number")),
        }
    }
    for (seat, who) in &winners {
        assert_eq!(who.len(), 1, "seat {seat} was sold twice: {who:?}");
    }
    for seat in 1..=30u64 {
        assert!(winners.contains_key(&seat), "seat {seat} was wanted only by single-seat requests: one must win");
    }
    for seat in &refused_on {
        assert!(winners.contains_key(seat), "a request was refused on seat {seat}, which nobody holds");
    }

    // Both contracts' views of the seat map agree with the winners.
    let q_view = seat_statuses(&q_buyers[0].seats(&api, 1).await);
    assert_eq!(q_view.len(), 50);
    for (n, s) in &q_view {
        assert!(s == "TEMP_RESERVED" || s == "AVAILABLE", "{n}: {s}");
        assert_eq!(s == "TEMP_RESERVED", winners.contains_key(n), "seat {n} is {s} in Q's view");
    }
    let b_view = seat_map(&api, 30_000, "1").await;
    assert_eq!(b_view.len(), 50);
    for (id, s) in &b_view {
        assert!(s == "locked" || s == "available", "{id}: {s}");
        let n: u64 = id.parse().expect("seat number");
        assert_eq!(s == "locked", winners.contains_key(&n), "seat {id} is {s} in B's view");
    }
    let left = 50 - winners.len() as u64;
    let list = api.get("/performances", &jwt(1), &[]).await;
    let one = list.body.as_array().expect("performances").iter().find(|p| p["performanceId"] == "1").cloned();
    assert_eq!(one.expect("performance 1")["availableSeats"].as_u64(), Some(left));
    let schedules = api.get("/concerts/1/schedules?includeSoldOut=true", &jwt(1), &[]).await;
    let s1 = schedules.body["schedules"].as_array().expect("schedules").iter().find(|s| s["scheduleId"] == 1).cloned();
    assert_eq!(s1.expect("schedule 1")["availableSeats"].as_u64(), Some(left), "{schedules:?}");
}

#[actix_rt::test]
async fn many_executes_of_one_intent_at_once_charge_once() {
    let server = TestServer::spawn(&[("BOXOFFICE_TEST_GATEWAY_DELAY", "300ms")]);
    let api = server.api();
    let user = 1u64;

    // Twenty at once without a key: one payment runs, the others are 409 or its success.
    let b = assert_initiated(&book(&api, user, "perf_001", &["A1", "A2", "A3"]).await, 3 * PRICE);
    let replies = join_all((0..20).map(|i| {
        let (api, intent) = (api.clone(), b.intent.clone());
        let token = if i % 2 == 0 { "tok_slow" } else { "tok_visa" };
        async move { execute(&api, user, &intent, token).await }
    }))
    .await;
    let ok: Vec<String> = replies.iter().filter(|r| r.status == 200).map(|r| assert_paid(r, &b.intent)).collect();
    assert!(!ok.is_empty(), "{replies:?}");
    assert!(ok.iter().all(|p| *p == ok[0]), "every success is the same payment: {ok:?}");
    for r in replies.iter().filter(|r| r.status != 200) {
        assert_error(r, 409, None);
    }
    assert_eq!(kept(&intent_charges(&api, &b.intent).await), [3 * PRICE], "charged once");
    assert_eq!(states(&api, user, &b.id).await, ("confirmed".to_string(), "captured".to_string()));
    assert_eq!(assert_paid(&execute(&api, user, &b.intent, "tok_visa").await, &b.intent), ok[0]);

    // Ten at once with one Idempotency-Key.
    let c = assert_initiated(&book(&api, user, "perf_001", &["B1"]).await, PRICE);
    let key = [("Idempotency-Key", "same-key")];
    let body = execute_body(&c.intent, "tok_slow");
    let replies = join_all((0..10).map(|_| execute_with(&api, user, body.clone(), &key))).await;
    let ok: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
    assert!(!ok.is_empty(), "{replies:?}");
    for r in &ok {
        assert_eq!(r.body, ok[0].body);
        assert_paid(r, &c.intent);
    }
    for r in replies.iter().filter(|r| r.status != 200) {
        assert_error(r, 409, None);
    }
    let replay = execute_with(&api, user, body, &key).await;
    assert_eq!((replay.status, &replay.body), (200, &ok[0].body));
    assert_eq!(kept(&intent_charges(&api, &c.intent).await), [PRICE], "charged once");
    let all = gateway(&api).await;
    assert_eq!((all["kept"].as_u64(), all["keptAmount"].as_u64()), (Some(2), Some(4 * PRICE)), "{all}");
    assert_eq!(taken(&seat_map(&api, user, "perf_001").await), ["A1", "A2", "A3", "B1"]);
}

#[actix_rt::test]
async fn cancels_racing_payments_end_in_one_consistent_state() {
    let server = TestServer::spawn(&[("BOXOFFICE_TEST_GATEWAY_DELAY", "60ms")]);
    let api = server.api();
    let user = 1u64;
    let seats = perf_001_seats();
    let (mut confirmed, mut cancelled) = (0u64, 0u64);
    for (round, seat) in seats.iter().take(20).enumerate() {
        let seat = seat.as_str();
        let b = assert_initiated(&book(&api, user, "perf_001", &[seat]).await, PRICE);
        let token = if round % 2 == 0 { "tok_visa" } else { "tok_slow" };
        let delay = Duration::from_millis((round as u64 % 5) * 20);
        let pay = execute(&api, user, &b.intent, token);
        let cancel_soon = async {
            actix_rt::time::sleep(delay).await;
            cancel(&api, user, &b.id).await
        };
        let (p, c) = join(pay, cancel_soon).await;
        let (status, payment) = states(&api, user, &b.id).await;
        let seat_status = status_of(&seat_map(&api, user, "perf_001").await, seat).to_string();
        match status.as_str() {
            "confirmed" => {
                confirmed += 1;
                assert_paid(&p, &b.intent);
                assert!(c.status == 400 || c.status == 409, "round {round}: the cancel lost: {c:?}");
                if c.status == 400 {
                    assert_error(&c, 400, Some(ONLY_PENDING));
                } else {
                    assert_error(&c, 409, None);
                }
                assert_eq!((payment.as_str(), seat_status.as_str()), ("captured", "booked"), "round {round}");
                assert_eq!(kept(&intent_charges(&api, &b.intent).await), [PRICE], "round {round}");
            }
            "cancelled" => {
                cancelled += 1;
                assert_eq!((c.status, &c.body["message"]), (200, &json!(CANCELLED)), "round {round}: {c:?}");
                assert_declined(&p, &b.intent, "BOOKING_CANCELLED", None);
                assert_eq!(seat_status, "available", "round {round}");
                let left = kept_after_settling(&api, &b.intent, Duration::from_secs(3)).await;
                assert!(left.is_empty(), "round {round}: a cancelled booking keeps no charge: {left:?}");
                let (_, payment) = states(&api, user, &b.id).await;
                assert!(payment == "unpaid" || payment == "refunded", "round {round}: {payment}");
            }
            other => panic!("round {round}: the booking ended {other}: pay {p:?}, cancel {c:?}"),
        }
    }
    let all = gateway(&api).await;
    assert_eq!(
        (all["kept"].as_u64(), all["keptAmount"].as_u64()),
        (Some(confirmed), Some(confirmed * PRICE)),
        "{confirmed} confirmed, {cancelled} cancelled: {all}"
    );
}
