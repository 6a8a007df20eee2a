//! Contract C (seed 002), general chat over REST: rooms, messages (paging, replies, edits,
//! deletes, files), reading, search, settings, online status, and restarts. Every answer is
//! checked against the contract, and the state behind it (room lists, pages, participants)
//! after it.
//!
//! The helpers for contract C are here, at the top: `Chat` (the REST client) and `WsClient`
//! (a WebSocket subscriber); `chat_ws.rs` uses them too.

use crate::helpers::*;
use awc::error::{WsClientError, WsProtocolError};
use awc::ws::{CloseCode, Frame, Message};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A room id that no room has.
pub const NO_ROOM: u64 = 987_654_321;
/// A message id that no message has.
pub const NO_MESSAGE: u64 = 987_654_321;
/// The fields of a REST message.
pub const MESSAGE_FIELDS: [&str; 15] = [
    "message_id",
    "room_id",
    "sender_id",
    "sender_name",
    "message_content",
    "message_type",
    "file_url",
    "file_name",
    "file_size",
    "reply_to_message_id",
    "is_edited",
    "is_deleted",
    "edited_at",
    "created_at",
    "updated_at",
];
/// The fields of a RoomSummary in `GET /chat/rooms/`.
pub const SUMMARY_FIELDS: [&str; 10] = [
    "room_id",
    "room_name",
    "room_type",
    "created_by",
    "is_active",
    "created_at",
    "updated_at",
    "participant_count",
    "last_message",
    "unread_count",
];
/// The fields of a `message` event on the WebSocket.
pub const EVENT_FIELDS: [&str; 12] = [
    "type",
    "message_id",
    "room_id",
    "sender_id",
    "sender_name",
    "content",
    "message_type",
    "timestamp",
    "reply_to_message_id",
    "file_url",
    "file_name",
    "file_size",
];

/// The nickname in the tokens that `jwt(user)` mints.
pub fn name_of(user: u64) -> String {
    format!("buyer{user}")
}

pub fn room_path(room: u64, rest: &str) -> String {
    format!("/chat/rooms/{room}/{rest}")
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// An ISO 8601 timestamp in UTC, in milliseconds since the epoch.
pub fn utc_ms(v: &Value) -> i64 {
    let s = v.as_str().unwrap_or_else(|| panic!("an ISO 8601 timestamp, not {v}"));
    let t = chrono::DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s} is not ISO 8601 / RFC 3339: {e}"));
    assert_eq!(t.offset().local_minus_utc(), 0, "timestamps are UTC: {s}");
    t.timestamp_millis()
}

/// A number field.
pub fn num(v: &Value, field: &str) -> u64 {
    v[field].as_u64().unwrap_or_else(|| panic!("{field} is a non-negative integer: {v}"))
}

/// `message_id` of each.
pub fn ids(list: &[Value]) -> Vec<u64> {
    list.iter().map(|m| num(m, "message_id")).collect()
}

/// `message_content` (REST) or `content` (events) of each.
pub fn texts(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|m| {
            let t = if m.get("message_content").is_some() { &m["message_content"] } else { &m["content"] };
            t.as_str().unwrap_or_else(|| panic!("text of {m}")).to_string()
        })
        .collect()
}

pub fn assert_ascending(ids: &[u64], what: &str) {
    for w in ids.windows(2) {
        assert!(w[0] < w[1], "{what}: message ids are not strictly ascending at {} then {}: {ids:?}", w[0], w[1]);
    }
}

/// A contract C error: this status and `{"detail": "<non-empty text>"}`.
pub fn assert_detail(r: &Reply, status: u16) {
    assert_eq!(r.status, status, "{r:?}");
    let d = r.body["detail"].as_str().unwrap_or_else(|| panic!("a {{\"detail\": \"...\"}} body: {r:?}"));
    assert!(!d.trim().is_empty(), "an empty detail: {r:?}");
}

