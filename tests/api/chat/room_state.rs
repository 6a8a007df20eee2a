//! What contract C keeps of a room beside its messages: read positions and unread counts,
//! search, settings, and who is online.

use super::*;
use crate::helpers::*;
use serde_json::{json, Value};

#[actix_rt::test]
async fn reading_search_settings_and_online_status() {
    let server = TestServer::spawn(&[]);
    let chat = Chat::new(&server);
    let (kim, lee, park) = (1u64, 2u64, 3u64);
    chat.touch(&[kim, lee, park]).await;
    let room = chat.group(kim, "read", &[lee, park]).await;

    // Unread: messages from others after the reader's position.
    let mut last = 0;
    for i in 0..5 {
        last = num(&chat.post(lee, room, &format!("from lee {i}")).await, "message_id");
    }
    for i in 0..2 {
        last = num(&chat.post(kim, room, &format!("from kim {i}")).await, "message_id");
    }
    let unread = |s: Value| num(&s, "unread_count");
    assert_eq!(unread(chat.summary(kim, room).await), 5);
    assert_eq!(unread(chat.summary(lee, room).await), 2);
    assert_eq!(unread(chat.summary(park, room).await), 7);
    assert!(chat.participants(kim, room).await.iter().all(|p| p["last_read_at"].is_null()), "nobody has read");

    let before = now_ms();
    let r = chat.read(kim, room).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!((num(&r.body, "room_id"), num(&r.body, "user_id")), (room, kim), "{r:?}");
    assert_eq!((num(&r.body, "last_read_message_id"), num(&r.body, "unread_count")), (last, 0), "{r:?}");
    let read_at = utc_ms(&r.body["last_read_at"]);
    assert!(read_at >= before - 1000 && read_at <= now_ms() + 1000, "{r:?}");
    assert_eq!(unread(chat.summary(kim, room).await), 0, "kim read everything");
    assert_eq!(unread(chat.summary(lee, room).await), 2, "lee did not read");
    assert_eq!(unread(chat.summary(park, room).await), 7, "park did not read");
    let ps = chat.participants(park, room).await;
    for p in &ps {
        if p["user_id"] == kim {
            assert_eq!(utc_ms(&p["last_read_at"]), read_at, "kim's last_read_at: {p}");
        } else {
            assert!(p["last_read_at"].is_null(), "{p}");
        }
    }
    let newer = num(&chat.post(lee, room, "one more").await, "message_id");
    assert_eq!(unread(chat.summary(kim, room).await), 1);
    let r = chat.call(kim, "POST", &format!("/chat/rooms/{room}/read"), None).await;
    assert_eq!((r.status, num(&r.body, "last_read_message_id")), (200, newer), "without the trailing slash: {r:?}");
    assert_eq!(unread(chat.summary(kim, room).await), 0);
    let r = chat.read(park, room).await;
    assert_eq!((r.status, num(&r.body, "unread_count")), (200, 0), "{r:?}");
    assert_eq!(unread(chat.summary(park, room).await), 0);
    assert_eq!(unread(chat.summary(lee, room).await), 2, "lee's own messages are never unread");

    // Search: case-insensitive, newest first, the match as written, deleted messages left out.
    let s = chat.group(kim, "search", &[lee]).await;
    let hello_world = chat.post(kim, s, "Hello World").await;
    let say_hello = chat.post(lee, s, "say HELLO again").await;
    let nothing = chat.post(kim, s, "nothing here").await;
    let gone = chat.post(kim, s, "hello, soon deleted").await;
    let korean = chat.post(lee, s, "안녕하세요! 반갑습니다").await;
    assert_eq!(chat.delete(kim, s, num(&gone, "message_id")).await.status, 200);

    let r = chat.search(lee, s, "query=hello").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!((num(&r.body, "total_count"), &r.body["has_more"]), (2, &json!(false)), "{r:?}");
    let found = r.body["messages"].as_array().expect("messages");
    assert_eq!(ids(found), ids(&[say_hello.clone(), hello_world.clone()]), "newest first, the deleted one left out");
    assert_eq!(found[0]["highlight"], "HELLO", "the match as the message writes it: {r:?}");
    assert_eq!(found[1]["highlight"], "Hello", "{r:?}");
    for (f, m) in found.iter().zip([&say_hello, &hello_world]) {
        for k in ["message_id", "sender_id", "sender_name", "message_content", "created_at"] {
            assert_eq!(f[k], m[k], "search result {k}: {f} vs {m}");
        }
    }
    let r = chat.search(kim, s, "query=WORLD").await;
    assert_eq!((num(&r.body, "total_count"), &r.body["messages"][0]["highlight"]), (1, &json!("World")), "{r:?}");
    let r = chat.search(kim, s, &format!("query={}", urlencode("안녕"))).await;
    assert_eq!((num(&r.body, "total_count"), &r.body["messages"][0]["highlight"]), (1, &json!("안녕")), "{r:?}");
    assert_eq!(num(&r.body["messages"][0], "message_id"), num(&korean, "message_id"));
    let r = chat.search(kim, s, "query=deleted").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!((&r.body["messages"], num(&r.body, "total_count"), &r.body["has_more"]), (&json!([]), 0, &json!(false)));
    let r = chat.search(kim, s, "query=hello&page=1&size=1").await;
    assert_eq!((num(&r.body, "total_count"), &r.body["has_more"]), (2, &json!(true)), "{r:?}");
    assert_eq!(ids(r.body["messages"].as_array().expect("messages")), [num(&say_hello, "message_id")]);
    let r = chat.search(kim, s, "query=hello&page=2&size=1").await;
    assert_eq!((num(&r.body, "total_count"), &r.body["has_more"]), (2, &json!(false)), "{r:?}");
    assert_eq!(ids(r.body["messages"].as_array().expect("messages")), [num(&hello_world, "message_id")]);
    // An edit is searched as edited.
    assert_eq!(chat.edit(kim, s, num(&nothing, "message_id"), "now hELLo too").await.status, 200);
    let r = chat.search(kim, s, "query=Hello").await;
    assert_eq!(num(&r.body, "total_count"), 3, "{r:?}");
    assert_eq!(r.body["messages"][0]["highlight"], "hELLo", "{r:?}");
    assert_eq!(num(&chat.search(kim, s, "query=here").await.body, "total_count"), 0);
    let r = chat.get(kim, &format!("/chat/rooms/{s}/search?query=world")).await;
    assert_eq!((r.status, r.body["total_count"].as_u64()), (200, Some(1)), "without the trailing slash: {r:?}");
    for q in ["", "query=", "query=%20%20", "page=1", "query=hello&size=0", "query=hello&page=0"] {
        let r = chat.search(kim, s, q).await;
        assert_eq!(r.status, 422, "search ?{q}: {r:?}");
        assert_detail(&r, 422);
    }

    // Settings: defaults; any participant may change any subset; bad values change nothing.
    let r = chat.settings(park, room).await;
    assert_eq!(r.status, 200, "{r:?}");
    let defaults = json!({
        "room_id": room, "notification_enabled": true, "message_retention_days": 365,
        "auto_delete_enabled": false, "read_receipt_enabled": true
    });
    assert_eq!(r.body, defaults, "the default settings");
    let r = chat.put_settings(lee, room, json!({ "notification_enabled": false })).await;
    let mut want = defaults.clone();
    want["notification_enabled"] = json!(false);
    assert_eq!((r.status, &r.body), (200, &want), "{r:?}");
    assert_eq!(chat.settings(kim, room).await.body, want, "everyone reads the new settings");
    let r = chat.put_settings(park, room, json!({ "message_retention_days": 30, "read_receipt_enabled": false })).await;
    want["message_retention_days"] = json!(30);
    want["read_receipt_enabled"] = json!(false);
    assert_eq!((r.status, &r.body), (200, &want), "{r:?}");
    let r = chat.put_settings(kim, room, json!({})).await;
    assert_eq!((r.status, &r.body), (200, &want), "an empty update changes nothing: {r:?}");
    for bad in [
        json!({ "message_retention_days": 0 }),
        json!({ "message_retention_days": 3651 }),
        json!({ "message_retention_days": -5 }),
        json!({ "message_retention_days": "30" }),
        json!({ "message_retention_days": 10.5 }),
        json!({ "notification_enabled": "no" }),
        json!({ "auto_delete_enabled": 1 }),
        json!({ "notification_enabled": true, "message_retention_days": 5000 }),
    ] {
        let r = chat.put_settings(kim, room, bad.clone()).await;
        assert_eq!(r.status, 422, "{bad}: {r:?}");
        assert_detail(&r, 422);
    }
    assert_eq!(chat.settings(kim, room).await.body, want, "refused updates changed nothing");
    for days in [1, 3650] {
        let r =
            chat.put_settings(kim, room, json!({ "message_retention_days": days, "auto_delete_enabled": true })).await;
        want["message_retention_days"] = json!(days);
        want["auto_delete_enabled"] = json!(true);
        assert_eq!((r.status, &r.body), (200, &want), "{r:?}");
    }
    let other = chat.settings(kim, s).await;
    assert_eq!(other.body["notification_enabled"], true, "settings are per room: {other:?}");

    // Online status without any socket: everyone offline, never seen.
    let r = chat.online(lee, room).await;
    assert_eq!(r.status, 200, "{r:?}");
    let list = r.body.as_array().unwrap_or_else(|| panic!("an array: {r:?}"));
    let mut users: Vec<u64> = list.iter().map(|u| num(u, "user_id")).collect();
    users.sort_unstable();
    assert_eq!(users, [kim, lee, park], "{r:?}");
    for u in list {
        assert_eq!(u["user_name"], name_of(num(u, "user_id")), "{u}");
        assert_eq!((&u["is_online"], &u["last_seen"]), (&json!(false), &Value::Null), "{u}");
    }
}

