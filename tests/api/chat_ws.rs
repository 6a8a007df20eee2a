//! Contract C (seed 002) over WebSockets: real sockets beside REST clients. Every event is
//! counted per subscriber (exactly once, in message_id order) and compared with what
//! `GET messages/` stores at the end.

use crate::chat::*;
use crate::helpers::*;
use futures_util::future::{join, join3, join_all};
use serde_json::{json, Value};
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(600);

/// The events of these types that a socket received (others, like user_status, are left out).
fn of_types(events: &[Value], types: &[&str]) -> Vec<Value> {
    events.iter().filter(|e| types.iter().any(|t| is_type(e, t))).cloned().collect()
}

#[actix_rt::test]
async fn ws_handshakes_are_refused_with_401_403_and_404() {
    let server = TestServer::spawn(&[]);
    let chat = Chat::new(&server);
    let (kim, lee, outsider) = (1u64, 2u64, 3u64);
    chat.touch(&[kim, lee, outsider]).await;
    let room = chat.group(kim, "door", &[lee]).await;
    let base = &server.base;

    assert_eq!(WsClient::refused(base, room, None).await, 401, "no token");
    assert_eq!(WsClient::refused(base, room, Some("not.a.jwt")).await, 401, "a bad token");
    assert_eq!(WsClient::refused(base, room, Some(&jwt(outsider))).await, 403, "not a participant");
    assert_eq!(WsClient::refused(base, NO_ROOM, Some(&jwt(kim))).await, 404, "an unknown room");
    assert_eq!(WsClient::refused(base, NO_ROOM, Some(&jwt(outsider))).await, 404, "an unknown room");

    // The refusals left no trace; a good token is let in, and its socket works.
    let r = chat.online(kim, room).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.as_array().expect("array").iter().all(|u| u["is_online"] == false), "nobody online: {r:?}");
    let mut ws = WsClient::connect(base, room, &jwt(kim), None).await;
    let m = chat.post(lee, room, "come in").await;
    assert_event_is(&ws.messages(1, T).await[0], &m);
    let r = chat.online(lee, room).await;
    let me = r.body.as_array().expect("array").iter().find(|u| u["user_id"] == kim).expect("kim").clone();
    assert_eq!(me["is_online"], true, "{r:?}");
    ws.close().await;
    assert!(chat.rooms(outsider).await.is_empty());
}

