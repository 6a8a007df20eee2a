//! Each socket's outgoing queue is bounded in bytes (`BOXOFFICE_WS_OUTBOX_BYTES`): sockets
//! that stop reading while a burst of large messages goes to their room are closed with
//! 1008, however fast the burst, and the server's memory stays bounded. The event bound is
//! set out of reach here, so only the byte bound can close them.

use crate::chat::*;
use crate::helpers::*;
use crate::ws_violations::{open, read_frame, read_until_close};
use futures_util::future::{join, join_all};
use std::time::Duration;

#[actix_rt::test]
async fn a_burst_to_sockets_that_stopped_reading_closes_them_1008_and_memory_stays_bounded() {
    // docs/performance.md's measurement runs it bigger (BURST_STALLED=20 BURST_N=4000), and with no
    // stalled socket for the baseline.
    let count = |var: &str, default: usize| std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (stalled_sockets, n) = (count("BURST_STALLED", 10), count("BURST_N", 2000));
    const BATCH: usize = 50;
    // A stalled socket is read only after the first part of the burst: its close waits that
    // long (a busy machine, a slow disk make the burst take longer than the default 10 s).
    let server = TestServer::spawn(&[
        ("BOXOFFICE_WS_OUTBOX", "1000000"),
        ("BOXOFFICE_WS_OUTBOX_BYTES", "1048576"),
        ("BOXOFFICE_WS_CLOSE_GRACE", "120s"),
    ]);
    let chat = Chat::new(&server);
    let (me, other) = (1u64, 2u64);
    chat.touch(&[me, other]).await;
    let room = chat.group(me, "burst", &[other]).await;
    // Sockets of `me` that never read, and a reader.
    let path = format!("/chat/ws/{room}?token={}", jwt(me));
    let mut stalled: Vec<_> = (0..stalled_sockets).map(|_| open(&server, &path)).collect();
    let mut reader = WsClient::connect(&server.base, room, &jwt(other), None).await;
    let before = server.rss();

    // ~5 KB messages, 50 at a time: 10 MB for each socket, in two parts. The first (7 MB)
    // is past what a stalled socket's kernel buffers and its 1 MiB bound hold together
    // (about 5 MB here), so by its end every stalled socket has been evicted; they are read
    // then, within the time a closing socket waits for its close frame to be taken.
    let filler = "x".repeat(4994);
    let first = (n * 7 / 10 / BATCH) * BATCH;
    let send = |from: usize, to: usize| {
        let (chat_ref, filler_ref) = (&chat, &filler);
        async move {
            for batch in from / BATCH..to / BATCH {
                let replies = join_all((0..BATCH).map(move |j| async move {
                    chat_ref.say(me, room, &format!("{:05} {filler_ref}", batch * BATCH + j)).await
                }))
                .await;
                for r in replies {
                    assert_eq!(r.status, 201, "a send in batch {batch}: {} {}", r.status, r.body["detail"]);
                }
            }
        }
    };
    let (_, mut got) = join(send(0, first), reader.messages(first, Duration::from_secs(120))).await;
    let grown_evicting = server.rss().saturating_sub(before);

    // Read at last: what the kernel buffered, then 1008.
    for (i, s) in stalled.iter_mut().enumerate() {
        let (frames, code) = read_until_close(s);
        assert_eq!(code, Some(1008), "stalled socket {i}: closed with 1008 after {frames} frames");
        assert!(frames < first, "stalled socket {i} was cut off, so it cannot have every message");
    }

    let (_, rest) = join(send(first, n), reader.messages(n - first, Duration::from_secs(120))).await;
    got.extend(rest);
    let grown = server.rss().saturating_sub(before).max(grown_evicting);
    eprintln!("server RSS grew {} KiB over a burst of {n} x 5 KB to {stalled_sockets} stalled sockets", grown >> 10);

    // The reader got everything, in order; it was never closed.
    assert_eq!(got.len(), n, "the reader got every message");
    assert_ascending(&ids(&got), "the reader's messages");
    assert_eq!(reader.closed, None, "the reader is still connected");
    // Bounded, a stalled socket holds 1 MiB and the writer's buffer; the rest of the growth
    // is the store and the room (the same burst with no stalled socket grows ~30 MiB).
    // Unbounded, each would hold what the kernel's socket buffers did not take of its 10 MB.
    assert!(grown < 64 << 20, "the server grew {} MiB for {stalled_sockets} stalled sockets", grown >> 20);
    let h = chat.api.raw("GET", "/healthz", None, &[], None).await;
    assert_eq!(h.status, 200, "{h:?}");
    reader.close().await;
}

