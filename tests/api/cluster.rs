//! Issue 15, more than one machine: the one binary as a core and as two edges, over a
//! `nats-server` of each test's own, driven like clients: REST on the core, plain contract
//! C WebSockets and SignalR (the JSON hub protocol, spoken by hand) on either edge and on
//! the core. What a user sees must not depend on the node they reached: every message once
//! and in one order, `user_` groups and presence across edges. Then the faults: an edge
//! killed with kill -9 mid-stream, NATS stopped and started again, the core restarted;
//! clients recover as real ones do, by reconnecting with `since=`.
//!
//! `nats-server` is `$NATS_SERVER` if set, else `/usr/sbin/nats-server` (Debian's
//! package), else the one on `PATH`. When a test fails, the tail of each node's log is
//! printed.

use crate::chat::*;
use crate::helpers::*;
use crate::signalr::reconnect::Proxy;
use crate::signalr::{assert_completion_ok, message_ids, send_t, stateful_plan, trade_room, NodeClient, RawHub};
use futures_util::future::{join, join3, join_all};
use serde_json::{json, Value};
use std::cell::Cell;
use std::collections::VecDeque;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How long to wait for anything that should come.
const T: Duration = Duration::from_secs(10);
/// How long to listen for something that must not come.
const QUIET: Duration = Duration::from_millis(800);
/// How long a fresh edge may take to report healthy.
const HEALTHY_WITHIN: Duration = Duration::from_secs(15);
/// How long an edge may take to recover by itself (NATS back, the core restarted).
const RECOVER_WITHIN: Duration = Duration::from_secs(20);
/// How often a [`Follower`] may be sent away with 1012 in one test before it is a failure.
const MAX_RECONNECTS: usize = 3;
/// The buyer and the seller of seed 001's scenarios.
const BUYER: u64 = 15;
const SELLER: u64 = 20;
/// SignalR's record separator.
const RS: char = '\u{1e}';

// ---------------------------------------------------------------------------------------
// nats-server, nodes, health

/// A `nats-server` of one test's own on a free loopback port; killed when dropped.
struct Nats {
    port: u16,
    /// None while stopped.
    child: Option<Child>,
}

fn nats_server_path() -> String {
    if let Ok(p) = std::env::var("NATS_SERVER") {
        return p;
    }
    let debian = "/usr/sbin/nats-server";
    if std::path::Path::new(debian).exists() {
        debian.to_string()
    } else {
        "nats-server".to_string()
    }
}

/// A loopback port that nothing listened on a moment ago.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