/// Every field of a REST message, with its type.
pub fn assert_message(m: &Value) {
    for f in MESSAGE_FIELDS {
        assert!(m.get(f).is_some(), "a message without {f}: {m}");
    }
    for f in ["message_id", "room_id", "sender_id"] {
        num(m, f);
    }
    assert!(m["sender_name"].is_string() && m["message_content"].is_string(), "{m}");
    let t = m["message_type"].as_str().unwrap_or_else(|| panic!("message_type: {m}"));
    assert!(["text", "image", "file", "voice", "location"].contains(&t), "{m}");
    assert!(m["is_edited"].is_boolean() && m["is_deleted"].is_boolean(), "{m}");
    assert!(m["reply_to_message_id"].is_null() || m["reply_to_message_id"].is_u64(), "{m}");
    assert!(m["file_url"].is_null() || m["file_url"].is_string(), "{m}");
    assert!(m["file_name"].is_null() || m["file_name"].is_string(), "{m}");
    assert!(m["file_size"].is_null() || m["file_size"].is_u64(), "{m}");
    let created = utc_ms(&m["created_at"]);
    assert!(utc_ms(&m["updated_at"]) >= created, "updated_at is not before created_at: {m}");
    if m["is_edited"] == true {
        assert!(utc_ms(&m["edited_at"]) >= created, "{m}");
    } else {
        assert!(m["edited_at"].is_null(), "edited_at is null until an edit: {m}");
    }
    if m["is_deleted"] == true {
        assert_eq!(m["message_content"], "", "a deleted message has no content: {m}");
        assert!(m["file_url"].is_null() && m["file_name"].is_null() && m["file_size"].is_null(), "no file: {m}");
    }
}

/// Every field of a RoomSummary, with its type.
pub fn assert_summary(s: &Value) {
    for f in SUMMARY_FIELDS {
        assert!(s.get(f).is_some(), "a room summary without {f}: {s}");
    }
    num(s, "room_id");
    num(s, "created_by");
    num(s, "participant_count");
    num(s, "unread_count");
    assert!(s["room_name"].is_string(), "{s}");
    assert!(s["room_type"] == "direct" || s["room_type"] == "group", "{s}");
    assert_eq!(s["is_active"], true, "{s}");
    assert!(s["last_message"].is_null() || s["last_message"].is_string(), "{s}");
    assert!(utc_ms(&s["updated_at"]) >= utc_ms(&s["created_at"]), "{s}");
}

/// A `message` event of the WebSocket that carries this REST message, with the seed's fields.
pub fn assert_event_is(e: &Value, m: &Value) {
    for f in EVENT_FIELDS {
        assert!(e.get(f).is_some(), "a message event without {f}: {e}");
    }
    assert_eq!(e["type"], "message", "{e}");
    for (ef, mf) in [
        ("message_id", "message_id"),
        ("room_id", "room_id"),
        ("sender_id", "sender_id"),
        ("sender_name", "sender_name"),
        ("content", "message_content"),
        ("message_type", "message_type"),
        ("reply_to_message_id", "reply_to_message_id"),
        ("file_url", "file_url"),
        ("file_name", "file_name"),
        ("file_size", "file_size"),
    ] {
        assert_eq!(e[ef], m[mf], "event {ef} vs message {mf}:\n event {e}\n message {m}");
    }
    assert_eq!(utc_ms(&e["timestamp"]), utc_ms(&m["created_at"]), "the event's timestamp is created_at:\n{e}\n{m}");
}

/// A PNG of `len` bytes: the signature, then varied bytes (CR, LF and dashes included).
pub fn png(len: usize) -> Vec<u8> {
    let mut b = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    b.extend((0..len.saturating_sub(8)).map(|i| (i * 37 % 251) as u8));
    b.truncate(len);
    b
}

/// A JPEG of `len` bytes (by its magic bytes).
pub fn jpeg(len: usize) -> Vec<u8> {
    let mut b = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00];
    b.extend((0..len.saturating_sub(11)).map(|i| (i * 13 % 256) as u8));
    b.truncate(len);
    b
}

