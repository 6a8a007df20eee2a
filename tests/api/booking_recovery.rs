//! Contract B: a crash (`kill -9`) while the gateway is charging a card. After the
//! restart the charge's outcome is unknown; a retry must not charge twice, and a lock
//! that runs out must leave no money kept.

use crate::helpers::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn book(api: &Api, user: u64, seats: &[&str]) -> Reply {
    let body = json!({ "performanceId": "perf_001", "seatIds": seats, "paymentMethod": "CREDIT_CARD", "userId": format!("user_{user}") });
    api.call("POST", "/bookings", Some(&jwt(user)), &[], Some(body)).await
}

async fn execute(api: &Api, user: u64, intent: &str, token: &str) -> Reply {
    let body = json!({ "paymentIntentId": intent, "paymentMethodToken": token, "cvv": "123" });
    api.call("POST", "/payments/execute", Some(&jwt(user)), &[], Some(body)).await
}

/// The gateway's charges for one intent.
async fn charges_of(api: &Api, intent: &str) -> Vec<Value> {
    let r = api.get("/admin/test-gateway/charges", &admin_jwt(999), &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let all = r.body["charges"].as_array().expect("charges").clone();
    all.into_iter().filter(|c| c["key"].as_str().is_some_and(|k| k.starts_with(intent))).collect()
}

async fn booking(api: &Api, user: u64, id: &str) -> Value {
    let r = api.get(&format!("/bookings/{id}"), &jwt(user), &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    r.body
}

async fn seat_status(api: &Api, seat: &str) -> String {
    let r = api.get("/performances/perf_001/seats", &jwt(1), &[]).await;
    let seats = r.body.as_array().expect("seats");
    let s = seats.iter().find(|s| s["seatId"] == seat).expect("seat");
    s["status"].as_str().expect("status").to_string()
}

/// Start a `tok_slow` charge and kill the server while the gateway is answering.
async fn crash_during_charge(server: &mut TestServer, user: u64, seat: &str) -> (String, String) {
    let api = server.api();
    let b = book(&api, user, &[seat]).await;
    assert_eq!(b.status, 201, "{b:?}");
    let (id, intent) = (b.body["bookingId"].as_str().expect("id"), b.body["paymentIntentId"].as_str().expect("intent"));
    let (id, intent) = (id.to_string(), intent.to_string());
    let pay = {
        let (api, intent) = (api.clone(), intent.clone());
        actix_rt::spawn(async move {
            let body = json!({ "paymentIntentId": intent, "paymentMethodToken": "tok_slow", "cvv": "123" });
            // The connection dies with the server (the task is aborted first).
            api.call("POST", "/payments/execute", Some(&jwt(user)), &[], Some(body)).await;
        })
    };
    // Wait until the gateway has captured (it answers tok_slow late).
    let deadline = Instant::now() + Duration::from_secs(10);
    while charges_of(&api, &intent).await.is_empty() {
        assert!(Instant::now() < deadline, "the gateway never saw the charge");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(booking(&api, user, &id).await["paymentStatus"], "processing");
    server.kill9();
    pay.abort();
    server.restart();
    (id, intent)
}

#[actix_rt::test]
async fn a_retry_after_a_crash_mid_charge_charges_once() {
    let mut server = TestServer::spawn(&[("BOXOFFICE_TEST_GATEWAY_DELAY", "5s"), ("BOXOFFICE_GATEWAY_TIMEOUT", "20s")]);
    let (id, intent) = crash_during_charge(&mut server, 7, "C3").await;
    let api = server.api();
    let b = booking(&api, 7, &id).await;
    assert_eq!((b["status"].as_str(), b["paymentStatus"].as_str()), (Some("pending"), Some("processing")), "{b}");
    assert_eq!(seat_status(&api, "C3").await, "locked");
    // The retry reuses the gateway key, so the gateway answers with the first charge.
    let r = execute(&api, 7, &intent, "tok_visa").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["message"], "Payment SUCCESS");
    let charges = charges_of(&api, &intent).await;
    assert_eq!(charges.len(), 1, "one charge for one intent: {charges:?}");
    assert_eq!(charges[0]["refunded"], false);
    let b = booking(&api, 7, &id).await;
    assert_eq!((b["status"].as_str(), b["paymentStatus"].as_str()), (Some("confirmed"), Some("captured")), "{b}");
    assert_eq!(seat_status(&api, "C3").await, "booked");
}

#[actix_rt::test]
async fn a_lock_that_runs_out_after_a_crash_mid_charge_refunds_and_frees_the_seat() {
    let mut server = TestServer::spawn(&[
        ("BOXOFFICE_TEST_GATEWAY_DELAY", "5s"),
        ("BOXOFFICE_GATEWAY_TIMEOUT", "20s"),
        ("BOXOFFICE_BOOKING_LOCK_TTL", "1500ms"),
    ]);
    let (id, intent) = crash_during_charge(&mut server, 8, "D4").await;
    let api = server.api();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let b = booking(&api, 8, &id).await;
        if b["status"] == "expired" && b["paymentStatus"] == "refunded" {
            break;
        }
        assert!(Instant::now() < deadline, "never refunded: {b}");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let charges = charges_of(&api, &intent).await;
    assert_eq!(charges.len(), 1, "{charges:?}");
    assert_eq!(charges[0]["refunded"], true, "no money kept for a booking without seats");
    assert_eq!(seat_status(&api, "D4").await, "available");
    // The refund survives another restart, and the intent cannot be paid any more.
    server.stop();
    server.restart();
    let api = server.api();
    assert_eq!(booking(&api, 8, &id).await["paymentStatus"], "refunded");
    let r = execute(&api, 8, &intent, "tok_visa").await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.body["error"]["failureCode"], "BOOKING_EXPIRED");
    assert_eq!(charges_of(&api, &intent).await.len(), 1);
    assert_eq!(book(&api, 9, &["D4"]).await.status, 201, "the seat is free for others");
}
