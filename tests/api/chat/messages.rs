//! Contract C's messages: pages (newest first, ascending within a page), and sending,
//! replying, editing and deleting.

use super::*;
use crate::helpers::*;
use serde_json::json;

#[actix_rt::test]
async fn messages_page_newest_first_in_ascending_pages() {
    let server = TestServer::spawn(&[]);
    let chat = Chat::new(&server);
    let (kim, lee) = (1u64, 2u64);
    chat.touch(&[kim, lee]).await;
    let room = chat.group(kim, "paging", &[lee]).await;

    let r = chat.page(kim, room, "").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!((&r.body["messages"], num(&r.body, "total_count"), &r.body["has_more"]), (&json!([]), 0, &json!(false)));

    let mut sent = Vec::new();
    for i in 1..=120 {
        let who = if i % 2 == 1 { kim } else { lee };
        sent.push(chat.post(who, room, &format!("m{i:03}")).await);
    }
    assert_ascending(&ids(&sent), "ids in the order sent");
    let expect = |from: usize, to: usize| (from..=to).map(|i| format!("m{i:03}")).collect::<Vec<_>>();

    let check = |r: &Reply, from: usize, to: usize, more: bool| {
        assert_eq!(r.status, 200, "{r:?}");
        let list = r.body["messages"].as_array().unwrap_or_else(|| panic!("messages: {r:?}"));
        assert_eq!(texts(list), expect(from, to), "messages {from}..={to}");
        assert_eq!(list.as_slice(), &sent[from - 1..to], "the page holds the messages as they were sent");
        assert_eq!(num(&r.body, "total_count"), 120, "{r:?}");
        assert_eq!(r.body["has_more"], more, "has_more for {from}..={to}");
    };
    let p1 = chat.page(kim, room, "page=1&size=50").await;
    check(&p1, 71, 120, true);
    check(&chat.page(lee, room, "page=2&size=50").await, 21, 70, true);
    check(&chat.page(kim, room, "page=3&size=50").await, 1, 20, false);
    let r = chat.page(kim, room, "page=4&size=50").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        (&r.body["messages"], num(&r.body, "total_count"), &r.body["has_more"]),
        (&json!([]), 120, &json!(false))
    );
    let default = chat.page(lee, room, "").await;
    assert_eq!((default.status, &default.body), (200, &p1.body), "page 1, size 50 by default");
    let bare = chat.get(kim, &format!("/chat/rooms/{room}/messages")).await;
    assert_eq!((bare.status, &bare.body), (200, &p1.body), "the path without its trailing slash");
    check(&chat.page(kim, room, "size=100").await, 21, 120, true);
    check(&chat.page(kim, room, "page=2&size=100").await, 1, 20, false);
    check(&chat.page(kim, room, "page=120&size=1").await, 1, 1, false);
    check(&chat.page(kim, room, "page=1&size=1").await, 120, 120, true);
    assert_eq!(chat.all_messages(kim, room).await, sent, "every page together is every message, in order");

    // ?since=: the messages after it, ascending, up to size.
    let since = num(&sent[99], "message_id");
    let r = chat.page(kim, room, &format!("since={since}&size=10")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(texts(r.body["messages"].as_array().expect("messages")), expect(101, 110), "{r:?}");
    let r = chat.page(kim, room, &format!("since={since}")).await;
    assert_eq!(texts(r.body["messages"].as_array().expect("messages")), expect(101, 120), "{r:?}");
    let r = chat.page(kim, room, "since=0&size=5").await;
    assert_eq!(texts(r.body["messages"].as_array().expect("messages")), expect(1, 5), "{r:?}");
    let last = num(&sent[119], "message_id");
    let r = chat.page(lee, room, &format!("since={last}")).await;
    assert_eq!((r.status, &r.body["messages"]), (200, &json!([])), "{r:?}");

    for q in ["size=0", "size=101", "size=-1", "size=abc", "page=0", "page=-1", "page=x", "page=1.5", "since=abc"] {
        let r = chat.page(kim, room, q).await;
        assert_eq!(r.status, 422, "?{q}: {r:?}");
        assert_detail(&r, 422);
    }
    assert_eq!(num(&chat.page(kim, room, "").await.body, "total_count"), 120);
}