/// Percent-encode a query value.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The file part of a multipart upload.
pub struct FilePart<'a> {
    pub name: &'a str,
    pub content_type: &'a str,
    pub bytes: &'a [u8],
}

pub const BOUNDARY: &str = "----boxoffice-chat-test-7MA4YWxkTrZu0gW";

/// A `multipart/form-data` body with these text fields and an optional `file` part.
pub fn multipart(fields: &[(&str, &str)], file: Option<&FilePart<'_>>) -> Vec<u8> {
    let mut b = Vec::new();
    for (k, v) in fields {
        b.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes(),
        );
    }
    if let Some(f) = file {
        b.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\nContent-Type: {}\r\n\r\n",
                f.name, f.content_type
            )
            .as_bytes(),
        );
        b.extend_from_slice(f.bytes);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    b
}

/// What `GET {file_url}` gave.
pub struct Fetched {
    pub status: u16,
    pub bytes: Vec<u8>,
    pub content_type: String,
    pub body: Value,
}

/// A contract C client: every call is made as a user id, with `jwt(user)`.
#[derive(Clone)]
pub struct Chat {
    pub api: Api,
    pub base: String,
    http: awc::Client,
}

impl Chat {
    pub fn new(server: &TestServer) -> Chat {
        let http = awc::Client::builder().timeout(Duration::from_secs(60)).disable_redirects().finish();
        Chat { api: server.api(), base: server.base.clone(), http }
    }

    pub async fn call(&self, user: u64, method: &str, path: &str, body: Option<Value>) -> Reply {
        self.api.call(method, path, Some(&jwt(user)), &[], body).await
    }

    pub async fn get(&self, user: u64, path: &str) -> Reply {
        self.call(user, "GET", path, None).await
    }

    /// Let the server see these users (and their names): each lists their rooms.
    pub async fn touch(&self, users: &[u64]) {
        for &u in users {
            let r = self.get(u, "/chat/rooms/").await;
            assert_eq!(r.status, 200, "GET /chat/rooms/ as user {u}: {r:?}");
        }
    }

    /// `GET /chat/rooms/` as `user`: the summaries, after checking their shape and total_count.
    pub async fn rooms(&self, user: u64) -> Vec<Value> {
        let r = self.get(user, "/chat/rooms/").await;
        assert_eq!(r.status, 200, "GET /chat/rooms/ as user {user}: {r:?}");
        let list = r.body["rooms"].as_array().unwrap_or_else(|| panic!("rooms: {r:?}")).clone();
        assert_eq!(r.body["total_count"].as_u64(), Some(list.len() as u64), "{r:?}");
        list.iter().for_each(assert_summary);
        list
    }

    /// The summary of one room in `user`'s list.
    pub async fn summary(&self, user: u64, room: u64) -> Value {
        let list = self.rooms(user).await;
        list.into_iter()
            .find(|s| s["room_id"] == room)
            .unwrap_or_else(|| panic!("room {room} is not in the list of user {user}"))
    }

    /// The room ids of `user`'s list, in its order.
    pub async fn room_ids(&self, user: u64) -> Vec<u64> {
        self.rooms(user).await.iter().map(|s| num(s, "room_id")).collect()
    }

    pub async fn create(&self, user: u64, body: Value) -> Reply {
        self.call(user, "POST", "/chat/rooms/", Some(body)).await
    }

    /// A group room made by `user` with `others`; its id.
    pub async fn group(&self, user: u64, name: &str, others: &[u64]) -> u64 {
        let body = json!({ "room_name": name, "room_type": "group", "participant_ids": others });
        let r = self.create(user, body).await;
        assert_eq!(r.status, 201, "create group {name}: {r:?}");
        num(&r.body, "room_id")
    }

    /// The direct room of `user` and `other` (made or found); its id.
    pub async fn direct(&self, user: u64, other: u64) -> u64 {
        let r = self.create(user, json!({ "room_type": "direct", "participant_ids": [other] })).await;
        assert!(r.status == 201 || r.status == 200, "direct room {user}-{other}: {r:?}");
        num(&r.body, "room_id")
    }

