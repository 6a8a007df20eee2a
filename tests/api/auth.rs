//! Identity: every way a token can be wrong is a 401; another user's id is a 403.

use crate::helpers::*;
use base64::Engine;
use serde_json::json;

fn b64(v: &serde_json::Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

fn signed(claims: serde_json::Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode")
}

#[actix_rt::test]
async fn bad_tokens_are_401_in_the_contract_shape() {
    let server = TestServer::spawn(&fast_queue());
    let api = server.api();
    let now = boxoffice::time::now_ms() / 1000;
    let expired = signed(json!({ "sub": "1", "exp": now - 5 }), SECRET);
    let wrong_key = signed(json!({ "sub": "1", "exp": now + 600 }), "not-the-secret");
    let alg_none =
        format!("{}.{}.", b64(&json!({ "alg": "none", "typ": "JWT" })), b64(&json!({ "sub": "1", "exp": now + 600 })));
    let no_sub = signed(json!({ "exp": now + 600 }), SECRET);
    let body = Some(json!({ "userId": 1 }));
    for (what, token) in [
        ("expired", Some(expired)),
        ("bad signature", Some(wrong_key)),
        ("alg none", Some(alg_none)),
        ("no sub", Some(no_sub)),
        ("malformed", Some("abc.def".to_string())),
        ("missing", None),
    ] {
        let r = api.call("POST", "/waiting/issue", token.as_deref(), &[], body.clone()).await;
        assert_q_error(&r, 401);
        let r = api.call("GET", "/concerts/1/schedules", token.as_deref(), &[], None).await;
        assert_eq!(r.status, 401, "{what}: {r:?}");
    }
    // A token of user 1 with a numeric sub and the "user_1" form both work.
    let numeric = signed(json!({ "sub": 1, "exp": now + 600 }), SECRET);
    let prefixed = signed(json!({ "sub": "user_1", "exp": now + 600 }), SECRET);
    for t in [numeric, prefixed] {
        let r = api.call("POST", "/waiting/issue", Some(&t), &[], body.clone()).await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    // Health and the OpenAPI document need no token.
    assert_eq!(api.call("GET", "/healthz", None, &[], None).await.status, 200);
    let doc = api.call("GET", "/openapi.json", None, &[], None).await;
    assert_eq!(doc.status, 200);
    for path in [
        "/waiting/issue",
        "/waiting/check",
        "/concerts/{concert_id}/schedules",
        "/reservations",
        "/payments",
        "/users/{user_id}/charge",
    ] {
        assert!(doc.body["paths"][path].is_object(), "openapi lacks {path}");
    }
}

#[actix_rt::test]
async fn another_users_id_is_403() {
    let server = TestServer::spawn(&fast_queue());
    let api = server.api();
    let alice = Buyer::enter(&api, 1).await;
    let r = api.call("POST", "/waiting/issue", Some(&alice.jwt), &[], Some(json!({ "userId": 2 }))).await;
    assert_q_error(&r, 403);
    let r = api.get("/users/2/amount", &alice.jwt, &[("X-Queue-Token", &alice.queue)]).await;
    assert_q_error(&r, 403);
    let body = json!({ "userId": 2, "concertId": 1, "scheduleId": 1, "seatNumber": 1 });
    let r = api
        .call(
            "POST",
            "/reservations",
            Some(&alice.jwt),
            &[("X-Queue-Token", &alice.queue), ("Idempotency-Key", "a")],
            Some(body),
        )
        .await;
    assert_q_error(&r, 403);
    // Bob may not read Alice's reservation, nor use her queue token.
    let held = alice.hold(&api, 1, 1, "h").await;
    let id = held.body["reservationId"].as_u64().expect("id");
    let bob = Buyer::enter(&api, 2).await;
    assert_q_error(&bob.reservation(&api, id).await, 403);
    let r = api.get("/users/2/amount", &bob.jwt, &[("X-Queue-Token", &alice.queue)]).await;
    assert_q_error(&r, 403);
    let r = api.get("/waiting/check", &bob.jwt, &[("X-Queue-Token", &alice.queue)]).await;
    assert_q_error(&r, 403);
    // Nor pay for it.
    let r = bob.charge(&api, 100_000, "c").await;
    assert_eq!(r.status, 200);
    assert_q_error(&bob.pay(&api, id, 80_000, "p").await, 403);
    // Only admins create catalog data.
    let r = api.call("POST", "/concerts", Some(&bob.jwt), &[], Some(json!({ "title": "x" }))).await;
    assert_q_error(&r, 403);
}
