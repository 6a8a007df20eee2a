//! Issue 24, part 3: client message ids on contract C's socket. A `message` frame may carry
//! `client_msg_id`; one id of one user in one room makes one message, whichever socket
//! sends it again, across an idle room's stop and a `kill -9`. What is stored is read back
//! over REST; what each socket hears is counted. (SignalR's `SendMessage` is tested in
//! `signalr.rs`, edges in `cluster.rs`.)

use crate::chat::*;
use crate::helpers::*;
use crate::lifecycle::until_live;
use serde_json::{json, Value};
use std::time::Duration;

const T: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(600);

/// A `message` frame with a client message id (any JSON value, to send bad ones too).
fn frame(text: &str, id: Value) -> Value {
    json!({ "type": "message", "content": text, "message_type": "text", "client_msg_id": id })
}

/// The `message` events among `events`.
fn messages(events: &[Value]) -> Vec<Value> {
    events.iter().filter(|e| is_type(e, "message")).cloned().collect()
}

/// The socket's answer to a frame it just sent: the first `message` or `error` event.
async fn answer(ws: &mut WsClient) -> Value {
    ws.event(|e| is_type(e, "message") || is_type(e, "error"), T).await
}

#[actix_rt::test]
async fn ws_a_post_retried_with_its_client_msg_id_is_stored_once() {
    let server = TestServer::spawn(&[]);
    let chat = Chat::new(&server);
    let (kim, lee) = (1u64, 2u64);
    chat.touch(&[kim, lee]).await;
    let room = chat.group(kim, "retries", &[lee]).await;
    let base = &server.base;
    // Two sockets of kim's (a phone before and after a reconnect), one of lee's.
    let mut first = WsClient::connect(base, room, &jwt(kim), None).await;
    let mut second = WsClient::connect(base, room, &jwt(kim), None).await;
    let mut other = WsClient::connect(base, room, &jwt(lee), None).await;

    first.send(frame("once, please", json!("c-1"))).await;
    let sent = first.messages(1, T).await.remove(0);
    let stored = chat.all_messages(lee, room).await;
    assert_eq!(ids(&stored), vec![num(&sent, "message_id")], "{stored:?}");
    assert_event_is(&sent, &stored[0]);
    for ws in [&mut second, &mut other] {
        assert_event_is(&ws.messages(1, T).await[0], &stored[0]);
    }

    // The retry on the same socket, then on the other socket, then at once on both.
    first.send(frame("once, please", json!("c-1"))).await;
    let again = answer(&mut first).await;
    assert_event_is(&again, &stored[0]);
    second.send(frame("once, please", json!("c-1"))).await;
    assert_event_is(&answer(&mut second).await, &stored[0]);
    first.send(frame("once, please", json!("c-1"))).await;
    second.send(frame("once, please", json!("c-1"))).await;
    assert_event_is(&answer(&mut first).await, &stored[0]);
    assert_event_is(&answer(&mut second).await, &stored[0]);

    // Stored once; each retry answered its own socket only, the room heard one message.
    assert_eq!(chat.all_messages(lee, room).await, stored, "nothing stored by the retries");
    let (q1, q2, q3) = futures_util::future::join3(first.quiet(QUIET), second.quiet(QUIET), other.quiet(QUIET)).await;
    assert!(messages(&q1).is_empty() && messages(&q2).is_empty(), "one answer per retry: {q1:?} {q2:?}");
    assert!(messages(&q3).is_empty(), "the other member hears the message once: {q3:?}");

    // Without an id, the same text is another message; a new id too.
    first.send(json!({ "type": "message", "content": "once, please" })).await;
    second.send(frame("once, please", json!("c-2"))).await;
    let got = other.messages(2, T).await;
    assert_eq!(chat.all_messages(lee, room).await.len(), 3, "{got:?}");
    for ws in [first, second, other] {
        ws.close().await;
    }
}