    pub async fn send(&self, user: u64, room: u64, body: Value) -> Reply {
        self.call(user, "POST", &room_path(room, "messages/"), Some(body)).await
    }

    /// Send a text message as JSON.
    pub async fn say(&self, user: u64, room: u64, text: &str) -> Reply {
        self.send(user, room, json!({ "message_content": text, "message_type": "text" })).await
    }

    /// Send a text message, which must be stored: the message.
    pub async fn post(&self, user: u64, room: u64, text: &str) -> Value {
        let r = self.say(user, room, text).await;
        assert_eq!(r.status, 201, "user {user} sends {text:?} to room {room}: {r:?}");
        assert_message(&r.body);
        r.body
    }

    /// `GET messages/?{query}`.
    pub async fn page(&self, user: u64, room: u64, query: &str) -> Reply {
        self.get(user, &format!("{}?{query}", room_path(room, "messages/"))).await
    }

    /// Every message of the room, oldest first, read page by page (size 100).
    pub async fn all_messages(&self, user: u64, room: u64) -> Vec<Value> {
        let mut pages = Vec::new();
        let mut total = None;
        for page in 1.. {
            let r = self.page(user, room, &format!("page={page}&size=100")).await;
            assert_eq!(r.status, 200, "page {page} of room {room}: {r:?}");
            let list = r.body["messages"].as_array().unwrap_or_else(|| panic!("messages: {r:?}")).clone();
            let t = num(&r.body, "total_count");
            assert_eq!(*total.get_or_insert(t), t, "total_count changed between pages");
            list.iter().for_each(assert_message);
            let more = r.body["has_more"].as_bool().unwrap_or_else(|| panic!("has_more: {r:?}"));
            pages.push(list);
            if !more {
                break;
            }
            assert!(page < 1000, "has_more never ends");
        }
        let all: Vec<Value> = pages.into_iter().rev().flatten().collect();
        assert_eq!(Some(all.len() as u64), total, "the pages hold total_count messages");
        assert_ascending(&ids(&all), "all pages");
        all
    }

    pub async fn edit(&self, user: u64, room: u64, message: u64, text: &str) -> Reply {
        let path = room_path(room, &format!("messages/{message}/"));
        self.call(user, "PUT", &path, Some(json!({ "message_content": text }))).await
    }

    pub async fn delete(&self, user: u64, room: u64, message: u64) -> Reply {
        self.call(user, "DELETE", &room_path(room, &format!("messages/{message}/")), None).await
    }

    pub async fn read(&self, user: u64, room: u64) -> Reply {
        self.call(user, "POST", &room_path(room, "read/"), None).await
    }

    /// `GET search/?{query}` (the raw query string).
    pub async fn search(&self, user: u64, room: u64, query: &str) -> Reply {
        self.get(user, &format!("{}?{query}", room_path(room, "search/"))).await
    }

    pub async fn settings(&self, user: u64, room: u64) -> Reply {
        self.get(user, &room_path(room, "settings/")).await
    }

    pub async fn put_settings(&self, user: u64, room: u64, body: Value) -> Reply {
        self.call(user, "PUT", &room_path(room, "settings/"), Some(body)).await
    }

    pub async fn online(&self, user: u64, room: u64) -> Reply {
        self.get(user, &room_path(room, "online-status/")).await
    }

    /// `GET participants/` as `user`: the participants, after checking total_count.
    pub async fn participants(&self, user: u64, room: u64) -> Vec<Value> {
        let r = self.get(user, &room_path(room, "participants/")).await;
        assert_eq!(r.status, 200, "participants of {room}: {r:?}");
        let list = r.body["participants"].as_array().unwrap_or_else(|| panic!("participants: {r:?}")).clone();
        assert_eq!(r.body["total_count"].as_u64(), Some(list.len() as u64), "{r:?}");
        list
    }