#[actix_rt::test]
async fn ws_every_subscriber_gets_each_event_exactly_once() {
    let server = TestServer::spawn(&[]);
    let chat = Chat::new(&server);
    let (kim, lee, park) = (1u64, 2u64, 3u64);
    chat.touch(&[kim, lee, park]).await;
    let room = chat.group(kim, "live", &[lee, park]).await;
    let side = chat.group(kim, "side", &[lee]).await;
    let base = &server.base;
    let mut a = WsClient::connect(base, room, &jwt(kim), None).await;
    let mut b = WsClient::connect(base, room, &jwt(lee), None).await;
    let mut c = WsClient::connect(base, room, &jwt(park), None).await;
    // Lee's second socket, on another room: it must hear nothing of `room` but user statuses.
    let mut s = WsClient::connect(base, side, &jwt(lee), None).await;

    // A message sent over REST reaches every socket of the room, the sender's too.
    let m1 = chat.post(kim, room, "안녕하세요!").await;
    let m1_id = num(&m1, "message_id");
    for ws in [&mut a, &mut b, &mut c] {
        assert_event_is(&ws.messages(1, T).await[0], &m1);
    }

    // A message sent over the socket: stored like a REST send, and sent to everyone.
    let reply =
        json!({ "type": "message", "content": "답장입니다!", "message_type": "text", "reply_to_message_id": m1_id });
    b.send(reply).await;
    let mut got = Vec::new();
    for ws in [&mut a, &mut b, &mut c] {
        got.push(ws.messages(1, T).await.remove(0));
    }
    let stored = chat.all_messages(park, room).await;
    assert_eq!(stored.len(), 2, "{stored:?}");
    let m2 = stored[1].clone();
    assert_eq!((num(&m2, "sender_id"), &m2["sender_name"]), (lee, &json!(name_of(lee))), "{m2}");
    assert_eq!((&m2["message_content"], num(&m2, "reply_to_message_id")), (&json!("답장입니다!"), m1_id), "{m2}");
    got.iter().for_each(|e| assert_event_is(e, &m2));

    // A file sent over REST: the event carries the file fields.
    let img = png(300);
    let file = FilePart { name: "seat-map.png", content_type: "image/png", bytes: &img };
    let r = chat.upload(park, room, &[("message_content", "사진"), ("message_type", "image")], Some(file)).await;
    assert_eq!(r.status, 201, "{r:?}");
    let m3 = r.body.clone();
    for ws in [&mut a, &mut b, &mut c] {
        let e = ws.messages(1, T).await.remove(0);
        assert_event_is(&e, &m3);
        assert!(e["file_url"].is_string() && e["file_size"] == 300, "{e}");
    }

    // Exactly once: nothing more comes.
    let (qa, qb, qc) = join3(a.quiet(QUIET), b.quiet(QUIET), c.quiet(QUIET)).await;
    for (who, q) in [("kim", qa), ("lee", qb), ("park", qc)] {
        assert!(of_types(&q, &["message"]).is_empty(), "{who} got a message twice: {q:?}");
    }

    // Typing reaches the others, not the typer.
    b.send(json!({ "type": "typing", "is_typing": true })).await;
    for ws in [&mut a, &mut c] {
        let e = ws.event(|e| is_type(e, "typing"), T).await;
        assert_eq!((num(&e, "user_id"), &e["user_name"], &e["is_typing"]), (lee, &json!(name_of(lee)), &json!(true)));
    }
    b.send(json!({ "type": "typing", "is_typing": false })).await;
    for ws in [&mut a, &mut c] {
        let e = ws.event(|e| is_type(e, "typing"), T).await;
        assert_eq!((num(&e, "user_id"), &e["is_typing"]), (lee, &json!(false)), "{e}");
    }
    let own = b.quiet(QUIET).await;
    assert!(of_types(&own, &["typing"]).is_empty(), "the typer hears its own typing: {own:?}");

    // ping, and errors that keep the socket open and store nothing.
    a.send(json!({ "type": "ping" })).await;
    a.event(|e| is_type(e, "pong"), T).await;
    for bad in [
        "this is not json".to_string(),
        json!({ "type": "dance" }).to_string(),
        json!({ "content": "no type" }).to_string(),
        json!({ "type": "message", "content": "", "message_type": "text" }).to_string(),
        json!({ "type": "message", "content": "x", "message_type": "sticker" }).to_string(),
    ] {
        a.send_text(&bad).await;
        let e = a.event(|e| is_type(e, "error") || is_type(e, "message"), T).await;
        assert!(is_type(&e, "error"), "{bad} gives an error event: {e}");
        assert!(e["detail"].as_str().is_some_and(|d| !d.is_empty()), "an error with a detail: {e}");
    }
    a.send(json!({ "type": "ping" })).await;
    a.event(|e| is_type(e, "pong"), T).await;
    assert_eq!(a.closed, None, "the socket stays open after errors");
    assert_eq!(chat.all_messages(kim, room).await.len(), 3, "the bad frames stored nothing");
    let (qb, qc) = join(b.quiet(QUIET), c.quiet(QUIET)).await;
    assert!(of_types(&qb, &["message", "error"]).is_empty(), "{qb:?}");
    assert!(of_types(&qc, &["message", "error"]).is_empty(), "{qc:?}");

    // message_read after POST read/ and after a `read` frame.
    let r = chat.read(park, room).await;
    assert_eq!(r.status, 200, "{r:?}");
    for ws in [&mut a, &mut b] {
        let e = ws.event(|e| is_type(e, "message_read") && e["user_id"] == park, T).await;
        assert_eq!((num(&e, "room_id"), &e["user_name"]), (room, &json!(name_of(park))), "{e}");
        assert_eq!(num(&e, "last_read_message_id"), num(&m3, "message_id"), "{e}");
        assert_eq!(utc_ms(&e["read_at"]), utc_ms(&r.body["last_read_at"]), "{e} vs {r:?}");
    }
    assert_eq!(num(&chat.summary(lee, room).await, "unread_count"), 2, "lee has not read yet");
    b.send(json!({ "type": "read" })).await;
    for ws in [&mut a, &mut c] {
        let e = ws.event(|e| is_type(e, "message_read") && e["user_id"] == lee, T).await;
        assert_eq!((num(&e, "room_id"), num(&e, "last_read_message_id")), (room, num(&m3, "message_id")), "{e}");
        utc_ms(&e["read_at"]);
    }
    assert_eq!(num(&chat.summary(lee, room).await, "unread_count"), 0, "a read frame is POST read/");
    let ps = chat.participants(kim, room).await;
    let lee_p = ps.iter().find(|p| p["user_id"] == lee).expect("lee");
    utc_ms(&lee_p["last_read_at"]);

    // Edits and deletes.
    let r = chat.edit(kim, room, m1_id, "안녕하세요! (수정)").await;
    assert_eq!(r.status, 200, "{r:?}");
    for ws in [&mut a, &mut b, &mut c] {
        let e = ws.event(|e| is_type(e, "message_updated"), T).await;
        assert_eq!((num(&e, "message_id"), num(&e, "room_id")), (m1_id, room), "{e}");
        assert_eq!((&e["message_content"], &e["is_edited"]), (&json!("안녕하세요! (수정)"), &json!(true)), "{e}");
    }
    assert_eq!(chat.delete(kim, room, m1_id).await.status, 200);
    for ws in [&mut a, &mut b, &mut c] {
        let e = ws.event(|e| is_type(e, "message_deleted"), T).await;
        assert_eq!((num(&e, "message_id"), num(&e, "room_id")), (m1_id, room), "{e}");
    }

    // The socket on the other room heard none of it; its own room still works.
    let heard = s.quiet(QUIET).await;
    let leaked = of_types(&heard, &["message", "typing", "message_read", "message_updated", "message_deleted"]);
    assert!(leaked.is_empty(), "events of another room: {leaked:?}");
    let m4 = chat.post(kim, side, "side note").await;
    assert_event_is(&s.messages(1, T).await[0], &m4);
    let (qa, qb) = join(a.quiet(QUIET), b.quiet(QUIET)).await;
    assert!(of_types(&qa, &["message"]).is_empty() && of_types(&qb, &["message"]).is_empty(), "{qa:?} {qb:?}");
    for ws in [a, b, c, s] {
        ws.close().await;
    }
}

