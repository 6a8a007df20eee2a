//! Contract T's SignalR hub (`/hubs/chat`): the official JavaScript client
//! (`@microsoft/signalr`, driven by `tests/signalr/client.js` in a Node child process)
//! against contract C rooms and messages sent over REST, and the JSON hub protocol spoken
//! by hand over a raw WebSocket (records split across frames, several in one frame, pings,
//! closes, errors). The Node client is installed with `npm ci --prefix tests/signalr` on first use.

use crate::chat::*;
use crate::helpers::*;
use awc::error::WsClientError;
use awc::ws::{Frame, Message};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long to wait for anything that should come.
const T: Duration = Duration::from_secs(10);
/// The record separator.
const RS: char = '\u{1e}';
/// The buyer and the seller of seed 001's scenarios.
const BUYER: u64 = 15;
const SELLER: u64 = 20;

// ---------------------------------------------------------------------------------------
// The official client, in Node

fn client_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("signalr")
}

/// A plan for `client.js` (see its header): connect as `user` to the server with the hub
/// `protocol` (`json` or `messagepack`).
pub(crate) fn plan(server: &TestServer, user: u64, protocol: &str) -> Value {
    json!({ "url": server.base, "token": jwt(user), "timeoutMs": 20_000, "quietMs": 600, "protocol": protocol })
}

/// A scenario of the official client, run with each hub protocol.
macro_rules! with_each_protocol {
    ($scenario:ident, $json:ident, $messagepack:ident) => {
        #[actix_rt::test]
        async fn $json() {
            $scenario("json").await
        }
        #[actix_rt::test]
        async fn $messagepack() {
            $scenario("messagepack").await
        }
    };
}

