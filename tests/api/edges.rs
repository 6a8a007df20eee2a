//! Issue 13: refusals at the edge, in each contract's shape, that change nothing: a JSON
//! endpoint sent another media type is 415, a body that is not UTF-8 is 400.

use crate::bookings::{seat_map, status_of};
use crate::helpers::*;
use serde_json::json;

#[actix_rt::test]
async fn json_endpoints_refuse_other_media_types_with_415_and_change_nothing() {
    let server = TestServer::spawn(&[]);
    let api = server.api();
    let booking =
        json!({ "performanceId": "perf_001", "seatIds": ["A1"], "paymentMethod": "CREDIT_CARD", "userId": "user_7" });
    let listing = json!({ "title": "t", "unitPrice": 1000, "totalQuantity": 1 });
    let room = json!({ "room_name": "r", "room_type": "group", "participant_ids": [8] });
    let cases = [
        ("POST", "/bookings", booking.clone(), "B"),
        ("POST", "/api/tickets", listing.clone(), "T"),
        ("POST", "/chat/rooms/", room.clone(), "C"),
        ("PATCH", "/users/7/charge", json!({ "amount": 1000 }), "Q"),
    ];
    for media in ["text/plain", "application/xml", "application/x-www-form-urlencoded"] {
        for (method, path, body, contract) in &cases {
            let headers = [("Content-Type", media), ("Idempotency-Key", "edge-1")];
            let r = api.raw(method, path, Some(&jwt(7)), &headers, Some(body.to_string())).await;
            assert_eq!(r.status, 415, "{method} {path} as {media}: {r:?}");
            match *contract {
                "Q" => assert_eq!(r.body["code"], "UNSUPPORTED_MEDIA_TYPE", "{r:?}"),
                "T" => assert_eq!(r.body["statusCode"], 415, "{r:?}"),
                _ => assert!(r.body.is_object(), "{path}: a JSON error body: {r:?}"),
            }
        }
    }
    let map = seat_map(&api, 7, "perf_001").await;
    assert_eq!(status_of(&map, "A1"), "available", "a refused booking locked nothing");

    // Contract T's message post takes multipart only.
    let r =
        api.call("POST", "/api/chat/messages", Some(&jwt(7)), &[], Some(json!({ "roomId": 1, "message": "hi" }))).await;
    assert_eq!((r.status, r.body["statusCode"].as_u64()), (415, Some(415)), "{r:?}");

    // JSON with parameters, and +json types, are JSON.
    for media in ["application/json; charset=utf-8", "application/merge-patch+json"] {
        let headers = [("Content-Type", media)];
        let r = api.raw("POST", "/api/tickets", Some(&jwt(7)), &headers, Some(listing.to_string())).await;
        assert_eq!(r.status, 201, "{media}: {r:?}");
    }
}

#[actix_rt::test]
async fn a_body_that_is_not_utf8_is_400() {
    let server = TestServer::spawn(&[]);
    let api = server.api();
    // {"title":"<0xff>","unitPrice":1000,"totalQuantity":1}
    let mut body = br#"{"title":""#.to_vec();
    body.push(0xff);
    body.extend_from_slice(br#"","unitPrice":1000,"totalQuantity":1}"#);
    let r = api.raw_bytes("POST", "/api/tickets", Some(&jwt(7)), &[], Some(body)).await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.body["statusCode"], 400, "{r:?}");
}