#[actix_rt::test]
async fn ws_user_status_follows_the_first_and_the_last_connection() {
    let server = TestServer::spawn(&[]);
    let chat = Chat::new(&server);
    let (kim, lee, park) = (1u64, 2u64, 3u64);
    chat.touch(&[kim, lee, park]).await;
    let group = chat.group(kim, "status", &[lee, park]).await;
    let direct = chat.direct(kim, lee).await;
    let base = &server.base;
    let status_of = |r: &Reply, user: u64| -> Value {
        let list = r.body.as_array().unwrap_or_else(|| panic!("an array: {r:?}"));
        list.iter().find(|u| u["user_id"] == user).unwrap_or_else(|| panic!("user {user}: {r:?}")).clone()
    };

    let mut b = WsClient::connect(base, group, &jwt(lee), None).await;
    let mut c = WsClient::connect(base, group, &jwt(park), None).await;
    let e = b.event(|e| is_status(e, park, "online"), T).await;
    assert_eq!(e["user_name"], name_of(park), "{e}");
    let r = chat.online(kim, group).await;
    assert_eq!(r.status, 200, "{r:?}");
    for u in [lee, park] {
        let st = status_of(&r, u);
        assert_eq!(st["is_online"], true, "{st}");
        let seen = utc_ms(&st["last_seen"]);
        assert!((seen - now_ms()).abs() < 5000, "last_seen is now while online: {st}");
    }
    let k = status_of(&r, kim);
    assert_eq!((&k["is_online"], &k["last_seen"]), (&json!(false), &Value::Null), "kim never connected: {k}");

    // Kim's first socket (on the direct room) makes kim online in every room kim is in.
    let a1 = WsClient::connect(base, direct, &jwt(kim), None).await;
    for ws in [&mut b, &mut c] {
        let e = ws.event(|e| is_status(e, kim, "online"), T).await;
        assert_eq!(e["user_name"], name_of(kim), "{e}");
    }
    // A second socket of kim's: nothing new; closing one of the two: nothing.
    let a2 = WsClient::connect(base, group, &jwt(kim), None).await;
    let (qb, qc) = join(b.quiet(QUIET), c.quiet(QUIET)).await;
    for q in [&qb, &qc] {
        assert!(q.iter().all(|e| !(is_type(e, "user_status") && e["user_id"] == kim)), "a second socket: {q:?}");
    }
    a2.close().await;
    let (qb, qc) = join(b.quiet(QUIET), c.quiet(QUIET)).await;
    for q in [&qb, &qc] {
        assert!(q.iter().all(|e| !(is_type(e, "user_status") && e["user_id"] == kim)), "one of two closed: {q:?}");
    }
    assert_eq!(status_of(&chat.online(lee, group).await, kim)["is_online"], true, "kim still has a socket");

    // The last one closes: offline, everywhere kim is.
    let closing = now_ms();
    a1.close().await;
    for ws in [&mut b, &mut c] {
        let e = ws.event(|e| is_status(e, kim, "offline"), T).await;
        assert_eq!(e["user_name"], name_of(kim), "{e}");
    }
    let k = status_of(&chat.online(park, group).await, kim);
    assert_eq!(k["is_online"], false, "{k}");
    let seen = utc_ms(&k["last_seen"]);
    assert!(seen >= closing - 1000 && seen <= now_ms() + 1000, "last_seen is when the last socket closed: {k}");
    let (qb, qc) = join(b.quiet(QUIET), c.quiet(QUIET)).await;
    for q in [&qb, &qc] {
        let kims: Vec<&Value> = q.iter().filter(|e| is_type(e, "user_status") && e["user_id"] == kim).collect();
        assert!(kims.is_empty(), "one offline event: {kims:?}");
    }

    // Lee goes away too: park hears it.
    b.close().await;
    c.event(|e| is_status(e, lee, "offline"), T).await;
    c.close().await;
}

