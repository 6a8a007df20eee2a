//! Contract C's REST client for tests, [`Chat`], and the checks and fixtures its tests
//! share: the contract's fields, error shape, images and multipart bodies.

use crate::helpers::*;
use serde_json::{json, Value};
use std::time::Duration;

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
