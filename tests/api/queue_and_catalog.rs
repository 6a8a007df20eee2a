//! The waiting queue's positions and admission, and the catalog endpoints.

use crate::helpers::*;
use serde_json::json;
use std::time::Duration;

#[actix_rt::test]
async fn queue_positions_admission_and_gates() {
    // One active at a time (for the default 10 minutes), admission slow enough to see the
    // line.
    let server = TestServer::spawn(&[("BOXOFFICE_QUEUE_ADMIT_RATE", "1000"), ("BOXOFFICE_QUEUE_MAX_ACTIVE", "1")]);
    let api = server.api();
    let mut tokens = Vec::new();
    for user in 1..=3u64 {
        let r = api.call("POST", "/waiting/issue", Some(&jwt(user)), &[], Some(json!({ "userId": user }))).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert!(r.body["expiresAt"].is_string());
        let header = r.headers.get("X-Queue-Position").expect("X-Queue-Position").to_str().expect("ascii").to_string();
        assert_eq!(header, r.body["position"].to_string());
        tokens.push(r.body["token"].as_str().expect("token").to_string());
        if user == 1 {
            assert_eq!(r.body["active"], true, "a quiet queue admits at once: {r:?}");
        } else {
            assert_eq!(r.body["active"], false, "{r:?}");
            assert_eq!(r.body["position"].as_u64(), Some(user - 1), "{r:?}");
            assert!(r.body["estimatedWaitSeconds"].as_u64().is_some());
        }
    }
    // Issuing again returns the same token.
    let again = api.call("POST", "/waiting/issue", Some(&jwt(2)), &[], Some(json!({ "userId": "2" }))).await;
    assert_eq!(again.body["token"].as_str(), Some(tokens[1].as_str()));
    // A waiting token does not pass the gate.
    let r = api.get("/users/2/amount", &jwt(2), &[("X-Queue-Token", &tokens[1])]).await;
    assert_q_error(&r, 403);
    let r = api.get("/concerts/1/schedules/1/seats", &jwt(2), &[("X-Queue-Token", &tokens[1])]).await;
    assert_q_error(&r, 403);
    // Missing and unknown tokens.
    assert_q_error(&api.get("/users/2/amount", &jwt(2), &[]).await, 403);
    assert_q_error(&api.get("/waiting/check", &jwt(2), &[("X-Queue-Token", "nope")]).await, 401);
    assert_q_error(&api.get("/waiting/check", &jwt(2), &[]).await, 401);
    // User 1's token expires after its TTL, by the server's clock, which the test moves;
    // then user 2 is admitted, user 3 moves up.
    let check = |user: u64, token: &str| {
        let (api, token) = (api.clone(), token.to_string());
        async move { api.get("/waiting/check", &jwt(user), &[("X-Queue-Token", &token)]).await }
    };
    server.advance(Duration::from_secs(10 * 60 - 10)).await;
    actix_rt::time::sleep(NOTHING_FIRES).await;
    assert_eq!(check(1, &tokens[0]).await.body["active"], true, "user 1's token, 10 s before it runs out");
    let c = check(2, &tokens[1]).await;
    assert_eq!((c.body["active"].as_bool(), c.body["position"].as_u64()), (Some(false), Some(1)), "{c:?}");
    server.advance(Duration::from_secs(11)).await;
    eventually!("user 2 is admitted", check(2, &tokens[1]).await.body["active"] == true);
    assert_eq!(check(2, &tokens[1]).await.body["position"], 0);
    assert_q_error(&api.get("/waiting/check", &jwt(1), &[("X-Queue-Token", &tokens[0])]).await, 401);
    let c = api.get("/waiting/check", &jwt(3), &[("X-Queue-Token", &tokens[2])]).await;
    assert_eq!((c.body["active"].as_bool(), c.body["position"].as_u64()), (Some(false), Some(1)), "{c:?}");
    // Bad user ids.
    for bad in [json!({}), json!({ "userId": "abc" }), json!({ "userId": 0 }), json!({ "userId": -4 })] {
        let r = api.call("POST", "/waiting/issue", Some(&jwt(1)), &[], Some(bad)).await;
        assert_q_error(&r, 400);
    }
    let r = api.raw("POST", "/waiting/issue", Some(&jwt(1)), &[], Some("{not json".into())).await;
    assert_q_error(&r, 400);
}