    /// A multipart `POST messages/` as `user`.
    pub async fn upload(&self, user: u64, room: u64, fields: &[(&str, &str)], file: Option<FilePart<'_>>) -> Reply {
        let body = multipart(fields, file.as_ref());
        let mut res = self
            .http
            .post(format!("{}{}", self.base, room_path(room, "messages/")))
            .insert_header(("Authorization", format!("Bearer {}", jwt(user))))
            .insert_header(("Content-Type", format!("multipart/form-data; boundary={BOUNDARY}")))
            .send_body(body)
            .await
            .expect("multipart request");
        let bytes = res.body().limit(16 << 20).await.expect("body");
        Reply {
            status: res.status().as_u16(),
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            raw: bytes.clone(),
            headers: res.headers().clone(),
        }
    }

    /// `GET path` (a `file_url`, perhaps with `?token=`), with a bearer token if given.
    pub async fn fetch(&self, path: &str, token: Option<&str>) -> Fetched {
        let mut req = self.http.get(format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.insert_header(("Authorization", format!("Bearer {t}")));
        }
        let mut res = req.send().await.expect("file request");
        let bytes = res.body().limit(64 << 20).await.expect("body").to_vec();
        let content_type =
            res.headers().get("content-type").map(|v| v.to_str().unwrap_or_default().to_string()).unwrap_or_default();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Fetched { status: res.status().as_u16(), bytes, content_type, body }
    }
}

// ---------------------------------------------------------------------------------------
// WebSocket

/// The connection that `awc` gives: frames in, messages out.
pub trait WsConn:
    Stream<Item = Result<Frame, WsProtocolError>> + Sink<Message, Error = WsProtocolError> + Unpin
{
}
impl<T> WsConn for T where
    T: Stream<Item = Result<Frame, WsProtocolError>> + Sink<Message, Error = WsProtocolError> + Unpin
{
}

/// What `closed` says when the connection ended without a close frame (as browsers report it).
pub const NO_CLOSE_FRAME: u16 = 1006;
/// What `closed` says for a close frame without a code.
pub const NO_STATUS: u16 = 1005;

/// `ws://HOST/chat/ws/{room}?token=...&since=...`
pub fn ws_url(base: &str, room: u64, token: Option<&str>, since: Option<u64>) -> String {
    let host = base.strip_prefix("http://").unwrap_or(base);
    let mut q = Vec::new();
    if let Some(t) = token {
        q.push(format!("token={}", urlencode(t)));
    }
    if let Some(s) = since {
        q.push(format!("since={s}"));
    }
    let q = if q.is_empty() { String::new() } else { format!("?{}", q.join("&")) };
    format!("ws://{host}/chat/ws/{room}{q}")
}

pub fn is_type(e: &Value, t: &str) -> bool {
    e["type"] == t
}

pub fn is_status(e: &Value, user: u64, status: &str) -> bool {
    e["type"] == "user_status" && e["user_id"] == user && e["status"] == status
}

/// A WebSocket subscriber of one room. It answers ping frames, and reads JSON text frames.
pub struct WsClient {
    conn: Box<dyn WsConn>,
    /// Events read ahead (while waiting for a pong at connect), handed out first.
    pending: VecDeque<Value>,
    /// The close code once the connection ended: the close frame's code, `NO_STATUS`,
    /// or `NO_CLOSE_FRAME`.
    pub closed: Option<u16>,
}

impl WsClient {
    /// Open the socket; a refused handshake is `Err(WsClientError::InvalidResponseStatus(status))`.
    pub async fn try_connect(
        base: &str,
        room: u64,
        token: Option<&str>,
        since: Option<u64>,
    ) -> Result<WsClient, WsClientError> {
        let client = awc::Client::builder().timeout(Duration::from_secs(10)).finish();
        let (_res, framed) = client.ws(ws_url(base, room, token, since)).max_frame_size(1 << 20).connect().await?;
        Ok(WsClient { conn: Box::new(framed), pending: VecDeque::new(), closed: None })
    }

