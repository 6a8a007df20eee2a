//! WebSocket protocol violations, sent byte by byte over a plain TCP socket: each ends with
//! a close frame carrying the code RFC 6455 asks for (1002 protocol error, 1007 text that
//! is not UTF-8, 1009 a frame over `BOXOFFICE_WS_MAX_FRAME`), on contract C's socket and
//! on the SignalR hub alike; a frame that is valid WebSocket but a bad request gets an
//! error event and the socket stays open.

use crate::chat::*;
use crate::helpers::*;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A raw client frame: `head` is the first byte (FIN, RSV bits, opcode); masked unless
/// `unmasked`. `announce` overrides the announced payload length (no payload is sent then).
pub fn frame(head: u8, payload: &[u8], unmasked: bool, announce: Option<u64>) -> Vec<u8> {
    let mut out = vec![head];
    let mask_bit = if unmasked { 0 } else { 0x80 };
    let len = announce.unwrap_or(payload.len() as u64);
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= u16::MAX as u64 {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    let key = [0x11u8, 0x22, 0x33, 0x44];
    if !unmasked {
        out.extend_from_slice(&key);
    }
    if announce.is_none() {
        out.extend(payload.iter().enumerate().map(|(i, b)| if unmasked { *b } else { b ^ key[i % 4] }));
    }
    out
}

/// An upgraded socket on `path` (with its query).
pub fn open(server: &TestServer, path: &str) -> TcpStream {
    let addr = server.base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).expect("upgrade request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("upgrade answer");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s
}

/// Read server frames until a close frame: its code. `None` if the connection ended (or
/// went silent) without one.
fn close_code(s: &mut TcpStream) -> Option<u16> {
    read_until_close(s).1
}

/// Read server frames until a close frame: how many text or binary frames came before it,
/// and its code (`None` if the connection ended or went silent without one).
pub fn read_until_close(s: &mut TcpStream) -> (usize, Option<u16>) {
    let mut data = 0;
    loop {
        let Some((opcode, payload)) = read_frame(s) else { return (data, None) };
        match opcode {
            0x8 => return (data, (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))),
            0x1 | 0x2 => data += 1,
            _ => {}
        }
    }
}

/// One server frame: its opcode and payload.
pub fn read_frame(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    {
        let mut h = [0u8; 2];
        s.read_exact(&mut h).ok()?;
        let mut len = (h[1] & 0x7f) as u64;
        if len == 126 {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).ok()?;
            len = u16::from_be_bytes(b) as u64;
        } else if len == 127 {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).ok()?;
            len = u64::from_be_bytes(b);
        }
        let mut payload = vec![0u8; len as usize];
        s.read_exact(&mut payload).ok()?;
        Some((h[0] & 0x0f, payload))
    }
}

#[actix_rt::test]
async fn websocket_violations_close_with_the_rfc_6455_codes() {
    let server = TestServer::spawn(&[]);
    let chat = Chat::new(&server);
    let (kim, lee) = (1u64, 2u64);
    chat.touch(&[kim, lee]).await;
    let room = chat.direct(kim, lee).await;
    let plain = format!("/chat/ws/{room}?token={}", jwt(kim));
    let hub = format!("/hubs/chat?access_token={}", jwt(kim));
    let big = vec![b'a'; 100 << 10];
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("an unmasked frame", frame(0x81, b"{}", true, None), 1002),
        ("text that is not UTF-8", frame(0x81, &[0xff, 0xfe, 0x41], false, None), 1007),
        ("a reserved bit", frame(0x81 | 0x40, b"{}", false, None), 1002),
        ("a reserved opcode", frame(0x83, b"{}", false, None), 1002),
        ("a close code no one may send", frame(0x88, &1005u16.to_be_bytes(), false, None), 1002),
        ("a 100 KB frame", frame(0x81, &big, false, None), 1009),
        ("a header announcing 2^62 bytes", frame(0x82, &[], false, Some(1 << 62)), 1009),
    ];
    for path in [&plain, &hub] {
        for (what, bytes, code) in &cases {
            let mut s = open(&server, path);
            s.write_all(bytes).expect("write");
            assert_eq!(close_code(&mut s), Some(*code), "{what} on {}", &path[..12]);
        }
    }

    // Valid WebSocket, bad request: an error event, and the socket stays open.
    let mut ws = WsClient::connect(&server.base, room, &jwt(kim), None).await;
    ws.send(json!({ "type": "typing" })).await;
    let e = ws.event(|e| e["type"] == "error", Duration::from_secs(5)).await;
    assert!(e["detail"].as_str().is_some_and(|d| d.contains("is_typing")), "{e}");
    ws.send(json!({ "type": "message", "content": "still open" })).await;
    let m = ws.messages(1, Duration::from_secs(5)).await;
    assert_eq!(m[0]["content"], "still open");
    ws.close().await;
}