#[actix_rt::test]
async fn ws_twenty_senders_a_thousand_messages_one_order_for_every_listener() {
    const PER: usize = 50;
    const TOTAL: usize = 20 * PER;
    let server = TestServer::spawn(&[]);
    let chat = Chat::new(&server);
    let users: Vec<u64> = (1..=23).collect();
    chat.touch(&users).await;
    let room = chat.group(1, "crowd", &users[1..]).await;
    let base = server.base.clone();
    let mut listeners = Vec::new();
    for u in 21..=23u64 {
        listeners.push(WsClient::connect(&base, room, &jwt(u), None).await);
    }
    let mut ws_senders = Vec::new();
    for u in 11..=20u64 {
        ws_senders.push((u, WsClient::connect(&base, room, &jwt(u), None).await));
    }
    let within = Duration::from_secs(20);
    let started = Instant::now();

    // Senders 1..=10 over REST, 11..=20 over their sockets, all at once.
    let chat_ref = &chat;
    let rest = join_all((1..=10u64).map(move |u| async move {
        let mut out = Vec::with_capacity(PER);
        for i in 0..PER {
            let r = chat_ref.say(u, room, &format!("s{u}-{i}")).await;
            assert_eq!(r.status, 201, "sender {u} message {i}: {r:?}");
            out.push(r.body);
        }
        out
    }));
    let ws = join_all(ws_senders.into_iter().map(|(u, mut ws)| async move {
        for i in 0..PER {
            ws.send(json!({ "type": "message", "content": format!("s{u}-{i}"), "message_type": "text" })).await;
        }
        let got = ws.messages(TOTAL, within).await;
        (ws, got)
    }));
    let listen = join_all(listeners.into_iter().map(|mut ws| async move {
        let got = ws.messages(TOTAL, within).await;
        (ws, got)
    }));
    let (rest, ws, listen) = join3(rest, ws, listen).await;
    let elapsed = started.elapsed();

    // One order, ascending ids, for every subscriber.
    let reference = listen[0].1.clone();
    let ref_ids = ids(&reference);
    assert_ascending(&ref_ids, "listener 1");
    let ref_texts = texts(&reference);
    for (n, (_, got)) in listen.iter().chain(ws.iter()).enumerate() {
        assert_eq!(ids(got), ref_ids, "subscriber {n} saw another order (or other messages)");
        assert_eq!(texts(got), ref_texts, "subscriber {n}");
    }
    // Each message once, with its sender.
    let mut sorted = ref_texts.clone();
    sorted.sort();
    let mut expected: Vec<String> = (1..=20u64).flat_map(|u| (0..PER).map(move |i| format!("s{u}-{i}"))).collect();
    expected.sort();
    assert_eq!(sorted, expected, "every message exactly once");
    for e in &reference {
        let text = e["content"].as_str().expect("content");
        let sender: u64 = text[1..text.find('-').expect("-")].parse().expect("sender");
        assert_eq!((num(e, "sender_id"), &e["sender_name"]), (sender, &json!(name_of(sender))), "{e}");
        assert_eq!(num(e, "room_id"), room, "{e}");
    }
    // Each sender's messages in the order it sent them.
    for u in 1..=20u64 {
        let mine: Vec<String> =
            ref_texts.iter().filter(|t| t.starts_with(&format!("s{u}-"))).cloned().collect::<Vec<_>>();
        let want: Vec<String> = (0..PER).map(|i| format!("s{u}-{i}")).collect();
        assert_eq!(mine, want, "sender {u}'s messages in its own order");
    }
    // The REST answers are the events.
    for replies in &rest {
        assert_ascending(&ids(replies), "one REST sender");
        for m in replies {
            let e = reference.iter().find(|e| e["message_id"] == m["message_id"]).expect("the event of a REST send");
            assert_event_is(e, m);
        }
    }

    // Nothing more arrives anywhere; GET agrees.
    let mut sockets: Vec<WsClient> = listen.into_iter().chain(ws).map(|(ws, _)| ws).collect();
    let extra = join_all(sockets.iter_mut().map(|ws| ws.quiet(QUIET))).await;
    for (n, q) in extra.iter().enumerate() {
        assert!(of_types(q, &["message"]).is_empty(), "subscriber {n} got more: {:?}", ids(&of_types(q, &["message"])));
    }
    let r = chat.page(21, room, "size=1").await;
    assert_eq!(num(&r.body, "total_count"), TOTAL as u64, "{r:?}");
    let stored = chat.all_messages(22, room).await;
    assert_eq!(ids(&stored), ref_ids, "GET messages/ has the same messages in the same order");
    assert_eq!(texts(&stored), ref_texts);
    for (e, m) in reference.iter().zip(&stored) {
        assert_event_is(e, m);
    }
    assert!(elapsed < within, "took {elapsed:?}");
    for ws in sockets {
        ws.close().await;
    }
}

