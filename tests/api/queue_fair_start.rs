//! A fair start (`PUT /waiting/settings` with `opensAt`): everyone who takes a place before
//! the opening is in the pre-queue; at the opening the pre-queue is shuffled (the order
//! drawn from a seed the settings show, so anyone can draw it again) and placed ahead of
//! everyone who comes later; a restart keeps the order.

use crate::helpers::*;
use boxoffice::actors::waiting_queue::admission::shuffle_order;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const USERS: u64 = 30;

async fn issue(api: &Api, user: u64) -> Reply {
    let r = api.call("POST", "/waiting/issue", Some(&jwt(user)), &[], Some(json!({ "userId": user }))).await;
    assert_eq!(r.status, 200, "{r:?}");
    r
}

async fn check(api: &Api, user: u64, token: &str) -> Value {
    let r = api.get("/waiting/check", &jwt(user), &[("X-Queue-Token", token)]).await;
    assert_eq!(r.status, 200, "{r:?}");
    r.body
}

async fn settings(api: &Api, body: Value) -> Reply {
    api.call("PUT", "/waiting/settings", Some(&admin_jwt(999)), &[], Some(body)).await
}

#[actix_rt::test]
async fn the_pre_queue_is_shuffled_at_the_opening_and_placed_ahead_of_later_arrivals() {
    let mut server = TestServer::spawn(&[("BOXOFFICE_QUEUE_ADMIT_RATE", "1000"), ("BOXOFFICE_QUEUE_MAX_ACTIVE", "1")]);
    let api = server.api();
    // Admins only; bad settings are 400.
    assert_q_error(&api.get("/waiting/settings", &jwt(1), &[]).await, 403);
    let r = api.get("/waiting/settings", &admin_jwt(999), &[]).await;
    assert_eq!((r.status, &r.body["opensAt"], &r.body["shuffle"]), (200, &Value::Null, &Value::Null), "{r:?}");
    let past = boxoffice::time::rfc3339(boxoffice::time::now_ms() - 60_000);
    for bad in [
        json!({ "opensAt": past }),
        json!({ "opensAt": "tomorrow" }),
        json!({ "activeTtlSeconds": 0 }),
        json!({ "admitRate": 0 }),
        json!({ "maxActive": 2_147_483_648u64 }),
        json!({ "opensAt": "2026-13-01T00:00:00Z" }),
    ] {
        assert_q_error(&settings(&api, bad).await, 400);
    }
    let opens = boxoffice::time::rfc3339(boxoffice::time::now_ms() + 3_000);
    let r = settings(&api, json!({ "opensAt": opens })).await;
    assert_eq!(r.status, 200, "{r:?}");

    // Before the opening: the pre-queue, one place each.
    let mut tokens = Vec::new();
    for user in 1..=USERS {
        let r = issue(&api, user).await;
        assert_eq!((r.body["status"].as_str(), r.body["active"].as_bool()), (Some("PRE_QUEUE"), Some(false)), "{r:?}");
        assert!(r.body["opensAt"].is_string(), "{r:?}");
        tokens.push(r.body["token"].as_str().expect("token").to_string());
    }
    assert_eq!(issue(&api, 7).await.body["token"].as_str(), Some(tokens[6].as_str()), "the same place again");
    assert_eq!(check(&api, 3, &tokens[2]).await["status"], "PRE_QUEUE");
    assert_q_error(&api.get("/users/3/amount", &jwt(3), &[("X-Queue-Token", &tokens[2])]).await, 403);

    // The opening.
    let deadline = Instant::now() + Duration::from_secs(15);
    while check(&api, 1, &tokens[0]).await["status"] == "PRE_QUEUE" {
        assert!(Instant::now() < deadline, "the queue never opened");
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    let late = issue(&api, 100).await;
    assert_eq!(late.body["position"], USERS, "a later arrival is behind the whole pre-queue: {late:?}");

    // The order is the one the seed draws, and not the arrival order.
    let r = api.get("/waiting/settings", &admin_jwt(999), &[]).await;
    let seed_hex = r.body["shuffle"]["seed"].as_str().expect("a seed").to_string();
    assert_eq!((seed_hex.len(), r.body["shuffle"]["places"].as_u64()), (64, Some(USERS)), "{r:?}");
    let seed: Vec<u8> = (0..32).map(|i| u8::from_str_radix(&seed_hex[2 * i..2 * i + 2], 16).expect("hex")).collect();
    let order = shuffle_order(&seed.try_into().expect("32 bytes"), USERS);
    let mut positions = Vec::new();
    for user in 1..=USERS {
        positions.push(check(&api, user, &tokens[user as usize - 1]).await["position"].as_u64().expect("position"));
    }
    let expected: Vec<u64> = (0..USERS).map(|n| order.iter().position(|&m| m == n).expect("drawn") as u64).collect();
    assert_eq!(positions, expected, "position k (the first one admitted, 0) is the k-th drawn");
    assert_ne!(positions, (0..USERS).collect::<Vec<_>>(), "not the arrival order");

    // A restart keeps the order; an opening cannot be set again.
    assert!(server.stop().success());
    server.restart();
    let api = server.api();
    for user in 1..=USERS {
        let p = check(&api, user, &tokens[user as usize - 1]).await["position"].as_u64();
        assert_eq!(p, Some(positions[user as usize - 1]), "user {user} after a restart");
    }
    let again = boxoffice::time::rfc3339(boxoffice::time::now_ms() + 60_000);
    assert_q_error(&settings(&api, json!({ "opensAt": again })).await, 409);
}

/// A restart during the pre-queue keeps every place: the same tokens, still in the
/// pre-queue, and all of them placed once at the opening (no one twice, no one lost).
#[actix_rt::test]
async fn a_restart_during_the_pre_queue_keeps_every_place() {
    let mut server = TestServer::spawn(&[("BOXOFFICE_QUEUE_ADMIT_RATE", "1000"), ("BOXOFFICE_QUEUE_MAX_ACTIVE", "1")]);
    let api = server.api();
    let opens = boxoffice::time::rfc3339(boxoffice::time::now_ms() + 4_000);
    assert_eq!(settings(&api, json!({ "opensAt": opens })).await.status, 200);
    let mut tokens = Vec::new();
    for user in 1..=5u64 {
        tokens.push(issue(&api, user).await.body["token"].as_str().expect("token").to_string());
    }
    server.kill9();
    server.restart();
    let api = server.api();
    for user in 1..=5u64 {
        let again = issue(&api, user).await;
        assert_eq!(again.body["token"].as_str(), Some(tokens[user as usize - 1].as_str()), "user {user}");
        assert_eq!(again.body["status"], "PRE_QUEUE");
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while check(&api, 1, &tokens[0]).await["status"] == "PRE_QUEUE" {
        assert!(Instant::now() < deadline, "the queue never opened");
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    let mut positions = Vec::new();
    for user in 1..=5u64 {
        positions.push(check(&api, user, &tokens[user as usize - 1]).await["position"].as_u64().expect("position"));
    }
    positions.sort();
    assert_eq!(positions, [0, 1, 2, 3, 4], "each place once, one of them admitted");
}