#[actix_rt::test]
async fn schedules_and_seats() {
    let server = TestServer::spawn(&fast_queue());
    let api = server.api();
    let buyer = Buyer::enter(&api, 5).await;
    let r = api.get("/concerts/1/schedules", &buyer.jwt, &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let schedules = r.body["schedules"].as_array().expect("schedules");
    assert_eq!(schedules.iter().map(|s| s["scheduleId"].as_u64().expect("id")).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(schedules.iter().all(|s| s["availableSeats"] == 50 && s["price"] == 80_000));
    assert_q_error(&api.get("/concerts/99/schedules", &buyer.jwt, &[]).await, 404);
    assert_q_error(&api.get("/concerts/x/schedules", &buyer.jwt, &[]).await, 400);

    let seats = buyer.seats(&api, 2).await;
    assert_eq!(seats.status, 200);
    let statuses = seat_statuses(&seats);
    assert_eq!(statuses.len(), 50);
    assert_eq!(statuses.first().map(|s| s.0), Some(1));
    assert_eq!(statuses.last().map(|s| s.0), Some(50));
    assert!(statuses.iter().all(|(_, s)| s == "AVAILABLE"));
    assert_q_error(&buyer.seats(&api, 77).await, 404);
    let r = api.get("/concerts/2/schedules/1/seats", &buyer.jwt, &[("X-Queue-Token", &buyer.queue)]).await;
    assert_q_error(&r, 404);

    // An admin adds a concert with a one-seat schedule; once that seat is held the
    // concert has no schedule with seats left: 404.
    let admin = admin_jwt(900);
    let c = api.call("POST", "/concerts", Some(&admin), &[], Some(json!({ "title": "Tiny hall" }))).await;
    assert_eq!(c.status, 201, "{c:?}");
    let concert = c.body["concertId"].as_u64().expect("concertId");
    let s = api
        .call(
            "POST",
            &format!("/concerts/{concert}/schedules"),
            Some(&admin),
            &[],
            Some(json!({ "startsAt": "2027-01-01T19:00:00Z", "totalSeats": 1, "price": 5000 })),
        )
        .await;
    assert_eq!(s.status, 201, "{s:?}");
    let schedule = s.body["scheduleId"].as_u64().expect("scheduleId");
    let list = api.get(&format!("/concerts/{concert}/schedules"), &buyer.jwt, &[]).await;
    assert_eq!(list.body["schedules"].as_array().map(Vec::len), Some(1));
    let body = json!({ "userId": 5, "concertId": concert, "scheduleId": schedule, "seatNumber": 1 });
    let r = api
        .call(
            "POST",
            "/reservations",
            Some(&buyer.jwt),
            &[("X-Queue-Token", &buyer.queue), ("Idempotency-Key", "tiny")],
            Some(body),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["price"], 5000);
    assert_q_error(&api.get(&format!("/concerts/{concert}/schedules"), &buyer.jwt, &[]).await, 404);
    let all = api.get(&format!("/concerts/{concert}/schedules?includeSoldOut=true"), &buyer.jwt, &[]).await;
    assert_eq!(all.body["schedules"][0]["availableSeats"], 0, "{all:?}");
    // Bad admin input.
    let r = api
        .call(
            "POST",
            &format!("/concerts/{concert}/schedules"),
            Some(&admin),
            &[],
            Some(json!({ "startsAt": "soon", "price": 1 })),
        )
        .await;
    assert_q_error(&r, 400);
    let r = api
        .call(
            "POST",
            "/concerts/999/schedules",
            Some(&admin),
            &[],
            Some(json!({ "startsAt": "2027-01-01T19:00:00Z", "price": 1 })),
        )
        .await;
    assert_q_error(&r, 404);
}