#[actix_rt::test]
async fn ws_reconnect_with_since_gets_every_later_message_once() {
    let server = TestServer::spawn(&[]);
    let chat = Chat::new(&server);
    let (writer, reader, other) = (1u64, 2u64, 3u64);
    chat.touch(&[writer, reader, other]).await;
    let room = chat.group(writer, "since", &[reader, other]).await;
    let base = server.base.clone();

    let mut ws = WsClient::connect(&base, room, &jwt(reader), None).await;
    for i in 0..20 {
        chat.post(writer, room, &format!("before {i}")).await;
    }
    let seen = ws.messages(20, T).await;
    assert_eq!(texts(&seen), (0..20).map(|i| format!("before {i}")).collect::<Vec<_>>());
    let since = num(&seen[19], "message_id");
    ws.close().await;

    let mut gap = Vec::new();
    for i in 0..30 {
        gap.push(chat.post(writer, room, &format!("gap {i}")).await);
    }
    // Another sender keeps going while the reader comes back with ?since=.
    let sent = Rc::new(Cell::new(0usize));
    let chat_ref = &chat;
    let sending = {
        let sent = sent.clone();
        async move {
            let mut out = Vec::new();
            for i in 0..40 {
                out.push(chat_ref.post(other, room, &format!("live {i}")).await);
                sent.set(i + 1);
                actix_rt::time::sleep(Duration::from_millis(5)).await;
            }
            out
        }
    };
    let coming_back = {
        let sent = sent.clone();
        let base = base.clone();
        async move {
            while sent.get() < 10 {
                actix_rt::time::sleep(Duration::from_millis(2)).await;
            }
            let mut ws = WsClient::connect(&base, room, &jwt(reader), Some(since)).await;
            let got = ws.messages(70, Duration::from_secs(15)).await;
            (ws, got)
        }
    };
    let (live, (mut ws, got)) = join(sending, coming_back).await;

    assert_ascending(&ids(&got), "after since");
    let want: Vec<u64> = ids(&gap).into_iter().chain(ids(&live)).collect();
    assert_eq!(ids(&got), want, "every message after since, once, in order, no gap");
    let extra = ws.quiet(QUIET).await;
    assert!(of_types(&extra, &["message"]).is_empty(), "duplicates: {:?}", ids(&of_types(&extra, &["message"])));
    let stored: Vec<Value> =
        chat.all_messages(writer, room).await.into_iter().filter(|m| num(m, "message_id") > since).collect();
    assert_eq!(stored.len(), 70);
    for (e, m) in got.iter().zip(&stored) {
        assert_event_is(e, m);
    }
    // Still live afterwards.
    let m = chat.post(writer, room, "after all").await;
    assert_event_is(&ws.messages(1, T).await[0], &m);
    // A since at the newest message replays nothing.
    let mut fresh = WsClient::connect(&base, room, &jwt(other), Some(num(&m, "message_id"))).await;
    let q = fresh.quiet(QUIET).await;
    assert!(of_types(&q, &["message"]).is_empty(), "nothing after the newest: {q:?}");
    ws.close().await;
    fresh.close().await;
}