/// A known path asked with another method is 405 with `Allow`; an unknown one 404; both in
/// the error shape of the contract the path belongs to.
#[actix_rt::test]
async fn wrong_methods_are_405_with_allow_and_unknown_paths_404_in_their_contracts_shape() {
    let server = TestServer::spawn(&[]);
    let api = server.api();
    let token = jwt(7);
    for (method, path, allow) in [
        ("PUT", "/waiting/issue", "POST"),
        ("DELETE", "/concerts", "GET, POST"),
        ("PUT", "/bookings/ABC", "GET, DELETE"),
        ("PATCH", "/api/tickets", "GET, POST"),
        ("PUT", "/chat/rooms/3/messages/", "GET, POST"),
        ("POST", "/healthz", "GET"),
    ] {
        let r = api.raw(method, path, Some(&token), &[], None).await;
        assert_eq!(r.status, 405, "{method} {path}: {r:?}");
        let got = r.headers.get("allow").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let mut got: Vec<&str> = got.split(", ").collect();
        let mut want: Vec<&str> = allow.split(", ").collect();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "{method} {path}: Allow");
    }
    let shapes = [
        ("/api/nothing", "statusCode"),
        ("/chat/nothing", "detail"),
        ("/bookings/a/b/c", "error"),
        ("/nothing", "code"),
    ];
    for (path, field) in shapes {
        let r = api.get(path, &token, &[]).await;
        assert_eq!(r.status, 404, "{path}: {r:?}");
        assert!(!r.body[field].is_null(), "{path} answers in its contract's shape ({field}): {r:?}");
    }
    let r = api.raw("PUT", "/api/tickets/1", Some(&token), &[], None).await;
    assert_eq!((r.status, r.body["statusCode"].as_u64()), (405, Some(405)), "{r:?}");
}

/// A body over the size limit (1 MiB) is 413 in the contract's shape.
#[actix_rt::test]
async fn a_body_over_the_limit_is_413_in_the_contracts_shape() {
    let server = TestServer::spawn(&[]);
    let api = server.api();
    let big = format!(r#"{{"title":"{}","unitPrice":1,"totalQuantity":1}}"#, "x".repeat(3 << 19));
    let r = api.raw("POST", "/api/tickets", Some(&jwt(7)), &[], Some(big.clone())).await;
    assert_eq!((r.status, r.body["statusCode"].as_u64()), (413, Some(413)), "{r:?}");
    let r = api.raw("PATCH", "/users/7/charge", Some(&jwt(7)), &[("Idempotency-Key", "big-1")], Some(big)).await;
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(r.body["code"], "PAYLOAD_TOO_LARGE", "{r:?}");
}

/// A query string whose percent-decoded bytes are not UTF-8 is 400 in the contract's shape.
#[actix_rt::test]
async fn a_query_string_that_is_not_utf8_is_400() {
    let server = TestServer::spawn(&[]);
    let api = server.api();
    let token = jwt(7);
    let r = api.get("/chat/rooms/?search=%FF%FE", &token, &[]).await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body["detail"].is_string(), "contract C's shape: {r:?}");
    let r = api.get("/concerts?x=%C3%28", &token, &[]).await;
    assert_eq!((r.status, r.body["code"].as_str()), (400, Some("INVALID_REQUEST")), "{r:?}");
    // Valid UTF-8, percent-encoded, is fine.
    assert_eq!(api.get("/chat/rooms/?search=%EC%95%88", &token, &[]).await.status, 200);
}

/// The WebSocket endpoints asked without an upgrade: 400 in their contract's shape.
#[actix_rt::test]
async fn websocket_endpoints_without_an_upgrade_are_400_in_their_contracts_shape() {
    let server = TestServer::spawn(&[]);
    let api = server.api();
    let r = api.get(&format!("/chat/ws/1?token={}", jwt(7)), &jwt(7), &[]).await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body["detail"].is_string(), "contract C's shape: {r:?}");
    let r = api.get("/hubs/chat", &jwt(7), &[]).await;
    assert_eq!((r.status, r.body["statusCode"].as_u64()), (400, Some(400)), "{r:?}");
}