impl Nats {
    fn start() -> Nats {
        let mut nats = Nats { port: free_port(), child: None };
        nats.spawn();
        nats
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// A subject prefix of this test's own (the server is already its own; this keeps
    /// the prefix setting exercised).
    fn prefix(&self) -> String {
        format!("boxtest{}", self.port)
    }

    /// kill -9 and wait: every connection drops at once, without a goodbye.
    fn stop(&mut self) {
        let mut child = self.child.take().expect("a running nats-server");
        child.kill().expect("kill -9 nats-server");
        child.wait().expect("wait for nats-server");
    }

    /// Start again on the same port.
    fn start_again(&mut self) {
        assert!(self.child.is_none(), "stop nats-server first");
        self.spawn();
    }

    /// Start the process and wait until its port takes TCP connections.
    fn spawn(&mut self) {
        let port = self.port.to_string();
        let mut child = Command::new(nats_server_path())
            .args(["-a", "127.0.0.1", "-p", &port])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start nats-server (Debian's `nats-server`, or set NATS_SERVER): {e}"));
        let deadline = Instant::now() + T;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!("nats-server exited as it started ({status}): is port {port} taken?");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("nats-server did not listen on port {port} within {T:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A node on this NATS: an edge with `Some("edge")`, a core with None (the default role).
fn spawn_node(role: Option<&str>, nats: &Nats) -> TestServer {
    spawn_node_with(role, nats, &[])
}

/// [`spawn_node`] with more settings.
fn spawn_node_with(role: Option<&str>, nats: &Nats, more: &[(&str, &str)]) -> TestServer {
    let (url, prefix) = (nats.url(), nats.prefix());
    let mut env = vec![("BOXOFFICE_NATS_URL", url.as_str()), ("BOXOFFICE_NATS_PREFIX", prefix.as_str())];
    if let Some(role) = role {
        env.push(("BOXOFFICE_ROLE", role));
    }
    env.extend_from_slice(more);
    TestServer::spawn(&env)
}

/// One core and two edges on one nats-server.
struct Cluster {
    nats: Nats,
    core: TestServer,
    a: TestServer,
    b: TestServer,
}

impl Cluster {
    /// Start NATS, the core and both edges, and wait until both edges are healthy.
    async fn start() -> Cluster {
        Cluster::start_with(&[]).await
    }

    /// [`Cluster::start`], with more settings for both edges.
    async fn start_with(edges: &[(&str, &str)]) -> Cluster {
        let nats = Nats::start();
        let core = spawn_node(None, &nats);
        let a = spawn_node_with(Some("edge"), &nats, edges);
        let b = spawn_node_with(Some("edge"), &nats, edges);
        let cluster = Cluster { nats, core, a, b };
        cluster.wait_edges(200, HEALTHY_WITHIN, "a new cluster").await;
        cluster
    }

    /// Wait until both edges' `/healthz` answer `status`.
    async fn wait_edges(&self, status: u16, within: Duration, what: &str) {
        join(
            wait_health(&self.a.base, status, within, &format!("edge A, {what}")),
            wait_health(&self.b.base, status, within, &format!("edge B, {what}")),
        )
        .await;
    }

    /// Contract C's REST client, on the core.
    fn chat(&self) -> Chat {
        Chat::new(&self.core)
    }
}

impl Drop for Cluster {
    /// A failed test prints what each node logged last.
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (name, node) in [("core", &self.core), ("edge A", &self.a), ("edge B", &self.b)] {
                let log = node.log();
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                eprintln!("---- the last lines of the {name}'s log ----\n{tail}");
            }
        }
    }
}

/// The status of `GET /healthz` on a node.
async fn healthz(base: &str) -> u16 {
    Api::new(base).raw("GET", "/healthz", None, &[], None).await.status
}

/// Poll `/healthz` until it answers `want`; panics after `within`.
async fn wait_health(base: &str, want: u16, within: Duration, what: &str) {
    let api = Api::new(base);
    let deadline = Instant::now() + within;
    loop {
        let r = api.raw("GET", "/healthz", None, &[], None).await;
        if r.status == want {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: /healthz still answers {r:?}, not {want}, after {within:?}");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Clients

/// A contract C `message` frame.
fn text_frame(text: &str) -> Value {
    json!({ "type": "message", "content": text, "message_type": "text" })
}

/// Nothing but non-message events (user statuses, typing) came: no message twice.
fn assert_no_messages(events: &[Value], who: &str) {
    let extra: Vec<&Value> = events.iter().filter(|e| is_type(e, "message")).collect();
    assert!(extra.is_empty(), "{who} got more messages than were sent: {extra:?}");
}

/// A plain contract C subscriber that recovers as a real client does: when its node closes
/// it with 1012 (service restart), it waits until the node is healthy and reconnects to it
/// with `since=` the last message id it got, and sends again, with the same
/// `client_msg_id`, each post it has not seen come back. Any other close is a failure.
struct Follower {
    base: String,
    room: u64,
    user: u64,
    /// None between a 1012 and the reconnect.
    ws: Option<WsClient>,
    /// The id of the last message it got: the `since` of its next connection.
    last: Option<u64>,
    /// How many times it came back after a 1012.
    reconnects: usize,
    /// Posts sent and not yet seen as messages (each with its `client_msg_id`).
    unseen: Vec<Value>,
    /// The contents of posts sent again: the server answers a repeat with the stored
    /// message, so the sender may see that message twice (once by `since=`, once as the
    /// answer). Any other message seen twice is a failure.
    resent: Vec<String>,
}

impl Follower {
    /// Connect (with `since`, if given, as its last message id).
    async fn connect(base: &str, room: u64, user: u64, since: Option<u64>) -> Follower {
        let ws = WsClient::connect(base, room, &jwt(user), since).await;
        Follower {
            base: base.to_string(),
            room,
            user,
            ws: Some(ws),
            last: since,
            reconnects: 0,
            unseen: Vec::new(),
            resent: Vec::new(),
        }
    }

    /// The next `n` message events, across reconnects; panics if they don't come in time.
    async fn messages(&mut self, n: usize, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(ws) = self.ws.as_mut() else {
                self.come_back(left).await;
                continue;
            };
            match ws.next_event(left).await {
                Some(e) if is_type(&e, "message") => {
                    if self.answer_to_a_repeat(&e) {
                        continue;
                    }
                    self.unseen.retain(|f| f["content"] != e["content"]);
                    self.last = Some(num(&e, "message_id"));
                    got.push(e);
                }
                Some(_) => {}
                None => match ws.closed {
                    Some(1012) => self.ws = None,
                    closed => panic!(
                        "user {}'s socket on {}: {} of {n} messages within {within:?} (closed: {closed:?}, \
                         reconnects: {}); the last ids: {:?}",
                        self.user,
                        self.base,
                        got.len(),
                        self.reconnects,
                        &ids(&got)[got.len().saturating_sub(5)..]
                    ),
                },
            }
        }
        got
    }

    /// After a 1012: wait for the node to be healthy, then reconnect with `since`.
    async fn come_back(&mut self, within: Duration) {
        assert!(self.reconnects < MAX_RECONNECTS, "user {} was sent away with 1012 too often", self.user);
        let since = self.last.expect("a follower comes back after it has had a message (its since)");
        wait_health(&self.base, 200, within, "a node that closed a socket with 1012").await;
        self.ws = Some(WsClient::connect(&self.base, self.room, &jwt(self.user), Some(since)).await);
        self.reconnects += 1;
        // The close may have come before a post reached the node: send it again; its id
        // makes sure it is stored once.
        for frame in self.unseen.clone() {
            self.resent.push(frame["content"].as_str().expect("a text post").to_string());
            self.ws.as_mut().expect("connected").send(frame).await;
        }
    }

    /// A message already seen, sent again as the answer to a post this follower repeated.
    fn answer_to_a_repeat(&self, e: &Value) -> bool {
        let seen = self.last.is_some_and(|last| num(e, "message_id") <= last);
        seen && e["content"].as_str().is_some_and(|c| self.resent.iter().any(|r| r == c))
    }

    /// Send a frame on the current socket.
    /// Post `v` with a `client_msg_id`, so that it can be sent again after a 1012.
    async fn send(&mut self, mut v: Value) {
        let id = format!("follower-{}-{}", self.user, self.unseen.len() + self.resent.len());
        v["client_msg_id"] = json!(id);
        self.unseen.push(v.clone());
        self.ws.as_mut().expect("a connected follower").send(v).await;
    }

    /// Every event within `d` (none while disconnected), but the answers to its repeats.
    async fn quiet(&mut self, d: Duration) -> Vec<Value> {
        let events = match self.ws.as_mut() {
            Some(ws) => ws.quiet(d).await,
            None => Vec::new(),
        };
        events.into_iter().filter(|e| !(is_type(e, "message") && self.answer_to_a_repeat(e))).collect()
    }

    async fn close(self) {
        if let Some(ws) = self.ws {
            ws.close().await;
        }
    }
}

/// A SignalR connection to `/hubs/chat` speaking the JSON hub protocol by hand: the
/// transport is `signalr.rs`'s [`RawHub`]; this adds Completions awaited among events.
struct Hub {
    raw: RawHub,
    /// Records read while waiting for a Completion, handed out first.
    pending: VecDeque<Value>,
}

impl Hub {
    /// Connect as `user` (with the `connectionToken` of a negotiation, if any) and do the
    /// JSON handshake.
    async fn connect(base: &str, user: u64, negotiated: Option<&str>) -> Hub {
        Hub::connect_sending(base, user, negotiated, "").await
    }

    /// [`connect`](Hub::connect), with `after` in the handshake's frame.
    async fn connect_sending(base: &str, user: u64, negotiated: Option<&str>, after: &str) -> Hub {
        let query = negotiated.map(|id| format!("id={}", urlencode(id))).unwrap_or_default();
        let mut raw = RawHub::open(base, &query, &jwt(user)).await;
        raw.frame(&format!("{{\"protocol\":\"json\",\"version\":1}}{RS}{after}")).await;
        assert_eq!(raw.raw_record(T).await.as_deref(), Some("{}"), "the handshake answer of the hub on {base}");
        Hub { raw, pending: VecDeque::new() }
    }

    /// The next record that is not a Ping, as JSON (those read early first).
    async fn record(&mut self, timeout: Duration) -> Option<Value> {
        match self.pending.pop_front() {
            Some(v) => Some(v),
            None => self.raw.record(timeout).await,
        }
    }

    /// Invoke `method` and wait for its Completion; records that come first are kept.
    async fn invoke(&mut self, id: &str, method: &str, args: Value) -> Value {
        let v = json!({ "type": 1, "invocationId": id, "target": method, "arguments": args });
        self.raw.frame(&format!("{v}{RS}")).await;
        let deadline = Instant::now() + T;
        let mut early = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let raw = self.raw.raw_record(left).await;
            let Some(raw) = raw else {
                panic!("no Completion of {method} {id} within {T:?}; closed: {:?}", self.raw.closed)
            };
            let v: Value = serde_json::from_str(&raw).unwrap_or_else(|e| panic!("not JSON ({e}): {raw:?}"));
            if v["type"] == 3 && v["invocationId"] == id {
                self.pending.extend(early);
                return v;
            }
            if v["type"] != 6 {
                early.push(v);
            }
        }
    }

    /// The payloads of the next `n` `ReceiveMessage` invocations (other records skipped).
    async fn receive_messages(&mut self, n: usize, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.record(left).await {
                Some(v) if v["target"] == "ReceiveMessage" => {
                    assert!(v.get("invocationId").is_none(), "an event has no invocationId: {v}");
                    got.push(v["arguments"][0].clone());
                }
                Some(_) => {}
                None => panic!(
                    "{} of {n} ReceiveMessage within {within:?} (closed: {:?}); the last: {:?}",
                    got.len(),
                    self.raw.closed,
                    &got[got.len().saturating_sub(3)..]
                ),
            }
        }
        got
    }

    /// Every record (Pings left out) within `d`.
    async fn quiet(&mut self, d: Duration) -> Vec<Value> {
        let deadline = Instant::now() + d;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.record(left).await {
                Some(v) => got.push(v),
                None => return got,
            }
        }
    }
}

fn assert_completion_error(v: &Value, id: &str) {
    assert_eq!((&v["type"], &v["invocationId"]), (&json!(3), &json!(id)), "a Completion: {v}");
    assert!(v.get("result").is_none(), "an error Completion has no result: {v}");
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "a Completion with an error: {v}");
}

// ---------------------------------------------------------------------------------------
// The tests

/// An edge is not healthy until it hears from a core; it serves the sockets, health and
/// metrics, refuses handshakes as the core does, and answers 404 to anything else.
#[actix_rt::test]
async fn cluster_an_edge_serves_sockets_health_and_metrics_and_nothing_else() {
    let nats = Nats::start();
    let a = spawn_node(Some("edge"), &nats);
    let without_core = healthz(&a.base).await;
    let core = spawn_node(None, &nats);
    let b = spawn_node(Some("edge"), &nats);
    let cl = Cluster { nats, core, a, b };
    assert_eq!(without_core, 503, "an edge that has not heard from a core is not healthy");
    cl.wait_edges(200, HEALTHY_WITHIN, "once the core runs").await;

    let chat = cl.chat();
    let (kim, lee, outsider) = (1u64, 2u64, 3u64);
    chat.touch(&[kim, lee, outsider]).await;
    let room = chat.group(kim, "edge door", &[lee]).await;
    let edge = Api::new(&cl.a.base);
    for (method, path) in [
        ("GET", "/chat/rooms/".to_string()),
        ("POST", room_path(room, "messages/")),
        ("POST", "/api/chat/messages".to_string()),
        ("GET", "/concerts/1/schedules/1/seats".to_string()),
    ] {
        let body = (method == "POST").then(|| json!({ "message_content": "x", "message_type": "text" }));
        let r = edge.call(method, &path, Some(&jwt(kim)), &[], body).await;
        assert_eq!(r.status, 404, "{method} {path} on an edge: {r:?}");
    }
    assert_eq!(chat.all_messages(kim, room).await.len(), 0, "nothing reached the core through an edge's REST");
    for base in [&cl.a.base, &cl.b.base] {
        let r = Api::new(base).raw("GET", "/metrics", Some(&admin_jwt(999)), &[], None).await;
        assert_eq!(r.status, 200, "/metrics on an edge: {r:?}");
    }

    // Handshakes: the edge checks the token itself and the participant with the core.
    let base = &cl.a.base;
    assert_eq!(WsClient::refused(base, room, None).await, 401, "no token");
    assert_eq!(WsClient::refused(base, room, Some("not.a.jwt")).await, 401, "a bad token");
    assert_eq!(WsClient::refused(base, room, Some(&jwt(outsider))).await, 403, "not a participant");
    assert_eq!(WsClient::refused(base, NO_ROOM, Some(&jwt(kim))).await, 404, "an unknown room");
    let r = edge.call("POST", "/hubs/chat/negotiate?negotiateVersion=1", None, &[], None).await;
    assert_eq!(r.status, 401, "negotiate without a token: {r:?}");
    let r = edge.call("POST", "/hubs/chat/negotiate?negotiateVersion=1", Some(&jwt(kim)), &[], None).await;
    assert_eq!(r.status, 200, "negotiate with an edge: {r:?}");
    assert!(r.body["connectionToken"].as_str().is_some_and(|t| !t.is_empty()), "{r:?}");

    // And a socket it accepts works.
    let mut ws = WsClient::connect(base, room, &jwt(lee), None).await;
    let m = chat.post(kim, room, "through the edge").await;
    assert_event_is(&ws.messages(1, T).await[0], &m);
    ws.close().await;
}

/// Clients of one room on the core and on both edges, and senders on all three nodes at
/// once (socket frames on edge A and edge B, REST on the core): every client gets every
/// message once, all in one order (ascending ids), each sender's in the order it sent
/// them; the store agrees.
#[actix_rt::test]
async fn cluster_clients_on_every_node_get_each_message_once_in_one_order() {
    const PER_SOCKET: usize = 10;
    const PER_REST: usize = 5;
    const TOTAL: usize = 2 * PER_SOCKET + 2 * PER_REST;
    let within = Duration::from_secs(20);
    let cl = Cluster::start().await;
    let chat = cl.chat();
    let (kim, lee, park, choi) = (1u64, 2u64, 3u64, 4u64);
    chat.touch(&[kim, lee, park, choi]).await;
    let room = chat.group(kim, "across the edges", &[lee, park, choi]).await;

    // Listeners: kim on the core and on edge B, choi on edge A. Senders over their
    // sockets: lee on edge A, park on edge B. Senders over REST on the core: kim, choi.
    let listeners = vec![
        ("kim on the core", WsClient::connect(&cl.core.base, room, &jwt(kim), None).await),
        ("kim on edge B", WsClient::connect(&cl.b.base, room, &jwt(kim), None).await),
        ("choi on edge A", WsClient::connect(&cl.a.base, room, &jwt(choi), None).await),
    ];
    let ws_senders = vec![
        (lee, "lee on edge A", WsClient::connect(&cl.a.base, room, &jwt(lee), None).await),
        (park, "park on edge B", WsClient::connect(&cl.b.base, room, &jwt(park), None).await),
    ];

    let chat_ref = &chat;
    let rest = join_all([kim, choi].map(|u| async move {
        let mut out = Vec::with_capacity(PER_REST);
        for i in 0..PER_REST {
            out.push(chat_ref.post(u, room, &format!("s{u}-{i}")).await);
            actix_rt::time::sleep(Duration::from_millis(3)).await;
        }
        out
    }));
    let sockets = join_all(ws_senders.into_iter().map(|(u, who, mut ws)| async move {
        for i in 0..PER_SOCKET {
            ws.send(text_frame(&format!("s{u}-{i}"))).await;
            actix_rt::time::sleep(Duration::from_millis(2)).await;
        }
        let got = ws.messages(TOTAL, within).await;
        (who, ws, got)
    }));
    let listening = join_all(listeners.into_iter().map(|(who, mut ws)| async move {
        let got = ws.messages(TOTAL, within).await;
        (who, ws, got)
    }));
    let (rest, sockets, listening) = join3(rest, sockets, listening).await;

    // One order, ascending ids, for every client on every node.
    let everyone: Vec<(&str, WsClient, Vec<Value>)> = listening.into_iter().chain(sockets).collect();
    let reference = everyone[0].2.clone();
    let ref_ids = ids(&reference);
    assert_ascending(&ref_ids, everyone[0].0);
    let ref_texts = texts(&reference);
    for (who, _, got) in &everyone {
        assert_eq!(ids(got), ref_ids, "{who} saw other messages or another order than {}", everyone[0].0);
        assert_eq!(texts(got), ref_texts, "{who}");
    }
    // Each message once; each sender's in its own order.
    let mut sorted = ref_texts.clone();
    sorted.sort();
    let mut expected: Vec<String> = [kim, choi]
        .iter()
        .flat_map(|u| (0..PER_REST).map(move |i| format!("s{u}-{i}")))
        .chain([lee, park].iter().flat_map(|u| (0..PER_SOCKET).map(move |i| format!("s{u}-{i}"))))
        .collect();
    expected.sort();
    assert_eq!(sorted, expected, "every message exactly once");
    for u in [kim, lee, park, choi] {
        let mine: Vec<&String> = ref_texts.iter().filter(|t| t.starts_with(&format!("s{u}-"))).collect();
        let mut want = mine.clone();
        want.sort_by_key(|t| t[t.find('-').expect("-") + 1..].parse::<usize>().expect("index"));
        assert_eq!(mine, want, "user {u}'s messages in the order they were sent");
        for e in reference.iter().filter(|e| e["content"].as_str().is_some_and(|c| c.starts_with(&format!("s{u}-")))) {
            assert_eq!((num(e, "sender_id"), &e["sender_name"]), (u, &json!(name_of(u))), "{e}");
        }
    }
    // The REST answers are the events.
    for replies in &rest {
        for m in replies {
            let e = reference.iter().find(|e| e["message_id"] == m["message_id"]).expect("the event of a REST send");
            assert_event_is(e, m);
        }
    }

    // Nothing more comes anywhere; the store has the same messages in the same order.
    let mut everyone: Vec<(&str, WsClient)> = everyone.into_iter().map(|(who, ws, _)| (who, ws)).collect();
    let extra = join_all(everyone.iter_mut().map(|(_, ws)| ws.quiet(QUIET))).await;
    for ((who, _), q) in everyone.iter().zip(&extra) {
        assert_no_messages(q, who);
    }
    let stored = chat.all_messages(park, room).await;
    assert_eq!(ids(&stored), ref_ids, "GET messages/ on the core has the same messages in the same order");
    for (e, m) in reference.iter().zip(&stored) {
        assert_event_is(e, m);
    }
    for (_, ws) in everyone {
        ws.close().await;
    }
}

/// Contract T across edges: the buyer's SignalR connection on edge A joins the trade room;
/// the seller's on edge B joins nothing, yet hears the buyer's messages through its
/// `user_` group; the buyer hears every message once (the seller's reach it through both
/// groups). An outsider's JoinRoom is refused with an error Completion.
#[actix_rt::test]
async fn cluster_signalr_user_groups_and_join_checks_work_across_edges() {
    let cl = Cluster::start().await;
    let chat = cl.chat();
    let outsider = 33u64;
    chat.touch(&[BUYER, SELLER, outsider]).await;
    let room = trade_room(&cl.core, SELLER, BUYER).await;

    let r = Api::new(&cl.a.base)
        .call("POST", "/hubs/chat/negotiate?negotiateVersion=1", Some(&jwt(BUYER)), &[], None)
        .await;
    assert_eq!(r.status, 200, "negotiate with edge A: {r:?}");
    let token = r.body["connectionToken"].as_str().unwrap_or_else(|| panic!("connectionToken: {r:?}")).to_string();
    let mut buyer = Hub::connect(&cl.a.base, BUYER, Some(&token)).await;
    assert_completion_ok(&buyer.invoke("j", "JoinRoom", json!([room])).await, "j");
    let mut seller = Hub::connect(&cl.b.base, SELLER, None).await;
    let mut stranger = Hub::connect(&cl.b.base, outsider, None).await;
    let c = stranger.invoke("x1", "JoinRoom", json!([room])).await;
    assert_completion_error(&c, "x1");
    let c = stranger.invoke("x2", "JoinRoom", json!([NO_ROOM])).await;
    assert_completion_error(&c, "x2");

    // Interleaved, through contract T on the core.
    let mut sent = Vec::new();
    for (i, who) in [BUYER, SELLER, BUYER, SELLER, BUYER].into_iter().enumerate() {
        let r = send_t(&cl.core, who, room, &format!("t{i} from {who}")).await;
        assert_eq!((r.status, &r.body["statusCode"]), (200, &json!(200)), "send {i}: {r:?}");
        sent.push((who, r.body["data"].clone()));
    }
    let all: Vec<Value> = sent.iter().map(|(_, d)| d.clone()).collect();
    let buyers: Vec<Value> = sent.iter().filter(|(who, _)| *who == BUYER).map(|(_, d)| d.clone()).collect();
    let check = |got: &[Value], want: &[Value], who: &str| {
        assert_eq!(message_ids(got), message_ids(want), "{who}: {got:?}");
        for (p, d) in got.iter().zip(want) {
            for f in ["messageId", "roomId", "senderId", "senderNickname", "message"] {
                assert_eq!(p[f], d[f], "{who}: ReceiveMessage {f} is the sent message's:\n{p}\n{d}");
            }
            assert_eq!(utc_ms(&p["createdAt"]), utc_ms(&d["createdAt"]), "{who}: {p}\n{d}");
        }
    };
    let (in_room, at_home) = join(buyer.receive_messages(all.len(), T), seller.receive_messages(buyers.len(), T)).await;
    check(&in_room, &all, "the buyer in the room on edge A");
    check(&at_home, &buyers, "the seller on edge B, in no room");

    let (qb, qs, qo) = join3(buyer.quiet(QUIET), seller.quiet(QUIET), stranger.quiet(QUIET)).await;
    for (who, q) in [("the buyer", qb), ("the seller", qs), ("the outsider", qo)] {
        let more: Vec<&Value> = q.iter().filter(|v| v["target"] == "ReceiveMessage").collect();
        assert!(more.is_empty(), "{who} got more: {more:?}");
    }
    assert_eq!(stranger.raw.closed, None, "a refused JoinRoom leaves the connection open");
}

/// One general-chat room, two protocols, two edges: SignalR connections and plain sockets
/// on edge A and edge B get the same messages (sent by REST on the core and by frames on
/// both edges), once each, in the same order.
#[actix_rt::test]
async fn cluster_signalr_and_plain_clients_on_different_edges_get_the_same_messages() {
    const ROUNDS: usize = 3;
    const TOTAL: usize = 3 * ROUNDS;
    let cl = Cluster::start().await;
    let chat = cl.chat();
    let (kim, lee, park) = (BUYER, SELLER, 21u64);
    chat.touch(&[kim, lee, park]).await;
    let room = chat.group(lee, "two protocols", &[kim, park]).await;

    let mut hub_b = Hub::connect(&cl.b.base, kim, None).await;
    assert_completion_ok(&hub_b.invoke("j", "JoinRoom", json!([room])).await, "j");
    let mut hub_a = Hub::connect(&cl.a.base, lee, None).await;
    assert_completion_ok(&hub_a.invoke("j", "JoinRoom", json!([room.to_string()])).await, "j");
    let mut plain_a = WsClient::connect(&cl.a.base, room, &jwt(park), None).await;
    let mut plain_b = WsClient::connect(&cl.b.base, room, &jwt(lee), None).await;

    for i in 0..ROUNDS {
        chat.post(kim, room, &format!("rest {i}")).await;
        plain_a.send(text_frame(&format!("edge A {i}"))).await;
        plain_b.send(text_frame(&format!("edge B {i}"))).await;
    }
    let (pa, pb) = join(plain_a.messages(TOTAL, T), plain_b.messages(TOTAL, T)).await;
    let (ha, hb) = join(hub_a.receive_messages(TOTAL, T), hub_b.receive_messages(TOTAL, T)).await;

    let want = ids(&pa);
    assert_ascending(&want, "the plain socket on edge A");
    assert_eq!(ids(&pb), want, "the plain socket on edge B");
    assert_eq!(message_ids(&ha), want, "SignalR on edge A");
    assert_eq!(message_ids(&hb), want, "SignalR on edge B");
    let mut sorted = texts(&pa);
    sorted.sort();
    let mut expected: Vec<String> =
        (0..ROUNDS).flat_map(|i| [format!("rest {i}"), format!("edge A {i}"), format!("edge B {i}")]).collect();
    expected.sort();
    assert_eq!(sorted, expected, "every message exactly once");
    for (p, e) in ha.iter().chain(&hb).zip(pa.iter().chain(&pa)) {
        assert_eq!((&p["roomId"], &p["senderId"], &p["message"]), (&e["room_id"], &e["sender_id"], &e["content"]));
    }

    let (qa, qb) = join(plain_a.quiet(QUIET), plain_b.quiet(QUIET)).await;
    assert_no_messages(&qa, "the plain socket on edge A");
    assert_no_messages(&qb, "the plain socket on edge B");
    let (qha, qhb) = join(hub_a.quiet(QUIET), hub_b.quiet(QUIET)).await;
    for (who, q) in [("SignalR on edge A", qha), ("SignalR on edge B", qhb)] {
        let more: Vec<&Value> = q.iter().filter(|v| v["target"] == "ReceiveMessage").collect();
        assert!(more.is_empty(), "{who} got more: {more:?}");
    }
    plain_a.close().await;
    plain_b.close().await;
}

/// Presence across edges: a user online on any edge is online once; offline comes only
/// when their last connection, wherever it was, closes. Listeners on both edges hear it.
#[actix_rt::test]
async fn cluster_presence_counts_connections_on_every_edge() {
    let cl = Cluster::start().await;
    let chat = cl.chat();
    let (x, y, z) = (1u64, 2u64, 3u64);
    chat.touch(&[x, y, z]).await;
    let room = chat.group(x, "who is here", &[y, z]).await;
    let is_online = |r: &Reply, user: u64| -> bool {
        let list = r.body.as_array().unwrap_or_else(|| panic!("an array: {r:?}"));
        let u = list.iter().find(|u| u["user_id"] == user).unwrap_or_else(|| panic!("user {user}: {r:?}"));
        u["is_online"].as_bool().unwrap_or_else(|| panic!("is_online: {r:?}"))
    };
    let about_y = |q: &[Value]| -> Vec<Value> {
        q.iter().filter(|e| is_type(e, "user_status") && e["user_id"] == y).cloned().collect()
    };

    // X listens on edge A, Z on edge B.
    let mut on_a = WsClient::connect(&cl.a.base, room, &jwt(x), None).await;
    let mut on_b = WsClient::connect(&cl.b.base, room, &jwt(z), None).await;

    // Y's first connection, on edge B: online, heard on both edges.
    let y_b = WsClient::connect(&cl.b.base, room, &jwt(y), None).await;
    for ws in [&mut on_a, &mut on_b] {
        let e = ws.event(|e| is_status(e, y, "online"), T).await;
        assert_eq!(e["user_name"], name_of(y), "{e}");
    }
    assert!(is_online(&chat.online(x, room).await, y), "the core knows y is online");

    // Y's second connection, on edge A: nothing new.
    let y_a = WsClient::connect(&cl.a.base, room, &jwt(y), None).await;
    let (qa, qb) = join(on_a.quiet(QUIET), on_b.quiet(QUIET)).await;
    assert_eq!(about_y(&qa), Vec::<Value>::new(), "a second connection on the other edge, heard on edge A");
    assert_eq!(about_y(&qb), Vec::<Value>::new(), "a second connection on the other edge, heard on edge B");

    // The first closes: y still has one; nothing.
    y_b.close().await;
    let (qa, qb) = join(on_a.quiet(QUIET), on_b.quiet(QUIET)).await;
    assert_eq!(about_y(&qa), Vec::<Value>::new(), "one of two closed, heard on edge A");
    assert_eq!(about_y(&qb), Vec::<Value>::new(), "one of two closed, heard on edge B");
    assert!(is_online(&chat.online(x, room).await, y), "y still has a connection on edge A");

    // The last closes: offline, once, on both edges.
    y_a.close().await;
    for ws in [&mut on_a, &mut on_b] {
        let e = ws.event(|e| is_status(e, y, "offline"), T).await;
        assert_eq!(e["user_name"], name_of(y), "{e}");
    }
    let (qa, qb) = join(on_a.quiet(QUIET), on_b.quiet(QUIET)).await;
    assert_eq!(about_y(&qa), Vec::<Value>::new(), "one offline event on edge A");
    assert_eq!(about_y(&qb), Vec::<Value>::new(), "one offline event on edge B");
    assert!(!is_online(&chat.online(z, room).await, y), "the core knows y is offline");
    on_a.close().await;
    on_b.close().await;
}

/// A writer posts a steady stream over REST on the core; midway edge A is killed with
/// kill -9. Its client reconnects to edge B with `since=` the last id it got and ends
/// with every message once, in ascending order, like the client that stayed on edge B.
#[actix_rt::test]
async fn cluster_kill9_of_an_edge_mid_stream_loses_nothing_after_a_reconnect_to_the_other() {
    const N: usize = 200;
    let within = Duration::from_secs(25);
    let mut cl = Cluster::start().await;
    let chat = cl.chat();
    let (writer, on_a_user, on_b_user) = (1u64, 2u64, 3u64);
    chat.touch(&[writer, on_a_user, on_b_user]).await;
    let room = chat.group(writer, "stream", &[on_a_user, on_b_user]).await;
    let (base_a, base_b) = (cl.a.base.clone(), cl.b.base.clone());
    let mut on_a = WsClient::connect(&base_a, room, &jwt(on_a_user), None).await;
    let mut on_b = WsClient::connect(&base_b, room, &jwt(on_b_user), None).await;
    // A first message, so that the client on edge A has a `since` whenever it dies.
    let first = chat.post(writer, room, "before the stream").await;
    let (a0, b0) = join(on_a.messages(1, T), on_b.messages(1, T)).await;
    assert_event_is(&a0[0], &first);
    assert_event_is(&b0[0], &first);

    let sent = Rc::new(Cell::new(0usize));
    let writing = {
        let (chat, sent) = (chat.clone(), sent.clone());
        async move {
            let mut out = vec![first];
            for i in 0..N {
                out.push(chat.post(writer, room, &format!("m{i}")).await);
                sent.set(i + 1);
                actix_rt::time::sleep(Duration::from_millis(5)).await;
            }
            out
        }
    };
    let edge_a = &mut cl.a;
    let killing = {
        let sent = sent.clone();
        async move {
            while sent.get() < N / 2 {
                actix_rt::time::sleep(Duration::from_millis(2)).await;
            }
            edge_a.kill9();
        }
    };
    let reading_a = async move {
        let mut got = a0;
        loop {
            match on_a.next_event(T).await {
                Some(e) if is_type(&e, "message") => got.push(e),
                Some(_) => {}
                None => break,
            }
        }
        assert!(on_a.closed.is_some(), "the client on edge A heard nothing for {T:?}, yet its edge was killed");
        let before_kill = got.len();
        let since = num(got.last().expect("the first message"), "message_id");
        let mut back = WsClient::connect(&base_b, room, &jwt(on_a_user), Some(since)).await;
        got.extend(back.messages(N + 1 - before_kill, within).await);
        (back, got, before_kill)
    };
    let reading_b = async move {
        let mut got = b0;
        got.extend(on_b.messages(N, within).await);
        (on_b, got)
    };
    let ((sent_messages, ()), ((mut back, got_a, before_kill), (mut on_b, got_b))) =
        join(join(writing, killing), join(reading_a, reading_b)).await;

    let want = ids(&sent_messages);
    assert_ascending(&want, "the REST answers");
    assert!(before_kill < N + 1, "edge A died mid-stream, so its client cannot have had everything before");
    assert_eq!(
        ids(&got_a),
        want,
        "the client of the killed edge, after {before_kill} messages there and the rest on B"
    );
    assert_eq!(ids(&got_b), want, "the client that stayed on edge B");
    for (e, m) in got_a.iter().zip(&sent_messages) {
        assert_event_is(e, m);
    }
    let (qa, qb) = join(back.quiet(QUIET), on_b.quiet(QUIET)).await;
    assert_no_messages(&qa, "the client that moved to edge B");
    assert_no_messages(&qb, "the client that stayed on edge B");

    // Live again on the edge that survived.
    let m = chat.post(writer, room, "after the crash").await;
    let (ea, eb) = join(back.messages(1, T), on_b.messages(1, T)).await;
    assert_event_is(&ea[0], &m);
    assert_event_is(&eb[0], &m);
    back.close().await;

    // The killed edge, started again, rejoins by itself and serves the room live.
    cl.a.restart();
    wait_health(&cl.a.base, 200, Duration::from_secs(20), "the restarted edge").await;
    let mut again = WsClient::connect(&cl.a.base, room, &jwt(on_a_user), None).await;
    let m = chat.post(writer, room, "on the restarted edge").await;
    let (ea, eb) = join(again.messages(1, T), on_b.messages(1, T)).await;
    assert_event_is(&ea[0], &m);
    assert_event_is(&eb[0], &m);
    again.close().await;
    on_b.close().await;
}

/// nats-server is killed: the edges close their sockets with 1012 and report 503; the core
/// keeps answering REST. nats-server comes back on the same port: the edges are healthy
/// again by themselves, a client that reconnects with `since=` gets what was posted in
/// the outage, and the live stream crosses the edges again.
#[actix_rt::test]
async fn cluster_nats_stopped_and_started_again() {
    let mut cl = Cluster::start().await;
    let chat = cl.chat();
    let (writer, on_a_user, on_b_user) = (1u64, 2u64, 3u64);
    chat.touch(&[writer, on_a_user, on_b_user]).await;
    let room = chat.group(writer, "outage", &[on_a_user, on_b_user]).await;
    let mut on_a = WsClient::connect(&cl.a.base, room, &jwt(on_a_user), None).await;
    let mut on_b = WsClient::connect(&cl.b.base, room, &jwt(on_b_user), None).await;
    let before = chat.post(writer, room, "before the outage").await;
    let (ea, eb) = join(on_a.messages(1, T), on_b.messages(1, T)).await;
    assert_event_is(&ea[0], &before);
    assert_event_is(&eb[0], &before);
    let since = num(&before, "message_id");

    cl.nats.stop();
    let (ca, cb) = join(on_a.expect_close(T), on_b.expect_close(T)).await;
    assert_eq!(ca, Some(1012), "edge A closes its sockets with 1012 when it loses NATS");
    assert_eq!(cb, Some(1012), "edge B closes its sockets with 1012 when it loses NATS");
    let during = actix_rt::time::timeout(T, chat.say(writer, room, "during the outage"))
        .await
        .unwrap_or_else(|_| panic!("REST on the core did not answer within {T:?} while NATS is down"));
    assert_eq!(during.status, 201, "the core keeps taking messages while NATS is down: {during:?}");
    let during = during.body;
    cl.wait_edges(503, T, "with NATS down").await;
    assert_eq!(chat.all_messages(on_a_user, room).await, [before.clone(), during.clone()], "the core's REST");

    cl.nats.start_again();
    cl.wait_edges(200, RECOVER_WITHIN, "with NATS back").await;
    let mut on_a = Follower::connect(&cl.a.base, room, on_a_user, Some(since)).await;
    let mut on_b = Follower::connect(&cl.b.base, room, on_b_user, Some(since)).await;
    let (ga, gb) = join(on_a.messages(1, T), on_b.messages(1, T)).await;
    assert_event_is(&ga[0], &during);
    assert_event_is(&gb[0], &during);

    // Live across the edges again: REST on the core and a frame on edge A.
    let rest = chat.post(writer, room, "after the outage").await;
    on_a.send(text_frame("from edge A, after")).await;
    let (la, lb) = join(on_a.messages(2, T), on_b.messages(2, T)).await;
    assert_eq!(ids(&la), ids(&lb), "one order on both edges");
    assert_ascending(&ids(&la), "after the outage");
    let mut t = texts(&la);
    t.sort();
    assert_eq!(t, ["after the outage", "from edge A, after"]);
    let e = la.iter().find(|e| e["message_id"] == rest["message_id"]).expect("the REST message");
    assert_event_is(e, &rest);
    let (qa, qb) = join(on_a.quiet(QUIET), on_b.quiet(QUIET)).await;
    assert_no_messages(&qa, "the client on edge A");
    assert_no_messages(&qb, "the client on edge B");
    let stored = chat.all_messages(on_a_user, room).await;
    assert_eq!(texts(&stored).iter().filter(|t| *t == "from edge A, after").count(), 1, "stored once");
    on_a.close().await;
    on_b.close().await;
}

/// The core is killed with kill -9 and started again: the edges are healthy again by
/// themselves; clients (reconnecting with `since=` if their edge sent them away with 1012)
/// get exactly the messages posted after the restart, and the live stream still reaches
/// both edges.
#[actix_rt::test]
async fn cluster_the_core_restarts_and_the_edges_carry_on() {
    let mut cl = Cluster::start().await;
    let chat = cl.chat();
    let (writer, on_a_user, on_b_user) = (1u64, 2u64, 3u64);
    chat.touch(&[writer, on_a_user, on_b_user]).await;
    let room = chat.group(writer, "restart", &[on_a_user, on_b_user]).await;
    let mut on_a = Follower::connect(&cl.a.base, room, on_a_user, None).await;
    let mut on_b = Follower::connect(&cl.b.base, room, on_b_user, None).await;
    let mut before = Vec::new();
    for i in 0..5 {
        before.push(chat.post(writer, room, &format!("before {i}")).await);
    }
    let (ga, gb) = join(on_a.messages(5, T), on_b.messages(5, T)).await;
    assert_eq!(ids(&ga), ids(&before));
    assert_eq!(ids(&gb), ids(&before));

    cl.core.kill9();
    cl.core.restart();
    let chat = cl.chat();
    cl.wait_edges(200, RECOVER_WITHIN, "after the core restarted").await;

    let mut after = Vec::new();
    for i in 0..5 {
        after.push(chat.post(writer, room, &format!("after {i}")).await);
    }
    assert!(num(&after[0], "message_id") > num(&before[4], "message_id"), "ids keep growing after a restart");
    let (ga, gb) = join(on_a.messages(5, RECOVER_WITHIN), on_b.messages(5, RECOVER_WITHIN)).await;
    assert_eq!(ids(&ga), ids(&after), "edge A's client: exactly what was posted after the restart");
    assert_eq!(ids(&gb), ids(&after), "edge B's client: exactly what was posted after the restart");
    for (e, m) in ga.iter().zip(&after) {
        assert_event_is(e, m);
    }

    // Live across the edges: REST on the core and a frame on edge B.
    let rest = chat.post(writer, room, "live after the restart").await;
    on_b.send(text_frame("from edge B, after the restart")).await;
    let (la, lb) = join(on_a.messages(2, T), on_b.messages(2, T)).await;
    assert_eq!(ids(&la), ids(&lb), "one order on both edges");
    assert_ascending(&ids(&la), "after the restart");
    let mut t = texts(&la);
    t.sort();
    assert_eq!(t, ["from edge B, after the restart", "live after the restart"]);
    let e = la.iter().find(|e| e["message_id"] == rest["message_id"]).expect("the REST message");
    assert_event_is(e, &rest);
    let (qa, qb) = join(on_a.quiet(QUIET), on_b.quiet(QUIET)).await;
    assert_no_messages(&qa, "the client on edge A");
    assert_no_messages(&qb, "the client on edge B");
    on_a.close().await;
    on_b.close().await;
}

/// A post's answer on a plain socket of `user` on `base`, sent as a client that lost its
/// socket sends it: again, on a new socket, whenever the node refuses the socket (503: it
/// cannot reach the core yet), closes it with 1012 before answering, or answers that the
/// service is unavailable; a client message id makes that safe. The `message` or `error`
/// event.
async fn post_until_answered(base: &str, room: u64, user: u64, frame: &Value) -> Value {
    let deadline = Instant::now() + RECOVER_WITHIN;
    while Instant::now() < deadline {
        let mut ws = match WsClient::try_connect(base, room, Some(&jwt(user)), None).await {
            Ok(ws) => ws,
            Err(awc::error::WsClientError::InvalidResponseStatus(s)) if s.as_u16() == 503 => {
                actix_rt::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => panic!("a socket to {base} refused: {e:?}"),
        };
        ws.send(frame.clone()).await;
        loop {
            match ws.next_event(T).await {
                // The edge could not get the core's answer: whether it was posted is not
                // known, so the client sends it again.
                Some(e) if is_type(&e, "error") && e["detail"].as_str().is_some_and(|d| d.contains("unavailable")) => {
                    ws.close().await;
                    break;
                }
                Some(e) if is_type(&e, "message") || is_type(&e, "error") => {
                    ws.close().await;
                    return e;
                }
                Some(_) => {}
                None => {
                    assert_eq!(ws.closed, Some(1012), "only a restart may end the socket before its answer");
                    break;
                }
            }
        }
    }
    panic!("no answer to {frame} through {base} within {RECOVER_WITHIN:?}");
}

/// An edge carries a post's client message id to the core: the same id sent again through
/// the other edge, through SignalR's `SendMessage`, and after the core was killed and
/// started again, gets the first message back and posts nothing; the id with other
/// content is refused wherever it comes from.
#[actix_rt::test]
async fn cluster_a_client_msg_id_posts_once_through_any_edge_and_a_core_restart() {
    let mut cl = Cluster::start().await;
    let chat = cl.chat();
    let (kim, lee) = (1u64, 2u64);
    chat.touch(&[kim, lee]).await;
    let room = chat.group(kim, "retries across edges", &[lee]).await;
    let frame = json!({ "type": "message", "content": "once", "client_msg_id": "edge-1" });
    let mut listener = WsClient::connect(&cl.b.base, room, &jwt(lee), None).await;

    let first = post_until_answered(&cl.a.base, room, kim, &frame).await;
    assert!(is_type(&first, "message"), "{first}");
    let again = post_until_answered(&cl.b.base, room, kim, &frame).await;
    assert_eq!(again["message_id"], first["message_id"], "a retry through the other edge: {again}");
    let mut hub = Hub::connect(&cl.b.base, kim, None).await;
    let sent = hub.invoke("s", "SendMessage", json!([room, "once", "edge-1"])).await;
    assert_eq!(sent["result"]["messageId"], first["message_id"], "SendMessage with the id: {sent}");
    assert_completion_error(&hub.invoke("t", "SendMessage", json!([room, "twice", "edge-1"])).await, "t");
    let other = json!({ "type": "message", "content": "other", "client_msg_id": "edge-1" });
    assert!(is_type(&post_until_answered(&cl.a.base, room, kim, &other).await, "error"));
    assert_event_is(&listener.messages(1, T).await[0], &chat.all_messages(lee, room).await[0]);
    assert_no_messages(&listener.quiet(QUIET).await, "the other member");

    cl.core.kill9();
    cl.core.restart();
    let chat = cl.chat();
    let after = post_until_answered(&cl.a.base, room, kim, &frame).await;
    assert_eq!(after["message_id"], first["message_id"], "a retry after the core restarted: {after}");
    let stored = chat.all_messages(lee, room).await;
    assert_eq!(ids(&stored), vec![num(&first, "message_id")], "stored once: {stored:?}");
    listener.close().await;
}

/// A client may send its first invocations in the handshake's frame: on the core and on an
/// edge alike, the handshake's answer comes first, then their Completions, in order.
#[actix_rt::test]
async fn cluster_signalr_invocations_sent_with_the_handshake_wait_for_its_answer() {
    let cl = Cluster::start().await;
    let calls = format!(
        "{}{RS}{}{RS}",
        json!({ "type": 1, "invocationId": "1", "target": "LeaveRoom", "arguments": [1] }),
        json!({ "type": 1, "invocationId": "2", "target": "NoSuchMethod", "arguments": [] }),
    );
    for base in [&cl.core.base, &cl.a.base] {
        // `connect_sending` asserts that the first record is the handshake's answer.
        let mut hub = Hub::connect_sending(base, 7, None, &calls).await;
        let first = hub.record(T).await.expect("the first Completion");
        assert_eq!((first["type"].clone(), first["invocationId"].clone()), (json!(3), json!("1")), "{first}");
        let second = hub.record(T).await.expect("the second Completion");
        assert_eq!(second["invocationId"], "2", "{second}");
        assert!(second["error"].is_string(), "an unknown method is an error: {second}");
    }
}

/// The core's `boxoffice_nats_requests_total`, all kinds but the queue's snapshots.
async fn core_requests(core: &TestServer) -> u64 {
    let r = Api::new(&core.base).raw("GET", "/metrics", Some(&admin_jwt(999)), &[], None).await;
    let text = String::from_utf8(r.raw.to_vec()).expect("text");
    text.lines()
        .filter(|l| l.starts_with("boxoffice_nats_requests_total{") && !l.contains("queue_snapshot"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Queue checks and waiting sockets on edges are answered from the edges' copy of the
/// core's admission state: the same answers as the core's, admission pushed through an
/// edge, and no request to the core per check or per socket.
#[actix_rt::test]
async fn cluster_edges_answer_queue_checks_and_sockets_without_asking_the_core() {
    let nats = Nats::start();
    let (url, prefix) = (nats.url(), nats.prefix());
    let core = TestServer::spawn(&[
        ("BOXOFFICE_NATS_URL", url.as_str()),
        ("BOXOFFICE_NATS_PREFIX", prefix.as_str()),
        ("BOXOFFICE_QUEUE_ADMIT_RATE", "1000"),
        ("BOXOFFICE_QUEUE_MAX_ACTIVE", "1"),
        ("BOXOFFICE_QUEUE_ACTIVE_TTL", "3s"),
    ]);
    let a = spawn_node(Some("edge"), &nats);
    let b = spawn_node(Some("edge"), &nats);
    let cl = Cluster { nats, core, a, b };
    cl.wait_edges(200, HEALTHY_WITHIN, "a new cluster").await;
    let api = cl.core.api();
    let mut tokens = Vec::new();
    for user in 1..=3u64 {
        let r = api.call("POST", "/waiting/issue", Some(&jwt(user)), &[], Some(json!({ "userId": user }))).await;
        assert_eq!(r.status, 200, "{r:?}");
        tokens.push(r.body["token"].as_str().expect("token").to_string());
    }
    let before = core_requests(&cl.core).await;

    // Edge A answers a check as the core does, once its copy has caught up.
    let edge = Api::new(&cl.a.base);
    let on_core = api.get("/waiting/check", &jwt(2), &[("X-Queue-Token", &tokens[1])]).await;
    let deadline = Instant::now() + T;
    let on_edge = loop {
        let r = edge.get("/waiting/check", &jwt(2), &[("X-Queue-Token", &tokens[1])]).await;
        if r.status == 200 && r.body["position"] == on_core.body["position"] {
            break r;
        }
        assert!(Instant::now() < deadline, "edge A never answered as the core: {r:?} vs {on_core:?}");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(on_edge.body, on_core.body);
    assert_eq!(on_edge.body["position"], 1);
    assert_q_error(&edge.get("/waiting/check", &jwt(3), &[("X-Queue-Token", &tokens[1])]).await, 403);
    let forged = format!("{}A", &tokens[1][..tokens[1].len() - 1]);
    let r = edge.get("/waiting/check", &jwt(2), &[("X-Queue-Token", &forged)]).await;
    assert!(r.status == 401 || forged == tokens[1], "{r:?}");

    // A waiting socket on edge B sees user 1's admission run out and its own place move.
    let host = cl.b.base.strip_prefix("http://").expect("http");
    let query = format!("?access_token={}&queueToken={}", urlencode(&jwt(3)), urlencode(&tokens[2]));
    let mut third = WsClient::open(&format!("ws://{host}/waiting/ws{query}"), &[]).await.expect("a socket on edge B");
    let first = third.next_event(T).await.expect("a first event");
    assert_eq!((first["type"].as_str(), first["position"].as_u64()), (Some("queue"), Some(2)), "{first}");
    let moved = third.event(|e| e["position"] == 1, Duration::from_secs(15)).await;
    assert_eq!(moved["active"], false);
    let r = edge.get("/waiting/check", &jwt(2), &[("X-Queue-Token", &tokens[1])]).await;
    assert_eq!(r.body["active"], true, "edge A saw user 2 admitted: {r:?}");
    // Polls and sockets on the edges asked the core nothing.
    for _ in 0..50 {
        let r = edge.get("/waiting/check", &jwt(3), &[("X-Queue-Token", &tokens[2])]).await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    assert_eq!(core_requests(&cl.core).await, before, "no request reached the core for checks or queue sockets");
    third.close().await;
}

/// A `boxoffice_signalr_handovers_total` count of a node, by outcome.
async fn handovers(node: &TestServer, outcome: &str) -> u64 {
    let r = Api::new(&node.base).raw("GET", "/metrics", Some(&admin_jwt(999)), &[], None).await;
    let text = String::from_utf8(r.raw.to_vec()).expect("text");
    let prefix = format!("boxoffice_signalr_handovers_total{{outcome=\"{outcome}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0, |n| n.trim().parse().expect("a count"))
}

/// Negotiate a stateful SignalR connection on `base` for `user`: its connection token.
async fn stateful_token(base: &str, user: u64) -> String {
    let q = "/hubs/chat/negotiate?negotiateVersion=1&useStatefulReconnect=true";
    let r = Api::new(base).call("POST", q, Some(&jwt(user)), &[], None).await;
    assert_eq!(r.body["useStatefulReconnect"], true, "{r:?}");
    r.body["connectionToken"].as_str().expect("connectionToken").to_string()
}

/// SignalR stateful reconnect over edges: the connection lives on the edge that holds it,
/// and a reconnect through the other edge takes it over from there. After its socket
/// drops, the client resumes it on its edge or the other, and gets what it missed, once,
/// in order; then it is live where it resumed. Back through its first edge, it is followed
/// to where it went and taken back.
#[actix_rt::test]
async fn cluster_a_stateful_signalr_connection_resumes_on_its_edge_and_through_the_other() {
    let cl = Cluster::start().await;
    let chat = cl.chat();
    let (writer, reader) = (1u64, 2u64);
    chat.touch(&[writer, reader]).await;
    let room = chat.group(writer, "stateful", &[reader]).await;
    let token = stateful_token(&cl.a.base, reader).await;
    let mut hub = Hub::connect(&cl.a.base, reader, Some(&token)).await;
    assert_completion_ok(&hub.invoke("1", "JoinRoom", json!([room])).await, "1");
    let mut posted = Vec::new();
    for i in 0..2 {
        posted.push(chat.post(writer, room, &format!("before {i}")).await);
    }
    assert_eq!(message_ids(&hub.receive_messages(2, T).await), ids(&posted));
    drop(hub);
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    for i in 0..3 {
        posted.push(chat.post(writer, room, &format!("while away {i}")).await);
    }

    // On its own edge: nothing was acknowledged, so everything comes again (the
    // Completion, the five messages, and the reader's own presence if it came meanwhile),
    // numbered from 1.
    let mut raw = RawHub::open(&cl.a.base, &format!("id={token}"), &jwt(reader)).await;
    assert_eq!(raw.record(T).await, Some(json!({ "type": 9, "sequenceId": 1 })));
    assert_completion_ok(&raw.record(T).await.expect("the Completion again"), "1");
    let (mut again, mut tracked) = (Vec::new(), 1);
    let mut third = 0;
    while again.len() < 5 {
        let v = raw.record(T).await.unwrap_or_else(|| panic!("{} of 5 messages again", again.len()));
        if v["type"] == 1 {
            tracked += 1;
        }
        if v["target"] == "ReceiveMessage" {
            again.push(num(&v["arguments"][0], "messageId"));
            if again.len() == 3 {
                third = tracked;
            }
        }
    }
    assert_eq!(again, ids(&posted), "each message once, in order, the missed ones included");
    // The client acknowledges everything up to the third message, and drops again; two
    // more messages while it is away.
    raw.frame(&format!("{}{RS}", json!({ "type": 8, "sequenceId": third }))).await;
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    drop(raw);
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    for i in 0..2 {
        posted.push(chat.post(writer, room, &format!("away again {i}")).await);
    }

    // Through edge B: taken over from A, it starts where the client's Ack left it: the
    // two messages it had not acknowledged and the two it missed, once, in order.
    let mut raw = RawHub::open(&cl.b.base, &format!("id={token}"), &jwt(reader)).await;
    assert_eq!(raw.record(T).await, Some(json!({ "type": 9, "sequenceId": third + 1 })), "the Sequence");
    let mut again = Vec::new();
    while again.len() < 4 {
        let v = raw.record(T).await.unwrap_or_else(|| panic!("{} of 4 messages again", again.len()));
        if v["target"] == "ReceiveMessage" {
            again.push(num(&v["arguments"][0], "messageId"));
        }
    }
    assert_eq!(again, ids(&posted[3..]), "from the first message not acknowledged on, once, in order");
    assert_eq!(handovers(&cl.b, "resumed").await, 1);
    assert_eq!(handovers(&cl.a, "handed").await, 1);
    // Live again, on B, in the same room; A holds the connection no more.
    let live = chat.post(writer, room, "live again").await;
    let v = loop {
        let v = raw.record(T).await.expect("the live message");
        if v["target"] == "ReceiveMessage" {
            break v;
        }
    };
    assert_eq!(num(&v["arguments"][0], "messageId"), num(&live, "message_id"), "{v}");
    while let Some(v) = raw.record(QUIET).await {
        assert_ne!(v["target"], "ReceiveMessage", "nothing twice: {v}");
    }
    posted.push(live);

    // Back through A, which its token still names: A no longer holds it, sends the
    // request on to B (where it went), and takes it back. Nothing was acknowledged on B,
    // so it starts where B started, once, in order.
    drop(raw);
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    let mut raw = RawHub::open(&cl.a.base, &format!("id={token}"), &jwt(reader)).await;
    assert_eq!(raw.record(T).await, Some(json!({ "type": 9, "sequenceId": third + 1 })), "the Sequence via A");
    let mut again = Vec::new();
    while again.len() < 5 {
        let v = raw.record(T).await.unwrap_or_else(|| panic!("{} of 5 messages via A", again.len()));
        if v["target"] == "ReceiveMessage" {
            again.push(num(&v["arguments"][0], "messageId"));
        }
    }
    assert_eq!(again, ids(&posted[3..]), "back on A: once, in order");
    while let Some(v) = raw.record(QUIET).await {
        assert_ne!(v["target"], "ReceiveMessage", "nothing twice: {v}");
    }
    assert_eq!(handovers(&cl.a, "resumed").await, 1, "taken back by A");
    assert_eq!(handovers(&cl.b, "handed").await, 1, "handed back by B");
    // It stays one connection: its next invocation is the client's second.
    raw.frame(&format!("{}{RS}", json!({ "type": 9, "sequenceId": 2 }))).await;
    let leave = json!({ "type": 1, "invocationId": "2", "target": "LeaveRoom", "arguments": [room] });
    raw.frame(&format!("{leave}{RS}")).await;
    let v = loop {
        let v = raw.record(T).await.expect("LeaveRoom's Completion");
        if v["type"] == 3 {
            break v;
        }
    };
    assert_completion_ok(&v, "2");
}

/// Through the other edge, another user's JWT cannot take a connection over (403, and the
/// connection stays where it is), and after the window nobody can (404).
#[actix_rt::test]
async fn cluster_a_stateful_signalr_connection_through_the_other_edge_is_its_users_within_its_window() {
    let cl = Cluster::start_with(&[("BOXOFFICE_SIGNALR_RECONNECT_WINDOW", "2s")]).await;
    let chat = cl.chat();
    let (writer, reader) = (1u64, 2u64);
    chat.touch(&[writer, reader]).await;
    let room = chat.group(writer, "stateful", &[reader]).await;
    let token = stateful_token(&cl.a.base, reader).await;
    let mut hub = Hub::connect(&cl.a.base, reader, Some(&token)).await;
    assert_completion_ok(&hub.invoke("1", "JoinRoom", json!([room])).await, "1");
    drop(hub);
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(RawHub::refused(&cl.b.base, &format!("id={token}"), Some(&jwt(writer))).await, 403, "another user");
    assert_eq!(handovers(&cl.a, "handed").await, 0, "nothing was handed over");
    // Still held by A: its user resumes it there.
    let mut raw = RawHub::open(&cl.a.base, &format!("id={token}"), &jwt(reader)).await;
    assert_eq!(raw.record(T).await, Some(json!({ "type": 9, "sequenceId": 1 })));
    drop(raw);
    actix_rt::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(RawHub::refused(&cl.b.base, &format!("id={token}"), Some(&jwt(reader))).await, 404, "after the window");
    // A token of no edge, or of one that does not exist, is 404 as well.
    assert_eq!(RawHub::refused(&cl.b.base, "id=abc.0123456789abcdef", Some(&jwt(reader))).await, 404);
}

/// The official client (`withStatefulReconnect()`, no automatic reconnect: a refused
/// resume would end it) through a proxy in front of edge A hears a stream of messages; the
/// proxy cuts its TCP connection mid-stream and sends it to edge B when it comes back.
/// Every message arrives once, in order, on the same connection, resumed through B.
async fn scenario_the_official_client_resumes_through_the_other_edge(protocol: &str) {
    let cl = Cluster::start().await;
    let chat = cl.chat();
    let (writer, reader) = (1u64, 2u64);
    chat.touch(&[writer, reader]).await;
    let room = chat.group(writer, "handover", &[reader]).await;
    let proxy = Proxy::between(&cl.a, &cl.b).await;
    let mut client = NodeClient::start(stateful_plan(&proxy.url(), reader, protocol, room, 50_000));
    client.ready().await;
    let total = 150;
    let mut sent = Vec::new();
    let mut tick = actix_rt::time::interval(Duration::from_millis(10));
    for i in 0..total {
        tick.tick().await;
        if i == 50 {
            proxy.cut(Duration::from_secs(1));
        }
        sent.push(num(&chat.post(writer, room, &format!("stream {i}")).await, "message_id"));
    }
    client.assert_heard_once_on_one_connection(&sent).await;
    assert!(proxy.reached(&cl.b) >= 1, "the client came back through edge B");
    assert_eq!(handovers(&cl.b, "resumed").await, 1, "B took the connection over");
}

/// The official client (`withStatefulReconnect()`, no automatic reconnect) on edge A hears
/// a stream of messages while the core is killed with `kill -9` and started again. The
/// edge cannot vouch for what the old core published last, so instead of closing the
/// socket with 1012 it catches the connection up on its room from the durable history;
/// the client sees nothing of it: every message once, in order, on one connection.
async fn scenario_a_stateful_connection_on_an_edge_outlives_a_core_restart(protocol: &str) {
    let mut cl = Cluster::start().await;
    let chat = cl.chat();
    let (writer, reader) = (1u64, 2u64);
    chat.touch(&[writer, reader]).await;
    let room = chat.group(writer, "core restart", &[reader]).await;
    let mut client = NodeClient::start(stateful_plan(&cl.a.base, reader, protocol, room, 60_000));
    client.ready().await;
    let total = 120;
    let mut sent = Vec::new();
    let mut tick = actix_rt::time::interval(Duration::from_millis(10));
    for i in 0..total {
        tick.tick().await;
        if i == 60 {
            cl.core.kill9();
            cl.core.restart();
            cl.wait_edges(200, RECOVER_WITHIN, "after the core restarted").await;
        }
        sent.push(num(&cl.chat().post(writer, room, &format!("stream {i}")).await, "message_id"));
    }
    client.assert_heard_once_on_one_connection(&sent).await;
    let r = Api::new(&cl.a.base).raw("GET", "/metrics", Some(&admin_jwt(999)), &[], None).await;
    let text = String::from_utf8(r.raw.to_vec()).expect("text");
    assert!(text.contains("boxoffice_ws_resyncs_total{protocol=\"signalr\"} 1"), "{text}");
}

#[actix_rt::test]
async fn cluster_a_stateful_signalr_connection_on_an_edge_outlives_a_core_restart() {
    scenario_a_stateful_connection_on_an_edge_outlives_a_core_restart("json").await
}

#[actix_rt::test]
async fn cluster_a_stateful_signalr_connection_on_an_edge_outlives_a_core_restart_messagepack() {
    scenario_a_stateful_connection_on_an_edge_outlives_a_core_restart("messagepack").await
}

#[actix_rt::test]
async fn cluster_the_official_client_resumes_through_the_other_edge() {
    scenario_the_official_client_resumes_through_the_other_edge("json").await
}

#[actix_rt::test]
async fn cluster_the_official_client_resumes_through_the_other_edge_messagepack() {
    scenario_the_official_client_resumes_through_the_other_edge("messagepack").await
}
