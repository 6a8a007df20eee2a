//! Hold expiry, and payments racing it.

use crate::helpers::*;
use std::time::Duration;

/// The hold lasts its 5 minutes (the default) by the server's clock, which the test moves:
/// held 10 s before, free just after.
#[actix_rt::test]
async fn an_expired_hold_frees_its_seat() {
    let server = TestServer::spawn(&fast_queue());
    let api = server.api();
    let kim = Buyer::enter(&api, 1).await;
    let r = kim.hold(&api, 1, 10, "h").await;
    assert_eq!(r.status, 200);
    let id = r.body["reservationId"].as_u64().expect("id");
    assert_eq!(seat_statuses(&kim.seats(&api, 1).await)[9].1, "TEMP_RESERVED");
    server.advance(Duration::from_secs(5 * 60 - 10)).await;
    actix_rt::time::sleep(NOTHING_FIRES).await;
    assert_eq!(seat_statuses(&kim.seats(&api, 1).await)[9].1, "TEMP_RESERVED", "10 s before its expiry");
    assert_eq!(kim.reservation(&api, id).await.body["status"], "ON_HOLD");
    server.advance(Duration::from_secs(11)).await;
    eventually!("the hold expires", seat_statuses(&kim.seats(&api, 1).await)[9].1 == "AVAILABLE");
    assert_eq!(kim.reservation(&api, id).await.body["status"], "EXPIRED");
    assert_eq!(kim.charge(&api, 80_000, "c").await.status, 200);
    assert_q_error(&kim.pay(&api, id, 80_000, "p").await, 404);
    assert_eq!(kim.balance(&api).await.body["amount"].as_u64(), Some(80_000));
    // Someone else can hold it now.
    let lee = Buyer::enter(&api, 2).await;
    assert_eq!(lee.hold(&api, 1, 10, "h").await.status, 200);
}

#[actix_rt::test]
async fn payments_racing_expiry_end_in_one_consistent_state() {
    let server = TestServer::spawn(&[
        ("BOXOFFICE_QUEUE_ADMIT_RATE", "1000000"),
        ("BOXOFFICE_QUEUE_MAX_ACTIVE", "1000000"),
        ("BOXOFFICE_HOLD_TTL", "250ms"),
    ]);
    let api = server.api();
    let (mut paid, mut expired) = (0, 0);
    for round in 0..24u64 {
        let user = 100 + round;
        let b = Buyer::enter(&api, user).await;
        assert_eq!(b.charge(&api, 80_000, "c").await.status, 200);
        let seat = round % 50 + 1;
        let r = b.hold(&api, 3, seat, "h").await;
        assert_eq!(r.status, 200, "{r:?}");
        let id = r.body["reservationId"].as_u64().expect("id");
        // Pay somewhere around the moment the hold runs out.
        actix_rt::time::sleep(Duration::from_millis(200 + (round % 8) * 10)).await;
        let p = b.pay(&api, id, 80_000, "p").await;
        let check = Buyer::enter(&api, user).await;
        let balance = check.balance(&api).await.body["amount"].as_u64().expect("balance");
        let status = check.reservation(&api, id).await.body["status"].as_str().expect("status").to_string();
        let seat_status = seat_statuses(&check.seats(&api, 3).await)[(seat - 1) as usize].1.clone();
        match p.status {
            200 => {
                paid += 1;
                assert_eq!((balance, status.as_str(), seat_status.as_str()), (0, "CONFIRMED", "RESERVED"));
            }
            404 => {
                expired += 1;
                assert_eq!((balance, status.as_str(), seat_status.as_str()), (80_000, "EXPIRED", "AVAILABLE"));
            }
            other => panic!("unexpected {other}: {p:?}"),
        }
        // Free the seat for a later round if it was sold: use a fresh seat number instead.
    }
    assert_eq!(paid + expired, 24);
}