/// A room list is read from the rooms' records: its newest message skips a deleted one,
/// its unread count leaves deleted and own messages out, and both hold after `kill -9`
/// (when no room actor has started yet).
#[actix_rt::test]
async fn room_lists_skip_deleted_messages_and_survive_kill9() {
    let mut server = TestServer::spawn(&[]);
    let chat = Chat::new(&server);
    let (kim, lee) = (1u64, 2u64);
    chat.touch(&[kim, lee]).await;
    let room = chat.direct(kim, lee).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(num(&chat.post(lee, room, &format!("lee {i}")).await, "message_id"));
    }
    chat.post(kim, room, "kim's own").await;
    let last = num(&chat.post(lee, room, "lee last").await, "message_id");
    assert_eq!(chat.delete(lee, room, last).await.status, 200);
    assert_eq!(chat.delete(lee, room, ids[1]).await.status, 200);
    let check = |s: Value| {
        assert_eq!(s["last_message"], "kim's own", "the newest message not deleted: {s}");
        assert_eq!(num(&s, "unread_count"), 3, "lee 0, 2 and 3: {s}");
    };
    check(chat.summary(kim, room).await);
    server.kill9();
    server.restart();
    let chat = Chat::new(&server);
    check(chat.summary(kim, room).await);
    assert_eq!(num(&chat.summary(lee, room).await, "unread_count"), 1, "kim's message");
}