/// Install the official client (`npm ci`) once per test run if it is not there, so that
/// `cargo test` alone works on a fresh machine with Node.js.
fn install_client(dir: &std::path::Path) {
    static INSTALLED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let result = INSTALLED.get_or_init(|| {
        let modules = dir.join("node_modules").join("@microsoft");
        if modules.join("signalr").is_dir() && modules.join("signalr-protocol-msgpack").is_dir() {
            return Ok(());
        }
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(dir)
            .status()
            .map_err(|e| format!("npm is needed for the SignalR tests (Node.js 18+): {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("`npm ci --prefix tests/signalr` failed: {status}"))
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// `tests/signalr/client.js` running in Node: the lines it printed, read as they come.
pub(crate) struct NodeClient {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: tokio::sync::mpsc::UnboundedReceiver<Value>,
    /// Every line read so far, in order.
    seen: Vec<Value>,
    stderr: Arc<Mutex<String>>,
}

impl NodeClient {
    /// The client heard `sent` as `ReceiveMessage`s, each once, in order, on one
    /// connection (never closed, connected once): it is ended, and its run returned.
    pub(crate) async fn assert_heard_once_on_one_connection(mut self, sent: &[u64]) -> Run {
        self.send(json!({ "waitFor": { "ReceiveMessage": sent.len() } }));
        self.until(|v| v["kind"] == "reached", "every message").await;
        let run = self.finish().await;
        run.assert_ok();
        let before_the_end = run.lines.iter().take_while(|v| v["kind"] != "summary");
        assert!(!before_the_end.clone().any(|v| v["kind"] == "closed"), "one connection throughout: {}", run.logs);
        assert_eq!(before_the_end.filter(|v| v["kind"] == "connected").count(), 1, "{}", run.logs);
        assert_eq!(message_ids(&run.events("ReceiveMessage")), sent, "each message once, in order\n{}", run.logs);
        run
    }

    pub(crate) fn start(plan: Value) -> NodeClient {
        let dir = client_dir();
        install_client(&dir);
        let mut child = Command::new("node")
            .arg(dir.join("client.js"))
            .arg(plan.to_string())
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("Node.js (`node`) is needed for the SignalR tests");
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v = serde_json::from_str(&line).unwrap_or_else(|_| json!({ "kind": "noise", "line": line }));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().expect("stderr").push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdin = child.stdin.take();
        NodeClient { child, stdin, lines, seen: Vec::new(), stderr }
    }

    fn logs(&self) -> String {
        format!("lines: {:?}\nstderr: {}", self.seen, self.stderr.lock().expect("stderr"))
    }

    /// The next line; None at the deadline or when the client is gone.
    async fn next(&mut self, deadline: Instant) -> Option<Value> {
        let left = deadline.saturating_duration_since(Instant::now());
        let v = actix_rt::time::timeout(left, self.lines.recv()).await.ok().flatten()?;
        self.seen.push(v.clone());
        Some(v)
    }

    /// The first line (from now) that matches; panics if none comes in time.
    pub(crate) async fn until(&mut self, pred: impl Fn(&Value) -> bool, what: &str) -> Value {
        let deadline = Instant::now() + T;
        loop {
            match self.next(deadline).await {
                Some(v) if pred(&v) => return v,
                Some(v) if v["kind"] == "summary" => panic!("the client ended before {what}: {v}\n{}", self.logs()),
                Some(_) => {}
                None => panic!("no {what} within {T:?}\n{}", self.logs()),
            }
        }
    }

    /// Wait until the client has connected and run its plan's steps.
    pub(crate) async fn ready(&mut self) {
        self.until(|v| v["kind"] == "ready", "ready line").await;
    }

    /// Send a step (stdin mode).
    pub(crate) fn send(&mut self, step: Value) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{step}").expect("write to the client");
        stdin.flush().expect("flush");
    }

    /// Invoke a hub method (stdin mode) and wait for its result line.
    async fn invoke(&mut self, method: &str, args: Value) -> Value {
        self.send(json!({ "invoke": method, "args": args }));
        self.until(|v| v["kind"] == "result" && v["method"] == method, "invocation result").await
    }

    /// Finish (stdin mode: `end`), wait for the summary and the exit: everything printed.
    pub(crate) async fn finish(mut self) -> Run {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = writeln!(stdin, "{}", json!({ "end": true }));
        }
        let deadline = Instant::now() + Duration::from_secs(25);
        while self.next(deadline).await.is_some() {}
        let code = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status.code();
            }
            assert!(Instant::now() < deadline, "the client did not exit\n{}", self.logs());
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        };
        let logs = self.logs();
        Run { lines: std::mem::take(&mut self.seen), code, logs }
    }
}

impl Drop for NodeClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a client printed, and its exit code.
pub(crate) struct Run {
    pub(crate) lines: Vec<Value>,
    code: Option<i32>,
    pub(crate) logs: String,
}

impl Run {
    fn summary(&self) -> &Value {
        self.lines.iter().rev().find(|v| v["kind"] == "summary").unwrap_or_else(|| panic!("no summary\n{}", self.logs))
    }

    /// The client ended well: every expected event came, nothing failed.
    pub(crate) fn assert_ok(&self) {
        assert_eq!(self.code, Some(0), "{}", self.logs);
        assert_eq!(self.summary()["ok"], true, "{}", self.logs);
    }

    /// The first argument of each event of `target`, in order.
    pub(crate) fn events(&self, target: &str) -> Vec<Value> {
        self.lines
            .iter()
            .filter(|v| v["kind"] == "event" && v["target"] == target)
            .map(|v| v["args"][0].clone())
            .collect()
    }

    fn results(&self) -> Vec<Value> {
        self.lines.iter().filter(|v| v["kind"] == "result").cloned().collect()
    }
}

/// A `ReceiveMessage` payload that carries this REST message (contract C's shape).
fn assert_receive_message_is(p: &Value, m: &Value) {
    for f in ["messageId", "roomId", "senderId", "senderNickname", "senderProfileImage", "message", "images"] {
        assert!(p.get(f).is_some(), "ReceiveMessage without {f}: {p}");
    }
    assert_eq!(p["messageId"], m["message_id"], "{p}\n{m}");
    assert_eq!(p["roomId"], m["room_id"], "{p}\n{m}");
    assert_eq!(p["senderId"], m["sender_id"], "{p}\n{m}");
    assert_eq!(p["senderNickname"], m["sender_name"], "{p}\n{m}");
    assert_eq!(p["message"], m["message_content"], "{p}\n{m}");
    assert_eq!(p["senderProfileImage"], Value::Null, "the test tokens have no picture: {p}");
    assert_eq!(p["images"], Value::Null, "no images: {p}");
    assert_eq!(p["type"], "TEXT", "{p}");
    assert_eq!(utc_ms(&p["createdAt"]), utc_ms(&m["created_at"]), "createdAt is the message's: {p}\n{m}");
}

pub(crate) fn message_ids(payloads: &[Value]) -> Vec<u64> {
    payloads.iter().map(|p| num(p, "messageId")).collect()
}

/// A plan for the official client with `withStatefulReconnect()` and no automatic
/// reconnect (a refused resume ends it), through `url` as `user`, joined to `room`, that
/// takes further orders on its stdin.
pub(crate) fn stateful_plan(url: &str, user: u64, protocol: &str, room: u64, timeout_ms: u64) -> Value {
    json!({
        "url": url, "token": jwt(user), "protocol": protocol, "statefulReconnect": true,
        "stdin": true, "timeoutMs": timeout_ms, "quietMs": 600,
        "steps": [{ "invoke": "JoinRoom", "args": [room] }],
    })
}

// ---------------------------------------------------------------------------------------
// The official client

with_each_protocol!(
    scenario_official_client_negotiates_joins_a_room_and_receives_messages,
    signalr_official_client_negotiates_joins_a_room_and_receives_messages,
    signalr_official_client_negotiates_joins_a_room_and_receives_messages_messagepack
);

async fn scenario_official_client_negotiates_joins_a_room_and_receives_messages(protocol: &str) {
    let server = TestServer::spawn(&[]);
    let chat = Chat::new(&server);
    chat.touch(&[BUYER, SELLER]).await;
    let room = chat.direct(SELLER, BUYER).await;

    let mut p = plan(&server, BUYER, protocol);
    p["steps"] = json!([{ "invoke": "JoinRoom", "args": [room] }]);
    p["expect"] = json!({ "ReceiveMessage": 1 });
    let mut client = NodeClient::start(p);
    let connected = client.until(|v| v["kind"] == "connected", "connected line").await;
    assert!(connected["connectionId"].as_str().is_some_and(|id| !id.is_empty()), "negotiated: {connected}");
    client.ready().await;

    // The connection counts as the buyer being online, as contract C shows it.
    let r = chat.online(SELLER, room).await;
    assert_eq!(r.status, 200, "{r:?}");
    let me = r.body.as_array().expect("array").iter().find(|u| u["user_id"] == BUYER).expect("buyer").clone();
    assert_eq!(me["is_online"], true, "a SignalR connection is a connection: {r:?}");

    let m = chat.post(SELLER, room, "안녕하세요").await;
    let run = client.finish().await;
    run.assert_ok();
    assert_eq!(
        run.results(),
        vec![json!({ "kind": "result", "method": "JoinRoom", "args": [room], "ok": true, "result": null })]
    );
    let got = run.events("ReceiveMessage");
    assert_eq!(got.len(), 1, "{}", run.logs);
    assert_receive_message_is(&got[0], &m);
    assert_eq!(got[0]["senderNickname"], name_of(SELLER));

    // The connection closed: the buyer is offline again.
    let deadline = Instant::now() + T;
    loop {
        let r = chat.online(SELLER, room).await;
        let me = r.body.as_array().expect("array").iter().find(|u| u["user_id"] == BUYER).expect("buyer").clone();
        if me["is_online"] == false {
            break;
        }
        assert!(Instant::now() < deadline, "still online after the client stopped: {r:?}");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

with_each_protocol!(
    scenario_each_message_reaches_a_joined_connection_exactly_once,
    signalr_each_message_reaches_a_joined_connection_exactly_once,
    signalr_each_message_reaches_a_joined_connection_exactly_once_messagepack
);

async fn scenario_each_message_reaches_a_joined_connection_exactly_once(protocol: &str) {
    let server = TestServer::spawn(&[]);
    let chat = Chat::new(&server);
    chat.touch(&[BUYER, SELLER]).await;
    // A group room: only joined connections hear it (a direct room's messages also reach
    // the receiver's user_ group; see the test of the protocol by hand).
    let room = chat.group(SELLER, "둘", &[BUYER]).await;

    // The buyer's connection joins twice (a repeated JoinRoom is harmless), by number and
    // by string; a second connection of the buyer's (negotiation skipped) joins nothing;
    // the seller's (negotiation skipped) joins once.
    let mut a = plan(&server, BUYER, protocol);
    a["steps"] =
        json!([{ "invoke": "JoinRoom", "args": [room] }, { "invoke": "JoinRoom", "args": [room.to_string()] }]);
    a["stdin"] = json!(true);
    let mut b = plan(&server, BUYER, protocol);
    b["skipNegotiation"] = json!(true);
    b["stdin"] = json!(true);
    let mut c = plan(&server, SELLER, protocol);
    c["skipNegotiation"] = json!(true);
    c["steps"] = json!([{ "invoke": "JoinRoom", "args": [room] }]);
    c["stdin"] = json!(true);
    let (mut a, mut b, mut c) = (NodeClient::start(a), NodeClient::start(b), NodeClient::start(c));
    a.ready().await;
    b.ready().await;
    c.ready().await;

    let m1 = chat.post(SELLER, room, "첫 번째").await;
    let m2 = chat.post(BUYER, room, "두 번째").await;
    let m3 = chat.post(SELLER, room, "세 번째").await;
    a.send(json!({ "waitFor": { "ReceiveMessage": 3 } }));
    a.until(|v| v["kind"] == "reached", "three messages").await;

    // After LeaveRoom is answered, nothing more of the room reaches the connection.
    let left = a.invoke("LeaveRoom", json!([room])).await;
    assert_eq!(left["ok"], true, "{left}");
    let m4 = chat.post(SELLER, room, "네 번째").await;
    c.send(json!({ "waitFor": { "ReceiveMessage": 4 } }));
    c.until(|v| v["kind"] == "reached", "four messages").await;

    let (ra, rb, rc) = (a.finish().await, b.finish().await, c.finish().await);
    for r in [&ra, &rb, &rc] {
        r.assert_ok();
        assert!(r.results().iter().all(|x| x["ok"] == true), "{}", r.logs);
    }
    let got = ra.events("ReceiveMessage");
    assert_eq!(
        message_ids(&got),
        message_ids_of(&[&m1, &m2, &m3]),
        "each once, in order, none after leaving\n{}",
        ra.logs
    );
    for (p, m) in got.iter().zip([&m1, &m2, &m3]) {
        assert_receive_message_is(p, m);
    }
    assert!(rb.events("ReceiveMessage").is_empty(), "a connection that joined no room: {}", rb.logs);
    let got = rc.events("ReceiveMessage");
    assert_eq!(message_ids(&got), message_ids_of(&[&m1, &m2, &m3, &m4]), "{}", rc.logs);
}

fn message_ids_of(ms: &[&Value]) -> Vec<u64> {
    ms.iter().map(|m| num(m, "message_id")).collect()
}

with_each_protocol!(
    scenario_join_room_refusals_complete_with_errors_and_the_connection_stays_usable,
    signalr_join_room_refusals_complete_with_errors_and_the_connection_stays_usable,
    signalr_join_room_refusals_complete_with_errors_and_the_connection_stays_usable_messagepack
);

async fn scenario_join_room_refusals_complete_with_errors_and_the_connection_stays_usable(protocol: &str) {
    let server = TestServer::spawn(&[]);
    let chat = Chat::new(&server);
    let outsider = 33u64;
    chat.touch(&[BUYER, SELLER, outsider]).await;
    let theirs = chat.direct(SELLER, BUYER).await;
    let mine = chat.direct(outsider, BUYER).await;

    let mut p = plan(&server, outsider, protocol);
    p["steps"] = json!([
        { "invoke": "JoinRoom", "args": [theirs] },
        { "invoke": "JoinRoom", "args": [NO_ROOM] },
        { "invoke": "JoinRoom", "args": ["not a room"] },
        { "invoke": "JoinRoom", "args": [] },
        { "invoke": "Shout", "args": [mine, "hi"] },
        { "invoke": "JoinRoom", "args": [mine] },
    ]);
    p["expect"] = json!({ "ReceiveMessage": 1 });
    let mut client = NodeClient::start(p);
    client.ready().await;
    chat.post(SELLER, theirs, "not for the outsider").await;
    let m = chat.post(BUYER, mine, "for the outsider").await;
    let run = client.finish().await;
    run.assert_ok();

    let results = run.results();
    assert_eq!(results.len(), 6, "{}", run.logs);
    for (r, needle) in results[..5].iter().zip(["participant", "not found", "roomId", "argument", "Shout"]) {
        assert_eq!(r["ok"], false, "{r}");
        let e = r["error"].as_str().unwrap_or_default();
        assert!(e.contains(needle), "the error names the problem ({needle}): {r}");
    }
    assert_eq!(results[5]["ok"], true, "the connection is still usable: {}", run.logs);
    let got = run.events("ReceiveMessage");
    assert_eq!(got.len(), 1, "only the room it joined: {}", run.logs);
    assert_receive_message_is(&got[0], &m);
}

with_each_protocol!(
    scenario_send_message_posts_once_per_client_msg_id,
    signalr_send_message_posts_once_per_client_msg_id,
    signalr_send_message_posts_once_per_client_msg_id_messagepack
);

/// `SendMessage(roomId, message, clientMsgId?)` posts and completes with the stored
/// message as `ReceiveMessage` renders it; a retry with its `clientMsgId` (on the hub or on
/// the plain socket: one id space) completes with the same message and posts nothing; the
/// id with other content, and malformed ids, are Completion errors.
async fn scenario_send_message_posts_once_per_client_msg_id(protocol: &str) {
    let server = TestServer::spawn(&[]);
    let chat = Chat::new(&server);
    chat.touch(&[BUYER, SELLER]).await;
    let room = chat.group(SELLER, "보내기", &[BUYER]).await;
    let mut seller = WsClient::connect(&server.base, room, &jwt(SELLER), None).await;
    let mut p = plan(&server, BUYER, protocol);
    p["steps"] = json!([{ "invoke": "JoinRoom", "args": [room] }]);
    p["stdin"] = json!(true);
    let mut buyer = NodeClient::start(p);
    buyer.ready().await;

    let plain = buyer.invoke("SendMessage", json!([room, "without an id"])).await;
    assert_eq!(plain["ok"], true, "{plain}");
    let first = buyer.invoke("SendMessage", json!([room.to_string(), "with an id", "sr-1"])).await;
    assert_eq!(first["ok"], true, "{first}");
    for retry in [json!([room, "with an id", "sr-1"]), json!([room, "with an id", "sr-1"])] {
        let again = buyer.invoke("SendMessage", retry).await;
        assert_eq!((&again["ok"], &again["result"]), (&json!(true), &first["result"]), "the same message: {again}");
    }
    let reused = buyer.invoke("SendMessage", json!([room, "other text", "sr-1"])).await;
    assert!(reused["ok"] == false && reused["error"].as_str().is_some_and(|e| e.contains("clientMsgId")), "{reused}");
    for bad in [json!("x".repeat(65)), json!(""), json!("아이디"), json!("a b"), json!(7)] {
        let r = buyer.invoke("SendMessage", json!([room, "bad id", bad])).await;
        assert!(r["ok"] == false && r["error"].as_str().is_some_and(|e| e.contains("clientMsgId")), "{bad}: {r}");
    }
    // The plain socket shares the ids: its retry gets the hub's message back.
    let mut socket = WsClient::connect(&server.base, room, &jwt(BUYER), None).await;
    socket.send(json!({ "type": "message", "content": "with an id", "client_msg_id": "sr-1" })).await;
    let replayed = socket.event(|e| is_type(e, "message") || is_type(e, "error"), T).await;
    assert_eq!(replayed["message_id"], first["result"]["messageId"], "{replayed}");

    let stored = chat.all_messages(SELLER, room).await;
    assert_eq!(stored.len(), 2, "two messages stored: {stored:?}");
    assert_receive_message_is(&plain["result"], &stored[0]);
    assert_receive_message_is(&first["result"], &stored[1]);
    let heard = seller.messages(2, T).await;
    assert_eq!(ids(&heard), ids(&stored), "the other member hears each once");
    assert!(seller.quiet(Duration::from_millis(600)).await.iter().all(|e| !is_type(e, "message")));
    buyer.send(json!({ "waitFor": { "ReceiveMessage": 2 } }));
    let run = buyer.finish().await;
    run.assert_ok();
    assert_eq!(message_ids(&run.events("ReceiveMessage")), ids(&stored), "the room's broadcasts, once\n{}", run.logs);
    socket.close().await;
    seller.close().await;
}

with_each_protocol!(
    scenario_refuses_missing_and_bad_tokens_with_401,
    signalr_refuses_missing_and_bad_tokens_with_401,
    signalr_refuses_missing_and_bad_tokens_with_401_messagepack
);

async fn scenario_refuses_missing_and_bad_tokens_with_401(protocol: &str) {
    let server = TestServer::spawn(&[]);
    let api = server.api();

    for token in [None, Some("not.a.jwt")] {
        let r = api.call("POST", "/hubs/chat/negotiate?negotiateVersion=1", token, &[], None).await;
        assert_eq!(r.status, 401, "{token:?}: {r:?}");
        assert_eq!(r.body["statusCode"], 401, "{r:?}");
        assert!(r.body["message"].as_str().is_some_and(|m| !m.is_empty()), "{r:?}");
        assert_eq!(r.body["data"], Value::Null, "{r:?}");
    }
    assert_eq!(RawHub::refused(&server.base, "", None).await, 401, "no token on the socket");
    assert_eq!(RawHub::refused(&server.base, "", Some("not.a.jwt")).await, 401, "a bad token on the socket");

    // The official client reports the refusal, by negotiation and without it.
    for skip in [false, true] {
        let mut p = plan(&server, BUYER, protocol);
        p["token"] = json!("not.a.jwt");
        p["skipNegotiation"] = json!(skip);
        let run = NodeClient::start(p).finish().await;
        assert_eq!(run.code, Some(1), "{}", run.logs);
        let s = run.summary();
        assert!(s["error"].as_str().is_some_and(|e| e.contains("cannot connect")), "{}", run.logs);
        if !skip {
            assert_eq!(s["statusCode"], 401, "{}", run.logs);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The protocol by hand

/// A raw WebSocket to the hub: text frames in, records (split on 0x1E) out. Also what
/// `cluster.rs` drives hubs on edges with.
pub(crate) struct RawHub {
    conn: Box<dyn WsConn>,
    /// Text after the last separator.
    partial: String,
    records: VecDeque<String>,
    pub(crate) closed: Option<u16>,
}

fn hub_url(base: &str, query: &str) -> String {
    let host = base.strip_prefix("http://").unwrap_or(base);
    format!("ws://{host}/hubs/chat{query}")
}

impl RawHub {
    /// Open `/hubs/chat?{query}` with the token as `access_token`.
    async fn try_open(base: &str, query: &str, token: Option<&str>) -> Result<RawHub, WsClientError> {
        let mut q: Vec<String> = query.split('&').filter(|s| !s.is_empty()).map(str::to_string).collect();
        if let Some(t) = token {
            q.push(format!("access_token={}", urlencode(t)));
        }
        let q = if q.is_empty() { String::new() } else { format!("?{}", q.join("&")) };
        let client = awc::Client::builder().timeout(T).finish();
        let (_res, framed) = client.ws(hub_url(base, &q)).connect().await?;
        Ok(RawHub { conn: Box::new(framed), partial: String::new(), records: VecDeque::new(), closed: None })
    }

    pub(crate) async fn open(base: &str, query: &str, token: &str) -> RawHub {
        match RawHub::try_open(base, query, Some(token)).await {
            Ok(h) => h,
            Err(e) => panic!("the hub's WebSocket ({query}) was refused: {e:?}"),
        }
    }

    pub(crate) async fn refused(base: &str, query: &str, token: Option<&str>) -> u16 {
        match RawHub::try_open(base, query, token).await {
            Ok(_) => panic!("the hub's WebSocket ({query}) was accepted"),
            Err(WsClientError::InvalidResponseStatus(s)) => s.as_u16(),
            Err(e) => panic!("the hub's WebSocket ({query}) failed without a status: {e:?}"),
        }
    }

    /// Send one text frame as is.
    pub(crate) async fn frame(&mut self, text: &str) {
        self.conn.send(Message::Text(text.to_string().into())).await.expect("send");
    }

    /// The handshake, answered by `{}`.
    async fn handshake(&mut self) {
        self.frame(&format!("{{\"protocol\":\"json\",\"version\":1}}{RS}")).await;
        assert_eq!(self.raw_record(T).await.as_deref(), Some("{}"), "the handshake answer");
    }

    /// The next record as sent (without the separator); None at the deadline or when closed.
    pub(crate) async fn raw_record(&mut self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(r) = self.records.pop_front() {
                return Some(r);
            }
            if self.closed.is_some() {
                return None;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = match actix_rt::time::timeout(left, self.conn.next()).await {
                Err(_) => return None,
                Ok(None) | Ok(Some(Err(_))) => {
                    self.closed = Some(NO_CLOSE_FRAME);
                    continue;
                }
                Ok(Some(Ok(f))) => f,
            };
            match frame {
                Frame::Text(b) => {
                    self.partial.push_str(std::str::from_utf8(&b).expect("UTF-8 text"));
                    while let Some(i) = self.partial.find(RS) {
                        let rec: String = self.partial.drain(..=i).collect();
                        self.records.push_back(rec[..rec.len() - RS.len_utf8()].to_string());
                    }
                }
                Frame::Ping(p) => {
                    let _ = self.conn.send(Message::Pong(p)).await;
                }
                Frame::Close(reason) => {
                    self.closed = Some(reason.map(|r| u16::from(r.code)).unwrap_or(NO_STATUS));
                    let _ = self.conn.send(Message::Close(None)).await;
                }
                other => panic!("an unexpected frame: {other:?}"),
            }
        }
    }

    /// The next record that is not a Ping (the server pings every 15 s), as JSON.
    pub(crate) async fn record(&mut self, timeout: Duration) -> Option<Value> {
        loop {
            let raw = self.raw_record(timeout).await?;
            let v: Value =
                serde_json::from_str(&raw).unwrap_or_else(|e| panic!("a record that is not JSON ({e}): {raw:?}"));
            if v["type"] != 6 {
                return Some(v);
            }
        }
    }

    async fn expect_record(&mut self, what: &str) -> Value {
        match self.record(T).await {
            Some(v) => v,
            None => panic!("no record ({what}) within {T:?}; closed: {:?}", self.closed),
        }
    }

    /// Records until the socket closes (None if it stays open for `timeout`).
    async fn until_closed(&mut self, timeout: Duration) -> Option<Vec<Value>> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        while self.closed.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.record(left).await {
                Some(v) => got.push(v),
                None if self.closed.is_some() => break,
                None => return None,
            }
        }
        got.extend(self.records.drain(..).map(|r| serde_json::from_str(&r).expect("json")));
        Some(got)
    }
}

fn invocation(id: Option<&str>, target: &str, args: Value) -> String {
    let mut v = json!({ "type": 1, "target": target, "arguments": args });
    if let Some(id) = id {
        v["invocationId"] = json!(id);
    }
    format!("{v}{RS}")
}

pub(crate) fn assert_completion_ok(v: &Value, id: &str) {
    assert_eq!(v, &json!({ "type": 3, "invocationId": id, "result": null }), "a void Completion");
}

fn assert_completion_error(v: &Value, id: &str, needle: &str) {
    assert_eq!((&v["type"], &v["invocationId"]), (&json!(3), &json!(id)), "a Completion: {v}");
    assert!(v.get("result").is_none(), "an error Completion has no result: {v}");
    let e = v["error"].as_str().unwrap_or_else(|| panic!("an error: {v}"));
    assert!(e.contains(needle), "the error names {needle}: {v}");
}

#[actix_rt::test]
async fn signalr_protocol_by_hand_negotiate_handshake_records_pings_and_close() {
    let server = TestServer::spawn(&[]);
    let chat = Chat::new(&server);
    let api = server.api();
    chat.touch(&[BUYER, SELLER]).await;
    let room = chat.direct(SELLER, BUYER).await;
    let base = &server.base;
    let token = jwt(BUYER);

    // Negotiate, version 1: a connection id, and a separate one-time token.
    let r = api.call("POST", "/hubs/chat/negotiate?negotiateVersion=1", Some(&token), &[], None).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["negotiateVersion"], 1, "{r:?}");
    assert_eq!(
        r.body["availableTransports"],
        json!([{ "transport": "WebSockets", "transferFormats": ["Text", "Binary"] }]),
        "{r:?}"
    );
    let id = r.body["connectionId"].as_str().expect("connectionId").to_string();
    let conn_token = r.body["connectionToken"].as_str().expect("connectionToken").to_string();
    assert!(!id.is_empty() && id != conn_token, "{r:?}");

    // Unknown ids, and another user's token, are refused before the upgrade.
    assert_eq!(RawHub::refused(base, "id=no-such-connection", Some(&token)).await, 404);
    assert_eq!(RawHub::refused(base, &format!("id={id}"), Some(&token)).await, 404, "the id is not the token");
    let r = api.call("POST", "/hubs/chat/negotiate?negotiateVersion=1", Some(&jwt(SELLER)), &[], None).await;
    let sellers = r.body["connectionToken"].as_str().expect("connectionToken").to_string();
    assert_eq!(RawHub::refused(base, &format!("id={sellers}"), Some(&token)).await, 403, "another user's");

    let mut hub = RawHub::open(base, &format!("id={conn_token}"), &token).await;
    assert_eq!(RawHub::refused(base, &format!("id={conn_token}"), Some(&token)).await, 404, "a token works once");

    // The handshake split across two frames.
    hub.frame("{\"protocol\":\"json\",").await;
    hub.frame(&format!("\"version\":1}}{RS}")).await;
    assert_eq!(hub.raw_record(T).await.as_deref(), Some("{}"), "the handshake answer");

    // Two records in one frame: handled in order, each answered.
    hub.frame(&format!(
        "{}{}",
        invocation(Some("1"), "JoinRoom", json!([room])),
        invocation(Some("2"), "Nope", json!([]))
    ))
    .await;
    assert_completion_ok(&hub.expect_record("completion 1").await, "1");
    assert_completion_error(&hub.expect_record("completion 2").await, "2", "Nope");

    // JoinRoom then LeaveRoom in one frame: the leave comes after the join, so the room's
    // next message does not arrive. (A group room: a direct room's message reaches the
    // other party's user_ group whatever rooms they joined.)
    let group = chat.group(SELLER, "g", &[BUYER]).await;
    hub.frame(&format!(
        "{}{}",
        invocation(Some("3"), "JoinRoom", json!([group])),
        invocation(Some("4"), "LeaveRoom", json!([group.to_string()]))
    ))
    .await;
    assert_completion_ok(&hub.expect_record("completion 3").await, "3");
    assert_completion_ok(&hub.expect_record("completion 4").await, "4");
    chat.post(SELLER, group, "after leaving").await;

    // A record split inside a string across two frames; a ping; an invocation without an
    // id (no answer); a Completion from the client (ignored); then an answered one.
    let join = invocation(Some("5"), "JoinRoom", json!([room]));
    let (head, tail) = join.split_at(20);
    hub.frame(head).await;
    hub.frame(tail).await;
    assert_completion_ok(&hub.expect_record("completion 5").await, "5");
    hub.frame(&format!(
        "{{\"type\":6}}{RS}{}{{\"type\":3,\"invocationId\":\"x\",\"result\":1}}{RS}",
        invocation(None, "Nope", json!([]))
    ))
    .await;
    hub.frame(&invocation(Some("6"), "LeaveRoom", json!([NO_ROOM]))).await;
    assert_completion_ok(&hub.expect_record("completion 6 (nothing before it)").await, "6");

    // A message sent over REST: an Invocation without invocationId, once, though the
    // connection is in both the direct room's group and the receiver's user_ group.
    let m = chat.post(SELLER, room, "by hand").await;
    let e = hub.expect_record("ReceiveMessage").await;
    assert_eq!((&e["type"], &e["target"]), (&json!(1), &json!("ReceiveMessage")), "{e}");
    assert!(e.get("invocationId").is_none(), "{e}");
    assert_eq!(e["arguments"].as_array().map(Vec::len), Some(1), "{e}");
    assert_receive_message_is(&e["arguments"][0], &m);

    // A stream invocation is refused with a Completion.
    hub.frame(&format!("{{\"type\":4,\"invocationId\":\"7\",\"target\":\"JoinRoom\",\"arguments\":[{room}]}}{RS}"))
        .await;
    assert_completion_error(&hub.expect_record("completion 7").await, "7", "Streaming");

    // Close from the client: the server closes the socket.
    hub.frame(&format!("{{\"type\":7}}{RS}")).await;
    let rest = hub.until_closed(Duration::from_secs(3)).await.expect("the server closes after a Close message");
    assert!(rest.is_empty(), "nothing after the Close: {rest:?}");

    // Negotiate version 0 (no negotiateVersion): the connection id is the WebSocket's id.
    let r = api.call("POST", "/hubs/chat/negotiate", Some(&token), &[], None).await;
    assert_eq!((r.status, &r.body["negotiateVersion"]), (200, &json!(0)), "{r:?}");
    assert!(r.body.get("connectionToken").is_none(), "{r:?}");
    let id = r.body["connectionId"].as_str().expect("connectionId");
    let mut hub = RawHub::open(base, &format!("id={id}"), &token).await;
    hub.handshake().await;

    // Skipping negotiation: no id at all.
    let mut direct = RawHub::open(base, "", &token).await;
    direct.handshake().await;
    direct.frame(&invocation(Some("a"), "joinroom", json!([room]))).await;
    assert_completion_ok(&direct.expect_record("case-insensitive method names").await, "a");
    let m = chat.post(BUYER, room, "both").await;
    let e = direct.expect_record("ReceiveMessage").await;
    assert_receive_message_is(&e["arguments"][0], &m);

    // The other party's message in a direct room reaches every connection of the receiver
    // once: one that joined nothing (through user_), one that joined the room (through both
    // groups, the second copy dropped).
    let m = chat.post(SELLER, room, "to the buyer").await;
    for (conn, what) in [(&mut hub, "joined nothing"), (&mut direct, "joined the room")] {
        let e = conn.expect_record(what).await;
        assert_eq!(e["target"], "ReceiveMessage", "{what}: {e}");
        assert_receive_message_is(&e["arguments"][0], &m);
        let more = conn.record(Duration::from_millis(500)).await;
        assert!(more.as_ref().is_none_or(|r| r["type"] == 6), "{what}: once, not twice: {more:?}");
    }
}

#[actix_rt::test]
async fn signalr_handshake_and_protocol_errors_close_the_connection() {
    let server = TestServer::spawn(&[]);
    let base = &server.base;
    let token = jwt(BUYER);

    for (handshake, needle) in [
        (json!({ "protocol": "protobuf", "version": 1 }), "protobuf"),
        // Version 2 is version 1 with stateful reconnect's messages (signalr/reconnect.rs).
        (json!({ "protocol": "messagepack", "version": 3 }), "version 3"),
        (json!({ "protocol": "json", "version": 3 }), "version 3"),
        (json!({ "protocol": "json" }), "invalid"),
    ] {
        let mut hub = RawHub::open(base, "", &token).await;
        hub.frame(&format!("{handshake}{RS}")).await;
        let got = hub.until_closed(Duration::from_secs(3)).await.expect("closed after a refused handshake");
        assert_eq!(got.len(), 1, "{got:?}");
        let e = got[0]["error"].as_str().unwrap_or_else(|| panic!("a handshake error: {got:?}"));
        assert!(e.contains(needle), "{needle}: {e}");
    }

    // A record that is not JSON after the handshake: a Close message with an error.
    let mut hub = RawHub::open(base, "", &token).await;
    hub.handshake().await;
    hub.frame(&format!("this is not json{RS}")).await;
    let got = hub.until_closed(Duration::from_secs(3)).await.expect("closed after a bad record");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["type"], 7, "{got:?}");
    assert!(got[0]["error"].as_str().is_some_and(|e| !e.is_empty()), "{got:?}");

    // A plain GET (no upgrade) is not a WebSocket.
    let r = server.api().get("/hubs/chat", &token, &[]).await;
    assert_eq!(r.status, 400, "{r:?}");
}

#[actix_rt::test]
async fn signalr_a_connection_that_stops_reading_is_closed_and_never_slows_the_room() {
    const N: usize = 3000;
    const BATCH: usize = 50;
    let server = TestServer::spawn(&[("BOXOFFICE_WS_OUTBOX", "16")]);
    let chat = Chat::new(&server);
    chat.touch(&[BUYER, SELLER]).await;
    let room = chat.direct(SELLER, BUYER).await;
    let base = &server.base;
    let mut stalled = RawHub::open(base, "", &jwt(BUYER)).await;
    let mut normal = RawHub::open(base, "", &jwt(SELLER)).await;
    for hub in [&mut stalled, &mut normal] {
        hub.handshake().await;
        hub.frame(&invocation(Some("j"), "JoinRoom", json!([room]))).await;
        assert_completion_ok(&hub.expect_record("JoinRoom").await, "j");
    }

    let filler = "x".repeat(4000);
    let started = Instant::now();
    let (chat_ref, filler_ref) = (&chat, &filler);
    let sending = async move {
        let mut out = Vec::with_capacity(N);
        for batch in 0..N / BATCH {
            let replies = futures_util::future::join_all((0..BATCH).map(move |j| async move {
                chat_ref.say(SELLER, room, &format!("{:05} {filler_ref}", batch * BATCH + j)).await
            }))
            .await;
            for r in replies {
                assert_eq!(r.status, 201, "a send in batch {batch}: {r:?}");
                out.push(num(&r.body, "message_id"));
            }
        }
        out
    };
    let reading = async {
        let mut got = Vec::with_capacity(N);
        while got.len() < N {
            match normal.record(Duration::from_secs(20)).await {
                Some(v) if v["target"] == "ReceiveMessage" => got.push(num(&v["arguments"][0], "messageId")),
                Some(_) => {}
                None => panic!("{} of {N} messages, then nothing (closed: {:?})", got.len(), normal.closed),
            }
        }
        got
    };
    let (mut sent, got) = futures_util::future::join(sending, reading).await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(20), "{N} messages took {elapsed:?}: the stalled connection slowed the room");
    sent.sort_unstable();
    assert_eq!(got, sent, "the reader got every message once, in id order");
    assert_eq!(normal.closed, None, "the reader is still connected");

    // The stalled connection, read at last: some messages, then a Close message and 1008
    // (or the end of the connection).
    let records = stalled.until_closed(Duration::from_secs(15)).await.expect("the stalled connection is closed");
    let messages = records.iter().filter(|v| v["target"] == "ReceiveMessage").count();
    assert!(messages < N, "the stalled connection was cut off, so it cannot have every message");
    let code = stalled.closed;
    assert!(code == Some(1008) || code == Some(NO_CLOSE_FRAME), "closed with 1008 (or cut): {code:?}");
    if code == Some(1008) {
        let last = records.last().expect("a Close message before the close frame");
        assert_eq!(last["type"], 7, "{last}");
        assert!(last["error"].as_str().is_some_and(|e| e.contains("too slow")), "{last}");
    }

    // The buyer can come back.
    let mut back = RawHub::open(base, "", &jwt(BUYER)).await;
    back.handshake().await;
    back.frame(&invocation(Some("j"), "JoinRoom", json!([room]))).await;
    assert_completion_ok(&back.expect_record("JoinRoom").await, "j");
    let m = chat.post(SELLER, room, "welcome back").await;
    assert_receive_message_is(&back.expect_record("ReceiveMessage").await["arguments"][0], &m);
}

// ---------------------------------------------------------------------------------------
// Seed 001's scenarios (contract T broadcasts to `user_{receiverId}` too)

/// `POST /api/chat/messages` (multipart `roomId`, `message`) as `user`: the envelope.
pub(crate) async fn send_t(server: &TestServer, user: u64, room: u64, text: &str) -> Reply {
    let body = multipart(&[("roomId", &room.to_string()), ("message", text)], None);
    let http = awc::Client::builder().timeout(T).finish();
    let mut res = http
        .post(format!("{}/api/chat/messages", server.base))
        .insert_header(("Authorization", format!("Bearer {}", jwt(user))))
        .insert_header(("Content-Type", format!("multipart/form-data; boundary={BOUNDARY}")))
        .send_body(body)
        .await
        .expect("multipart request");
    let bytes = res.body().limit(1 << 20).await.expect("body");
    Reply {
        status: res.status().as_u16(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        raw: bytes.clone(),
        headers: res.headers().clone(),
    }
}

/// A contract T room: the seller lists a ticket, the buyer opens the room about it.
pub(crate) async fn trade_room(server: &TestServer, seller: u64, buyer: u64) -> u64 {
    let api = server.api();
    let listing = json!({ "title": "콘서트 티켓", "unitPrice": 150_000, "totalQuantity": 5 });
    let r = api.call("POST", "/api/tickets", Some(&jwt(seller)), &[], Some(listing)).await;
    assert_eq!(r.status, 201, "list a ticket: {r:?}");
    let ticket = num(&r.body["data"], "ticketId");
    let r = api.call("POST", "/api/chat/rooms", Some(&jwt(buyer)), &[], Some(json!({ "ticketId": ticket }))).await;
    assert_eq!(r.status, 201, "open the room: {r:?}");
    num(&r.body["data"], "roomId")
}

with_each_protocol!(
    scenario_contract_t_messages_reach_the_receivers_user_group_once,
    signalr_contract_t_messages_reach_the_receivers_user_group_once,
    signalr_contract_t_messages_reach_the_receivers_user_group_once_messagepack
);

/// Scenarios 1, 3 and 4 of seed 001: the receiver hears a message wherever they are (their
/// `user_` group), a connection in the room and the user group hears it once, and the
/// receiver is the other party whichever of the two sends. Then the room closes:
/// `RoomUpdated` reaches the room.
async fn scenario_contract_t_messages_reach_the_receivers_user_group_once(protocol: &str) {
    let server = TestServer::spawn(&[]);
    let room = trade_room(&server, SELLER, BUYER).await;

    // The buyer on the home screen (no room), the buyer in the room, the seller at home.
    let mut home = plan(&server, BUYER, protocol);
    home["stdin"] = json!(true);
    let mut inside = plan(&server, BUYER, protocol);
    inside["steps"] = json!([{ "invoke": "JoinRoom", "args": [room] }]);
    inside["stdin"] = json!(true);
    let mut seller = plan(&server, SELLER, protocol);
    seller["skipNegotiation"] = json!(true);
    seller["stdin"] = json!(true);
    let (mut home, mut inside, mut seller) =
        (NodeClient::start(home), NodeClient::start(inside), NodeClient::start(seller));
    home.ready().await;
    inside.ready().await;
    seller.ready().await;

    // The seller sends: receiver = the buyer (room_, user_15).
    let r1 = send_t(&server, SELLER, room, "안녕하세요").await;
    assert_eq!((r1.status, &r1.body["statusCode"]), (200, &json!(200)), "{r1:?}");
    let d1 = r1.body["data"].clone();
    assert_eq!(
        (&d1["roomId"], &d1["senderId"], &d1["success"]),
        (&json!(room), &json!(SELLER), &json!(true)),
        "{r1:?}"
    );
    home.send(json!({ "waitFor": { "ReceiveMessage": 1 } }));
    home.until(|v| v["kind"] == "reached", "the home screen's message").await;

    // The buyer sends: receiver = the seller (room_, user_20).
    let r2 = send_t(&server, BUYER, room, "네, 반갑습니다").await;
    assert_eq!(r2.status, 200, "{r2:?}");
    let d2 = r2.body["data"].clone();
    seller.send(json!({ "waitFor": { "ReceiveMessage": 1 } }));
    seller.until(|v| v["kind"] == "reached", "the seller's message").await;
    inside.send(json!({ "waitFor": { "ReceiveMessage": 2 } }));
    inside.until(|v| v["kind"] == "reached", "both messages in the room").await;

    // The seller leaves: the room is closed, and the room hears it.
    let r = server
        .api()
        .call("POST", "/api/chat/rooms/leave", Some(&jwt(SELLER)), &[], Some(json!({ "roomId": room })))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    inside.send(json!({ "waitFor": { "RoomUpdated": 1 } }));
    inside.until(|v| v["kind"] == "reached", "RoomUpdated").await;

    let (home, inside, seller) = (home.finish().await, inside.finish().await, seller.finish().await);
    for r in [&home, &inside, &seller] {
        r.assert_ok();
    }
    let check = |p: &Value, d: &Value| {
        for f in [
            "messageId",
            "roomId",
            "senderId",
            "senderNickname",
            "senderProfileImage",
            "message",
            "images",
            "createdAt",
        ] {
            assert_eq!(p[f], d[f], "ReceiveMessage {f} is the sent message's:\n{p}\n{d}");
        }
    };
    let got = home.events("ReceiveMessage");
    assert_eq!(message_ids(&got), vec![num(&d1, "messageId")], "only what was sent to the buyer: {}", home.logs);
    check(&got[0], &d1);
    let got = inside.events("ReceiveMessage");
    assert_eq!(message_ids(&got), vec![num(&d1, "messageId"), num(&d2, "messageId")], "once each: {}", inside.logs);
    let got = seller.events("ReceiveMessage");
    assert_eq!(message_ids(&got), vec![num(&d2, "messageId")], "{}", seller.logs);
    check(&got[0], &d2);
    let closed = inside.events("RoomUpdated");
    assert_eq!(
        closed,
        vec![
            json!({ "roomId": room, "event": "RoomClosed", "statusCode": "closed", "message": "채팅방이 종료되었습니다." })
        ],
        "{}",
        inside.logs
    );
}

with_each_protocol!(
    scenario_a_message_of_any_contract_reaches_signalr_and_plain_websockets_alike,
    a_message_of_any_contract_reaches_signalr_and_plain_websockets_alike,
    a_message_of_any_contract_reaches_signalr_and_plain_websockets_alike_messagepack
);

/// One room, two protocols: messages sent by contract T's REST, contract C's REST and
/// contract C's WebSocket reach a SignalR connection as `ReceiveMessage` and a plain
/// WebSocket as `message`, each once and in the same order.
async fn scenario_a_message_of_any_contract_reaches_signalr_and_plain_websockets_alike(protocol: &str) {
    let server = TestServer::spawn(&[]);
    let room = trade_room(&server, SELLER, BUYER).await;
    let mut p = plan(&server, BUYER, protocol);
    p["steps"] = json!([{ "invoke": "JoinRoom", "args": [room] }]);
    p["stdin"] = json!(true);
    let mut signalr = NodeClient::start(p);
    signalr.ready().await;
    let mut plain = crate::chat::WsClient::connect(&server.base, room, &jwt(BUYER), None).await;
    let mut sender = crate::chat::WsClient::connect(&server.base, room, &jwt(SELLER), None).await;

    let t = send_t(&server, SELLER, room, "from contract T").await;
    assert_eq!(t.status, 200, "{t:?}");
    let c = crate::chat::Chat::new(&server).post(SELLER, room, "from contract C").await;
    sender.send(json!({ "type": "message", "content": "from the plain socket" })).await;

    let got = plain.messages(3, Duration::from_secs(10)).await;
    let texts: Vec<&str> = got.iter().map(|e| e["content"].as_str().unwrap_or_default()).collect();
    assert_eq!(texts, ["from contract T", "from contract C", "from the plain socket"]);
    assert_eq!(num(&got[0], "message_id"), num(&t.body["data"], "messageId"));
    assert_eq!(num(&got[1], "message_id"), num(&c, "message_id"));
    signalr.send(json!({ "waitFor": { "ReceiveMessage": 3 } }));
    signalr.until(|v| v["kind"] == "reached", "three ReceiveMessage").await;
    let run = signalr.finish().await;
    run.assert_ok();
    let events = run.events("ReceiveMessage");
    let ids: Vec<u64> = got.iter().map(|e| num(e, "message_id")).collect();
    assert_eq!(message_ids(&events), ids, "the same messages, once each, in the same order: {}", run.logs);
    let texts: Vec<&str> = events.iter().map(|e| e["message"].as_str().unwrap_or_default()).collect();
    assert_eq!(texts, ["from contract T", "from contract C", "from the plain socket"]);
    assert!(events.iter().all(|e| e["type"] == "TEXT" && num(e, "senderId") == SELLER), "{events:?}");
    plain.close().await;
    sender.close().await;
}

/// Invocations over the per-connection limit (rate limits on): each one over it gets a
/// Completion error and is not acted on; a connection that keeps going gets a Close
/// message with an error, then 1008.
#[actix_rt::test]
async fn signalr_invocations_past_the_limit_get_completion_errors_then_a_close() {
    let server = TestServer::spawn(&[("BOXOFFICE_RATE_LIMIT", "on")]);
    let chat = Chat::new(&server);
    chat.touch(&[BUYER, SELLER]).await;
    let room = chat.direct(SELLER, BUYER).await;
    let mut hub = RawHub::open(&server.base, "", &jwt(BUYER)).await;
    hub.handshake().await;
    // 500 LeaveRoom invocations in one frame: cheap, each answered.
    let burst: String = (0..500).map(|i| invocation(Some(&format!("i{i}")), "LeaveRoom", json!([room]))).collect();
    hub.frame(&burst).await;
    let got = hub.until_closed(Duration::from_secs(20)).await.expect("the flooding connection is closed");
    let completions: Vec<&Value> = got.iter().filter(|v| v["type"] == 3).collect();
    let ok = completions.iter().filter(|v| v.get("error").is_none()).count();
    let refused =
        completions.iter().filter(|v| v["error"].as_str().is_some_and(|e| e.contains("Too many invocations"))).count();
    assert!((1..500).contains(&ok), "{ok} answered");
    assert!(refused >= 1, "over the limit: Completion errors ({} completions)", completions.len());
    let close = got.last().expect("records");
    assert_eq!(close["type"], 7, "a Close message last: {close}");
    assert!(close["error"].as_str().is_some_and(|e| !e.is_empty()), "{close}");
    assert_eq!(hub.closed, Some(1008));
}

pub(crate) mod reconnect;
