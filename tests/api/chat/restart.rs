//! Contract C's state, as every client reads it back, survives `kill -9` and a graceful
//! restart.

use super::*;
use crate::helpers::*;
use serde_json::{json, Value};

/// Everything a client can read back of these rooms, as `users` see them.
async fn chat_snapshot(chat: &Chat, users: &[u64], rooms: &[(u64, u64)]) -> Value {
    let mut lists = Vec::new();
    for &u in users {
        lists.push(json!({ "user": u, "rooms": chat.rooms(u).await }));
    }
    let mut per_room = Vec::new();
    for &(room, reader) in rooms {
        per_room.push(json!({
            "room": chat.get(reader, &room_path(room, "")).await.body,
            "participants": chat.participants(reader, room).await,
            "messages": chat.all_messages(reader, room).await,
            "settings": chat.settings(reader, room).await.body,
            "search": chat.search(reader, room, "query=msg").await.body,
        }));
    }
    json!({ "lists": lists, "rooms": per_room })
}

#[actix_rt::test]
async fn chat_state_survives_kill9_and_a_graceful_restart() {
    let mut server = TestServer::spawn(&[]);
    let chat = Chat::new(&server);
    let (kim, lee, park) = (1u64, 2u64, 3u64);
    let users = [kim, lee, park];
    chat.touch(&users).await;
    let direct = chat.direct(kim, lee).await;
    let group = chat.group(kim, "그룹", &[lee, park]).await;
    let mut msgs = Vec::new();
    for i in 0..12 {
        msgs.push(chat.post(users[i % 3], group, &format!("msg {i}")).await);
    }
    for i in 0..3 {
        chat.post(lee, direct, &format!("direct msg {i}")).await;
    }
    let mid = |i: usize| num(&msgs[i], "message_id");
    let body = json!({ "message_content": "msg reply", "reply_to_message_id": mid(2) });
    assert_eq!(chat.send(lee, group, body).await.status, 201);
    assert_eq!(chat.edit(park, group, mid(2), "msg 2 edited").await.status, 200);
    assert_eq!(chat.delete(lee, group, mid(4)).await.status, 200);
    assert_eq!(chat.read(lee, group).await.status, 200);
    let r =
        chat.put_settings(park, group, json!({ "notification_enabled": false, "message_retention_days": 30 })).await;
    assert_eq!(r.status, 200);
    let img = png(700);
    let file = FilePart { name: "keep.png", content_type: "image/png", bytes: &img };
    let r = chat.upload(kim, direct, &[("message_type", "image")], Some(file)).await;
    assert_eq!(r.status, 201, "{r:?}");
    let url = r.body["file_url"].as_str().expect("file_url").to_string();
    let rooms = [(direct, kim), (group, park)];
    let before = chat_snapshot(&chat, &users, &rooms).await;
    assert!(num(&chat.summary(kim, group).await, "unread_count") > 0, "kim has not read the group");

    // kill -9: every acknowledged write is back, as it was.
    server.kill9();
    server.restart();
    let chat = Chat::new(&server);
    let after = chat_snapshot(&chat, &users, &rooms).await;
    assert_eq!(after, before, "the chat after kill -9 is the chat before it");
    let f = chat.fetch(&url, Some(&jwt(lee))).await;
    assert!(f.status == 200 && f.bytes == img, "the file survives kill -9: {}", f.status);
    // New ids do not collide with old ones.
    let max_id = ids(&chat.all_messages(kim, group).await).into_iter().max().expect("messages");
    let fresh = chat.post(park, group, "msg after the crash").await;
    assert!(num(&fresh, "message_id") > max_id, "{fresh}");
    let newer_room = chat.group(park, "after", &[kim]).await;
    assert!(newer_room > direct.max(group), "room ids keep growing: {newer_room}");

    // More changes, then SIGTERM.
    assert_eq!(chat.edit(kim, group, mid(3), "msg 3 edited").await.status, 200);
    assert_eq!(chat.delete(kim, group, mid(6)).await.status, 200);
    assert_eq!(chat.read(kim, group).await.status, 200);
    assert_eq!(chat.read(kim, direct).await.status, 200);
    assert_eq!(chat.put_settings(kim, group, json!({ "auto_delete_enabled": true })).await.status, 200);
    assert_eq!(chat.post(kim, newer_room, "msg in the new room").await["room_id"], newer_room);
    let rooms = [(direct, lee), (group, kim), (newer_room, park)];
    let before = chat_snapshot(&chat, &users, &rooms).await;
    assert!(server.stop().success(), "a graceful stop exits 0");
    server.restart();
    let chat = Chat::new(&server);
    let after = chat_snapshot(&chat, &users, &rooms).await;
    assert_eq!(after, before, "the chat after a graceful restart is the chat before it");
    let f = chat.fetch(&url, Some(&jwt(kim))).await;
    assert!(f.status == 200 && f.bytes == img, "the file survives a restart: {}", f.status);
    let settings = chat.settings(lee, group).await.body;
    assert_eq!(
        settings,
        json!({ "room_id": group, "notification_enabled": false, "message_retention_days": 30,
                "auto_delete_enabled": true, "read_receipt_enabled": true })
    );
    let all = chat.all_messages(kim, group).await;
    let by_id = |id: u64| all.iter().find(|m| num(m, "message_id") == id).expect("message").clone();
    assert_eq!(
        (&by_id(mid(2))["message_content"], &by_id(mid(2))["is_edited"]),
        (&json!("msg 2 edited"), &json!(true))
    );
    assert_eq!((&by_id(mid(4))["is_deleted"], &by_id(mid(6))["is_deleted"]), (&json!(true), &json!(true)));
    assert_eq!(num(&chat.summary(kim, group).await, "unread_count"), 0);
}
