//! Holds, charges and payments: every success and every error the contract lists.

use crate::helpers::*;
use serde_json::json;

#[actix_rt::test]
async fn hold_charge_pay_and_their_errors() {
    let server = TestServer::spawn(&[
        ("BOXOFFICE_QUEUE_ADMIT_RATE", "1000000"),
        ("BOXOFFICE_QUEUE_MAX_ACTIVE", "1000000"),
        ("BOXOFFICE_CHARGE_MAX_SINGLE", "500000"),
        ("BOXOFFICE_CHARGE_MAX_MONTHLY", "900000"),
    ]);
    let api = server.api();
    let kim = Buyer::enter(&api, 10).await;

    // Hold seat 7.
    let r = kim.hold(&api, 1, 7, "hold-7").await;
    assert_eq!(r.status, 200, "{r:?}");
    let id = r.body["reservationId"].as_u64().expect("reservationId");
    assert_eq!(
        (r.body["scheduleId"].as_u64(), r.body["seatNumber"].as_u64(), r.body["price"].as_u64()),
        (Some(1), Some(7), Some(80_000))
    );
    assert_eq!(r.body["status"], "ON_HOLD");
    let expires = chrono::DateTime::parse_from_rfc3339(r.body["holdExpiresAt"].as_str().expect("holdExpiresAt"))
        .expect("rfc3339");
    let ttl = expires.timestamp_millis() - chrono::Utc::now().timestamp_millis();
    assert!((290_000..=300_000).contains(&ttl), "hold lasts 5 minutes by default: {ttl}");
    let seats = seat_statuses(&kim.seats(&api, 1).await);
    assert_eq!(seats[6], (7, "TEMP_RESERVED".to_string()));

    // Hold errors.
    let lee = Buyer::enter(&api, 11).await;
    assert_q_error(&lee.hold(&api, 1, 7, "lee-7").await, 409);
    assert_q_error(&lee.hold(&api, 1, 51, "lee-51").await, 400);
    assert_q_error(&lee.hold(&api, 1, 0, "lee-0").await, 400);
    assert_q_error(&lee.hold(&api, 9, 1, "lee-s9").await, 404);
    let body = json!({ "userId": 11, "concertId": 1, "scheduleId": 1, "seatNumber": 8 });
    let r =
        api.call("POST", "/reservations", Some(&lee.jwt), &[("X-Queue-Token", &lee.queue)], Some(body.clone())).await;
    assert_q_error(&r, 400);
    let r = api.call("POST", "/reservations", Some(&lee.jwt), &[("Idempotency-Key", "no-queue")], Some(body)).await;
    assert_q_error(&r, 403);
    let r = api
        .call(
            "POST",
            "/reservations",
            Some(&lee.jwt),
            &[("X-Queue-Token", &lee.queue), ("Idempotency-Key", "x")],
            Some(json!({ "userId": 11 })),
        )
        .await;
    assert_q_error(&r, 400);

    // Reading it back.
    let r = kim.reservation(&api, id).await;
    assert_eq!(r.status, 200, "{r:?}");
    for field in ["reservationId", "scheduleId", "seatNumber", "status", "holdExpiresAt", "price"] {
        assert!(!r.body[field].is_null(), "missing {field}: {r:?}");
    }
    assert_q_error(&kim.reservation(&api, 987_654).await, 404);
    assert_q_error(&api.get("/reservations/abc", &kim.jwt, &[]).await, 400);

    // The wallet.
    let b = kim.balance(&api).await;
    assert_eq!((b.status, b.body["amount"].as_u64()), (200, Some(0)), "{b:?}");
    for bad in [0, -5] {
        assert_q_error(&kim.charge(&api, bad, &format!("bad{bad}")).await, 400);
    }
    assert_q_error(&kim.charge(&api, 500_001, "over-single").await, 400);
    let r = kim.charge(&api, 50_000, "c1").await;
    assert_eq!((r.status, r.body["amount"].as_u64()), (200, Some(50_000)), "{r:?}");
    let path = format!("/users/{}/charge", kim.id);
    let r =
        api.call("PATCH", &path, Some(&kim.jwt), &[("X-Queue-Token", &kim.queue)], Some(json!({ "amount": 1 }))).await;
    assert_q_error(&r, 400);

    // Not enough balance: 402, and the hold is still payable.
    assert_q_error(&kim.pay(&api, id, 80_000, "p-poor").await, 402);
    assert_eq!(kim.reservation(&api, id).await.body["status"], "ON_HOLD");
    let r = kim.charge(&api, 50_000, "c2").await;
    assert_eq!(r.body["amount"].as_u64(), Some(100_000));
    // The monthly limit (900,000): 100,000 so far, 500,000 more is fine, 300,001 more is not.
    assert_eq!(kim.charge(&api, 500_000, "c3").await.status, 200);
    assert_q_error(&kim.charge(&api, 300_001, "c4").await, 400);
    assert_eq!(kim.balance(&api).await.body["amount"].as_u64(), Some(600_000));

    // Payment errors that leave everything as it was.
    assert_q_error(&kim.pay(&api, id, 1, "p-wrong-amount").await, 400);
    assert_q_error(&kim.pay(&api, 424_242, 80_000, "p-missing").await, 404);
    let r = api
        .call(
            "POST",
            "/payments",
            Some(&kim.jwt),
            &[("X-Queue-Token", &kim.queue)],
            Some(json!({ "reservationId": id, "amount": 80_000 })),
        )
        .await;
    assert_q_error(&r, 400);
    assert_eq!(kim.balance(&api).await.body["amount"].as_u64(), Some(600_000));

    // Pay.
    let r = kim.pay(&api, id, 80_000, "p-ok").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["balanceAfter"].as_u64(), Some(520_000));
    assert_eq!(r.body["queueTokenExpired"], true);
    let seats = seat_statuses(&lee.seats(&api, 1).await);
    assert_eq!(seats[6], (7, "RESERVED".to_string()));
    assert_eq!(kim.reservation(&api, id).await.body["status"], "CONFIRMED");
    // The token ended with the payment.
    assert_q_error(&kim.balance(&api).await, 403);
    // Paying again with a new key: 409 already confirmed.
    let kim = Buyer::enter(&api, 10).await;
    assert_q_error(&kim.pay(&api, id, 80_000, "p-again").await, 409);
    assert_eq!(kim.balance(&api).await.body["amount"].as_u64(), Some(520_000));
    // A seat that was sold stays unavailable.
    assert_q_error(&lee.hold(&api, 1, 7, "lee-7b").await, 409);
}
