//! What every SignalR hub protocol shares: the messages a client sends and the server
//! writes, as the session sees them ([`HubMessage`], [`Outgoing`]), the [`HubProtocol`]
//! trait that each encoding implements ([`json`](super::json), [`msgpack`](super::msgpack)),
//! hub method arguments, and the domain's events as Invocations in contract T's camelCase
//! payloads ([`invocation`]), rendered once per event for every session of a protocol
//! ([`HubRender`]).

use crate::actors::hub::{ChatEvent, Frame, MessageEvent, Render};
use crate::actors::room::{BadClientMsgId, ClientMsgId};
use crate::http::signed::{LinkSigner, IMAGE_LINK_TTL};
use crate::time::{ms, now_ms, rfc3339};
use serde_json::{json, Value};
use std::collections::VecDeque;

/// The record separator that ends the handshake (and every JSON record).
pub(super) const RS: u8 = 0x1e;
pub(super) const HANDSHAKE_OK: &str = "{}\u{1e}";

/// A message from the client, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum HubMessage {
    /// Invocation (1): `call` is the target and arguments, or why they cannot be read.
    Invocation { id: Option<String>, call: Result<(String, Vec<Value>), String>, streams: bool },
    /// StreamInvocation (4).
    StreamInvocation { id: Option<String> },
    /// Close (7).
    Close,
    /// Ack (8): the peer has every message up to this sequence id.
    Ack(i64),
    /// Sequence (9): the sequence id of the peer's next message, after a reconnect.
    Sequence(i64),
    /// StreamItem, Completion (the server invokes nothing with an id) and CancelInvocation:
    /// nothing to do, but each counts in the stateful reconnect's sequence.
    IgnoredTracked,
    /// Ping, and types of later versions.
    Ignored,
}

impl HubMessage {
    /// Whether the message takes a sequence id (stateful reconnect): the invocation
    /// messages do; Ping, Close, Ack and Sequence do not.
    pub fn tracked(&self) -> bool {
        matches!(self, HubMessage::Invocation { .. } | HubMessage::StreamInvocation { .. } | HubMessage::IgnoredTracked)
    }
}

/// The hub message types that count in the stateful reconnect's sequence (Invocation,
/// StreamItem, Completion, StreamInvocation, CancelInvocation).
pub(super) fn tracked_type(kind: u64) -> bool {
    (1..=5).contains(&kind)
}

/// A sequence id as sent: any integer, so that a negative or huge one can be refused
/// with a reason (an id past `i64::MAX` reads as `i64::MAX`).
pub(super) fn sequence_id(n: Option<i64>, big: bool) -> Result<i64, Broken> {
    match (n, big) {
        (Some(n), _) => Ok(n),
        (None, true) => Ok(i64::MAX),
        (None, false) => Err(Broken::Invalid("Invalid message: 'sequenceId' must be an integer.".into())),
    }
}

/// A message the server writes.
#[derive(Debug, Clone, Copy)]
pub enum Outgoing<'a> {
    /// An event: an Invocation without `invocationId`, with one argument.
    Invocation {
        target: &'a str,
        argument: &'a Value,
    },
    /// A Completion: void (`Ok(None)`), with a result, or with an error.
    Completion {
        id: &'a str,
        outcome: Result<Option<&'a Value>, &'a str>,
    },
    Ping,
    Close {
        error: &'a str,
        allow_reconnect: bool,
    },
    /// Stateful reconnect: the server has every client message up to this id.
    Ack {
        id: u64,
    },
    /// Stateful reconnect: the sequence id of the server's next message (the first it
    /// sends again).
    Sequence {
        id: u64,
    },
}

/// Why a client's bytes cannot be read: the connection closes (1009, 1007).
#[derive(Debug, Clone, PartialEq)]
pub enum Broken {
    TooLarge,
    Invalid(String),
}