    /// Open the socket, which must be accepted, and wait until the server answers a `ping`
    /// (so the subscription is in place). Events that arrive before the `pong` are kept.
    pub async fn connect(base: &str, room: u64, token: &str, since: Option<u64>) -> WsClient {
        let mut ws = match WsClient::try_connect(base, room, Some(token), since).await {
            Ok(ws) => ws,
            Err(e) => panic!("WebSocket to room {room} refused: {e:?}"),
        };
        ws.send(json!({ "type": "ping" })).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match ws.read_until(deadline).await {
                Some(e) if is_type(&e, "pong") => break,
                Some(e) => ws.pending.push_back(e),
                None => panic!("no pong on a new socket to room {room} (closed: {:?})", ws.closed),
            }
        }
        ws
    }

    /// The HTTP status of a handshake that must be refused.
    pub async fn refused(base: &str, room: u64, token: Option<&str>) -> u16 {
        match WsClient::try_connect(base, room, token, None).await {
            Ok(_) => panic!("the WebSocket handshake to room {room} was accepted"),
            Err(WsClientError::InvalidResponseStatus(s)) => s.as_u16(),
            Err(e) => panic!("the WebSocket handshake to room {room} failed without a status: {e:?}"),
        }
    }

    /// Send a JSON text frame.
    pub async fn send(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.conn.send(Message::Text(text.to_string().into())).await.expect("WebSocket send");
    }

    /// The next frame as JSON, answering pings; None at the deadline or once closed.
    async fn read_until(&mut self, deadline: Instant) -> Option<Value> {
        loop {
            if self.closed.is_some() {
                return None;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = match actix_rt::time::timeout(left, self.conn.next()).await {
                Err(_) => return None,
                Ok(None) | Ok(Some(Err(_))) => {
                    self.closed = Some(NO_CLOSE_FRAME);
                    return None;
                }
                Ok(Some(Ok(f))) => f,
            };
            match frame {
                Frame::Text(b) => {
                    return Some(serde_json::from_slice(&b).unwrap_or_else(|e| {
                        panic!("a text frame that is not JSON ({e}): {}", String::from_utf8_lossy(&b))
                    }))
                }
                Frame::Ping(b) => {
                    let _ = self.conn.send(Message::Pong(b)).await;
                }
                Frame::Pong(_) => {}
                Frame::Close(reason) => {
                    self.closed = Some(reason.map(|r| u16::from(r.code)).unwrap_or(NO_STATUS));
                    let _ = self.conn.send(Message::Close(None)).await;
                    return None;
                }
                Frame::Binary(b) => panic!("an unexpected binary frame ({} bytes)", b.len()),
                Frame::Continuation(item) => panic!("an unexpected fragmented frame: {item:?}"),
            }
        }
    }

    /// The next event; None when nothing came within `timeout` or the socket is closed.
    pub async fn next_event(&mut self, timeout: Duration) -> Option<Value> {
        if let Some(e) = self.pending.pop_front() {
            return Some(e);
        }
        self.read_until(Instant::now() + timeout).await
    }

    /// Events up to and including the first that matches `pred`; panics if none does in time.
    pub async fn events_until(&mut self, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left).await {
                Some(e) => {
                    let hit = pred(&e);
                    seen.push(e);
                    if hit {
                        return seen;
                    }
                }
                None => panic!(
                    "no matching event within {timeout:?} (closed: {:?}); got {} events, the last: {:?}",
                    self.closed,
                    seen.len(),
                    &seen[seen.len().saturating_sub(5)..]
                ),
            }
        }
    }

    /// The first event that matches `pred` (others are skipped); panics if none does in time.
    pub async fn event(&mut self, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Value {
        self.events_until(pred, timeout).await.pop().expect("an event")
    }

    /// The next `n` `message` events (other events are skipped); panics if they don't come in time.
    pub async fn messages(&mut self, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left).await {
                Some(e) if is_type(&e, "message") => got.push(e),
                Some(_) => {}
                None => panic!(
                    "{} of {n} message events within {timeout:?} (closed: {:?}); the last ids: {:?}",
                    got.len(),
                    self.closed,
                    &ids(&got)[got.len().saturating_sub(5)..]
                ),
            }
        }
        got
    }

    /// Every event that arrives within `d`.
    pub async fn quiet(&mut self, d: Duration) -> Vec<Value> {
        let deadline = Instant::now() + d;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left).await {
                Some(e) => got.push(e),
                None => return got,
            }
        }
    }

    /// Read (and keep) events until the connection ends; the events and the close code
    /// (None if it was still open after `timeout`).
    pub async fn drain_until_close(&mut self, timeout: Duration) -> (Vec<Value>, Option<u16>) {
        let deadline = Instant::now() + timeout;
        let mut got: Vec<Value> = self.pending.drain(..).collect();
        while self.closed.is_none() && Instant::now() < deadline {
            if let Some(e) = self.read_until(deadline).await {
                got.push(e);
            }
        }
        (got, self.closed)
    }

    /// Skip events until the connection ends: its close code (`NO_CLOSE_FRAME` when it just
    /// ended), or None if it was still open after `timeout`.
    pub async fn expect_close(&mut self, timeout: Duration) -> Option<u16> {
        self.drain_until_close(timeout).await.1
    }

    /// Close normally and wait (briefly) for the server's answer.
    pub async fn close(mut self) {
        if self.closed.is_none() {
            let _ = self.conn.send(Message::Close(Some(CloseCode::Normal.into()))).await;
            self.expect_close(Duration::from_secs(3)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------

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

#[actix_rt::test]
async fn files_are_uploaded_as_multipart_and_served_to_participants_only() {
    let server = TestServer::spawn(&[("BOXOFFICE_CHAT_MAX_FILE_BYTES", "1024")]);
    let chat = Chat::new(&server);
    let (kim, lee, outsider) = (1u64, 2u64, 3u64);
    chat.touch(&[kim, lee, outsider]).await;
    let room = chat.group(kim, "files", &[lee]).await;

    // An image, as the seed sends it.
    let img = png(600);
    let file = FilePart { name: "photo.png", content_type: "image/png", bytes: &img };
    let r = chat
        .upload(kim, room, &[("message_content", "사진을 보내드려요"), ("message_type", "image")], Some(file))
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let photo = r.body.clone();
    assert_message(&photo);
    assert_eq!((&photo["message_type"], &photo["message_content"]), (&json!("image"), &json!("사진을 보내드려요")));
    assert_eq!((&photo["file_name"], num(&photo, "file_size")), (&json!("photo.png"), 600), "{photo}");
    assert_eq!((num(&photo, "sender_id"), num(&photo, "room_id")), (kim, room));
    let url = photo["file_url"].as_str().unwrap_or_else(|| panic!("file_url: {photo}")).to_string();
    assert!(url.starts_with(&format!("/chat/files/{room}/")), "file_url is /chat/files/{{room_id}}/...: {url}");

    // Participants get the exact bytes, by header or ?token=; others don't.
    for who in [kim, lee] {
        let f = chat.fetch(&url, Some(&jwt(who))).await;
        assert_eq!(f.status, 200, "user {who} fetches {url}");
        assert!(f.bytes == img, "the same bytes ({} vs {})", f.bytes.len(), img.len());
        assert!(f.content_type.starts_with("image/png"), "the stored content type: {}", f.content_type);
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    let f = chat.fetch(&format!("{url}{sep}token={}", jwt(lee)), None).await;
    assert!(f.status == 200 && f.bytes == img, "?token= works too: {}", f.status);
    let f = chat.fetch(&url, Some(&jwt(outsider))).await;
    assert_eq!(f.status, 403, "a non-participant: {}", f.body);
    assert!(f.body["detail"].is_string(), "{}", f.body);
    let f = chat.fetch(&format!("{url}{sep}token={}", jwt(outsider)), None).await;
    assert_eq!(f.status, 403, "a non-participant's ?token=");
    assert_eq!(chat.fetch(&url, None).await.status, 401, "no token");
    let f = chat.fetch(&format!("/chat/files/{room}/no-such-file.png"), Some(&jwt(kim))).await;
    assert_eq!(f.status, 404, "an unknown file: {}", f.body);

    // A plain file: message_type defaults to file; a JPEG image; exactly the limit is fine.
    let notes = b"hello\r\n--not-the-boundary\r\n\x00\x01binary tail".to_vec();
    let file = FilePart { name: "notes.txt", content_type: "text/plain", bytes: &notes };
    let r = chat.upload(lee, room, &[], Some(file)).await;
    assert_eq!(r.status, 201, "{r:?}");
    let doc = r.body.clone();
    assert_message(&doc);
    assert_eq!((&doc["message_type"], &doc["file_name"]), (&json!("file"), &json!("notes.txt")), "{doc}");
    assert_eq!(num(&doc, "file_size"), notes.len() as u64);
    let f = chat.fetch(doc["file_url"].as_str().expect("file_url"), Some(&jwt(kim))).await;
    assert!(f.status == 200 && f.bytes == notes, "the text file comes back as sent: {}", f.status);
    let jpg = jpeg(500);
    let file = FilePart { name: "p.jpg", content_type: "image/jpeg", bytes: &jpg };
    let r = chat.upload(lee, room, &[("message_type", "image")], Some(file)).await;
    assert_eq!((r.status, &r.body["message_type"]), (201, &json!("image")), "a JPEG: {r:?}");
    let photo2 = r.body.clone();
    let edge = png(1024);
    let file = FilePart { name: "edge.png", content_type: "image/png", bytes: &edge };
    let r = chat.upload(kim, room, &[("message_type", "image")], Some(file)).await;
    assert_eq!((r.status, r.body["file_size"].as_u64()), (201, Some(1024)), "exactly the limit: {r:?}");
    let at_limit = r.body.clone();

    // Refusals: 400 (422 without a file); nothing stored.
    let text = b"just some text, not a picture".to_vec();
    let big = png(1025);
    let big_text = vec![b'a'; 2000];
    let mut exe = b"MZ\x90\x00\x03\x00\x00\x00".to_vec();
    exe.extend(std::iter::repeat_n(0u8, 100));
    let cases = [
        ("text declared as an image", "image", FilePart { name: "fake.png", content_type: "image/png", bytes: &text }),
        ("an image over the limit", "image", FilePart { name: "big.png", content_type: "image/png", bytes: &big }),
        ("a file over the limit", "file", FilePart { name: "big.txt", content_type: "text/plain", bytes: &big_text }),
        (
            "an executable",
            "file",
            FilePart { name: "setup.exe", content_type: "application/octet-stream", bytes: &exe },
        ),
    ];
    for (what, kind, file) in cases {
        let r = chat.upload(kim, room, &[("message_type", kind)], Some(file)).await;
        assert_eq!(r.status, 400, "{what}: {r:?}");
        assert_detail(&r, 400);
    }
    let r = chat.upload(kim, room, &[("message_content", "no file"), ("message_type", "file")], None).await;
    assert_eq!(r.status, 422, "multipart without a file: {r:?}");
    assert_detail(&r, 422);
    let all = chat.all_messages(kim, room).await;
    assert_eq!(all, [photo.clone(), doc.clone(), photo2, at_limit], "only the accepted uploads were stored");

    // A deleted file message keeps its place without its file.
    let pid = num(&photo, "message_id");
    assert_eq!(chat.delete(lee, room, pid).await.status, 403);
    assert_eq!(chat.delete(kim, room, pid).await.status, 200);
    let first = chat.all_messages(lee, room).await.remove(0);
    assert_eq!((num(&first, "message_id"), &first["is_deleted"]), (pid, &json!(true)), "{first}");
    assert!(first["file_url"].is_null() && first["file_name"].is_null() && first["file_size"].is_null(), "{first}");
}

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
