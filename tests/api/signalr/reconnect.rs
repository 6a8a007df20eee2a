//! SignalR stateful reconnect (ASP.NET Core 8's Ack and Sequence messages): a client that
//! negotiated `useStatefulReconnect=true` takes its connection over with a new socket
//! after a drop, and each side sends again what the other has not acknowledged. The
//! official client (`withStatefulReconnect()`) through a proxy that cuts its TCP
//! connection mid-stream, JSON and MessagePack; the protocol by hand; and the refusals.

use super::*;
use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};

/// A TCP proxy in front of the server that can cut every connection through it, and hold
/// new ones for a while (a network that is gone for that long); a proxy in front of two
/// servers sends the connections after a cut to the second (a balancer that picks another
/// node when the client comes back).
pub(crate) struct Proxy {
    addr: SocketAddr,
    state: Arc<Mutex<ProxyState>>,
}

struct ProxyState {
    live: Vec<tokio::task::AbortHandle>,
    /// New connections wait until then before they reach the server.
    held_until: Option<Instant>,
    accepted: usize,
    /// Where new connections go, and where they go after the next cut.
    upstream: SocketAddr,
    after_cut: Option<SocketAddr>,
    /// How many connections went to each server.
    reached: Vec<SocketAddr>,
}

fn address(server: &TestServer) -> SocketAddr {
    server.base.strip_prefix("http://").unwrap_or(&server.base).parse().expect("the server's address")
}

impl Proxy {
    pub(crate) async fn start(server: &TestServer) -> Proxy {
        Proxy::spawn(address(server), None).await
    }

    /// In front of `first` until the first cut, then of `then`.
    pub(crate) async fn between(first: &TestServer, then: &TestServer) -> Proxy {
        Proxy::spawn(address(first), Some(address(then))).await
    }

    async fn spawn(upstream: SocketAddr, after_cut: Option<SocketAddr>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().expect("address");
        let state = Arc::new(Mutex::new(ProxyState {
            live: Vec::new(),
            held_until: None,
            accepted: 0,
            upstream,
            after_cut,
            reached: Vec::new(),
        }));
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let held = {
                    let mut s = shared.lock().expect("proxy");
                    s.accepted += 1;
                    s.held_until
                };
                let state = shared.clone();
                let task = tokio::spawn(async move {
                    if let Some(until) = held {
                        tokio::time::sleep_until(until.into()).await;
                    }
                    // Where it goes is read once it is let through (a server restarted
                    // meanwhile is on another port: see `Proxy::point_to`).
                    let upstream = {
                        let mut s = state.lock().expect("proxy");
                        let upstream = s.upstream;
                        s.reached.push(upstream);
                        upstream
                    };
                    let Ok(mut server) = TcpStream::connect(upstream).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
                shared.lock().expect("proxy").live.push(task.abort_handle());
            }
        });
        Proxy { addr, state }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Cut every connection now (both ends see their socket close, no WebSocket close),
    /// and hold the next ones for `gone`.
    pub(crate) fn cut(&self, gone: Duration) {
        let mut s = self.state.lock().expect("proxy");
        for c in s.live.drain(..) {
            c.abort();
        }
        s.held_until = Some(Instant::now() + gone);
        if let Some(then) = s.after_cut.take() {
            s.upstream = then;
        }
    }

    /// Send the connections let through from now on to `server` (restarted on a new port).
    pub(crate) fn point_to(&self, server: &TestServer) {
        self.state.lock().expect("proxy").upstream = address(server);
    }

    pub(crate) fn accepted(&self) -> usize {
        self.state.lock().expect("proxy").accepted
    }

    /// How many connections went to `server`.
    pub(crate) fn reached(&self, server: &TestServer) -> usize {
        let addr = address(server);
        self.state.lock().expect("proxy").reached.iter().filter(|a| **a == addr).count()
    }
}

with_each_protocol!(
    scenario_a_stateful_connection_cut_mid_stream_loses_nothing_and_repeats_nothing,
    signalr_stateful_reconnect_cut_mid_stream_loses_nothing_and_repeats_nothing,
    signalr_stateful_reconnect_cut_mid_stream_loses_nothing_and_repeats_nothing_messagepack
);