/// One encoding of the hub protocol. Adding one is a file implementing this trait and an
/// entry in [`PROTOCOLS`](super::PROTOCOLS).
pub trait HubProtocol: Send + Sync + 'static {
    /// Its name in the handshake (`json`, `messagepack`).
    fn name(&self) -> &'static str;
    /// The hub's render slot of this protocol.
    fn slot(&self) -> usize;
    /// Whether its messages travel in binary WebSocket frames.
    fn binary(&self) -> bool;
    /// Take the complete messages from the front of `buf` into `out`, leaving the start of
    /// one still arriving (at most `max` bytes).
    fn read(&self, buf: &mut Vec<u8>, max: usize, out: &mut VecDeque<HubMessage>) -> Result<(), Broken>;
    /// A message as one frame, its framing included.
    fn write(&self, msg: &Outgoing<'_>) -> Frame;
}

/// How sessions of one hub protocol render the domain's events.
pub struct HubRender {
    pub protocol: &'static dyn HubProtocol,
    pub links: LinkSigner,
}

impl Render for HubRender {
    fn slot(&self) -> usize {
        self.protocol.slot()
    }
    fn render(&self, event: &ChatEvent) -> Frame {
        let (target, argument) = invocation(event, &self.links, now_ms());
        self.protocol.write(&Outgoing::Invocation { target, argument: &argument })
    }
}

