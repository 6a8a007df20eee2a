//! What a hostile client found, and what it now gets: a body that repeats a name is 400 in
//! the contract's shape (RFC 7493), and a path id written as JSON Schema's integer `7.0` is
//! the id 7, as the document says. (`/metrics` for admins only: tests/api/operations.rs.)

use crate::helpers::*;

#[actix_rt::test]
async fn a_repeated_name_in_a_body_is_refused_in_each_contracts_shape() {
    let server = TestServer::spawn(&[]);
    let api = server.api();
    let repeated = r#"{"userId": 1, "userId": 2}"#.to_string();
    let r =
        api.raw("POST", "/waiting/issue", Some(&jwt(1)), &[("Content-Type", "application/json")], Some(repeated)).await;
    assert_q_error(&r, 400);
    assert!(r.body["message"].as_str().is_some_and(|m| m.contains("twice")), "{r:?}");
    // Nested, in contract C.
    let room = r#"{"name": "x", "room_type": "group", "participant_ids": [2], "settings": {"a": 1, "a": 2}}"#;
    let r =
        api.raw("POST", "/chat/rooms", Some(&jwt(1)), &[("Content-Type", "application/json")], Some(room.into())).await;
    assert!(r.status == 400 || r.status == 422, "{r:?}");
    assert!(r.body["detail"].to_string().contains("twice"), "{r:?}");
    // The same bodies without the repeat are fine.
    let r = api
        .raw(
            "POST",
            "/waiting/issue",
            Some(&jwt(1)),
            &[("Content-Type", "application/json")],
            Some(r#"{"userId": 1}"#.into()),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
}

#[actix_rt::test]
async fn a_path_id_written_with_a_zero_fraction_is_the_same_id() {
    let server = TestServer::spawn(&fast_queue());
    let api = server.api();
    let buyer = Buyer::enter(&api, 1).await;
    let plain = api.get("/users/1/amount", &buyer.jwt, &[("X-Queue-Token", &buyer.queue)]).await;
    assert_eq!(plain.status, 200, "{plain:?}");
    for path in ["/users/1.0/amount", "/users/1e0/amount"] {
        let r = api.get(path, &buyer.jwt, &[("X-Queue-Token", &buyer.queue)]).await;
        assert_eq!((r.status, &r.body), (200, &plain.body), "{path}");
    }
    for path in ["/users/1.5/amount", "/users/-1/amount"] {
        assert_q_error(&api.get(path, &buyer.jwt, &[("X-Queue-Token", &buyer.queue)]).await, 400);
    }
}
