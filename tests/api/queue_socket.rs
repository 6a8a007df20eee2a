//! `GET /waiting/ws`: a queue token's standing pushed, with the fields of
//! `/waiting/check`; admission within a tick, positions when they move, 1000 at expiry;
//! refusals before the upgrade.

use crate::chat::*;
use crate::helpers::*;
use awc::error::WsClientError;
use serde_json::{json, Value};
use std::time::Duration;

fn socket_url(base: &str, query: &str) -> String {
    format!("ws://{}/waiting/ws{query}", base.strip_prefix("http://").unwrap_or(base))
}

async fn issue(api: &Api, user: u64) -> String {
    let r = api.call("POST", "/waiting/issue", Some(&jwt(user)), &[], Some(json!({ "userId": user }))).await;
    assert_eq!(r.status, 200, "{r:?}");
    r.body["token"].as_str().expect("token").to_string()
}

/// The `/waiting/check` answer, as an event would carry it.
async fn check(api: &Api, user: u64, token: &str) -> Value {
    let r = api.get("/waiting/check", &jwt(user), &[("X-Queue-Token", token)]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let mut v = r.body.clone();
    v["type"] = json!("queue");
    v
}

async fn refused(url: &str, headers: &[(&str, &str)]) -> u16 {
    match WsClient::open(url, headers).await {
        Ok(_) => panic!("the handshake to {url} was accepted"),
        Err(WsClientError::InvalidResponseStatus(s)) => s.as_u16(),
        Err(e) => panic!("the handshake to {url} failed without a status: {e:?}"),
    }
}

#[actix_rt::test]
async fn a_waiting_socket_is_told_its_position_its_admission_and_its_end() {
    let server = TestServer::spawn(&[("BOXOFFICE_QUEUE_ADMIT_RATE", "1000"), ("BOXOFFICE_QUEUE_MAX_ACTIVE", "1")]);
    // An admission lasts `BOXOFFICE_QUEUE_ACTIVE_TTL` (10 minutes) on the server's clock.
    let ttl = Duration::from_secs(10 * 60);
    let api = server.api();
    let tokens = [issue(&api, 1).await, issue(&api, 2).await, issue(&api, 3).await];
    let url = socket_url(&server.base, "");

    // Refusals come before the upgrade.
    let bearer = format!("Bearer {}", jwt(2));
    assert_eq!(refused(&url, &[("Authorization", &bearer)]).await, 401, "no queue token");
    assert_eq!(refused(&url, &[("Authorization", &bearer), ("X-Queue-Token", "q1forged")]).await, 401);
    let mut altered = tokens[1].clone();
    altered.replace_range(10..11, if &altered[10..11] == "A" { "B" } else { "A" });
    assert_eq!(refused(&url, &[("Authorization", &bearer), ("X-Queue-Token", &altered)]).await, 401, "altered");
    assert_eq!(refused(&url, &[("Authorization", &bearer), ("X-Queue-Token", &tokens[2])]).await, 403, "user 3's");
    assert_eq!(refused(&url, &[("X-Queue-Token", &tokens[1])]).await, 401, "no JWT");

    // User 2 by headers, user 3 by query parameters: each is told where it stands at once,
    // with exactly the fields of /waiting/check.
    let mut second =
        WsClient::open(&url, &[("Authorization", &bearer), ("X-Queue-Token", &tokens[1])]).await.expect("2");
    let first = second.next_event(Duration::from_secs(5)).await.expect("a first event");
    assert_eq!(first, check(&api, 2, &tokens[1]).await);
    assert_eq!((first["active"].as_bool(), first["position"].as_u64()), (Some(false), Some(1)), "{first}");
    let query = format!("?access_token={}&queueToken={}", urlencode(&jwt(3)), urlencode(&tokens[2]));
    let mut third = WsClient::open(&socket_url(&server.base, &query), &[]).await.expect("3");
    let e = third.next_event(Duration::from_secs(5)).await.expect("a first event");
    assert_eq!((e["active"].as_bool(), e["position"].as_u64()), (Some(false), Some(2)), "{e}");

    // User 1's token runs out: user 2 is admitted, and told so; user 3 moves up.
    server.advance(ttl).await;
    let admitted = second.event(|e| e["active"] == true, Duration::from_secs(10)).await;
    assert_eq!(admitted, check(&api, 2, &tokens[1]).await, "the admission event is what /waiting/check says");
    assert_eq!((admitted["status"].as_str(), admitted["position"].as_u64()), (Some("ACTIVE"), Some(0)));
    let moved = third.event(|e| e["position"] == 1, Duration::from_secs(5)).await;
    assert_eq!(moved["active"], false);

    // User 2's admission runs out in turn: its socket closes with 1000.
    server.advance(ttl).await;
    assert_eq!(second.expect_close(Duration::from_secs(10)).await, Some(1000));
    let r = api.get("/waiting/check", &jwt(2), &[("X-Queue-Token", &tokens[1])]).await;
    assert_q_error(&r, 401);
    let admitted = third.event(|e| e["active"] == true, Duration::from_secs(10)).await;
    assert_eq!(admitted["position"], 0);
    third.close().await;

    // Each admission pushed is timed from the core's admission (docs/performance.md).
    let r = api.raw("GET", "/metrics", Some(&admin_jwt(999)), &[], None).await;
    let text = String::from_utf8_lossy(&r.raw).to_string();
    let count = text
        .lines()
        .find_map(|l| l.strip_prefix("boxoffice_queue_admission_push_seconds_count "))
        .and_then(|n| n.trim().parse::<u64>().ok());
    assert_eq!(count, Some(2), "users 2 and 3 were admitted on their sockets\n{text}");
    assert!(text.contains("boxoffice_queue_admission_push_seconds_bucket{le=\"0.075\"}"), "its own buckets");
}