/// A room id argument: a number, or a string of digits.
pub(super) fn room_argument(args: &[Value]) -> Result<u64, String> {
    let [arg] = args else {
        return Err(format!("it takes 1 argument (roomId), not {}.", args.len()));
    };
    let id = match arg {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    id.filter(|&id| id > 0).ok_or_else(|| format!("roomId must be a room id, not {arg}."))
}

/// `SendMessage`'s arguments: `roomId` (as [`room_argument`] reads it), the text (1 to
/// 5,000 characters, not only white space) and, optionally, a client message id (a string,
/// or null for none).
pub(super) fn send_arguments(args: &[Value]) -> Result<(u64, String, Option<ClientMsgId>), String> {
    let (room, text, id) = match args {
        [room, text] => (room, text, &Value::Null),
        [room, text, id] => (room, text, id),
        _ => return Err(format!("it takes 2 or 3 arguments (roomId, message, clientMsgId?), not {}.", args.len())),
    };
    let room = room_argument(std::slice::from_ref(room))?;
    let text = match text {
        Value::String(t) if !t.trim().is_empty() && t.chars().count() <= 5000 => t.clone(),
        _ => return Err("message must be text of 1 to 5000 characters.".into()),
    };
    let id = match id {
        Value::Null => None,
        Value::String(id) => Some(ClientMsgId::try_from(id.clone()).map_err(|e| format!("clientMsgId {e}."))?),
        _ => return Err(format!("clientMsgId {BadClientMsgId}.")),
    };
    Ok((room, text, id))
}

/// A message kind as contract T names it: `TEXT`, `IMAGE`, `FILE`, `SYSTEM`,
/// `PURCHASE_CONFIRMED`, ...
pub fn message_type(kind: &str) -> String {
    kind.to_ascii_uppercase()
}

/// A message as contract T's `ReceiveMessage` payload. Image links are signed to work
/// until `now` + [`IMAGE_LINK_TTL`].
pub fn message_payload(m: &MessageEvent, links: &LinkSigner, now: u64) -> Value {
    let images = if m.images.is_empty() {
        Value::Null
    } else {
        let expires = now + ms(IMAGE_LINK_TTL);
        m.images.iter().map(|i| json!({ "url": links.sign(&i.url, expires), "expiresAt": rfc3339(expires) })).collect()
    };
    json!({
        "messageId": m.id,
        "roomId": m.room,
        "senderId": m.sender,
        "senderNickname": m.sender_name,
        "senderProfileImage": m.sender_picture,
        "message": m.content,
        "images": images,
        "createdAt": rfc3339(m.created_at),
        "type": message_type(&m.kind),
        "replyToMessageId": m.reply_to,
        "file": m.file.as_ref().map(|f| json!({ "url": f.url, "name": f.name, "size": f.size })),
    })
}

/// An event as an Invocation: its target and its one argument.
pub fn invocation(e: &ChatEvent, links: &LinkSigner, now: u64) -> (&'static str, Value) {
    match e {
        ChatEvent::Message(m) => ("ReceiveMessage", message_payload(m, links, now)),
        ChatEvent::MessageUpdated(m) => {
            let mut p = message_payload(m, links, now);
            p["isEdited"] = json!(m.edited_at.is_some());
            p["editedAt"] = json!(m.edited_at.map(rfc3339));
            p["updatedAt"] = json!(rfc3339(m.updated_at));
            p["isDeleted"] = json!(m.deleted);
            ("MessageUpdated", p)
        }
        ChatEvent::MessageDeleted { room, message } => {
            ("MessageDeleted", json!({ "roomId": room, "messageId": message }))
        }
        ChatEvent::Typing { room, user, user_name, is_typing } => {
            ("UserTyping", json!({ "roomId": room, "userId": user, "userName": user_name, "isTyping": is_typing }))
        }
        ChatEvent::UserStatus { user, user_name, online } => (
            "UserStatus",
            json!({
                "userId": user, "userName": user_name, "isOnline": online,
                "status": if *online { "online" } else { "offline" },
            }),
        ),
        ChatEvent::MessageRead { room, user, user_name, last_read, read_at } => (
            "MessageRead",
            json!({
                "roomId": room, "userId": user, "userName": user_name,
                "lastReadMessageId": last_read, "readAt": rfc3339(*read_at),
            }),
        ),
        ChatEvent::RoomClosed { room } => (
            "RoomUpdated",
            json!({ "roomId": room, "event": "RoomClosed", "statusCode": "closed", "message": crate::http::ROOM_CLOSED }),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::hub::FileRef;

    fn message(kind: &str, images: Vec<FileRef>, content: Option<&str>) -> MessageEvent {
        MessageEvent {
            room: 1,
            id: 123,
            sender: 20,
            sender_name: "판매자".into(),
            sender_picture: Some("https://example.test/p.png".into()),
            content: content.map(str::to_string),
            kind: kind.into(),
            file: None,
            images,
            reply_to: None,
            created_at: 1_769_162_400_000,
            edited_at: None,
            updated_at: 1_769_162_400_000,
            deleted: false,
        }
    }

    /// An event as the JSON protocol writes it.
    fn render(e: &ChatEvent, links: &LinkSigner, now: u64) -> String {
        let (target, argument) = invocation(e, links, now);
        let frame = super::super::json::Json.write(&Outgoing::Invocation { target, argument: &argument });
        assert_eq!(frame.opcode(), Frame::TEXT, "the JSON protocol writes text");
        String::from_utf8(frame.payload().to_vec()).expect("UTF-8")
    }

    fn parse(rec: &str) -> Value {
        assert!(rec.ends_with('\u{1e}'), "a record ends with 0x1E: {rec:?}");
        assert_eq!(rec.matches('\u{1e}').count(), 1, "one record: {rec:?}");
        serde_json::from_str(&rec[..rec.len() - 1]).expect("json")
    }

    #[test]
    fn messages_render_as_receive_message_invocations() {
        let links = LinkSigner::new(b"k");
        let img = FileRef { url: "/api/chat/images/1/a.png".into(), name: "a.png".into(), size: 3 };
        let v = parse(&render(&ChatEvent::Message(message("text", vec![img], Some("안녕하세요"))), &links, 1_000));
        assert_eq!(v["type"], 1);
        assert_eq!(v["target"], "ReceiveMessage");
        assert!(v.get("invocationId").is_none(), "{v}");
        let p = &v["arguments"][0];
        assert_eq!(
            (&p["messageId"], &p["roomId"], &p["senderId"], &p["senderNickname"], &p["message"], &p["type"]),
            (&json!(123), &json!(1), &json!(20), &json!("판매자"), &json!("안녕하세요"), &json!("TEXT"))
        );
        assert_eq!(p["senderProfileImage"], "https://example.test/p.png");
        assert_eq!(p["createdAt"], "2026-01-23T10:00:00.000Z");
        let expires = 1_000 + ms(IMAGE_LINK_TTL);
        assert_eq!(p["images"][0]["url"], links.sign("/api/chat/images/1/a.png", expires));
        assert_eq!(p["images"][0]["expiresAt"], rfc3339(expires));

        let v = parse(&render(&ChatEvent::Message(message("PURCHASE_CONFIRMED", vec![], None)), &links, 1_000));
        let p = &v["arguments"][0];
        assert_eq!(
            (&p["type"], &p["message"], &p["images"]),
            (&json!("PURCHASE_CONFIRMED"), &Value::Null, &Value::Null)
        );
        for (kind, shown) in [("image", "IMAGE"), ("file", "FILE"), ("system", "SYSTEM")] {
            assert_eq!(message_type(kind), shown);
        }
    }

    #[test]
    fn room_updates_and_other_events_have_their_targets() {
        let links = LinkSigner::new(b"k");
        let e = ChatEvent::RoomClosed { room: 1 };
        let v = parse(&render(&e, &links, 0));
        assert_eq!(v["target"], "RoomUpdated");
        assert_eq!(
            v["arguments"][0],
            json!({ "roomId": 1, "event": "RoomClosed", "statusCode": "closed", "message": "채팅방이 종료되었습니다." })
        );
        let typing = ChatEvent::Typing { room: 1, user: 2, user_name: "a".into(), is_typing: true };
        assert_eq!(parse(&render(&typing, &links, 0))["target"], "UserTyping");
        let status = ChatEvent::UserStatus { user: 2, user_name: "a".into(), online: false };
        assert_eq!(parse(&render(&status, &links, 0))["arguments"][0]["status"], "offline");
        let read = ChatEvent::MessageRead { room: 1, user: 2, user_name: "a".into(), last_read: 5, read_at: 0 };
        assert_eq!(parse(&render(&read, &links, 0))["arguments"][0]["lastReadMessageId"], 5);
        let deleted = ChatEvent::MessageDeleted { room: 1, message: 5 };
        assert_eq!(parse(&render(&deleted, &links, 0))["target"], "MessageDeleted");
    }

    #[test]
    fn send_message_takes_a_room_a_text_and_maybe_a_client_id() {
        let id = |s: &str| Some(ClientMsgId::try_from(s.to_string()).expect("an id"));
        assert_eq!(send_arguments(&[json!(7), json!("hi")]), Ok((7, "hi".into(), None)));
        assert_eq!(send_arguments(&[json!("7"), json!("hi"), json!(null)]), Ok((7, "hi".into(), None)));
        assert_eq!(send_arguments(&[json!(7), json!("hi"), json!("c-1")]), Ok((7, "hi".into(), id("c-1"))));
        let sixty_four = "x".repeat(64);
        assert_eq!(send_arguments(&[json!(7), json!("hi"), json!(sixty_four)]).map(|a| a.2), Ok(id(&sixty_four)));
        for (bad, needle) in [
            (vec![json!(7)], "arguments"),
            (vec![json!(7), json!("hi"), json!("c"), json!(1)], "arguments"),
            (vec![json!(0), json!("hi")], "roomId"),
            (vec![json!(7), json!("  ")], "message"),
            (vec![json!(7), json!("x".repeat(5001))], "message"),
            (vec![json!(7), json!(5)], "message"),
            (vec![json!(7), json!("hi"), json!("")], "clientMsgId"),
            (vec![json!(7), json!("hi"), json!("x".repeat(65))], "clientMsgId"),
            (vec![json!(7), json!("hi"), json!("아이디")], "clientMsgId"),
            (vec![json!(7), json!("hi"), json!("a b")], "clientMsgId"),
            (vec![json!(7), json!("hi"), json!(12)], "clientMsgId"),
        ] {
            let e = send_arguments(&bad).expect_err("refused");
            assert!(e.contains(needle), "{bad:?}: {e}");
        }
    }

    #[test]
    fn room_arguments_are_numbers_or_numeric_strings() {
        assert_eq!(room_argument(&[json!(7)]), Ok(7));
        assert_eq!(room_argument(&[json!("7")]), Ok(7));
        assert!(room_argument(&[]).is_err());
        assert!(room_argument(&[json!(1), json!(2)]).is_err());
        for bad in [json!(-1), json!(0), json!(1.5), json!("x"), json!(null), json!({})] {
            assert!(room_argument(std::slice::from_ref(&bad)).is_err(), "{bad}");
        }
    }
}
