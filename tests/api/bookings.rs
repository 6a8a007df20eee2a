//! Contract B (seed 004): bookings, card payments through the test gateway, seat locks and
//! their expiry, and restarts. Every answer is checked against the contract's texts, and
//! the state behind it (seat map, `occupiedSeats`, bookings, gateway charges) after it.
//!
//! The helpers for contract B are here, at the top; `bookings_races.rs` uses them too.

use crate::helpers::*;
use futures_util::future::join;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub const INITIATED: &str = "Booking initiated. Please proceed to payment.";
pub const REQUIRED: &str = "User, performance, and seats are required.";
pub const CANCELLED: &str = "Booking cancelled successfully.";
pub const NOT_YOURS: &str = "Unauthorized to cancel this booking.";
pub const NOT_FOUND: &str = "Booking not found.";
pub const ONLY_PENDING: &str = "Only pending bookings can be cancelled.";
pub const NO_INTENT: &str = "Payment intent not found.";
/// The price of a seat of the demo performance `perf_001`.
pub const PRICE: u64 = 30_000;
/// A well-formed booking id that no booking has.
pub const UNKNOWN_ID: &str = "AAAAAAAAAAAAAAAAAAAA";

/// `Seat A2 is not available.`
pub fn not_available(seat: &str) -> String {
    format!("Seat {seat} is not available.")
}

/// A body for `POST /bookings` with this `userId` value (any JSON, to try its forms).
pub fn booking_body(user_id: Value, perf: &str, seats: &[&str]) -> Value {
    json!({ "performanceId": perf, "seatIds": seats, "paymentMethod": "CREDIT_CARD", "userId": user_id })
}

pub async fn post_booking(api: &Api, user: u64, body: Value, headers: &[(&str, &str)]) -> Reply {
    api.call("POST", "/bookings", Some(&jwt(user)), headers, Some(body)).await
}

/// Book `seats` of `perf` as `user`, with the contract's `"user_123"` form of the id.
pub async fn book(api: &Api, user: u64, perf: &str, seats: &[&str]) -> Reply {
    post_booking(api, user, booking_body(json!(format!("user_{user}")), perf, seats), &[]).await
}

pub fn execute_body(intent: &str, token: &str) -> Value {
    json!({ "paymentIntentId": intent, "paymentMethodToken": token, "cvv": "123" })
}

pub async fn execute_with(api: &Api, user: u64, body: Value, headers: &[(&str, &str)]) -> Reply {
    api.call("POST", "/payments/execute", Some(&jwt(user)), headers, Some(body)).await
}

/// Pay the intent as `user` with a test-gateway token.
pub async fn execute(api: &Api, user: u64, intent: &str, token: &str) -> Reply {
    execute_with(api, user, execute_body(intent, token), &[]).await
}

pub async fn booking(api: &Api, user: u64, id: &str) -> Reply {
    api.get(&format!("/bookings/{id}"), &jwt(user), &[]).await
}

pub async fn cancel(api: &Api, user: u64, id: &str) -> Reply {
    api.call("DELETE", &format!("/bookings/{id}"), Some(&jwt(user)), &[], None).await
}

/// `GET /bookings/my`, which must answer 200 with an array.
pub async fn my_bookings(api: &Api, user: u64) -> Vec<Value> {
    let r = api.get("/bookings/my", &jwt(user), &[]).await;
    assert_eq!(r.status, 200, "GET /bookings/my as user {user}: {r:?}");
    r.body.as_array().unwrap_or_else(|| panic!("an array of bookings: {r:?}")).clone()
}

/// `GET /performances/{perf}/seats` as (seatId, status), in the server's order.
pub async fn seat_map(api: &Api, user: u64, perf: &str) -> Vec<(String, String)> {
    let r = api.get(&format!("/performances/{perf}/seats"), &jwt(user), &[]).await;
    assert_eq!(r.status, 200, "seats of {perf}: {r:?}");
    r.body
        .as_array()
        .unwrap_or_else(|| panic!("an array of seats: {r:?}"))
        .iter()
        .map(|s| {
            let id = s["seatId"].as_str().expect("seatId").to_string();
            (id, s["status"].as_str().expect("status").to_string())
        })
        .collect()
}

/// The status of one seat in a seat map.
pub fn status_of<'a>(map: &'a [(String, String)], seat: &str) -> &'a str {
    map.iter().find(|(id, _)| id == seat).map(|(_, s)| s.as_str()).unwrap_or_else(|| panic!("no seat {seat}"))
}

/// The seats of a seat map that are not available, in map order.
pub fn taken(map: &[(String, String)]) -> Vec<String> {
    map.iter().filter(|(_, s)| s != "available").map(|(id, _)| id.clone()).collect()
}

/// `GET /performances/{perf}/occupiedSeats` as `user`: the lock documents.
pub async fn occupied(api: &Api, user: u64, perf: &str) -> Vec<Value> {
    let r = api.get(&format!("/performances/{perf}/occupiedSeats"), &jwt(user), &[]).await;
    assert_eq!(r.status, 200, "occupiedSeats of {perf}: {r:?}");
    r.body.as_array().unwrap_or_else(|| panic!("an array of lock documents: {r:?}")).clone()
}

/// The lock document of one seat.
pub fn doc_of<'a>(docs: &'a [Value], seat: &str) -> &'a Value {
    docs.iter().find(|d| d["seatId"] == seat).unwrap_or_else(|| panic!("no lock document for {seat}: {docs:?}"))
}

/// A `{seconds, nanoseconds}` timestamp in milliseconds.
pub fn firestore_ms(v: &Value) -> i64 {
    let s = v["seconds"].as_i64().unwrap_or_else(|| panic!("seconds: {v}"));
    let n = v["nanoseconds"].as_i64().unwrap_or_else(|| panic!("nanoseconds: {v}"));
    assert!((0..1_000_000_000).contains(&n), "nanoseconds in range: {v}");
    s * 1000 + n / 1_000_000
}