/// The official client with `withStatefulReconnect()` (and no automatic reconnect: a
/// refused resume would end it) hears a stream of messages; the proxy cuts its TCP
/// connection mid-stream and keeps the network away for 2 s while messages go on. Every
/// message arrives once, in order, on the same connection.
async fn scenario_a_stateful_connection_cut_mid_stream_loses_nothing_and_repeats_nothing(protocol: &str) {
    let server = TestServer::spawn(&[]);
    Chat::new(&server).touch(&[BUYER, SELLER]).await;
    let room = trade_room(&server, SELLER, BUYER).await;
    let proxy = Proxy::start(&server).await;
    let mut client = NodeClient::start(stateful_plan(&proxy.url(), BUYER, protocol, room, 40_000));
    client.ready().await;
    let total = 150;
    let mut sent = Vec::new();
    let mut tick = actix_rt::time::interval(Duration::from_millis(10));
    for i in 0..total {
        tick.tick().await;
        if i == 50 {
            proxy.cut(Duration::from_secs(2));
        }
        let r = send_t(&server, SELLER, room, &format!("stream {i}")).await;
        assert_eq!(r.status, 200, "{r:?}");
        sent.push(num(&r.body["data"], "messageId"));
    }
    client.assert_heard_once_on_one_connection(&sent).await;
    assert!(proxy.accepted() >= 2, "the client came back through a second TCP connection");
}

with_each_protocol!(
    scenario_a_stateful_connection_resumes_across_a_restart_of_the_server,
    signalr_stateful_reconnect_resumes_across_a_kill_9_of_the_server,
    signalr_stateful_reconnect_resumes_across_a_drain_of_the_server_messagepack
);

/// As above, but the server itself goes away mid-stream and comes back: killed with
/// `kill -9` (JSON) or drained with SIGTERM (MessagePack), then started again on its data.
/// The client's reconnect (held by the proxy until the server is back) resumes the same
/// connection: what it missed, including what the old process sent and the client never
/// got, comes from the durable history. Every message arrives once, in order.
async fn scenario_a_stateful_connection_resumes_across_a_restart_of_the_server(protocol: &str) {
    let mut server = TestServer::spawn(&[]);
    Chat::new(&server).touch(&[BUYER, SELLER]).await;
    let room = trade_room(&server, SELLER, BUYER).await;
    let proxy = Proxy::start(&server).await;
    let mut client = NodeClient::start(stateful_plan(&proxy.url(), BUYER, protocol, room, 60_000));
    client.ready().await;
    let total = 150;
    let mut sent = Vec::new();
    let mut tick = actix_rt::time::interval(Duration::from_millis(10));
    for i in 0..total {
        tick.tick().await;
        if i == 60 {
            // The client's reconnect waits at the proxy until the server is back.
            proxy.cut(Duration::from_secs(3));
            if protocol == "json" {
                server.kill9();
            } else {
                assert!(server.stop().success());
            }
            server.restart();
            proxy.point_to(&server);
        }
        let r = send_t(&server, SELLER, room, &format!("stream {i}")).await;
        assert_eq!(r.status, 200, "{r:?}");
        sent.push(num(&r.body["data"], "messageId"));
    }
    client.assert_heard_once_on_one_connection(&sent).await;
    assert!(proxy.reached(&server) >= 1, "the client came back to the restarted server");
    let metrics = server.api().raw("GET", "/metrics", Some(&admin_jwt(999)), &[], None).await;
    let metrics = String::from_utf8(metrics.raw.to_vec()).expect("text");
    assert!(metrics.contains("boxoffice_signalr_restores_total{outcome=\"resumed\"} 1"), "{metrics}");
}

/// Negotiate with `useStatefulReconnect=true`: its connection token, and the answer says so.
async fn stateful_token(server: &TestServer, user: u64) -> String {
    let api = server.api();
    let r = api
        .call("POST", "/hubs/chat/negotiate?negotiateVersion=1&useStatefulReconnect=true", Some(&jwt(user)), &[], None)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["useStatefulReconnect"], true, "{r:?}");
    r.body["connectionToken"].as_str().expect("connectionToken").to_string()
}

