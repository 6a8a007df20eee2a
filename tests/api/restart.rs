//! Restarts: a graceful stop and a `kill -9`, then a start on the same data dir.

use crate::helpers::*;
use std::time::Duration;

async fn state_survives(graceful: bool) {
    let mut server = TestServer::spawn(&[
        ("BOXOFFICE_QUEUE_ADMIT_RATE", "1000000"),
        ("BOXOFFICE_QUEUE_MAX_ACTIVE", "1000000"),
        ("BOXOFFICE_HOLD_TTL", "2s"),
    ]);
    let api = server.api();
    let kim = Buyer::enter(&api, 1).await;
    let lee = Buyer::enter(&api, 2).await;
    assert_eq!(kim.charge(&api, 200_000, "c1").await.status, 200);
    let paid = kim.hold(&api, 1, 1, "h1").await.body["reservationId"].as_u64().expect("id");
    let held = kim.hold(&api, 1, 2, "h2").await.body["reservationId"].as_u64().expect("id");
    let short = lee.hold(&api, 1, 3, "h3").await.body["reservationId"].as_u64().expect("id");
    let p = kim.pay(&api, paid, 80_000, "p1").await;
    assert_eq!(p.status, 200);
    let spent_token = kim.queue.clone();
    let kim = Buyer::enter(&api, 1).await; // the payment retired the old token
                                           // The last acknowledged write right before the stop.
    assert_eq!(kim.charge(&api, 5_000, "c2").await.status, 200);

    if graceful {
        assert!(server.stop().success(), "graceful stop exits 0");
    } else {
        server.kill9();
    }
    // Stay down past lee's hold expiry: it must fire at start.
    actix_rt::time::sleep(Duration::from_millis(2200)).await;
    server.restart();
    let api = server.api();

    // Tokens: both users' tokens are still active.
    let c = api.get("/waiting/check", &kim.jwt, &[("X-Queue-Token", &kim.queue)]).await;
    assert_eq!((c.status, &c.body["active"]), (200, &serde_json::json!(true)), "{c:?}");
    // The token the payment ended stays ended.
    let c = api.get("/waiting/check", &kim.jwt, &[("X-Queue-Token", &spent_token)]).await;
    assert_eq!(c.status, 401, "{c:?}");
    // Balances.
    assert_eq!(kim.balance(&api).await.body["amount"].as_u64(), Some(200_000 - 80_000 + 5_000));
    // Reservations.
    assert_eq!(kim.reservation(&api, paid).await.body["status"], "CONFIRMED");
    assert_eq!(lee.reservation(&api, short).await.body["status"], "EXPIRED");
    let seats = seat_statuses(&kim.seats(&api, 1).await);
    assert_eq!(seats[0].1, "RESERVED");
    assert_eq!(seats[2].1, "AVAILABLE", "the expiry that fell due while down fired at start");
    // Kim's second hold expired meanwhile too (2 s); idempotent replays still work.
    assert_eq!(kim.reservation(&api, held).await.body["status"], "EXPIRED");
    let replay = kim.charge(&api, 5_000, "c2").await;
    assert_eq!((replay.status, replay.body["amount"].as_u64()), (200, Some(125_000)));
    // New ids do not collide with old ones.
    let fresh = lee.hold(&api, 1, 4, "h4").await;
    assert_eq!(fresh.status, 200);
    assert!(fresh.body["reservationId"].as_u64().expect("id") > short);
}

#[actix_rt::test]
async fn everything_survives_a_graceful_restart() {
    state_survives(true).await;
}

#[actix_rt::test]
async fn everything_survives_kill_9() {
    state_survives(false).await;
}

#[actix_rt::test]
async fn a_live_hold_and_a_waiting_line_survive_kill_9() {
    let mut server = TestServer::spawn(&[("BOXOFFICE_QUEUE_ADMIT_RATE", "1000"), ("BOXOFFICE_QUEUE_MAX_ACTIVE", "1")]);
    let api = server.api();
    let kim = Buyer::enter(&api, 1).await;
    let r = kim.hold(&api, 2, 9, "h").await;
    let id = r.body["reservationId"].as_u64().expect("id");
    let expires = r.body["holdExpiresAt"].clone();
    let mut waiting = Vec::new();
    for user in 2..=4u64 {
        let w = api
            .call("POST", "/waiting/issue", Some(&jwt(user)), &[], Some(serde_json::json!({ "userId": user })))
            .await;
        waiting.push((
            user,
            w.body["token"].as_str().expect("token").to_string(),
            w.body["position"].as_u64().expect("position"),
        ));
    }
    server.kill9();
    server.restart();
    let api = server.api();
    let r = kim.reservation(&api, id).await;
    assert_eq!((r.body["status"].as_str(), &r.body["holdExpiresAt"]), (Some("ON_HOLD"), &expires));
    assert_eq!(seat_statuses(&kim.seats(&api, 2).await)[8].1, "TEMP_RESERVED");
    for (user, token, position) in waiting {
        let c = api.get("/waiting/check", &jwt(user), &[("X-Queue-Token", &token)]).await;
        assert_eq!((c.body["active"].as_bool(), c.body["position"].as_u64()), (Some(false), Some(position)), "{c:?}");
    }
}