/// The test gateway's record (as an admin), after checking `kept` and `keptAmount`
/// against the list.
pub async fn gateway(api: &Api) -> Value {
    let r = api.get("/admin/test-gateway/charges", &admin_jwt(9_000), &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let list = r.body["charges"].as_array().unwrap_or_else(|| panic!("charges: {r:?}"));
    let kept: Vec<u64> =
        list.iter().filter(|c| c["refunded"] == false).map(|c| c["amount"].as_u64().expect("amount")).collect();
    for c in list {
        assert!(c["id"].is_string() && c["key"].is_string() && c["refunded"].is_boolean(), "{c}");
        assert!(c["capturedAt"].is_string() || c["capturedAt"].is_number(), "{c}");
    }
    assert_eq!(r.body["kept"].as_u64(), Some(kept.len() as u64), "kept counts the charges not refunded: {r:?}");
    assert_eq!(r.body["keptAmount"].as_u64(), Some(kept.iter().sum()), "{r:?}");
    r.body
}

/// Every charge the gateway recorded for one payment intent.
pub async fn intent_charges(api: &Api, intent: &str) -> Vec<Value> {
    let all = gateway(api).await;
    let list = all["charges"].as_array().expect("charges");
    list.iter().filter(|c| c["key"].as_str().is_some_and(|k| k.starts_with(intent))).cloned().collect()
}

/// The amounts of the charges that were not refunded.
pub fn kept(charges: &[Value]) -> Vec<u64> {
    charges.iter().filter(|c| c["refunded"] == false).map(|c| c["amount"].as_u64().expect("amount")).collect()
}

/// A contract B error: this status and `{"error": <text>}` (this exact text if given).
pub fn assert_error(r: &Reply, status: u16, text: Option<&str>) {
    assert_eq!(r.status, status, "{r:?}");
    let e = r.body["error"].as_str().unwrap_or_else(|| panic!("an {{\"error\": ...}} body: {r:?}"));
    assert!(!e.is_empty(), "{r:?}");
    if let Some(t) = text {
        assert_eq!(e, t, "{r:?}");
    }
}

/// What a successful `POST /bookings` gave.
#[derive(Debug, Clone)]
pub struct Booked {
    pub id: String,
    pub intent: String,
    /// `lockedUntil`, in ms since the epoch.
    pub locked_until: i64,
}

pub fn is_id(s: &str) -> bool {
    s.len() == 20 && s.chars().all(|c| c.is_ascii_alphanumeric())
}

/// A 201 `Booking initiated` answer for this total.
pub fn assert_initiated(r: &Reply, amount: u64) -> Booked {
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["message"], INITIATED, "{r:?}");
    assert_eq!(r.body["totalAmount"].as_u64(), Some(amount), "{r:?}");
    assert_eq!(r.body["status"], "pending", "{r:?}");
    let id = r.body["bookingId"].as_str().unwrap_or_else(|| panic!("bookingId: {r:?}")).to_string();
    let intent = r.body["paymentIntentId"].as_str().unwrap_or_else(|| panic!("paymentIntentId: {r:?}")).to_string();
    assert!(is_id(&id) && is_id(&intent), "ids are 20 letters and digits: {r:?}");
    assert_ne!(id, intent);
    Booked { id, intent, locked_until: rfc3339_ms(&r.body["lockedUntil"]) }
}

/// A 200 `Payment SUCCESS` answer; returns `processedAt`.
pub fn assert_paid(r: &Reply, intent: &str) -> String {
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["message"], "Payment SUCCESS", "{r:?}");
    assert_eq!(r.body["paymentIntentId"], intent, "{r:?}");
    assert_eq!(r.body["status"], "SUCCESS", "{r:?}");
    assert_eq!(r.body["pgMockData"]["isSuccess"], true, "{r:?}");
    rfc3339_ms(&r.body["pgMockData"]["processedAt"]);
    r.body["pgMockData"]["processedAt"].as_str().expect("processedAt").to_string()
}

/// A 400 `Payment FAILURE` answer with this failure code (and concept, if given).
pub fn assert_declined(r: &Reply, intent: &str, code: &str, concept: Option<&str>) {
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.body["message"], "Payment FAILURE", "{r:?}");
    assert_eq!(r.body["paymentIntentId"], intent, "{r:?}");
    assert_eq!(r.body["status"], "FAILURE", "{r:?}");
    assert_eq!(r.body["error"]["failureCode"], code, "{r:?}");
    match concept {
        Some(c) => assert_eq!(r.body["error"]["failureConcept"], c, "{r:?}"),
        None => assert!(
            matches!(r.body["error"]["failureConcept"].as_str(), Some("CLIENT_ERROR" | "SERVER_ERROR")),
            "{r:?}"
        ),
    }
}

pub fn rfc3339_ms(v: &Value) -> i64 {
    let s = v.as_str().unwrap_or_else(|| panic!("an RFC 3339 string, not {v}"));
    chrono::DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s} is not RFC 3339: {e}")).timestamp_millis()
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `A1`..`A10`, `B1`..`J10`: the seats of `perf_001` in seat order.
pub fn perf_001_seats() -> Vec<String> {
    ('A'..='J').flat_map(|row| (1..=10).map(move |n| format!("{row}{n}"))).collect()
}

