//! Contract C's WebSocket subscriber for tests, [`WsClient`]: it answers pings, reads
//! JSON events, and reports how the connection closed.

use super::client::{ids, urlencode};
use awc::error::{WsClientError, WsProtocolError};
use awc::ws::{CloseCode, Frame, Message};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

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

    /// Open a socket at any `ws://` URL with these headers (no ping handshake).
    pub async fn open(url: &str, headers: &[(&str, &str)]) -> Result<WsClient, WsClientError> {
        let client = awc::Client::builder().timeout(Duration::from_secs(10)).finish();
        let mut req = client.ws(url).max_frame_size(1 << 20);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let (_res, framed) = req.connect().await?;
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

    /// Send a text frame; false once the connection no longer takes frames.
    pub async fn try_send_text(&mut self, text: &str) -> bool {
        self.conn.send(Message::Text(text.to_string().into())).await.is_ok()
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