/// What `/openapi.json` says a value may be is what the server takes: Schemathesis found
/// each of these (tests/schemathesis/run).
#[actix_rt::test]
async fn the_server_takes_what_the_document_says_and_refuses_the_rest() {
    let server = TestServer::spawn(&fast_queue());
    let api = server.api();
    let buyer = Buyer::enter(&api, 7).await;
    let charge = |amount: &'static str, key: &'static str| {
        let headers = [("X-Queue-Token", buyer.queue.clone()), ("Idempotency-Key", key.to_string())];
        let api = &api;
        let jwt = buyer.jwt.clone();
        async move {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            api.raw("PATCH", "/users/7/charge", Some(&jwt), &headers, Some(format!("{{\"amount\": {amount}}}"))).await
        }
    };

    let seller = jwt(7);
    let list = |body: serde_json::Value| api.call("POST", "/api/tickets", Some(&seller), &[], Some(body));

    // A number with no fraction is an integer, as JSON Schema says.
    let r = charge("1000.0", "float-1").await;
    assert_eq!((r.status, r.body["amount"].as_u64()), (200, Some(1000)), "{r:?}");
    let r = list(json!({ "title": "t", "unitPrice": 1e3, "totalQuantity": 2.0 })).await;
    assert_eq!((r.status, r.body["data"]["unitPrice"].as_u64()), (201, Some(1000)), "{r:?}");
    let r = charge("1000.5", "float-2").await;
    assert_eq!((r.status, r.body["code"].as_str()), (400, Some("INVALID_AMOUNT")), "{r:?}");

    // Ids as strings are digits only: no sign, no spaces, at most 15 digits.
    for id in ["+1", " 1", "1 ", "0", "1000000000000000"] {
        let body = json!({ "userId": 7, "concertId": id, "scheduleId": 1, "seatNumber": 1 });
        let headers = [("X-Queue-Token", buyer.queue.as_str()), ("Idempotency-Key", "id-form")];
        let r = api.call("POST", "/reservations", Some(&buyer.jwt), &headers, Some(body)).await;
        assert_eq!(r.status, 400, "concertId {id:?}: {r:?}");
    }
    // In paths too, and past 2^53 - 1.
    for path in ["/reservations/+1", "/api/tickets/%2B1", "/chat/rooms/%201/", "/api/tickets/9007199254740992"] {
        let r = api.get(path, &jwt(7), &[]).await;
        assert!(r.status == 400 || r.status == 422, "{path}: {r:?}");
    }

    // A query flag that is not a boolean is refused, not ignored.
    let r = api.get("/concerts/1/schedules?includeSoldOut=yes", &jwt(7), &[]).await;
    assert_eq!(r.status, 400, "{r:?}");
    let r =
        api.call("POST", "/hubs/chat/negotiate?negotiateVersion=99999999999999999999", Some(&jwt(7)), &[], None).await;
    assert_eq!(r.status, 400, "{r:?}");

    // Text that is only white space, as the pattern `\S` reads it (U+FEFF too), is refused.
    let r = list(json!({ "title": "\u{feff} \u{3000}", "unitPrice": 1, "totalQuantity": 1 })).await;
    assert_eq!(r.status, 400, "{r:?}");
    // A length counts characters before trimming, as maxLength does.
    let title = format!("{} ", "가".repeat(200));
    let r = list(json!({ "title": title, "unitPrice": 1, "totalQuantity": 1 })).await;
    assert_eq!(r.status, 400, "201 characters: {r:?}");

    // `/bookings/my` is its own resource: DELETE there is 405, not a booking named "my".
    let r = api.call("DELETE", "/bookings/my", Some(&jwt(7)), &[], None).await;
    let allow = r.headers.get("allow").and_then(|v| v.to_str().ok()).map(str::to_string);
    assert_eq!((r.status, allow.as_deref()), (405, Some("GET")), "{r:?}");

    // A performance: nulls are refused, and a seat count past u32 is a 400, not a panic.
    let admin = admin_jwt(1);
    let r = api
        .call(
            "POST",
            "/performances",
            Some(&admin),
            &[],
            Some(json!({ "performanceId": "p_null", "scheduleId": 1, "rows": null })),
        )
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    let body = json!({ "performanceId": "p_big", "rows": 26, "seatsPerRow": 4_000_000_000u64, "price": 1 });
    let r = api.call("POST", "/performances", Some(&admin), &[], Some(body)).await;
    assert_eq!(r.status, 400, "{r:?}");
    let r = api.get("/performances/p_big/seats", &admin, &[]).await;
    assert_eq!(r.status, 404, "nothing was created: {r:?}");
}