#[actix_rt::test]
async fn ws_a_reader_that_stops_is_closed_1008_and_never_slows_the_room() {
    const N: usize = 3000;
    const BATCH: usize = 50;
    let server = TestServer::spawn(&[("BOXOFFICE_WS_OUTBOX", "16")]);
    let chat = Chat::new(&server);
    let (sender, reader, slow) = (1u64, 2u64, 3u64);
    chat.touch(&[sender, reader, slow]).await;
    let room = chat.group(sender, "firehose", &[reader, slow]).await;
    let base = server.base.clone();
    let mut stalled = WsClient::connect(&base, room, &jwt(slow), None).await;
    let mut normal = WsClient::connect(&base, room, &jwt(reader), None).await;

    let filler = "x".repeat(4000);
    let started = Instant::now();
    let (chat_ref, filler_ref) = (&chat, &filler);
    let sending = async move {
        let mut out = Vec::with_capacity(N);
        for batch in 0..N / BATCH {
            let replies = join_all((0..BATCH).map(move |j| async move {
                chat_ref.say(sender, room, &format!("{:05} {filler_ref}", batch * BATCH + j)).await
            }))
            .await;
            for r in replies {
                assert_eq!(r.status, 201, "a send in batch {batch}: {} {}", r.status, r.body["detail"]);
                out.push(num(&r.body, "message_id"));
            }
        }
        out
    };
    let reading = normal.messages(N, Duration::from_secs(20));
    let (mut sent, got) = join(sending, reading).await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(20), "3000 messages took {elapsed:?}: the stalled socket slowed the room");

    // The normal reader got everything, once, in order.
    sent.sort_unstable();
    assert_eq!(ids(&got), sent, "the reader got every message once, in id order");
    assert!(got.iter().all(|e| e["content"].as_str().is_some_and(|c| c.len() == 4006)), "whole contents");
    assert_eq!(normal.closed, None, "the reader is still connected");

    // The stalled socket, read at last: perhaps some events, then a 1008 close (or the end).
    let (events, code) = stalled.drain_until_close(Duration::from_secs(10)).await;
    let messages = of_types(&events, &["message"]);
    assert!(
        code == Some(1008) || code == Some(NO_CLOSE_FRAME),
        "the stalled socket is closed with 1008 (or cut): {code:?} after {} message events",
        messages.len()
    );
    assert!(messages.len() < N, "the stalled socket was cut off, so it cannot have every message");
    assert_ascending(&ids(&messages), "what the stalled socket got before the close");

    // The server is healthy; everything is stored; the stalled user can come back.
    let h = chat.api.raw("GET", "/healthz", None, &[], None).await;
    assert_eq!(h.status, 200, "{h:?}");
    let r = chat.page(reader, room, "size=1").await;
    assert_eq!(num(&r.body, "total_count"), N as u64, "{}", r.status);
    let mut back = WsClient::connect(&base, room, &jwt(slow), None).await;
    let m = chat.post(sender, room, "welcome back").await;
    assert_event_is(&back.messages(1, T).await[0], &m);
    assert_event_is(&normal.messages(1, T).await[0], &m);
    back.close().await;
    normal.close().await;
}