/// A stateful connection by hand, joined to `room`: the JoinRoom Completion is its first
/// tracked message (sequence id 1).
async fn stateful_hub(server: &TestServer, token: &str, room: u64) -> RawHub {
    let mut hub = RawHub::open(&server.base, &format!("id={token}"), &jwt(BUYER)).await;
    hub.handshake().await;
    hub.frame(&invocation(Some("1"), "JoinRoom", json!([room]))).await;
    assert_completion_ok(&hub.expect_record("JoinRoom's Completion").await, "1");
    hub
}

fn seq(kind: u64, id: i64) -> String {
    format!("{}{RS}", json!({ "type": kind, "sequenceId": id }))
}

#[actix_rt::test]
async fn signalr_stateful_reconnect_by_hand_replays_what_was_not_acknowledged() {
    let server = TestServer::spawn(&[]);
    Chat::new(&server).touch(&[BUYER, SELLER]).await;
    let room = trade_room(&server, SELLER, BUYER).await;
    // Without the query, negotiate says nothing of it (the official client refuses an
    // answer that turns it on unasked).
    let r = server.api().call("POST", "/hubs/chat/negotiate?negotiateVersion=1", Some(&jwt(BUYER)), &[], None).await;
    assert!(r.body.get("useStatefulReconnect").is_none(), "{r:?}");
    let q = "/hubs/chat/negotiate?negotiateVersion=1&useStatefulReconnect=yes";
    let r = server.api().call("POST", q, Some(&jwt(BUYER)), &[], None).await;
    assert_eq!((r.status, r.body["statusCode"].as_u64()), (400, Some(400)), "{r:?}");

    let token = stateful_token(&server, BUYER).await;
    let mut hub = stateful_hub(&server, &token, room).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = send_t(&server, SELLER, room, &format!("before {i}")).await;
        ids.push(num(&r.body["data"], "messageId"));
    }
    // The messages, and the server's acknowledgement of the client's JoinRoom (its one
    // tracked message) within about a second.
    let (mut heard, mut acked) = (Vec::new(), false);
    while heard.len() < 3 || !acked {
        let v = hub.expect_record("the messages and an Ack").await;
        if v["type"] == 8 {
            assert_eq!(v, json!({ "type": 8, "sequenceId": 1 }));
            acked = true;
        } else {
            assert_eq!(v["target"], "ReceiveMessage", "{v}");
            heard.push(num(&v["arguments"][0], "messageId"));
        }
    }
    assert_eq!(heard, ids);
    // The client has the Completion (1) and the first message (2).
    hub.frame(&seq(8, 2)).await;
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    drop(hub);
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    for i in 0..2 {
        let r = send_t(&server, SELLER, room, &format!("while away {i}")).await;
        ids.push(num(&r.body["data"], "messageId"));
    }

    // Another user cannot take it over; its user can, with no new handshake.
    assert_eq!(RawHub::refused(&server.base, &format!("id={token}"), Some(&jwt(SELLER))).await, 403);
    let mut hub = RawHub::open(&server.base, &format!("id={token}"), &jwt(BUYER)).await;
    assert_eq!(hub.expect_record("the Sequence").await, json!({ "type": 9, "sequenceId": 3 }));
    let mut again = Vec::new();
    for _ in 0..4 {
        let v = hub.expect_record("a message sent again").await;
        assert_eq!(v["target"], "ReceiveMessage", "{v}");
        again.push(num(&v["arguments"][0], "messageId"));
    }
    assert_eq!(again, ids[1..].to_vec(), "everything from sequence id 3 on, in order, once");
    assert_eq!(hub.expect_record("an Ack of the client's").await, json!({ "type": 8, "sequenceId": 1 }));

    // The client's side: its Sequence, then its JoinRoom again (already processed: no
    // second Completion), then a new invocation.
    hub.frame(&seq(9, 1)).await;
    hub.frame(&invocation(Some("1"), "JoinRoom", json!([room]))).await;
    hub.frame(&invocation(Some("2"), "LeaveRoom", json!([room]))).await;
    assert_completion_ok(&hub.expect_record("LeaveRoom's Completion").await, "2");
    assert_eq!(hub.expect_record("the Ack").await, json!({ "type": 8, "sequenceId": 2 }));
    assert!(hub.closed.is_none());
}

