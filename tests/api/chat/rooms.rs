//! Contract C's rooms: created, listed, deduplicated and validated; and every room
//! endpoint's checks of the token, the participant and the room.

use super::*;
use crate::helpers::*;
use serde_json::{json, Value};
use std::time::Duration;

#[actix_rt::test]
async fn rooms_are_created_listed_deduplicated_and_validated() {
    let server = TestServer::spawn(&[]);
    let chat = Chat::new(&server);
    let (kim, lee, park) = (1u64, 2u64, 3u64);
    chat.touch(&[kim, lee, park]).await;
    assert!(chat.rooms(kim).await.is_empty(), "a new user has no rooms");

    // A direct room without a name: named after the other user, as each of them sees it.
    let before = now_ms();
    let r = chat.create(kim, json!({ "room_type": "direct", "participant_ids": [lee] })).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_summary(&r.body);
    let direct = num(&r.body, "room_id");
    assert_eq!(r.body["room_name"], name_of(lee), "{r:?}");
    assert_eq!(r.body["room_type"], "direct");
    assert_eq!(num(&r.body, "created_by"), kim);
    assert_eq!(num(&r.body, "participant_count"), 2);
    assert_eq!((&r.body["last_message"], num(&r.body, "unread_count")), (&Value::Null, 0), "{r:?}");
    let created = utc_ms(&r.body["created_at"]);
    assert!(created >= before - 1000 && created <= now_ms() + 1000, "created_at is now: {r:?}");
    // The same pair again, from either side, or with the creator listed too: that room, 200.
    for (who, others) in [(kim, json!([lee])), (kim, json!([kim, lee])), (lee, json!([kim]))] {
        let r = chat.create(who, json!({ "room_type": "direct", "participant_ids": others })).await;
        assert_eq!(r.status, 200, "direct room again by {who} with {others}: {r:?}");
        assert_eq!(num(&r.body, "room_id"), direct, "{r:?}");
        assert_eq!(r.body["room_type"], "direct");
    }
    let k = chat.rooms(kim).await;
    assert_eq!((k.len(), num(&k[0], "room_id")), (1, direct), "one direct room for kim: {k:?}");
    assert_eq!(k[0]["room_name"], name_of(lee));
    let l = chat.rooms(lee).await;
    assert_eq!((l.len(), num(&l[0], "room_id")), (1, direct), "the same room for lee: {l:?}");
    assert_eq!(l[0]["room_name"], name_of(kim), "lee sees the room under kim's name");

    // A group with a description; the creator may be listed or not.
    let body = json!({
        "room_name": "콘서트 같이 가요", "room_type": "group", "room_description": "토요일 공연", "participant_ids": [lee, park]
    });
    let r = chat.create(kim, body).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_summary(&r.body);
    let group = num(&r.body, "room_id");
    assert_ne!(group, direct);
    assert_eq!((&r.body["room_name"], &r.body["room_type"]), (&json!("콘서트 같이 가요"), &json!("group")));
    assert_eq!((num(&r.body, "created_by"), num(&r.body, "participant_count")), (kim, 3), "{r:?}");
    assert_eq!((&r.body["last_message"], num(&r.body, "unread_count")), (&Value::Null, 0), "{r:?}");
    let r = chat.create(park, json!({ "room_name": "둘", "room_type": "group", "participant_ids": [park, kim] })).await;
    assert_eq!((r.status, num(&r.body, "participant_count")), (201, 2), "{r:?}");
    let pair = num(&r.body, "room_id");
    // 100 characters is the longest name (characters, not bytes).
    let long = "가".repeat(100);
    let r = chat.create(lee, json!({ "room_name": long, "room_type": "group", "participant_ids": [kim] })).await;
    assert_eq!((r.status, &r.body["room_name"]), (201, &json!(long)), "{r:?}");
    let long_room = num(&r.body, "room_id");
    // 99 others is the most: 100 participants.
    let many: Vec<u64> = (100..199).collect();
    let r = chat.create(kim, json!({ "room_name": "full", "room_type": "group", "participant_ids": many })).await;
    assert_eq!((r.status, num(&r.body, "participant_count")), (201, 100), "{r:?}");
    let full = num(&r.body, "room_id");

    // A user never seen is user_{id} until they use the server, then their token's name.
    let r = chat.create(lee, json!({ "room_type": "direct", "participant_ids": [77] })).await;
    assert_eq!((r.status, &r.body["room_name"]), (201, &json!("user_77")), "{r:?}");
    let with_77 = num(&r.body, "room_id");
    let p = chat.participants(lee, with_77).await;
    let p77 = p.iter().find(|p| p["user_id"] == 77).unwrap_or_else(|| panic!("user 77 participates: {p:?}"));
    assert_eq!(p77["user_name"], "user_77", "{p:?}");
    chat.touch(&[77]).await;
    let p = chat.participants(lee, with_77).await;
    let p77 = p.iter().find(|p| p["user_id"] == 77).expect("user 77");
    assert_eq!(p77["user_name"], name_of(77), "the name from user 77's token: {p:?}");
    assert_eq!(chat.summary(lee, with_77).await["room_name"], name_of(77));
    assert_eq!(chat.summary(77, with_77).await["room_name"], name_of(lee));

    // Validation: 422 with a detail, and no room made.
    let lists_before = (chat.room_ids(kim).await, chat.room_ids(lee).await, chat.room_ids(park).await);
    let too_many: Vec<u64> = (100..200).collect();
    let cases = [
        ("unknown room_type", json!({ "room_name": "x", "room_type": "channel", "participant_ids": [lee] })),
        ("no room_type", json!({ "room_name": "x", "participant_ids": [lee] })),
        ("room_type not a string", json!({ "room_name": "x", "room_type": 1, "participant_ids": [lee] })),
        ("no participant_ids", json!({ "room_name": "x", "room_type": "group" })),
        ("empty participant_ids", json!({ "room_name": "x", "room_type": "group", "participant_ids": [] })),
        ("participant_ids not a list", json!({ "room_name": "x", "room_type": "group", "participant_ids": 2 })),
        ("a zero id", json!({ "room_name": "x", "room_type": "group", "participant_ids": [0] })),
        ("a negative id", json!({ "room_name": "x", "room_type": "group", "participant_ids": [-2] })),
        ("a string id", json!({ "room_name": "x", "room_type": "group", "participant_ids": ["2"] })),
        ("a fractional id", json!({ "room_name": "x", "room_type": "group", "participant_ids": [1.5] })),
        ("direct with two others", json!({ "room_type": "direct", "participant_ids": [lee, park] })),
        ("direct with only the creator", json!({ "room_type": "direct", "participant_ids": [kim] })),
        ("a group of only the creator", json!({ "room_name": "x", "room_type": "group", "participant_ids": [kim] })),
        ("a group without room_name", json!({ "room_type": "group", "participant_ids": [lee] })),
        (
            "room_name of 101 chars",
            json!({ "room_name": "a".repeat(101), "room_type": "group", "participant_ids": [lee] }),
        ),
        ("room_name not a string", json!({ "room_name": 5, "room_type": "group", "participant_ids": [lee] })),
        ("100 others", json!({ "room_name": "x", "room_type": "group", "participant_ids": too_many })),
        ("not an object", json!([1, 2])),
    ];
    for (what, body) in cases {
        let r = chat.create(kim, body).await;
        assert_eq!(r.status, 422, "{what}: {r:?}");
        assert_detail(&r, 422);
    }
    let r = chat.api.raw("POST", "/chat/rooms/", Some(&jwt(kim)), &[], Some("{\"room_type\": ".into())).await;
    assert!(r.status == 400 || r.status == 422, "malformed JSON: {r:?}");
    assert_detail(&r, r.status);
    let lists_after = (chat.room_ids(kim).await, chat.room_ids(lee).await, chat.room_ids(park).await);
    assert_eq!(lists_before, lists_after, "refused requests made no room");
    let mut all = vec![direct, group, pair, long_room, full, with_77];
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 6, "distinct room ids");

    // GET the room (and without the trailing slash).
    let r = chat.get(kim, &room_path(group, "")).await;
    assert_eq!(r.status, 200, "{r:?}");
    let g = &r.body;
    assert_eq!(
        (num(g, "room_id"), &g["room_name"], &g["room_type"]),
        (group, &json!("콘서트 같이 가요"), &json!("group"))
    );
    assert_eq!((&g["room_description"], num(g, "max_participants")), (&json!("토요일 공연"), 100), "{g}");
    assert_eq!((num(g, "created_by"), &g["is_active"]), (kim, &json!(true)), "{g}");
    let summary = chat.summary(kim, group).await;
    assert_eq!(utc_ms(&g["created_at"]), utc_ms(&summary["created_at"]), "{g} vs {summary}");
    utc_ms(&g["updated_at"]);
    let bare = chat.get(park, &format!("/chat/rooms/{group}")).await;
    assert_eq!((bare.status, &bare.body), (200, &r.body), "the path without its trailing slash");
    let r = chat.get(lee, &room_path(direct, "")).await;
    assert_eq!((r.status, &r.body["room_description"], &r.body["room_type"]), (200, &Value::Null, &json!("direct")));
    let r = chat.get(kim, "/chat/rooms").await;
    assert_eq!((r.status, r.body["total_count"].as_u64()), (200, Some(5)), "GET /chat/rooms: {r:?}");

    // Participants: every member, named, not read yet.
    let ps = chat.participants(park, group).await;
    let mut users: Vec<u64> = ps.iter().map(|p| num(p, "user_id")).collect();
    users.sort_unstable();
    assert_eq!(users, [kim, lee, park], "{ps:?}");
    let mut pids: Vec<u64> = ps.iter().map(|p| num(p, "id")).collect();
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 3, "participant ids are distinct: {ps:?}");
    for p in &ps {
        assert_eq!(num(p, "room_id"), group, "{p}");
        assert_eq!(p["user_name"], name_of(num(p, "user_id")), "{p}");
        assert_eq!((&p["last_read_at"], &p["is_active"]), (&Value::Null, &json!(true)), "{p}");
        let joined = utc_ms(&p["joined_at"]);
        assert!(joined >= before - 1000 && joined <= now_ms() + 1000, "{p}");
    }
    assert_eq!(chat.participants(kim, full).await.len(), 100);
    let r = chat.get(kim, &format!("/chat/rooms/{group}/participants")).await;
    assert_eq!((r.status, r.body["total_count"].as_u64()), (200, Some(3)), "without the trailing slash: {r:?}");

    // Most recently active first: creation, then messages, move a room up.
    let (a, b, c) = (4u64, 5u64, 6u64);
    chat.touch(&[a, b, c]).await;
    let mut made = Vec::new();
    for name in ["first", "second", "third"] {
        made.push(chat.group(a, name, &[b, c]).await);
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(chat.room_ids(a).await, [made[2], made[1], made[0]], "newest room first");
    chat.post(b, made[0], "wake up").await;
    actix_rt::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(chat.room_ids(a).await, [made[0], made[2], made[1]], "the room with the newest message first");
    chat.post(c, made[1], "me too").await;
    assert_eq!(chat.room_ids(b).await, [made[1], made[0], made[2]]);
    let first = chat.summary(a, made[0]).await;
    assert_eq!((&first["last_message"], num(&first, "unread_count")), (&json!("wake up"), 1), "{first}");
}

