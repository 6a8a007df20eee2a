//! The idempotency ledger across actors: a keyed answer is replayed as it was first given
//! (not as the booking stands now), and one key cannot run two requests at once, even
//! when they go to two different seat maps.

use crate::bookings::*;
use crate::helpers::*;
use futures_util::future::join_all;
use serde_json::json;

/// Replaying `POST /bookings` after the booking was paid, or cancelled, gives the first
/// answer byte for byte: `pending`, the first `lockedUntil`.
#[actix_rt::test]
async fn a_booking_replay_is_the_first_answer_whatever_became_of_the_booking() {
    let server = TestServer::spawn(&[]);
    let api = server.api();
    let kim = 123;
    let paid_key = [("Idempotency-Key", "exact-paid")];
    let paid_body = booking_body(json!("user_123"), "perf_001", &["D1"]);
    let first = post_booking(&api, kim, paid_body.clone(), &paid_key).await;
    let paid = assert_initiated(&first, PRICE);
    assert_paid(&execute(&api, kim, &paid.intent, "tok_visa").await, &paid.intent);
    assert_eq!(booking(&api, kim, &paid.id).await.body["status"], "confirmed");
    let replay = post_booking(&api, kim, paid_body, &paid_key).await;
    assert_eq!((replay.status, &replay.raw), (201, &first.raw), "the replay of a paid booking is its first answer");

    let cancelled_key = [("Idempotency-Key", "exact-cancelled")];
    let cancelled_body = booking_body(json!("user_123"), "perf_001", &["D2", "D3"]);
    let first = post_booking(&api, kim, cancelled_body.clone(), &cancelled_key).await;
    let b = assert_initiated(&first, 2 * PRICE);
    assert_eq!(cancel(&api, kim, &b.id).await.status, 200);
    let replay = post_booking(&api, kim, cancelled_body, &cancelled_key).await;
    assert_eq!(
        (replay.status, &replay.raw),
        (201, &first.raw),
        "the replay of a cancelled booking is its first answer"
    );
    // The replay booked nothing again: D2 and D3 stay free.
    let map = seat_map(&api, kim, "perf_001").await;
    assert_eq!((status_of(&map, "D2"), status_of(&map, "D3")), ("available", "available"));
    assert_eq!(my_bookings(&api, kim).await.len(), 2);
}

/// Requests with one key for six performances (six seat maps, spread over the server's
/// actor threads), sent at once: one runs, the others are refused (409 while the first
/// runs, 422 once it has answered), and only one booking exists per key.
#[actix_rt::test]
async fn one_key_never_books_on_two_performances_at_once() {
    let server = TestServer::spawn(&[("BOXOFFICE_WORKERS", "4")]);
    let api = server.api();
    let admin = admin_jwt(900);
    let performances: Vec<String> = (0..6).map(|p| format!("perf_twin_{p}")).collect();
    for p in &performances {
        let body = json!({ "performanceId": p, "title": p, "rows": 3, "seatsPerRow": 10, "price": 1000 });
        let r = api.call("POST", "/performances", Some(&admin), &[], Some(body)).await;
        assert_eq!(r.status, 201, "{r:?}");
    }
    let lee = 124;
    let rounds = 30;
    for i in 0..rounds {
        let key = format!("twin-{i}");
        let headers = [("Idempotency-Key", key.as_str())];
        let seat = format!("{}{}", ["A", "B", "C"][i / 10], i % 10 + 1);
        let sends = performances
            .iter()
            .map(|p| post_booking(&api, lee, booking_body(json!("user_124"), p, &[seat.as_str()]), &headers));
        let replies = join_all(sends).await;
        let created = replies.iter().filter(|r| r.status == 201).count();
        let refused = replies.iter().filter(|r| r.status == 409 || r.status == 422).count();
        assert_eq!(
            (created, refused),
            (1, performances.len() - 1),
            "round {i}: one runs, the rest are refused: {replies:?}"
        );
    }
    assert_eq!(my_bookings(&api, lee).await.len(), rounds, "one booking per key");
}

/// Keys belong to the user, not to an endpoint or a booking: a booking's key cannot pay
/// (422), and a card payment's first answer is replayed byte for byte after `kill -9`.
#[actix_rt::test]
async fn a_users_keys_span_endpoints_and_a_payment_replay_survives_kill_9() {
    let mut server = TestServer::spawn(&[]);
    let api = server.api();
    let kim = 123;
    let shared = [("Idempotency-Key", "k-shared")];
    let b = assert_initiated(
        &post_booking(&api, kim, booking_body(json!("user_123"), "perf_001", &["D4"]), &shared).await,
        PRICE,
    );
    let r = execute_with(&api, kim, execute_body(&b.intent, "tok_visa"), &shared).await;
    assert_error(&r, 422, None);
    assert_eq!(
        states(&api, kim, &b.id).await,
        ("pending".to_string(), "unpaid".to_string()),
        "the 422 charged nothing"
    );
    let pay = [("Idempotency-Key", "pay-1")];
    let first = execute_with(&api, kim, execute_body(&b.intent, "tok_visa"), &pay).await;
    assert_paid(&first, &b.intent);
    server.kill9();
    server.restart();
    let api = server.api();
    let replay = execute_with(&api, kim, execute_body(&b.intent, "tok_visa"), &pay).await;
    assert_eq!((replay.status, &replay.raw), (200, &first.raw), "the first answer, as it was");
    assert_eq!(kept(&intent_charges(&api, &b.intent).await), [PRICE], "charged once");
}