#[actix_rt::test]
async fn ws_since_after_kill9_gets_exactly_the_missed_messages() {
    let mut server = TestServer::spawn(&[]);
    let chat = Chat::new(&server);
    let (kim, lee) = (1u64, 2u64);
    chat.touch(&[kim, lee]).await;
    let room = chat.direct(kim, lee).await;
    let group = chat.group(kim, "before the crash", &[lee]).await;
    let mut ws = WsClient::connect(&server.base, room, &jwt(lee), None).await;
    let mut before = Vec::new();
    for i in 0..10 {
        before.push(chat.post(kim, room, &format!("before {i}")).await);
    }
    let seen = ws.messages(10, T).await;
    assert_eq!(ids(&seen), ids(&before));
    let since = num(&seen[9], "message_id");
    let group_msg = chat.post(lee, group, "in the group").await;

    server.kill9();
    let code = ws.expect_close(T).await;
    assert!(code.is_some(), "the socket ends with the server");
    server.restart();
    let chat = Chat::new(&server);

    // Rooms and messages are back.
    let mut rooms = chat.room_ids(lee).await;
    rooms.sort_unstable();
    assert_eq!(rooms, [room.min(group), room.max(group)]);
    assert_eq!(chat.all_messages(lee, room).await, before, "the direct room's messages after kill -9");
    assert_eq!(chat.all_messages(kim, group).await, [group_msg]);

    // Missed while away; the reconnect with since gets exactly those, then the live stream.
    let mut missed = Vec::new();
    for i in 0..15 {
        missed.push(chat.post(kim, room, &format!("missed {i}")).await);
    }
    assert!(num(&missed[0], "message_id") > since, "ids keep growing after a restart");
    let mut ws = WsClient::connect(&server.base, room, &jwt(lee), Some(since)).await;
    let got = ws.messages(15, T).await;
    assert_eq!(ids(&got), ids(&missed), "exactly the missed messages");
    for (e, m) in got.iter().zip(&missed) {
        assert_event_is(e, m);
    }
    let q = ws.quiet(QUIET).await;
    assert!(of_types(&q, &["message"]).is_empty(), "nothing else: {q:?}");
    let live = chat.post(kim, room, "live again").await;
    assert_event_is(&ws.messages(1, T).await[0], &live);
    ws.close().await;
}

/// A direct room's message reaches the other party's sockets wherever they are connected
/// (their `user_` group), once per socket: a socket on another room gets it once, and a
/// socket on the direct room itself still gets it once, not twice. A group room's message
/// reaches only that room's sockets.
#[actix_rt::test]
async fn direct_room_messages_reach_the_other_party_once_per_socket() {
    let server = TestServer::spawn(&[]);
    let chat = Chat::new(&server);
    let (kim, lee, park) = (1u64, 2u64, 3u64);
    chat.touch(&[kim, lee, park]).await;
    let direct = chat.direct(kim, lee).await;
    let group = chat.group(kim, "g", &[lee, park]).await;
    let elsewhere = chat.group(park, "other", &[lee]).await;
    let mut on_other = WsClient::connect(&server.base, elsewhere, &jwt(lee), None).await;
    let mut on_direct = WsClient::connect(&server.base, direct, &jwt(lee), None).await;

    let first = chat.post(kim, direct, "direct 1").await;
    chat.post(kim, group, "group 1").await;
    let second = chat.post(kim, direct, "direct 2").await;
    let ids_of = |ms: &[Value]| ms.iter().map(|m| num(m, "message_id")).collect::<Vec<_>>();
    let want = vec![num(&first, "message_id"), num(&second, "message_id")];
    for socket in [&mut on_other, &mut on_direct] {
        let got = socket.messages(2, Duration::from_secs(10)).await;
        assert_eq!(ids_of(&got), want, "{got:?}");
        assert!(got.iter().all(|m| num(m, "room_id") == direct), "{got:?}");
        let more: Vec<Value> = socket.quiet(Duration::from_millis(500)).await;
        assert!(more.iter().all(|e| e["type"] != "message"), "no copy and no group message: {more:?}");
    }
    on_other.close().await;
    on_direct.close().await;
}