/// Read the booking until it has this status and payment status, or `within` has
/// passed; returns the last body read (the caller asserts on it).
pub async fn wait_for_booking(api: &Api, user: u64, id: &str, status: &str, payment: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let r = booking(api, user, id).await;
        assert_eq!(r.status, 200, "{r:?}");
        if (r.body["status"] == status && r.body["paymentStatus"] == payment) || Instant::now() >= deadline {
            return r.body;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// (status, paymentStatus) of a booking as its owner reads it.
pub async fn states(api: &Api, user: u64, id: &str) -> (String, String) {
    let r = booking(api, user, id).await;
    assert_eq!(r.status, 200, "{r:?}");
    let s = r.body["status"].as_str().unwrap_or_else(|| panic!("status: {r:?}")).to_string();
    (s, r.body["paymentStatus"].as_str().unwrap_or_else(|| panic!("paymentStatus: {r:?}")).to_string())
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

// ---------------------------------------------------------------------------------------

#[actix_rt::test]
async fn bookings_answer_with_the_contract_texts_and_bad_input_changes_nothing() {
    let server = TestServer::spawn(&[]);
    let api = server.api();
    let (kim, lee) = (123u64, 124u64);

    // A fresh store: nothing locked, 100 seats in seat order.
    assert!(occupied(&api, kim, "perf_001").await.is_empty());
    let map = seat_map(&api, kim, "perf_001").await;
    assert_eq!(map.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(), perf_001_seats());
    assert!(taken(&map).is_empty());

    // Success, with each form of kim's id.
    let before = now_ms();
    let r = book(&api, kim, "perf_001", &["A2"]).await;
    let a2 = assert_initiated(&r, PRICE);
    let ttl = a2.locked_until - before;
    assert!((595_000..=601_000).contains(&ttl), "the lock lasts 10 minutes by default: {ttl} ms");
    let a3 =
        assert_initiated(&post_booking(&api, kim, booking_body(json!("123"), "perf_001", &["A3"]), &[]).await, PRICE);
    let a45 = assert_initiated(
        &post_booking(&api, kim, booking_body(json!(123), "perf_001", &["A4", "A5"]), &[]).await,
        2 * PRICE,
    );
    assert!(a2.id != a3.id && a3.id != a45.id && a2.intent != a3.intent && a3.intent != a45.intent);
    // Another user's id: 403, in every form.
    for other in [json!("user_124"), json!("124"), json!(124)] {
        let r = post_booking(&api, kim, booking_body(other, "perf_001", &["A6"]), &[]).await;
        assert_error(&r, 403, None);
    }

    // Taken seats, whoever holds them: the first unavailable seat in request order.
    assert_error(&book(&api, lee, "perf_001", &["A2"]).await, 400, Some(&not_available("A2")));
    assert_error(&book(&api, kim, "perf_001", &["A2"]).await, 400, Some(&not_available("A2")));
    assert_error(&book(&api, lee, "perf_001", &["A7", "A3", "A2"]).await, 400, Some(&not_available("A3")));
    assert_error(&book(&api, lee, "perf_001", &["A5", "A4"]).await, 400, Some(&not_available("A5")));
    assert_error(&book(&api, lee, "perf_001", &["A8", "A9", "A4"]).await, 400, Some(&not_available("A4")));

    // Missing or empty fields.
    let no_user = json!({ "performanceId": "perf_001", "seatIds": ["A8"], "paymentMethod": "CREDIT_CARD" });
    let no_perf = json!({ "seatIds": ["A8"], "paymentMethod": "CREDIT_CARD", "userId": "user_124" });
    let no_seats = json!({ "performanceId": "perf_001", "paymentMethod": "CREDIT_CARD", "userId": "user_124" });
    for body in [
        json!({}),
        no_user,
        no_perf,
        no_seats,
        booking_body(json!(""), "perf_001", &["A8"]),
        booking_body(json!("user_124"), "", &["A8"]),
        booking_body(json!("user_124"), "perf_001", &[]),
    ] {
        let r = post_booking(&api, lee, body.clone(), &[]).await;
        assert_eq!(r.status, 400, "{body}: {r:?}");
        assert_error(&r, 400, Some(REQUIRED));
    }
    // Other bad input: 400 with some text.
    let seats_not_a_list =
        json!({ "performanceId": "perf_001", "seatIds": "A8", "paymentMethod": "CREDIT_CARD", "userId": "user_124" });
    for (what, body) in [
        ("a duplicated seat", booking_body(json!("user_124"), "perf_001", &["A8", "A8"])),
        ("an unknown seat", booking_body(json!("user_124"), "perf_001", &["A8", "A11"])),
        ("an unknown row", booking_body(json!("user_124"), "perf_001", &["K1", "A8"])),
        ("a seat of another map", booking_body(json!("user_124"), "perf_001", &["A8", "7"])),
        ("an unknown performance", booking_body(json!("user_124"), "perf_404", &["A8"])),
        ("seatIds not a list", seats_not_a_list),
    ] {
        let r = post_booking(&api, lee, body, &[]).await;
        assert_eq!(r.status, 400, "{what}: {r:?}");
        assert_error(&r, 400, None);
    }
    let r = api.raw("POST", "/bookings", Some(&jwt(lee)), &[], Some(r#"{"performanceId": "perf_001", "#.into())).await;
    assert_error(&r, 400, None);

    // None of that locked anything or made a booking.
    let map = seat_map(&api, lee, "perf_001").await;
    assert_eq!(taken(&map), ["A2", "A3", "A4", "A5"]);
    assert!(map.iter().all(|(_, s)| s == "available" || s == "locked"), "{map:?}");
    assert!(my_bookings(&api, lee).await.is_empty(), "lee's refused attempts made no booking");

    // occupiedSeats: kim sees his own bookingIds; lee sees the same locks without them.
    let docs = occupied(&api, kim, "perf_001").await;
    assert_eq!(docs.len(), 4, "{docs:?}");
    for (seat, b) in [("A2", &a2), ("A3", &a3), ("A4", &a45), ("A5", &a45)] {
        let doc = doc_of(&docs, seat);
        assert_eq!(doc["id"], format!("perf_001_{seat}"), "{doc}");
        assert_eq!(doc["bookingId"], b.id.as_str(), "{doc}");
        assert!(!doc["userId"].is_null(), "kim sees his own userId: {doc}");
        assert_eq!(doc["status"], "locked", "{doc}");
        assert!((firestore_ms(&doc["lockedUntil"]) - b.locked_until).abs() <= 1, "{doc} vs {b:?}");
    }
    assert_eq!(doc_of(&docs, "A2")["userId"], "user_123");
    let docs = occupied(&api, lee, "perf_001").await;
    assert_eq!(docs.len(), 4, "{docs:?}");
    for d in &docs {
        assert!(d["bookingId"].is_null() && d["userId"].is_null(), "not lee's lock: {d}");
        assert_eq!(d["status"], "locked", "{d}");
    }

    // GET /bookings/my: kim's, oldest first, as the contract lists them.
    let mine = my_bookings(&api, kim).await;
    let ids: Vec<&str> = mine.iter().map(|b| b["bookingId"].as_str().expect("bookingId")).collect();
    assert_eq!(ids, [a2.id.as_str(), a3.id.as_str(), a45.id.as_str()]);
    let first = &mine[0];
    assert_eq!(first["performanceId"], "perf_001");
    assert_eq!(first["seatIds"], json!(["A2"]));
    assert_eq!(first["total_amount"].as_u64(), Some(PRICE));
    assert_eq!(first["status"], "pending");
    assert_eq!(first["userId"], "user_123", "userId as sent");
    assert_eq!(first["paymentIntentId"], a2.intent.as_str());
    assert_eq!(first["paymentStatus"], "unpaid");
    assert_eq!(rfc3339_ms(&first["lockedUntil"]), a2.locked_until);
    let created = rfc3339_ms(&first["createdAt"]);
    assert!(created >= before - 1000 && created <= now_ms() + 1000, "{first}");
    assert_eq!(mine[1]["userId"], "123", "userId as sent");
    let n = &mine[2]["userId"];
    assert!(*n == 123 || *n == "123" || *n == "user_123", "a numeric userId stays user 123: {n}");
    assert_eq!(mine[2]["seatIds"], json!(["A4", "A5"]));
    assert_eq!(mine[2]["total_amount"].as_u64(), Some(2 * PRICE));

    // GET /bookings/{id}: the same object; 403 for others; 404 for none.
    let r = booking(&api, kim, &a2.id).await;
    assert_eq!((r.status, &r.body), (200, first), "{r:?}");
    assert_error(&booking(&api, lee, &a2.id).await, 403, None);
    assert_error(&booking(&api, kim, UNKNOWN_ID).await, 404, None);

    // Idempotency-Key on POST /bookings.
    let key = [("Idempotency-Key", "lee-b1")];
    let lee_b1 = booking_body(json!("user_124"), "perf_001", &["B1"]);
    let first = post_booking(&api, lee, lee_b1.clone(), &key).await;
    let b1 = assert_initiated(&first, PRICE);
    let again = post_booking(&api, lee, lee_b1.clone(), &key).await;
    assert_eq!((again.status, &again.body), (201, &first.body), "a replay is the first answer");
    let r = post_booking(&api, lee, booking_body(json!("user_124"), "perf_001", &["B2"]), &key).await;
    assert_error(&r, 422, None);
    // Keys belong to their user: kim's request under the same key is his own.
    let r = post_booking(&api, kim, booking_body(json!("user_123"), "perf_001", &["B3"]), &key).await;
    let b3 = assert_initiated(&r, PRICE);
    // A refusal is replayed too, even after the seat was freed.
    let key2 = [("Idempotency-Key", "lee-a2")];
    let lee_a2 = booking_body(json!("user_124"), "perf_001", &["A2"]);
    let refused = post_booking(&api, lee, lee_a2.clone(), &key2).await;
    assert_error(&refused, 400, Some(&not_available("A2")));
    let r = cancel(&api, kim, &a2.id).await;
    assert_eq!((r.status, &r.body["message"]), (200, &json!(CANCELLED)), "{r:?}");
    let replay = post_booking(&api, lee, lee_a2.clone(), &key2).await;
    assert_eq!((replay.status, &replay.body), (400, &refused.body));
    assert_eq!(status_of(&seat_map(&api, lee, "perf_001").await, "A2"), "available");
    let lee_ids: Vec<Value> = my_bookings(&api, lee).await.iter().map(|b| b["bookingId"].clone()).collect();
    assert_eq!(lee_ids, [json!(b1.id)], "one booking for lee: replays and the 422 made none");
    assert_eq!(taken(&seat_map(&api, lee, "perf_001").await), ["A3", "A4", "A5", "B1", "B3"]);
    let kims: Vec<Value> = my_bookings(&api, kim).await.iter().map(|b| b["bookingId"].clone()).collect();
    assert_eq!(kims, [json!(a2.id), json!(a3.id), json!(a45.id), json!(b3.id)]);

    // No token, or a bad one: 401 everywhere.
    let some_booking = booking_body(json!("user_124"), "perf_001", &["C1"]);
    let routes = [
        ("POST", "/bookings".to_string(), Some(some_booking)),
        ("GET", "/bookings/my".to_string(), None),
        ("GET", format!("/bookings/{}", a3.id), None),
        ("DELETE", format!("/bookings/{}", a3.id), None),
        ("POST", "/payments/execute".to_string(), Some(execute_body(&a3.intent, "tok_visa"))),
        ("GET", "/performances".to_string(), None),
        ("GET", "/performances/perf_001/seats".to_string(), None),
        ("GET", "/performances/perf_001/occupiedSeats".to_string(), None),
    ];
    for (method, path, body) in routes {
        for token in [None, Some("not.a.jwt")] {
            let r = api.call(method, &path, token, &[], body.clone()).await;
            assert_eq!(r.status, 401, "{method} {path}: {r:?}");
            assert_error(&r, 401, None);
        }
    }
    assert_eq!(states(&api, kim, &a3.id).await, pair("pending", "unpaid"));
    assert!(intent_charges(&api, &a3.intent).await.is_empty());
    assert_eq!(status_of(&seat_map(&api, kim, "perf_001").await, "C1"), "available");
}

#[actix_rt::test]
async fn a_cancelled_booking_frees_its_seats_and_only_its_owner_may_cancel() {
    let server = TestServer::spawn(&[]);
    let api = server.api();
    let (kim, lee) = (1u64, 2u64);
    let k = assert_initiated(&book(&api, kim, "perf_001", &["C1", "C2"]).await, 2 * PRICE);
    assert_error(&book(&api, lee, "perf_001", &["C2"]).await, 400, Some(&not_available("C2")));

    // Not lee's to cancel; unknown and malformed ids.
    assert_error(&cancel(&api, lee, &k.id).await, 403, Some(NOT_YOURS));
    assert_error(&cancel(&api, kim, UNKNOWN_ID).await, 404, Some(NOT_FOUND));
    assert_error(&cancel(&api, kim, "bad%20id").await, 400, None);
    assert_error(&cancel(&api, kim, &"a".repeat(100)).await, 400, None);
    assert_eq!(states(&api, kim, &k.id).await, pair("pending", "unpaid"));
    assert_eq!(taken(&seat_map(&api, kim, "perf_001").await), ["C1", "C2"]);

    // Kim cancels.
    let r = cancel(&api, kim, &k.id).await;
    assert_eq!((r.status, &r.body["message"]), (200, &json!(CANCELLED)), "{r:?}");
    assert_eq!(states(&api, kim, &k.id).await.0, "cancelled");
    assert!(taken(&seat_map(&api, lee, "perf_001").await).is_empty(), "the seats are free");
    assert!(occupied(&api, kim, "perf_001").await.is_empty());
    assert_error(&cancel(&api, kim, &k.id).await, 400, Some(ONLY_PENDING));
    assert_error(&cancel(&api, lee, &k.id).await, 403, Some(NOT_YOURS));

    // Lee can book C2 now; kim's old intent can't be paid.
    let l = assert_initiated(&book(&api, lee, "perf_001", &["C2"]).await, PRICE);
    assert_declined(&execute(&api, kim, &k.intent, "tok_visa").await, &k.intent, "BOOKING_CANCELLED", None);
    assert!(kept(&intent_charges(&api, &k.intent).await).is_empty(), "a cancelled booking is never charged");
    assert_eq!(states(&api, kim, &k.id).await.0, "cancelled");
    assert_eq!(taken(&seat_map(&api, lee, "perf_001").await), ["C2"]);

    // Lee pays; a confirmed booking can't be cancelled.
    assert_paid(&execute(&api, lee, &l.intent, "tok_visa").await, &l.intent);
    assert_error(&cancel(&api, lee, &l.id).await, 400, Some(ONLY_PENDING));
    assert_error(&cancel(&api, kim, &l.id).await, 403, Some(NOT_YOURS));
    assert_eq!(states(&api, lee, &l.id).await, pair("confirmed", "captured"));
    let map = seat_map(&api, kim, "perf_001").await;
    assert_eq!((status_of(&map, "C1"), status_of(&map, "C2")), ("available", "booked"));
    let docs = occupied(&api, lee, "perf_001").await;
    assert_eq!(docs.len(), 1, "{docs:?}");
    assert_eq!(
        (&docs[0]["seatId"], &docs[0]["bookingId"], &docs[0]["status"]),
        (&json!("C2"), &json!(l.id), &json!("booked"))
    );
    let docs = occupied(&api, kim, "perf_001").await;
    assert_eq!((docs.len(), &docs[0]["bookingId"], &docs[0]["status"]), (1, &Value::Null, &json!("booked")));

    // Each sees only their own bookings.
    let mine = my_bookings(&api, kim).await;
    assert_eq!(mine.len(), 1);
    assert_eq!((&mine[0]["bookingId"], &mine[0]["status"]), (&json!(k.id), &json!("cancelled")));
    let theirs = my_bookings(&api, lee).await;
    assert_eq!(theirs.len(), 1);
    assert_eq!((&theirs[0]["bookingId"], &theirs[0]["status"]), (&json!(l.id), &json!("confirmed")));
    assert_eq!(theirs[0]["paymentStatus"], "captured");
}

#[actix_rt::test]
async fn executing_a_payment_confirms_the_booking_and_charges_once() {
    let server = TestServer::spawn(&[]);
    let api = server.api();
    let (kim, lee) = (1u64, 2u64);
    let k = assert_initiated(&book(&api, kim, "perf_001", &["D1", "D2"]).await, 2 * PRICE);

    // Errors that change nothing.
    assert_error(&execute(&api, kim, UNKNOWN_ID, "tok_visa").await, 404, Some(NO_INTENT));
    assert_error(&execute(&api, lee, &k.intent, "tok_visa").await, 403, None);
    for body in [
        json!({ "paymentMethodToken": "tok_visa", "cvv": "123" }),
        json!({ "paymentIntentId": k.intent, "cvv": "123" }),
        json!({}),
    ] {
        let r = execute_with(&api, kim, body.clone(), &[]).await;
        assert_eq!(r.status, 400, "{body}: {r:?}");
        assert_error(&r, 400, None);
    }
    let r = api.raw("POST", "/payments/execute", Some(&jwt(kim)), &[], Some("{oops".into())).await;
    assert_error(&r, 400, None);
    assert_eq!(states(&api, kim, &k.id).await, pair("pending", "unpaid"));
    assert!(intent_charges(&api, &k.intent).await.is_empty());
    assert_eq!(taken(&seat_map(&api, kim, "perf_001").await), ["D1", "D2"]);

    // Pay.
    let before = now_ms();
    let processed = assert_paid(&execute(&api, kim, &k.intent, "tok_visa_creditCard").await, &k.intent);
    let at = rfc3339_ms(&json!(processed));
    assert!(at >= before - 1000 && at <= now_ms() + 1000, "processedAt is now: {processed}");
    assert_eq!(states(&api, kim, &k.id).await, pair("confirmed", "captured"));
    let map = seat_map(&api, lee, "perf_001").await;
    assert_eq!((status_of(&map, "D1"), status_of(&map, "D2")), ("booked", "booked"));
    let docs = occupied(&api, kim, "perf_001").await;
    assert_eq!(docs.len(), 2);
    assert!(docs.iter().all(|d| d["status"] == "booked" && d["bookingId"] == k.id.as_str()), "{docs:?}");
    assert_eq!(kept(&intent_charges(&api, &k.intent).await), [2 * PRICE]);
    assert_error(&book(&api, lee, "perf_001", &["D2"]).await, 400, Some(&not_available("D2")));

    // Paying again answers the first success, whatever the card, and charges nothing more.
    for token in ["tok_mastercard", "tok_card_declined"] {
        let r = execute(&api, kim, &k.intent, token).await;
        assert_eq!(assert_paid(&r, &k.intent), processed, "{token}");
    }
    assert_error(&execute(&api, lee, &k.intent, "tok_visa").await, 403, None);
    assert_eq!(kept(&intent_charges(&api, &k.intent).await), [2 * PRICE]);
    assert_eq!(states(&api, kim, &k.id).await, pair("confirmed", "captured"));

    // Idempotency-Key: a decline is replayed as it was, a different body is 422.
    let j = assert_initiated(&book(&api, kim, "perf_001", &["D3"]).await, PRICE);
    let key = [("Idempotency-Key", "pay-d3")];
    let declined_body = execute_body(&j.intent, "tok_card_declined");
    let first = execute_with(&api, kim, declined_body.clone(), &key).await;
    assert_declined(&first, &j.intent, "CARD_DECLINED", Some("CLIENT_ERROR"));
    let replay = execute_with(&api, kim, declined_body.clone(), &key).await;
    assert_eq!((replay.status, &replay.body), (400, &first.body));
    assert_error(&execute_with(&api, kim, execute_body(&j.intent, "tok_visa"), &key).await, 422, None);
    assert_eq!(states(&api, kim, &j.id).await, pair("pending", "unpaid"));
    assert!(kept(&intent_charges(&api, &j.intent).await).is_empty());
    // A new key pays it; the old key still answers its decline, and charges nothing.
    let ok = execute_with(&api, kim, execute_body(&j.intent, "tok_visa"), &[("Idempotency-Key", "pay-d3-2")]).await;
    let paid_at = assert_paid(&ok, &j.intent);
    let replay = execute_with(&api, kim, declined_body, &key).await;
    assert_eq!((replay.status, &replay.body), (400, &first.body));
    let replay = execute_with(&api, kim, execute_body(&j.intent, "tok_visa"), &[("Idempotency-Key", "pay-d3-2")]).await;
    assert_eq!((replay.status, &replay.body), (200, &ok.body));
    assert_eq!(assert_paid(&replay, &j.intent), paid_at);
    assert_eq!(states(&api, kim, &j.id).await, pair("confirmed", "captured"));
    assert_eq!(kept(&intent_charges(&api, &j.intent).await), [PRICE]);

    // The gateway holds exactly these two charges.
    let all = gateway(&api).await;
    assert_eq!((all["kept"].as_u64(), all["keptAmount"].as_u64()), (Some(2), Some(3 * PRICE)), "{all}");
}

#[actix_rt::test]
async fn every_test_gateway_outcome() {
    let server = TestServer::spawn(&[("BOXOFFICE_TEST_GATEWAY_DELAY", "800ms")]);
    let api = server.api();
    let user = 1u64;
    let seats = perf_001_seats();
    let mut seats = seats.iter();
    let mut paid = 0u64;

    // Declines: nothing is charged, the booking stays payable, and a good card pays it.
    for (token, code, concept) in [
        ("tok_card_declined", "CARD_DECLINED", "CLIENT_ERROR"),
        ("tok_insufficient_funds", "INSUFFICIENT_FUNDS", "CLIENT_ERROR"),
        ("tok_processing_error", "PROCESSING_ERROR", "SERVER_ERROR"),
        ("tok_no_such_card", "INVALID_PAYMENT_METHOD", "CLIENT_ERROR"),
    ] {
        let seat = seats.next().expect("a seat");
        let b = assert_initiated(&book(&api, user, "perf_001", &[seat.as_str()]).await, PRICE);
        assert_declined(&execute(&api, user, &b.intent, token).await, &b.intent, code, Some(concept));
        assert_eq!(states(&api, user, &b.id).await, pair("pending", "unpaid"), "{token}");
        assert_eq!(status_of(&seat_map(&api, user, "perf_001").await, seat), "locked", "{token}");
        assert!(kept(&intent_charges(&api, &b.intent).await).is_empty(), "{token} charged nothing");
        // Declined twice is still payable.
        assert_declined(&execute(&api, user, &b.intent, token).await, &b.intent, code, Some(concept));
        assert_paid(&execute(&api, user, &b.intent, "tok_visa").await, &b.intent);
        paid += 1;
        assert_eq!(states(&api, user, &b.id).await, pair("confirmed", "captured"), "{token}");
        assert_eq!(kept(&intent_charges(&api, &b.intent).await), [PRICE], "{token}");
        assert_eq!(status_of(&seat_map(&api, user, "perf_001").await, seat), "booked");
    }

    // Cards that pay.
    for token in ["tok_visa_creditCard", "tok_visa", "tok_mastercard", "tok_success"] {
        let seat = seats.next().expect("a seat");
        let b = assert_initiated(&book(&api, user, "perf_001", &[seat.as_str()]).await, PRICE);
        assert_paid(&execute(&api, user, &b.intent, token).await, &b.intent);
        paid += 1;
        assert_eq!(states(&api, user, &b.id).await, pair("confirmed", "captured"), "{token}");
        assert_eq!(kept(&intent_charges(&api, &b.intent).await), [PRICE], "{token}");
        assert_eq!(status_of(&seat_map(&api, user, "perf_001").await, seat), "booked");
    }

    // tok_slow pays after the gateway's delay; a second execute meanwhile is 409.
    let seat = seats.next().expect("a seat");
    let b = assert_initiated(&book(&api, user, "perf_001", &[seat.as_str()]).await, PRICE);
    let started = Instant::now();
    let slow = execute(&api, user, &b.intent, "tok_slow");
    let meanwhile = async {
        actix_rt::time::sleep(Duration::from_millis(200)).await;
        let r = execute(&api, user, &b.intent, "tok_visa").await;
        let state = states(&api, user, &b.id).await;
        (r, state)
    };
    let (slow, (second, state_meanwhile)) = join(slow, meanwhile).await;
    assert!(started.elapsed() >= Duration::from_millis(800), "tok_slow waits for the gateway");
    assert_paid(&slow, &b.intent);
    paid += 1;
    assert_error(&second, 409, None);
    assert_eq!(state_meanwhile, pair("pending", "processing"), "while the gateway works");
    assert_eq!(states(&api, user, &b.id).await, pair("confirmed", "captured"));
    assert_eq!(kept(&intent_charges(&api, &b.intent).await), [PRICE]);

    // The gateway holds one charge per paid booking and nothing else.
    let all = gateway(&api).await;
    assert_eq!(all["charges"].as_array().map(Vec::len), Some(paid as usize), "{all}");
    assert_eq!((all["kept"].as_u64(), all["keptAmount"].as_u64()), (Some(paid), Some(paid * PRICE)), "{all}");
}

#[actix_rt::test]
async fn a_lock_that_runs_out_during_a_slow_gateway_call_keeps_no_charge() {
    let server = TestServer::spawn(&[
        ("BOXOFFICE_BOOKING_LOCK_TTL", "400ms"),
        ("BOXOFFICE_TEST_GATEWAY_DELAY", "1200ms"),
        ("BOXOFFICE_GATEWAY_TIMEOUT", "5s"),
    ]);
    let api = server.api();
    let (kim, lee) = (1u64, 2u64);
    let b = assert_initiated(&book(&api, kim, "perf_001", &["E1", "E2"]).await, 2 * PRICE);
    let ttl = b.locked_until - now_ms();
    assert!((-200..=450).contains(&ttl), "BOXOFFICE_BOOKING_LOCK_TTL sets lockedUntil: {ttl} ms");

    let r = execute(&api, kim, &b.intent, "tok_slow").await;
    assert_declined(&r, &b.intent, "BOOKING_EXPIRED", None);
    let last = wait_for_booking(&api, kim, &b.id, "expired", "refunded", Duration::from_secs(3)).await;
    assert_eq!((&last["status"], &last["paymentStatus"]), (&json!("expired"), &json!("refunded")), "{last}");
    assert!(kept(&intent_charges(&api, &b.intent).await).is_empty(), "the gateway keeps no charge");
    assert!(taken(&seat_map(&api, lee, "perf_001").await).is_empty(), "the seats are free");
    assert!(occupied(&api, kim, "perf_001").await.is_empty());

    // It stays expired: no payment, no cancel, and still no charge.
    assert_declined(&execute(&api, kim, &b.intent, "tok_visa").await, &b.intent, "BOOKING_EXPIRED", None);
    assert_error(&cancel(&api, kim, &b.id).await, 400, Some(ONLY_PENDING));
    assert_eq!(states(&api, kim, &b.id).await, pair("expired", "refunded"));
    assert!(kept(&intent_charges(&api, &b.intent).await).is_empty());

    // The seats are someone else's to buy.
    let l = assert_initiated(&book(&api, lee, "perf_001", &["E2", "E1"]).await, 2 * PRICE);
    assert_paid(&execute(&api, lee, &l.intent, "tok_visa").await, &l.intent);
    let all = gateway(&api).await;
    assert_eq!((all["kept"].as_u64(), all["keptAmount"].as_u64()), (Some(1), Some(2 * PRICE)), "{all}");
    assert_eq!(taken(&seat_map(&api, kim, "perf_001").await), ["E1", "E2"]);
}

/// The lock lasts its 10 minutes (the default) by the server's clock, which the test moves.
#[actix_rt::test]
async fn an_unpaid_lock_runs_out_and_frees_its_seats() {
    let server = TestServer::spawn(&[]);
    let api = server.api();
    let (kim, lee) = (1u64, 2u64);
    let b = assert_initiated(&book(&api, kim, "perf_001", &["F1", "F2"]).await, 2 * PRICE);
    assert_eq!(taken(&seat_map(&api, lee, "perf_001").await), ["F1", "F2"]);
    assert_error(&book(&api, lee, "perf_001", &["F2"]).await, 400, Some(&not_available("F2")));
    server.advance(Duration::from_secs(10 * 60 - 10)).await;
    actix_rt::time::sleep(NOTHING_FIRES).await;
    assert_eq!(states(&api, kim, &b.id).await.0, "pending", "10 s before the lock runs out");
    assert_eq!(taken(&seat_map(&api, lee, "perf_001").await), ["F1", "F2"]);
    server.advance(Duration::from_secs(11)).await;
    eventually!("the lock runs out", states(&api, kim, &b.id).await.0 == "expired");

    assert_eq!(states(&api, kim, &b.id).await, pair("expired", "unpaid"));
    assert!(taken(&seat_map(&api, lee, "perf_001").await).is_empty());
    assert!(occupied(&api, kim, "perf_001").await.is_empty());
    assert_error(&cancel(&api, kim, &b.id).await, 400, Some(ONLY_PENDING));
    assert_declined(&execute(&api, kim, &b.intent, "tok_visa").await, &b.intent, "BOOKING_EXPIRED", None);
    assert!(kept(&intent_charges(&api, &b.intent).await).is_empty());
    assert_eq!(states(&api, kim, &b.id).await, pair("expired", "unpaid"));
    let mine = my_bookings(&api, kim).await;
    assert_eq!((mine.len(), &mine[0]["status"]), (1, &json!("expired")));
    assert_initiated(&book(&api, lee, "perf_001", &["F2"]).await, PRICE);
}

#[actix_rt::test]
async fn a_gateway_timeout_then_a_retry_charges_once() {
    // tok_timeout captures, but answers after twice the gateway timeout.
    let server = TestServer::spawn(&[("BOXOFFICE_GATEWAY_TIMEOUT", "300ms")]);
    let api = server.api();
    let user = 1u64;

    // Retried at once, while the gateway's late answer is still on its way.
    let b = assert_initiated(&book(&api, user, "perf_001", &["G1"]).await, PRICE);
    let started = Instant::now();
    let r = execute(&api, user, &b.intent, "tok_timeout").await;
    assert_declined(&r, &b.intent, "GATEWAY_TIMEOUT", Some("SERVER_ERROR"));
    assert!(started.elapsed() < Duration::from_secs(3), "the server stops waiting: {:?}", started.elapsed());
    assert_eq!(states(&api, user, &b.id).await.0, "pending");
    assert_eq!(status_of(&seat_map(&api, user, "perf_001").await, "G1"), "locked");
    let processed = assert_paid(&execute(&api, user, &b.intent, "tok_visa").await, &b.intent);
    assert_eq!(states(&api, user, &b.id).await, pair("confirmed", "captured"));
    // After the late answer too: one charge, and the same success.
    actix_rt::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(kept(&intent_charges(&api, &b.intent).await), [PRICE], "no double charge");
    assert_eq!(states(&api, user, &b.id).await, pair("confirmed", "captured"));
    assert_eq!(assert_paid(&execute(&api, user, &b.intent, "tok_mastercard").await, &b.intent), processed);
    assert_eq!(status_of(&seat_map(&api, user, "perf_001").await, "G1"), "booked");

    // Retried after the gateway's late answer arrived.
    let c = assert_initiated(&book(&api, user, "perf_001", &["G2", "G3"]).await, 2 * PRICE);
    let r = execute(&api, user, &c.intent, "tok_timeout").await;
    assert_declined(&r, &c.intent, "GATEWAY_TIMEOUT", Some("SERVER_ERROR"));
    actix_rt::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(states(&api, user, &c.id).await.0, "pending");
    assert_paid(&execute(&api, user, &c.intent, "tok_success").await, &c.intent);
    assert_eq!(kept(&intent_charges(&api, &c.intent).await), [2 * PRICE], "no double charge");
    assert_eq!(states(&api, user, &c.id).await, pair("confirmed", "captured"));

    let all = gateway(&api).await;
    assert_eq!((all["kept"].as_u64(), all["keptAmount"].as_u64()), (Some(2), Some(3 * PRICE)), "{all}");
}

#[actix_rt::test]
async fn a_gateway_timeout_nobody_retries_is_refunded_when_the_lock_runs_out() {
    let server = TestServer::spawn(&[("BOXOFFICE_GATEWAY_TIMEOUT", "300ms"), ("BOXOFFICE_BOOKING_LOCK_TTL", "1500ms")]);
    let api = server.api();
    let (kim, lee) = (1u64, 2u64);
    let b = assert_initiated(&book(&api, kim, "perf_001", &["H1", "H2"]).await, 2 * PRICE);
    let r = execute(&api, kim, &b.intent, "tok_timeout").await;
    assert_declined(&r, &b.intent, "GATEWAY_TIMEOUT", Some("SERVER_ERROR"));
    assert_eq!(states(&api, kim, &b.id).await.0, "pending");
    assert_eq!(taken(&seat_map(&api, lee, "perf_001").await), ["H1", "H2"]);

    let within = Duration::from_millis((b.locked_until - now_ms()).max(0) as u64 + 3000);
    let last = wait_for_booking(&api, kim, &b.id, "expired", "refunded", within).await;
    assert_eq!((&last["status"], &last["paymentStatus"]), (&json!("expired"), &json!("refunded")), "{last}");
    let charges = intent_charges(&api, &b.intent).await;
    assert!(!charges.is_empty(), "the gateway did capture under tok_timeout");
    assert!(kept(&charges).is_empty(), "and the capture was refunded: {charges:?}");
    assert!(taken(&seat_map(&api, lee, "perf_001").await).is_empty());
    assert!(occupied(&api, kim, "perf_001").await.is_empty());

    // Too late to pay now; nothing more is charged.
    assert_declined(&execute(&api, kim, &b.intent, "tok_visa").await, &b.intent, "BOOKING_EXPIRED", None);
    assert!(kept(&intent_charges(&api, &b.intent).await).is_empty());
    assert_eq!(states(&api, kim, &b.id).await, pair("expired", "refunded"));
    assert_initiated(&book(&api, lee, "perf_001", &["H1"]).await, PRICE);
    assert_eq!(gateway(&api).await["kept"].as_u64(), Some(0));
}

#[actix_rt::test]
async fn performances_their_seat_maps_and_admin_endpoints() {
    let server = TestServer::spawn(&[]);
    let api = server.api();
    let (user, admin) = (1u64, admin_jwt(900));

    let list = api.get("/performances", &jwt(user), &[]).await;
    assert_eq!(list.status, 200, "{list:?}");
    let find = |list: &Reply, id: &str| -> Value {
        let all = list.body.as_array().unwrap_or_else(|| panic!("an array: {list:?}"));
        all.iter().find(|p| p["performanceId"] == id).cloned().unwrap_or_else(|| panic!("no {id}: {list:?}"))
    };
    let p = find(&list, "perf_001");
    assert!(p["title"].as_str().is_some_and(|t| !t.is_empty()), "{p}");
    assert_eq!(
        (p["totalSeats"].as_u64(), p["availableSeats"].as_u64(), p["price"].as_u64()),
        (Some(100), Some(100), Some(PRICE))
    );
    let q = find(&list, "1");
    assert_eq!(
        (q["totalSeats"].as_u64(), q["availableSeats"].as_u64(), q["price"].as_u64()),
        (Some(50), Some(50), Some(80_000))
    );

    let seats = api.get("/performances/perf_001/seats", &jwt(user), &[]).await;
    let seats = seats.body.as_array().expect("seats");
    assert_eq!(seats.len(), 100);
    assert!(seats.iter().all(|s| s["price"] == PRICE && s["status"] == "available"), "{seats:?}");
    let one = seat_map(&api, user, "1").await;
    assert_eq!(
        one.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(),
        (1..=50).map(|n| n.to_string()).collect::<Vec<_>>()
    );
    assert_error(&api.get("/performances/perf_404/seats", &jwt(user), &[]).await, 404, None);

    // Availability follows bookings.
    assert_initiated(&book(&api, user, "perf_001", &["J9", "J10"]).await, 2 * PRICE);
    let list = api.get("/performances", &jwt(user), &[]).await;
    assert_eq!(find(&list, "perf_001")["availableSeats"].as_u64(), Some(98));
    assert_eq!(find(&list, "1")["availableSeats"].as_u64(), Some(50));

    // Only admins create performances.
    let body = json!({ "performanceId": "perf_x", "title": "Small room", "rows": 2, "seatsPerRow": 3, "price": 1000 });
    assert_error(&api.call("POST", "/performances", Some(&jwt(user)), &[], Some(body.clone())).await, 403, None);
    let list = api.get("/performances", &jwt(user), &[]).await;
    assert!(list.body.as_array().expect("list").iter().all(|p| p["performanceId"] != "perf_x"));
    let r = api.call("POST", "/performances", Some(&admin), &[], Some(body.clone())).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!((r.body["performanceId"].as_str(), r.body["totalSeats"].as_u64()), (Some("perf_x"), Some(6)), "{r:?}");
    let map = seat_map(&api, user, "perf_x").await;
    let ids: Vec<&str> = map.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["A1", "A2", "A3", "B1", "B2", "B3"]);
    assert!(taken(&map).is_empty());
    let listed = find(&api.get("/performances", &jwt(user), &[]).await, "perf_x");
    assert_eq!(
        (
            listed["title"].as_str(),
            listed["totalSeats"].as_u64(),
            listed["availableSeats"].as_u64(),
            listed["price"].as_u64()
        ),
        (Some("Small room"), Some(6), Some(6), Some(1000))
    );
    // An existing id; invalid ones.
    assert_error(&api.call("POST", "/performances", Some(&admin), &[], Some(body)).await, 409, None);
    let zero_rows = json!({ "performanceId": "perf_y", "title": "t", "rows": 0, "seatsPerRow": 3, "price": 1000 });
    let no_price = json!({ "performanceId": "perf_y", "title": "t", "rows": 1, "seatsPerRow": 3 });
    for bad in [zero_rows, no_price] {
        assert_error(&api.call("POST", "/performances", Some(&admin), &[], Some(bad)).await, 400, None);
    }
    assert_error(&api.get("/performances/perf_y/seats", &jwt(user), &[]).await, 404, None);

    // The new performance sells at its price.
    let b = assert_initiated(&book(&api, user, "perf_x", &["B3", "A1"]).await, 2000);
    assert_error(&book(&api, user, "perf_x", &["A4"]).await, 400, None);
    assert_eq!(taken(&seat_map(&api, user, "perf_x").await), ["A1", "B3"]);
    assert_paid(&execute(&api, user, &b.intent, "tok_visa").await, &b.intent);
    assert_eq!(kept(&intent_charges(&api, &b.intent).await), [2000]);

    // The gateway's record is for admins only.
    assert_error(&api.get("/admin/test-gateway/charges", &jwt(user), &[]).await, 403, None);
    let all = gateway(&api).await;
    assert_eq!((all["kept"].as_u64(), all["keptAmount"].as_u64()), (Some(1), Some(2000)), "{all}");
}

async fn bookings_survive_restarts(graceful: bool) {
    let mut server = TestServer::spawn(&[("BOXOFFICE_BOOKING_LOCK_TTL", "4s")]);
    let api = server.api();
    let (kim, lee) = (1u64, 2u64);
    let paid = assert_initiated(&book(&api, kim, "perf_001", &["I1"]).await, PRICE);
    let processed = assert_paid(&execute(&api, kim, &paid.intent, "tok_visa").await, &paid.intent);
    let later = assert_initiated(&book(&api, lee, "perf_001", &["I3"]).await, PRICE);
    let key = [("Idempotency-Key", "restart-i2")];
    let body = booking_body(json!("user_1"), "perf_001", &["I2"]);
    let first = post_booking(&api, kim, body.clone(), &key).await;
    let pending = assert_initiated(&first, PRICE);
    let before = booking(&api, kim, &pending.id).await.body;

    // kill -9, and straight back up: everything is as it was.
    server.kill9();
    server.restart();
    let api = server.api();
    let r = booking(&api, kim, &pending.id).await;
    assert_eq!((r.status, &r.body), (200, &before), "the pending booking survived kill -9");
    assert_eq!(states(&api, kim, &paid.id).await, pair("confirmed", "captured"));
    let map = seat_map(&api, kim, "perf_001").await;
    assert_eq!((status_of(&map, "I1"), status_of(&map, "I2"), status_of(&map, "I3")), ("booked", "locked", "locked"));
    assert_eq!(taken(&map).len(), 3);
    let docs = occupied(&api, kim, "perf_001").await;
    let i2 = doc_of(&docs, "I2");
    assert_eq!((&i2["bookingId"], &i2["status"]), (&json!(pending.id), &json!("locked")), "{i2}");
    assert!((firestore_ms(&i2["lockedUntil"]) - pending.locked_until).abs() <= 1, "{i2}");
    let r = post_booking(&api, kim, body.clone(), &key).await;
    assert_eq!((r.status, &r.body), (201, &first.body), "the idempotency record survived");
    assert_error(&book(&api, lee, "perf_001", &["I2"]).await, 400, Some(&not_available("I2")));
    assert_eq!(assert_paid(&execute(&api, kim, &paid.intent, "tok_visa").await, &paid.intent), processed);
    // The intent survived too: lee pays now.
    assert_paid(&execute(&api, lee, &later.intent, "tok_mastercard").await, &later.intent);

    // Down again until the pending lock has run out; at start it is released.
    if graceful {
        assert!(server.stop().success(), "a graceful stop exits 0");
    } else {
        server.kill9();
    }
    let wait = pending.locked_until + 700 - now_ms();
    if wait > 0 {
        actix_rt::time::sleep(Duration::from_millis(wait as u64)).await;
    }
    server.restart();
    let api = server.api();
    assert_eq!(states(&api, kim, &pending.id).await, pair("expired", "unpaid"), "released at start");
    let map = seat_map(&api, lee, "perf_001").await;
    assert_eq!(
        (status_of(&map, "I1"), status_of(&map, "I2"), status_of(&map, "I3")),
        ("booked", "available", "booked")
    );
    assert_eq!(taken(&map).len(), 2);
    let docs = occupied(&api, kim, "perf_001").await;
    assert_eq!(docs.len(), 2, "{docs:?}");
    assert_eq!(
        (&doc_of(&docs, "I1")["bookingId"], &doc_of(&docs, "I1")["status"]),
        (&json!(paid.id), &json!("booked"))
    );
    assert_eq!((&doc_of(&docs, "I3")["bookingId"], &doc_of(&docs, "I3")["status"]), (&Value::Null, &json!("booked")));
    assert_eq!(states(&api, kim, &paid.id).await, pair("confirmed", "captured"));
    assert_eq!(states(&api, lee, &later.id).await, pair("confirmed", "captured"));
    assert_eq!(assert_paid(&execute(&api, kim, &paid.intent, "tok_visa").await, &paid.intent), processed);
    assert_declined(&execute(&api, kim, &pending.intent, "tok_visa").await, &pending.intent, "BOOKING_EXPIRED", None);
    let all = gateway(&api).await;
    assert_eq!((all["kept"].as_u64(), all["keptAmount"].as_u64()), (Some(2), Some(2 * PRICE)), "{all}");
    let mine: Vec<(Value, Value)> =
        my_bookings(&api, kim).await.iter().map(|b| (b["bookingId"].clone(), b["status"].clone())).collect();
    assert_eq!(mine, [(json!(paid.id), json!("confirmed")), (json!(pending.id), json!("expired"))]);
    // The freed seat sells again.
    assert_initiated(&book(&api, lee, "perf_001", &["I2"]).await, PRICE);
}

#[actix_rt::test]
async fn bookings_survive_kill_9_and_a_lock_that_ran_out_meanwhile_is_released() {
    bookings_survive_restarts(false).await;
}

#[actix_rt::test]
async fn bookings_survive_a_graceful_restart_and_a_lock_that_ran_out_meanwhile_is_released() {
    bookings_survive_restarts(true).await;
}