/// A `since=` catch-up larger than the byte bound is delivered whole (it is bounded by the
/// room, not by the outbox), then the live stream, in order.
#[actix_rt::test]
async fn a_catch_up_larger_than_the_byte_bound_arrives_whole() {
    const N: usize = 2000;
    let server = TestServer::spawn(&[("BOXOFFICE_WS_OUTBOX_BYTES", "65536")]);
    let chat = Chat::new(&server);
    let (me, other) = (1u64, 2u64);
    chat.touch(&[me, other]).await;
    let room = chat.group(me, "catch-up", &[other]).await;
    let first = chat.post(me, room, "before").await;
    let since = num(&first, "message_id");
    let filler = "y".repeat(4000);
    for batch in 0..N / 50 {
        let (chat_ref, filler_ref) = (&chat, &filler);
        let replies =
            join_all((0..50).map(move |j| async move {
                chat_ref.say(me, room, &format!("{:04} {filler_ref}", batch * 50 + j)).await
            }))
            .await;
        assert!(replies.iter().all(|r| r.status == 201), "a send in batch {batch}");
    }
    // ~8 MB to catch up (more than the kernel's socket buffers take) with a 64 KiB outbox.
    let mut ws = WsClient::connect(&server.base, room, &jwt(other), Some(since)).await;
    let live = chat.post(me, room, "live").await;
    let got = ws.messages(N + 1, Duration::from_secs(30)).await;
    assert_eq!(ws.closed, None, "not closed");
    assert_ascending(&ids(&got), "the catch-up, then the live message");
    assert_eq!(got.len(), N + 1);
    assert_eq!(got[N]["message_id"], live["message_id"], "the live message comes last");
}

/// A reader that stops reading, then reads with pauses while posts keep coming, gets every
/// message once, in order. Its socket fills while it does not read, so events reach it
/// every way there is: the room's thread writing to the idle socket itself, a write the
/// socket did not take whole that the session finishes, and the session's mailbox while it
/// catches up (the room's thread writing again as soon as nothing waits). None may
/// overtake another.
#[actix_rt::test]
async fn a_reader_that_pauses_while_posts_keep_coming_gets_each_message_once_in_order() {
    // 4 KB messages: the first part is more than the kernel's buffers for one socket hold
    // (the server's send buffer grows up to tcp_wmem's maximum; 4 MiB by default).
    const BATCH: usize = 50;
    let wmem_max: usize = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|v| v.split_whitespace().nth(2).and_then(|m| m.parse().ok()))
        .unwrap_or(4 << 20);
    let first = ((wmem_max + (512 << 10)) / 4000).div_ceil(BATCH) * BATCH;
    let n = first + 200;
    let server = TestServer::spawn(&[("BOXOFFICE_WS_OUTBOX", "1000000"), ("BOXOFFICE_WS_OUTBOX_BYTES", "67108864")]);
    let chat = Chat::new(&server);
    let (me, other) = (1u64, 2u64);
    chat.touch(&[me, other]).await;
    let room = chat.group(me, "pauses", &[other]).await;
    let mut socket = open(&server, &format!("/chat/ws/{room}?token={}", jwt(other)));
    socket2::SockRef::from(&socket).set_recv_buffer_size(64 << 10).expect("SO_RCVBUF");
    socket.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    // Blocking reads on a thread of their own, once told to: a pause every 40 messages.
    let go = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let go = go.clone();
        std::thread::spawn(move || {
            while !go.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(10));
            }
            let mut ids = Vec::new();
            while ids.len() < n {
                let Some((opcode, payload)) = read_frame(&mut socket) else { break };
                if opcode != 1 {
                    continue;
                }
                let event: serde_json::Value = serde_json::from_slice(&payload).expect("JSON");
                if event["type"] == "message" {
                    ids.push(event["message_id"].as_u64().expect("id"));
                    if ids.len() % 40 == 0 {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
            ids
        })
    };
    let filler = "p".repeat(4000);
    for batch in 0..n / BATCH {
        if batch * BATCH == first {
            go.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let (chat_ref, filler_ref) = (&chat, &filler);
        let replies = join_all((0..BATCH).map(move |j| async move {
            chat_ref.say(me, room, &format!("{:04} {filler_ref}", batch * BATCH + j)).await
        }))
        .await;
        assert!(replies.iter().all(|r| r.status == 201), "a send in batch {batch}");
    }
    let got = actix_rt::task::spawn_blocking(move || reader.join().expect("reader")).await.expect("join");
    assert_eq!(got.len(), n, "every message");
    assert_ascending(&got, "in the room's order");
    let stored: Vec<u64> = ids(&chat.all_messages(me, room).await);
    assert_eq!(got, stored, "each stored message once");
    let metrics = Api::new(&server.base).raw("GET", "/metrics", Some(&admin_jwt(999)), &[], None).await;
    let stalls = String::from_utf8_lossy(&metrics.raw)
        .lines()
        .find_map(|l| l.strip_prefix("boxoffice_ws_direct_stalls_total "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert!(stalls.is_some_and(|s| s > 0.0), "a direct write stalled: {stalls:?}");
}
