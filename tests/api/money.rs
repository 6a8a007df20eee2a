//! Issue 13: amounts never pass 2^53 - 1 (what every client language reads exactly), and
//! a request that would make one pass it is refused with a 400 in its contract's shape
//! before anything changes; tokens from the future are refused.

use crate::bookings::{book, seat_map, status_of};
use crate::helpers::*;
use serde_json::json;

const MAX: u64 = (1 << 53) - 1;

#[actix_rt::test]
async fn contract_t_prices_and_totals_stop_at_two_to_the_53() {
    let server = TestServer::spawn(&[]);
    let api = server.api();
    let seller = jwt(20);
    let listing = |price: serde_json::Value, quantity: u64| json!({ "title": "콘서트", "description": "d", "unitPrice": price, "totalQuantity": quantity });
    let count = |r: &Reply| r.body["data"].as_array().map_or(0, Vec::len);
    let before = count(&api.call("GET", "/api/tickets", Some(&seller), &[], None).await);
    for (price, quantity) in
        [(json!(1u64 << 62), 4), (json!(1u64 << 63), 1), (json!(1u64 << 51), 4), (json!(MAX + 1), 1)]
    {
        let r = api.call("POST", "/api/tickets", Some(&seller), &[], Some(listing(price.clone(), quantity))).await;
        assert_eq!(r.status, 400, "{price} x {quantity}: {r:?}");
        assert_eq!(r.body["statusCode"], 400, "contract T's envelope: {r:?}");
        assert!(r.body["data"].is_null(), "{r:?}");
    }
    let after = count(&api.call("GET", "/api/tickets", Some(&seller), &[], None).await);
    assert_eq!(after, before, "a refused listing leaves nothing behind");
    // The largest total is fine.
    let r = api.call("POST", "/api/tickets", Some(&seller), &[], Some(listing(json!(MAX), 1))).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["data"]["unitPrice"], MAX, "{r:?}");
    let r = api.call("POST", "/api/tickets", Some(&seller), &[], Some(listing(json!(1u64 << 50), 4))).await;
    assert_eq!(r.status, 201, "4 x 2^50 = 2^52: {r:?}");
}

#[actix_rt::test]
async fn contract_b_a_booking_whose_total_would_pass_the_ceiling_books_nothing() {
    let server = TestServer::spawn(&[]);
    let api = server.api();
    let admin = admin_jwt(900);
    let perf = |id: &str, price: u64| json!({ "performanceId": id, "rows": 1, "seatsPerRow": 4, "price": price });
    let r = api.call("POST", "/performances", Some(&admin), &[], Some(perf("too_dear", MAX + 1))).await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body["error"].is_string() || r.body["message"].is_string(), "contract B's shape: {r:?}");
    let r = api.call("POST", "/performances", Some(&admin), &[], Some(perf("dear", 1 << 52))).await;
    assert_eq!(r.status, 201, "{r:?}");

    // Two seats at 2^52 make 2^53: one past the ceiling.
    let r = book(&api, 7, "dear", &["A1", "A2"]).await;
    assert_eq!(r.status, 400, "{r:?}");
    let map = seat_map(&api, 7, "dear").await;
    assert_eq!((status_of(&map, "A1"), status_of(&map, "A2")), ("available", "available"), "nothing was locked");
    let r = book(&api, 7, "dear", &["A1"]).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["totalAmount"], 1u64 << 52, "{r:?}");
}

#[actix_rt::test]
async fn contract_q_seat_prices_stop_at_two_to_the_53() {
    let server = TestServer::spawn(&[]);
    let api = server.api();
    let admin = admin_jwt(900);
    let c = api.call("POST", "/concerts", Some(&admin), &[], Some(json!({ "title": "Big hall" }))).await;
    assert_eq!(c.status, 201, "{c:?}");
    let concert = c.body["id"].as_u64().or_else(|| c.body["concertId"].as_u64()).expect("concert id");
    let schedule = |price: u64| json!({ "startsAt": "2027-01-01T19:00:00Z", "totalSeats": 2, "price": price });
    let path = format!("/concerts/{concert}/schedules");
    let r = api.call("POST", &path, Some(&admin), &[], Some(schedule(MAX + 1))).await;
    assert_q_error(&r, 400);
    let r = api.call("POST", &path, Some(&admin), &[], Some(schedule(MAX))).await;
    assert_eq!(r.status, 201, "{r:?}");
}

/// A token valid only from an hour on (`nbf`), or issued an hour from now (`iat`), is 401
/// in every contract.
#[actix_rt::test]
async fn tokens_from_the_future_are_401() {
    let server = TestServer::spawn(&[]);
    let api = server.api();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let sign = |claims: serde_json::Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("encode")
    };
    let later = now + 3600;
    for claims in
        [json!({ "sub": "7", "exp": now + 7200, "nbf": later }), json!({ "sub": "7", "exp": now + 7200, "iat": later })]
    {
        let token = sign(claims.clone());
        for path in ["/chat/rooms/", "/api/tickets", "/bookings/my", "/users/7/amount"] {
            let r = api.get(path, &token, &[]).await;
            assert_eq!(r.status, 401, "{path} with {claims}: {r:?}");
        }
    }
    let fine = sign(json!({ "sub": "7", "exp": now + 7200, "nbf": now - 5, "iat": now - 5 }));
    assert_eq!(api.get("/chat/rooms/", &fine, &[]).await.status, 200);
}