#[actix_rt::test]
async fn messages_are_sent_replied_edited_and_deleted() {
    let server = TestServer::spawn(&[]);
    let chat = Chat::new(&server);
    let (kim, lee) = (1u64, 2u64);
    chat.touch(&[kim, lee]).await;
    let room = chat.group(kim, "talk", &[lee]).await;
    let other = chat.group(kim, "other", &[lee]).await;
    let elsewhere = chat.post(lee, other, "in the other room").await;
    let elsewhere = num(&elsewhere, "message_id");

    // Text as JSON, as the seed sends it.
    let before = now_ms();
    let r =
        chat.send(kim, room, json!({ "message_content": "안녕하세요! 반갑습니다 😊", "message_type": "text" })).await;
    assert_eq!(r.status, 201, "{r:?}");
    let a = r.body.clone();
    assert_message(&a);
    assert_eq!((num(&a, "room_id"), num(&a, "sender_id"), &a["sender_name"]), (room, kim, &json!(name_of(kim))));
    assert_eq!((&a["message_content"], &a["message_type"]), (&json!("안녕하세요! 반갑습니다 😊"), &json!("text")));
    for f in ["file_url", "file_name", "file_size", "reply_to_message_id", "edited_at"] {
        assert!(a[f].is_null(), "{f} is null: {a}");
    }
    assert_eq!((&a["is_edited"], &a["is_deleted"]), (&json!(false), &json!(false)));
    let at = utc_ms(&a["created_at"]);
    assert!(at >= before - 1000 && at <= now_ms() + 1000, "created_at is now: {a}");
    let a_id = num(&a, "message_id");
    // message_type defaults to text; 5000 characters is the longest text.
    let r = chat.send(kim, room, json!({ "message_content": "no type" })).await;
    assert_eq!((r.status, &r.body["message_type"]), (201, &json!("text")), "{r:?}");
    let b = r.body.clone();
    let long = "가".repeat(5000);
    let r = chat.send(kim, room, json!({ "message_content": long })).await;
    assert_eq!((r.status, &r.body["message_content"]), (201, &json!(long)), "5000 characters (not bytes) are fine");
    let c = r.body.clone();

    // A reply.
    let body = json!({ "message_content": "답장입니다!", "message_type": "text", "reply_to_message_id": a_id });
    let r = chat.send(lee, room, body).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_message(&r.body);
    assert_eq!((num(&r.body, "reply_to_message_id"), num(&r.body, "sender_id")), (a_id, lee), "{r:?}");
    let d = r.body.clone();
    let d_id = num(&d, "message_id");
    assert_ascending(&ids(&[a.clone(), b.clone(), c.clone(), d.clone()]), "in the order sent");
    for u in [kim, lee] {
        assert_eq!(chat.summary(u, room).await["last_message"], "답장입니다!", "the newest text is last_message");
    }

    // Refusals store nothing.
    let cases = [
        ("no content", json!({ "message_type": "text" })),
        ("empty content", json!({ "message_content": "", "message_type": "text" })),
        ("null content", json!({ "message_content": null })),
        ("content not a string", json!({ "message_content": 42 })),
        ("5001 characters", json!({ "message_content": "a".repeat(5001) })),
        ("an unknown message_type", json!({ "message_content": "x", "message_type": "sticker" })),
        ("message_type not a string", json!({ "message_content": "x", "message_type": 3 })),
        ("reply_to_message_id not a number", json!({ "message_content": "x", "reply_to_message_id": "first" })),
    ];
    for (what, body) in cases {
        let r = chat.send(kim, room, body).await;
        assert_eq!(r.status, 422, "{what}: {r:?}");
        assert_detail(&r, 422);
    }
    let r = chat.api.raw("POST", &room_path(room, "messages/"), Some(&jwt(kim)), &[], Some("{\"message_".into())).await;
    assert!(r.status == 400 || r.status == 422, "malformed JSON: {r:?}");
    assert_detail(&r, r.status);
    for (what, target) in [("an unknown message", NO_MESSAGE), ("a message of another room", elsewhere)] {
        let r = chat.send(lee, room, json!({ "message_content": "re", "reply_to_message_id": target })).await;
        assert_eq!(r.status, 400, "a reply to {what}: {r:?}");
        assert_detail(&r, 400);
    }
    assert_eq!(chat.all_messages(kim, room).await, [a.clone(), b.clone(), c.clone(), d.clone()], "nothing else stored");

    // Edit: only the sender; not empty; unknown or foreign ids are 404.
    let r = chat.edit(lee, room, d_id, "답장 (수정)").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_message(&r.body);
    assert_eq!((num(&r.body, "message_id"), &r.body["message_content"]), (d_id, &json!("답장 (수정)")), "{r:?}");
    assert_eq!(r.body["is_edited"], true, "{r:?}");
    assert!(utc_ms(&r.body["edited_at"]) >= utc_ms(&d["created_at"]), "{r:?}");
    assert_eq!(r.body["created_at"], d["created_at"], "an edit keeps created_at");
    assert_eq!(num(&r.body, "reply_to_message_id"), a_id, "an edit keeps the reply");
    let d_edited = r.body.clone();
    assert_eq!(chat.summary(kim, room).await["last_message"], "답장 (수정)");
    assert_detail(&chat.edit(kim, room, d_id, "not mine").await, 403);
    assert_detail(&chat.edit(lee, room, a_id, "not mine either").await, 403);
    assert_detail(&chat.edit(lee, room, d_id, "").await, 422);
    let r = chat.call(lee, "PUT", &room_path(room, &format!("messages/{d_id}/")), Some(json!({}))).await;
    assert_detail(&r, 422);
    assert_detail(&chat.edit(kim, room, NO_MESSAGE, "nothing").await, 404);
    assert_detail(&chat.edit(lee, room, elsewhere, "wrong room").await, 404);
    let r = chat.edit(kim, room, a_id, "안녕하세요! (수정)").await;
    assert_eq!((r.status, &r.body["is_edited"]), (200, &json!(true)), "{r:?}");
    let a_edited = r.body.clone();
    let now = chat.all_messages(lee, room).await;
    assert_eq!(now, [a_edited.clone(), b.clone(), c.clone(), d_edited.clone()], "GET shows the edits");

    // Delete: only the sender; a deleted message keeps its place, empty; twice is 404.
    assert_detail(&chat.delete(lee, room, a_id).await, 403);
    assert_detail(&chat.delete(kim, room, elsewhere).await, 404);
    assert_detail(&chat.delete(kim, room, NO_MESSAGE).await, 404);
    let r = chat.delete(kim, room, a_id).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!((&r.body["message"], num(&r.body, "message_id")), (&json!("Message deleted"), a_id), "{r:?}");
    assert_detail(&chat.delete(kim, room, a_id).await, 404);
    assert_detail(&chat.edit(kim, room, a_id, "back?").await, 404);
    let r = chat.send(lee, room, json!({ "message_content": "re", "reply_to_message_id": a_id })).await;
    assert_eq!(r.status, 400, "a reply to a deleted message: {r:?}");
    assert_detail(&r, 400);
    let r = chat.delete(lee, room, d_id).await;
    assert_eq!((r.status, num(&r.body, "message_id")), (200, d_id), "{r:?}");
    for u in [kim, lee] {
        assert_eq!(chat.summary(u, room).await["last_message"], json!(long), "the newest message not deleted");
    }

    let all = chat.all_messages(kim, room).await;
    assert_eq!(ids(&all), ids(&[a.clone(), b.clone(), c.clone(), d.clone()]), "deleted messages keep their place");
    for (m, deleted) in all.iter().zip([true, false, false, true]) {
        assert_eq!(m["is_deleted"], deleted, "{m}");
        if deleted {
            assert_eq!(m["message_content"], "", "{m}");
        }
    }
    assert_eq!((&all[1], &all[2]), (&b, &c), "the others are unchanged");
    assert_eq!(num(&all[3], "reply_to_message_id"), a_id, "{}", all[3]);
    let r = chat.page(kim, room, "").await;
    assert_eq!(num(&r.body, "total_count"), 4, "{r:?}");
    assert_eq!(chat.all_messages(lee, other).await.len(), 1, "the other room is untouched");
}