#[actix_rt::test]
async fn every_room_endpoint_checks_the_token_the_participant_and_the_room() {
    let server = TestServer::spawn(&[]);
    let chat = Chat::new(&server);
    let (kim, lee, outsider) = (1u64, 2u64, 3u64);
    chat.touch(&[kim, lee, outsider]).await;
    let room = chat.group(kim, "private", &[lee]).await;
    let m = chat.post(kim, room, "secret").await;
    let mid = num(&m, "message_id");
    let defaults = chat.settings(kim, room).await.body;

    let routes = |room: u64| {
        vec![
            ("GET", room_path(room, ""), None),
            ("GET", room_path(room, "participants/"), None),
            ("GET", room_path(room, "messages/"), None),
            ("GET", room_path(room, "messages/?page=2&size=10"), None),
            ("POST", room_path(room, "messages/"), Some(json!({ "message_content": "let me in" }))),
            ("PUT", room_path(room, &format!("messages/{mid}/")), Some(json!({ "message_content": "mine now" }))),
            ("DELETE", room_path(room, &format!("messages/{mid}/")), None),
            ("POST", room_path(room, "read/"), None),
            ("GET", room_path(room, "search/?query=secret"), None),
            ("GET", room_path(room, "settings/"), None),
            ("PUT", room_path(room, "settings/"), Some(json!({ "notification_enabled": false }))),
            ("GET", room_path(room, "online-status/"), None),
        ]
    };
    for (method, path, body) in routes(room) {
        let r = chat.call(outsider, method, &path, body.clone()).await;
        assert_eq!(r.status, 403, "{method} {path} by a non-participant: {r:?}");
        assert_detail(&r, 403);
        for token in [None, Some("not.a.jwt")] {
            let r = chat.api.call(method, &path, token, &[], body.clone()).await;
            assert_eq!(r.status, 401, "{method} {path} with token {token:?}: {r:?}");
            assert_detail(&r, 401);
        }
    }
    for (method, path, body) in routes(NO_ROOM) {
        let r = chat.call(kim, method, &path, body).await;
        assert_eq!(r.status, 404, "{method} {path}: {r:?}");
        assert_detail(&r, 404);
    }
    for (method, path, body) in [
        ("GET", "/chat/rooms/".to_string(), None),
        ("POST", "/chat/rooms/".to_string(), Some(json!({ "room_type": "direct", "participant_ids": [kim] }))),
    ] {
        for token in [None, Some("not.a.jwt")] {
            let r = chat.api.call(method, &path, token, &[], body.clone()).await;
            assert_eq!(r.status, 401, "{method} {path} with token {token:?}: {r:?}");
            assert_detail(&r, 401);
        }
    }
    let img = png(64);
    let file = FilePart { name: "x.png", content_type: "image/png", bytes: &img };
    let r = chat.upload(outsider, room, &[("message_type", "image")], Some(file)).await;
    assert_eq!(r.status, 403, "a multipart send by a non-participant: {r:?}");
    assert_detail(&r, 403);
    let r = chat.get(kim, "/chat/rooms/abc/").await;
    assert_eq!(r.status, 422, "a room id that is not an integer: {r:?}");
    assert_detail(&r, 422);

    // None of it changed anything.
    assert_eq!(chat.all_messages(lee, room).await, [m], "the message is untouched");
    assert_eq!(chat.settings(lee, room).await.body, defaults);
    assert!(chat.participants(kim, room).await.iter().all(|p| p["last_read_at"].is_null()), "nobody read");
    assert!(chat.rooms(outsider).await.is_empty(), "the outsider has no rooms");
    assert_eq!(chat.room_ids(kim).await, [room]);
}