/// The refusals: a Sequence id of 0, negative, or ahead of what the server received, and
/// an Ack ahead of what it sent, end the connection with a Close carrying the error.
/// By hand, across `kill -9`: what the old process sent from the last acknowledged id on
/// comes again under the same ids (the JoinRoom's Completion as the record kept it, the
/// messages from the history), then the messages posted while it was down; a
/// `SendMessage` the old process answered and the client sends again after its Sequence is
/// dropped as processed, not posted twice; another user's JWT is 403.
#[actix_rt::test]
async fn signalr_stateful_connection_resumes_after_kill_9_by_hand() {
    let mut server = TestServer::spawn(&[]);
    Chat::new(&server).touch(&[BUYER, SELLER]).await;
    let room = trade_room(&server, SELLER, BUYER).await;
    let token = stateful_token(&server, BUYER).await;
    let mut hub = stateful_hub(&server, &token, room).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = send_t(&server, SELLER, room, &format!("before {i}")).await;
        ids.push(num(&r.body["data"], "messageId"));
    }
    // The client posts (its tracked message 2: the JoinRoom was 1); the server's Ack of it
    // is lost with the process.
    hub.frame(&invocation(Some("2"), "SendMessage", json!([room, "mine"]))).await;
    let mut heard = Vec::new();
    let mut mine = None;
    while heard.len() < 4 || mine.is_none() {
        let v = hub.expect_record("the messages and the post's Completion").await;
        match v["type"].as_u64() {
            Some(1) => heard.push(num(&v["arguments"][0], "messageId")),
            Some(3) => mine = Some(num(&v["result"], "messageId")),
            _ => {}
        }
    }
    let mine = mine.expect("the post's message");
    ids.push(mine);
    assert_eq!(heard, ids);
    // Nothing acknowledged: the server's next Ack would come within a second.
    server.kill9();
    server.restart();
    for i in 0..2 {
        let r = send_t(&server, SELLER, room, &format!("while down {i}")).await;
        ids.push(num(&r.body["data"], "messageId"));
    }
    assert_eq!(RawHub::refused(&server.base, &format!("id={token}"), Some(&jwt(SELLER))).await, 403);
    let mut hub = RawHub::open(&server.base, &format!("id={token}"), &jwt(BUYER)).await;
    assert_eq!(hub.expect_record("the Sequence").await, json!({ "type": 9, "sequenceId": 1 }));
    assert_completion_ok(&hub.expect_record("the JoinRoom's Completion, kept").await, "1");
    let mut again = Vec::new();
    let mut completions = 0;
    while again.len() < ids.len() {
        let v = hub.expect_record("a message sent again").await;
        match v["type"].as_u64() {
            Some(1) => again.push(num(&v["arguments"][0], "messageId")),
            Some(3) => {
                completions += 1;
                assert_eq!(num(&v["result"], "messageId"), mine, "{v}");
            }
            _ => panic!("unexpected {v}"),
        }
    }
    assert_eq!(again, ids, "every message from the first id on, in order, once");
    assert_eq!(completions, 1, "the post's Completion, kept");
    // The record says the post (the client's message 2) was processed: its Completion
    // had waited for the record.
    assert_eq!(hub.expect_record("the Ack").await, json!({ "type": 8, "sequenceId": 2 }));
    // The client sends its post again after its Sequence: dropped as processed, not posted
    // twice (its Completion is the one above).
    hub.frame(&seq(9, 2)).await;
    hub.frame(&invocation(Some("2"), "SendMessage", json!([room, "mine"]))).await;
    // The invocations are handled in order: once a later one is answered, the post was
    // either dropped or sent to the room ahead of it.
    hub.frame(&invocation(Some("3"), "JoinRoom", json!([room]))).await;
    let v = hub.expect_record("the later JoinRoom's Completion").await;
    assert_completion_ok(&v, "3");
    let r = server.api().call("GET", &format!("/api/chat/rooms/{room}/messages"), Some(&jwt(BUYER)), &[], None).await;
    let text = r.body.to_string();
    assert_eq!(text.matches("\"mine\"").count(), 1, "posted once: {text}");
    // The same connection goes on: a new message arrives live, and nothing else came.
    let r = send_t(&server, SELLER, room, "live").await;
    let live = num(&r.body["data"], "messageId");
    loop {
        let v = hub.expect_record("the live message").await;
        assert_ne!(v["type"], 3, "no second Completion: {v}");
        if v["type"] == 1 {
            assert_eq!(num(&v["arguments"][0], "messageId"), live);
            break;
        }
    }
    assert!(hub.closed.is_none());
    ids.push(live);

    // A resumed connection outlives the next restart too: still nothing acknowledged, so
    // everything from 1 again, the second Completion of the post included.
    drop(hub);
    server.kill9();
    server.restart();
    let mut hub = RawHub::open(&server.base, &format!("id={token}"), &jwt(BUYER)).await;
    assert_eq!(hub.expect_record("the Sequence").await, json!({ "type": 9, "sequenceId": 1 }));
    assert_completion_ok(&hub.expect_record("the JoinRoom's Completion, kept").await, "1");
    let (mut again, mut completions) = (Vec::new(), Vec::new());
    while again.len() < ids.len() || completions.len() < 2 {
        let v = hub.expect_record("a message sent again").await;
        match v["type"].as_u64() {
            Some(1) => again.push(num(&v["arguments"][0], "messageId")),
            Some(3) if v["invocationId"] == "2" => {
                assert_eq!(num(&v["result"], "messageId"), mine, "{v}");
                completions.push(2);
            }
            Some(3) => {
                assert_completion_ok(&v, "3");
                completions.push(3);
            }
            _ => panic!("unexpected {v}"),
        }
    }
    assert_eq!(again, ids, "every message once, in order, after the second restart");
    assert_eq!(completions, [2, 3], "the post's Completion, then the later JoinRoom's, each once");
    assert_eq!(hub.expect_record("the Ack").await, json!({ "type": 8, "sequenceId": 3 }));
}