#[actix_rt::test]
async fn ws_a_client_msg_id_reused_for_other_content_or_malformed_is_an_error_event() {
    let server = TestServer::spawn(&[]);
    let chat = Chat::new(&server);
    let (kim, lee) = (1u64, 2u64);
    chat.touch(&[kim, lee]).await;
    let room = chat.group(kim, "refusals", &[lee]).await;
    let earlier = num(&chat.post(lee, room, "earlier").await, "message_id");
    let mut ws = WsClient::connect(&server.base, room, &jwt(kim), None).await;
    ws.send(frame("the first", json!("c-1"))).await;
    let first = ws.messages(1, T).await.remove(0);

    // The id with other content, another kind, or a reply: refused, nothing stored.
    let reused = [
        frame("the second", json!("c-1")),
        json!({ "type": "message", "content": "the first", "message_type": "voice", "client_msg_id": "c-1" }),
        json!({ "type": "message", "content": "the first", "reply_to_message_id": earlier, "client_msg_id": "c-1" }),
    ];
    // Ids that are not 1 to 64 visible ASCII characters, or not a string.
    let malformed = [
        frame("x", json!("x".repeat(65))),
        frame("x", json!("")),
        frame("x", json!("아이디")),
        frame("x", json!("café")),
        frame("x", json!("a b")),
        frame("x", json!("tab\t")),
        frame("x", json!(12)),
        frame("x", json!(["c-1"])),
    ];
    for (bad, needle) in reused.iter().map(|f| (f, "different")).chain(malformed.iter().map(|f| (f, "client_msg_id"))) {
        ws.send(bad.clone()).await;
        let e = answer(&mut ws).await;
        assert!(is_type(&e, "error"), "{bad} gives an error event: {e}");
        let detail = e["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(needle), "the error says why ({needle}): {e}");
    }
    ws.send(json!({ "type": "ping" })).await;
    ws.event(|e| is_type(e, "pong"), T).await;
    assert_eq!(ws.closed, None, "the socket stays open");
    let stored = chat.all_messages(kim, room).await;
    assert_eq!(ids(&stored), vec![earlier, num(&first, "message_id")], "the refusals stored nothing");
    assert_eq!(stored[1]["message_content"], "the first");

    // 64 visible characters is an id; null is no id.
    let longest: String = (0x21u8..=0x7e).map(char::from).take(64).collect();
    ws.send(frame("the longest id", json!(longest))).await;
    assert_eq!(answer(&mut ws).await["content"], "the longest id");
    ws.send(frame("no id", Value::Null)).await;
    assert_eq!(answer(&mut ws).await["content"], "no id");
    ws.send(frame("the longest id", json!(longest))).await;
    assert_eq!(answer(&mut ws).await["content"], "the longest id");
    assert_eq!(chat.all_messages(kim, room).await.len(), 4);
    ws.close().await;
}

#[actix_rt::test]
async fn ws_the_same_client_msg_id_from_another_user_or_in_another_room_is_another_message() {
    let server = TestServer::spawn(&[]);
    let chat = Chat::new(&server);
    let (kim, lee) = (1u64, 2u64);
    chat.touch(&[kim, lee]).await;
    let room = chat.group(kim, "one", &[lee]).await;
    let other_room = chat.group(kim, "two", &[lee]).await;
    let base = &server.base;
    let mut kim_here = WsClient::connect(base, room, &jwt(kim), None).await;
    let mut lee_here = WsClient::connect(base, room, &jwt(lee), None).await;
    let mut kim_there = WsClient::connect(base, other_room, &jwt(kim), None).await;

    kim_here.send(frame("hello", json!("shared-id"))).await;
    let a = kim_here.messages(1, T).await.remove(0);
    lee_here.messages(1, T).await;
    lee_here.send(frame("hello", json!("shared-id"))).await;
    let b = lee_here.messages(1, T).await.remove(0);
    kim_there.send(frame("hello", json!("shared-id"))).await;
    let c = kim_there.messages(1, T).await.remove(0);
    let mut all = vec![num(&a, "message_id"), num(&b, "message_id"), num(&c, "message_id")];
    all.dedup();
    assert_eq!(all.len(), 3, "three messages: {a} {b} {c}");
    assert_eq!((num(&b, "sender_id"), num(&c, "room_id")), (lee, other_room));
    assert_eq!(chat.all_messages(kim, room).await.len(), 2);
    assert_eq!(chat.all_messages(kim, other_room).await.len(), 1);
    for ws in [kim_here, lee_here, kim_there] {
        ws.close().await;
    }
}

/// The id's record is in the store with the message: a room stopped when idle reads it
/// back, and so does a server killed with `kill -9`.
#[actix_rt::test]
async fn ws_a_client_msg_id_survives_an_idle_room_and_kill9() {
    let mut server = TestServer::spawn(&fast_queue());
    let chat = Chat::new(&server);
    let api = server.api();
    let (kim, lee) = (1u64, 2u64);
    chat.touch(&[kim, lee]).await;
    let room = chat.group(kim, "durable ids", &[lee]).await;
    let mut ws = WsClient::connect(&server.base, room, &jwt(kim), None).await;
    ws.send(frame("acknowledged", json!("keep-me"))).await;
    let sent = ws.messages(1, T).await.remove(0);
    ws.close().await;

    // The room stops once idle for the window (2 minutes by default, on the server's
    // clock); the retry starts it from its records.
    server.advance(Duration::from_secs(150)).await;
    until_live(&api, "room", 0).await;
    let mut ws = WsClient::connect(&server.base, room, &jwt(kim), None).await;
    ws.send(frame("acknowledged", json!("keep-me"))).await;
    assert_eq!(answer(&mut ws).await["message_id"], sent["message_id"], "a retry after the room stopped");
    ws.close().await;

    server.kill9();
    server.restart();
    let chat = Chat::new(&server);
    let mut ws = WsClient::connect(&server.base, room, &jwt(kim), None).await;
    ws.send(frame("acknowledged", json!("keep-me"))).await;
    let again = answer(&mut ws).await;
    assert_eq!(again["message_id"], sent["message_id"], "a retry after kill -9: {again}");
    ws.send(frame("something else", json!("keep-me"))).await;
    assert!(is_type(&answer(&mut ws).await, "error"), "the id still belongs to its message");
    let stored = chat.all_messages(lee, room).await;
    assert_eq!(ids(&stored), vec![num(&sent, "message_id")], "stored once: {stored:?}");
    assert_event_is(&again, &stored[0]);
    ws.close().await;
}