/// A post the old process stored but did not answer for sure (sent without an invocation
/// id, so no Completion waited for the record) comes again after the restart: it is handled
/// again, and the id the server made from the connection and its sequence id finds the
/// stored message instead of posting it twice.
#[actix_rt::test]
async fn signalr_a_post_sent_again_after_a_restart_is_stored_once() {
    let mut server = TestServer::spawn(&[]);
    Chat::new(&server).touch(&[BUYER, SELLER]).await;
    let room = trade_room(&server, SELLER, BUYER).await;
    let token = stateful_token(&server, BUYER).await;
    let mut hub = stateful_hub(&server, &token, room).await;
    let post = invocation(None, "SendMessage", json!([room, "fire and forget"]));
    hub.frame(&post).await;
    let v = hub.expect_record("the post, through the room").await;
    assert_eq!(v["arguments"][0]["message"], "fire and forget", "{v}");
    let id = num(&v["arguments"][0], "messageId");
    server.kill9();
    server.restart();
    let mut hub = RawHub::open(&server.base, &format!("id={token}"), &jwt(BUYER)).await;
    assert_eq!(hub.expect_record("the Sequence").await, json!({ "type": 9, "sequenceId": 1 }));
    assert_completion_ok(&hub.expect_record("the JoinRoom's Completion").await, "1");
    let v = hub.expect_record("the post again").await;
    assert_eq!(num(&v["arguments"][0], "messageId"), id, "{v}");
    assert_eq!(hub.expect_record("the Ack").await, json!({ "type": 8, "sequenceId": 1 }));
    hub.frame(&seq(9, 2)).await;
    hub.frame(&post).await;
    // A later invocation's answer: the post before it reached the room first.
    hub.frame(&invocation(Some("3"), "JoinRoom", json!([room]))).await;
    let mut completed = false;
    while !completed {
        let v = hub.expect_record("the later JoinRoom's Completion").await;
        assert_ne!(v["type"], 1, "the post is not sent again as new: {v}");
        completed = v["type"] == 3;
    }
    let r = server.api().call("GET", &format!("/api/chat/rooms/{room}/messages"), Some(&jwt(BUYER)), &[], None).await;
    let text = r.body.to_string();
    assert_eq!(text.matches("fire and forget").count(), 1, "stored once: {text}");
}

#[actix_rt::test]
async fn signalr_stateful_reconnect_bad_sequence_and_ack_ids_close_with_an_error() {
    let server = TestServer::spawn(&[]);
    Chat::new(&server).touch(&[BUYER, SELLER]).await;
    let room = trade_room(&server, SELLER, BUYER).await;
    for (bad, needle) in [
        (seq(9, 0), "Sequence id 0"),
        (seq(9, -3), "Sequence id -3"),
        (seq(9, 5), "ahead"),
        (format!("{{\"type\":9,\"sequenceId\":18446744073709551615}}{RS}"), "ahead"),
        (format!("{{\"type\":9,\"sequenceId\":18446744073709551616000}}{RS}"), "sequenceId"),
        (seq(8, 99), "ahead"),
        (seq(8, -1), "negative"),
        (format!("{{\"type\":9,\"sequenceId\":\"1\"}}{RS}"), "sequenceId"),
    ] {
        let token = stateful_token(&server, BUYER).await;
        let mut hub = stateful_hub(&server, &token, room).await;
        hub.frame(&bad).await;
        let got = hub.until_closed(T).await.unwrap_or_else(|| panic!("{bad:?} left the connection open"));
        let close = got.iter().find(|v| v["type"] == 7).unwrap_or_else(|| panic!("no Close for {bad:?}: {got:?}"));
        let e = close["error"].as_str().unwrap_or_default();
        assert!(e.contains(needle), "{bad:?}: {close}");
        // And the connection is gone: its token resumes nothing.
        actix_rt::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(RawHub::refused(&server.base, &format!("id={token}"), Some(&jwt(BUYER))).await, 404);
    }
    // Before the handshake they are not a handshake.
    let token = stateful_token(&server, BUYER).await;
    let mut hub = RawHub::open(&server.base, &format!("id={token}"), &jwt(BUYER)).await;
    hub.frame(&seq(9, 1)).await;
    let answer = hub.raw_record(T).await.expect("the handshake's answer");
    assert!(answer.contains("\"error\""), "{answer}");
    assert!(hub.until_closed(T).await.is_some());
}

/// A connection waits for its client for the window, then is gone (404); one whose client
/// does not acknowledge past the buffer's bound is closed with an error.
#[actix_rt::test]
async fn signalr_stateful_reconnect_window_and_buffer_bound() {
    let server = TestServer::spawn(&[
        ("BOXOFFICE_SIGNALR_RECONNECT_WINDOW", "1s"),
        ("BOXOFFICE_SIGNALR_RECONNECT_BUFFER_BYTES", "2000"),
    ]);
    Chat::new(&server).touch(&[BUYER, SELLER]).await;
    let room = trade_room(&server, SELLER, BUYER).await;

    let token = stateful_token(&server, BUYER).await;
    let hub = stateful_hub(&server, &token, room).await;
    drop(hub);
    actix_rt::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(RawHub::refused(&server.base, &format!("id={token}"), Some(&jwt(BUYER))).await, 404, "after the window");

    let token = stateful_token(&server, BUYER).await;
    let mut hub = stateful_hub(&server, &token, room).await;
    let text = "x".repeat(300);
    let mut closed = None;
    for _ in 0..20 {
        send_t(&server, SELLER, room, &text).await;
        if let Some(got) = hub.until_closed(Duration::from_millis(100)).await {
            closed = Some(got);
            break;
        }
    }
    let got = closed.expect("a client that never acknowledges is closed past the buffer's bound");
    let close = got.iter().find(|v| v["type"] == 7).unwrap_or_else(|| panic!("no Close: {got:?}"));
    assert!(close["error"].as_str().unwrap_or_default().contains("buffer is full"), "{close}");
}
