//! The WebSocket side: many sockets on few tasks. Sockets are split into shards; a shard
//! is one task on the WebSocket runtime that opens its sockets (TCP bound to a chosen
//! loopback source address, then the WebSocket handshake and the protocol's setup), then
//! reads all of them through one `SelectAll`. Received chat messages are not parsed as
//! JSON: a byte scan finds the content `sender:seq:send_micros` and that is all.
//!
//! Sockets that also send (`chat-fanout --send ws`) go to shards of their own, which take
//! [`SendCmd`]s from the main thread through [`Outlets`] and write them on the named
//! member's socket: that socket keeps receiving like every other.

use crate::common::{unix_micros, ErrorTally, Target};
use crate::metrics::histogram;
use futures_util::stream::SelectAll;
use futures_util::{SinkExt, Stream, StreamExt};
use hdrhistogram::Histogram;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

pub type Ws = WebSocketStream<TcpStream>;

/// The record separator of the SignalR protocol.
const RS: u8 = 0x1e;
/// How often a SignalR client pings (the server closes a connection silent for 30 s).
const SIGNALR_PING_EVERY: Duration = Duration::from_secs(10);
/// Sending sockets per shard at most: a send finds its socket by a scan of the shard's.
const SENDERS_PER_SHARD: usize = 32;
/// How long writing one frame of a [`SendCmd`] may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// Contract C's JSON WebSocket, `/chat/ws/{room}?token=`.
    Plain,
    /// The SignalR JSON hub protocol at `/hubs/chat` (negotiate, handshake, JoinRoom).
    Signalr,
}

/// What a shard does with the frames of its sockets.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// Chat messages whose content is `sender:seq:send_micros`; sender ids from `user_base`.
    Chat { user_base: u64 },
    /// Idle connections: frames are read (pings answered) and dropped.
    Idle,
}

/// Settings every shard shares.
pub struct ShardCfg {
    /// The servers the sockets connect to (one, or a core's edges); a [`SockSpec`] names
    /// its own by index. Never empty.
    pub servers: Vec<Target>,
    pub protocol: Protocol,
    pub mode: Mode,
    /// How long one socket's connect, handshake and setup may take.
    pub setup_timeout: Duration,
}

/// One socket to open.
#[derive(Debug, Clone)]
pub struct SockSpec {
    pub room: u64,
    pub user: u64,
    pub jwt: String,
    pub src: Option<IpAddr>,
    /// Where it connects: an index into [`ShardCfg::servers`].
    pub server: usize,
    /// This socket also sends: its shard takes [`SendCmd`]s for `user` (plain protocol).
    pub sends: bool,
}

/// A text frame to write on the socket of `user` (a [`SockSpec`] with `sends`), and where
/// to say whether it was written.
pub struct SendCmd {
    pub user: u64,
    pub text: String,
    pub done: oneshot::Sender<Result<(), String>>,
}

/// The way to the sending sockets' shards, by user.
#[derive(Default)]
pub struct Outlets {
    by_user: HashMap<u64, mpsc::UnboundedSender<SendCmd>>,
}

impl Outlets {
    /// Hand `text` to `user`'s socket now; the future resolves once it was written (or
    /// could not be).
    pub fn send(&self, user: u64, text: String) -> impl Future<Output = Result<(), String>> + 'static {
        let (done, rx) = oneshot::channel();
        let handed = match self.by_user.get(&user) {
            Some(tx) => tx.send(SendCmd { user, text, done }).map_err(|_| "the socket's shard has stopped".to_string()),
            None => Err(format!("user {user} has no sending socket")),
        };
        async move {
            handed?;
            rx.await.unwrap_or_else(|_| Err("the socket's shard dropped the frame".into()))
        }
    }
}

/// Live counters, shared with the main thread (progress and early stop).
#[derive(Default)]
pub struct Live {
    pub opened: AtomicU64,
    pub failed: AtomicU64,
    pub delivered: AtomicU64,
    pub duplicates: AtomicU64,
    pub closed: AtomicU64,
    /// `{"type":"error"}` frames the server sent (plain protocol), e.g. a refused message.
    pub error_frames: AtomicU64,
    pub errors: Mutex<ErrorTally>,
}

impl Live {
    fn fail(&self, what: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut e) = self.errors.lock() {
            e.add(what);
        }
    }
}

/// What one socket saw.
pub struct SockOut {
    pub room: u64,
    pub user: u64,
    /// The index into [`ShardCfg::servers`] of the server it was connected to.
    pub server: usize,
    /// Keys `(sender - user_base) << 32 | seq` of the chat messages received.
    pub seen: HashSet<u64>,
    /// Chat messages received again after the first time.
    pub duplicates: u64,
    pub closed: bool,
}

/// What a shard hands back when stopped.
pub struct ShardOut {
    /// Connect + handshake + setup, in microseconds.
    pub connect: Histogram<u64>,
    /// Send-to-receive latency of chat messages, in microseconds.
    pub delivery: Histogram<u64>,
    pub sockets: Vec<SockOut>,
    /// When this shard received its last chat message.
    pub last_delivery: Option<Instant>,
    pub unparsed: u64,
}

/// A socket of a shard, yielding its index with each item and once `None` at its end.
struct Tagged {
    idx: usize,
    ws: Ws,
    done: bool,
}

impl Stream for Tagged {
    type Item = (usize, Option<Result<Message, tungstenite::Error>>);

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.ws.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(m))) => Poll::Ready(Some((self.idx, Some(Ok(m))))),
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                Poll::Ready(Some((self.idx, Some(Err(e)))))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(Some((self.idx, None)))
            }
        }
    }
}

fn ws_config() -> WebSocketConfig {
    // Small buffers: many sockets, small frames.
    let mut c = WebSocketConfig::default();
    c.read_buffer_size = 8 * 1024;
    c.write_buffer_size = 0;
    c.max_message_size = Some(1 << 20);
    c.max_frame_size = Some(1 << 20);
    c
}

/// A TCP connection to `addr`, from `src` when given.
async fn tcp(addr: SocketAddr, src: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let sock = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if let Some(ip) = src {
        sock.bind(SocketAddr::new(ip, 0))?;
    }
    let s = sock.connect(addr).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// SignalR negotiation over a plain HTTP/1.1 request: the connection token.
async fn negotiate(server: &Target, spec: &SockSpec) -> Result<String, String> {
    let mut s = tcp(server.addr, spec.src).await.map_err(|e| format!("negotiate connect: {e}"))?;
    let req = format!(
        "POST /hubs/chat/negotiate?negotiateVersion=1 HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n",
        server.authority, spec.jwt
    );
    s.write_all(req.as_bytes()).await.map_err(|e| format!("negotiate write: {e}"))?;
    let mut buf = Vec::with_capacity(1024);
    s.read_to_end(&mut buf).await.map_err(|e| format!("negotiate read: {e}"))?;
    let text = String::from_utf8_lossy(&buf);
    let status = text.split_whitespace().nth(1).unwrap_or("?");
    if status != "200" {
        return Err(format!("negotiate: HTTP {status}"));
    }
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    let json = match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) if b > a => &body[a..=b],
        _ => return Err("negotiate: no JSON body".into()),
    };
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("negotiate: {e}"))?;
    v["connectionToken"].as_str().map(str::to_string).ok_or_else(|| "negotiate: no connectionToken".into())
}

/// The next text frame, within the setup deadline.
async fn next_text(ws: &mut Ws) -> Result<String, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_string()),
            Some(Ok(Message::Close(c))) => return Err(format!("closed during setup: {c:?}")),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("setup: {e}")),
            None => return Err("closed during setup".into()),
        }
    }
}

/// Open one socket and finish its protocol's setup: for plain, a `ping` answered by
/// `pong` (the server answers frames only once the room was joined); for SignalR, the
/// handshake and a `JoinRoom` whose Completion came back.
async fn open(cfg: &ShardCfg, spec: &SockSpec) -> Result<Ws, String> {
    let server = cfg.servers.get(spec.server).ok_or_else(|| format!("no server #{}", spec.server))?;
    let url = match cfg.protocol {
        Protocol::Plain => format!("ws://{}/chat/ws/{}?token={}", server.authority, spec.room, spec.jwt),
        Protocol::Signalr => {
            let id = negotiate(server, spec).await?;
            format!("ws://{}/hubs/chat?id={id}&access_token={}", server.authority, spec.jwt)
        }
    };
    let stream = tcp(server.addr, spec.src).await.map_err(|e| format!("connect: {}", e.kind()))?;
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config())).await.map_err(|e| match e {
            tungstenite::Error::Http(r) => format!("handshake: HTTP {}", r.status()),
            other => format!("handshake: {other}"),
        })?;
    match cfg.protocol {
        Protocol::Plain => {
            ws.send(Message::text(r#"{"type":"ping"}"#)).await.map_err(|e| format!("send ping: {e}"))?;
            loop {
                let t = next_text(&mut ws).await?;
                if find(t.as_bytes(), br#""type":"pong""#).is_some() {
                    break;
                }
            }
        }
        Protocol::Signalr => {
            ws.send(Message::text("{\"protocol\":\"json\",\"version\":1}\u{1e}"))
                .await
                .map_err(|e| format!("send handshake: {e}"))?;
            let mut handshaken = false;
            'outer: loop {
                let t = next_text(&mut ws).await?;
                for rec in t.as_bytes().split(|b| *b == RS).filter(|r| !r.is_empty()) {
                    if !handshaken {
                        if rec != b"{}" {
                            return Err(format!("handshake refused: {}", String::from_utf8_lossy(rec)));
                        }
                        handshaken = true;
                        let join = format!(
                            "{{\"type\":1,\"invocationId\":\"1\",\"target\":\"JoinRoom\",\"arguments\":[{}]}}\u{1e}",
                            spec.room
                        );
                        ws.send(Message::text(join)).await.map_err(|e| format!("send JoinRoom: {e}"))?;
                    } else if find(rec, br#""type":3"#).is_some() && find(rec, br#""invocationId":"1""#).is_some() {
                        if find(rec, br#""error""#).is_some() {
                            return Err(format!("JoinRoom refused: {}", String::from_utf8_lossy(rec)));
                        }
                        break 'outer;
                    }
                }
            }
        }
    }
    Ok(ws)
}

/// Where `needle` first occurs in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut from = 0;
    while from + needle.len() <= hay.len() {
        let i = from + hay[from..].iter().position(|b| *b == first)?;
        if hay.len() - i < needle.len() {
            return None;
        }
        if &hay[i..i + needle.len()] == needle {
            return Some(i);
        }
        from = i + 1;
    }
    None
}

/// The string value after `key` (which includes the opening quote), up to the next quote.
fn string_after<'a>(hay: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let start = find(hay, key)? + key.len();
    let len = hay[start..].iter().position(|b| *b == b'"')?;
    Some(&hay[start..start + len])
}

fn number(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    b.iter().try_fold(
        0u64,
        |n, d| if d.is_ascii_digit() { n.checked_mul(10)?.checked_add((d - b'0') as u64) } else { None },
    )
}

/// `sender:seq:micros` as numbers.
fn content(c: &[u8]) -> Option<(u64, u64, u64)> {
    let mut it = c.split(|b| *b == b':');
    let (a, b, m) = (number(it.next()?)?, number(it.next()?)?, number(it.next()?)?);
    it.next().is_none().then_some((a, b, m))
}

/// The embedded `(sender, seq, send_micros)` of a plain chat frame (`"type":"message"`),
/// or of a SignalR `ReceiveMessage` record; `None` for anything else.
pub fn scan(protocol: Protocol, rec: &[u8]) -> Option<(u64, u64, u64)> {
    match protocol {
        Protocol::Plain => {
            let at = find(rec, br#""type":"message""#)?;
            // Not "message_updated" and the like.
            if !matches!(rec.get(at + 16), Some(b',') | Some(b'}') | Some(b' ')) {
                return None;
            }
            content(string_after(rec, br#""content":""#)?)
        }
        Protocol::Signalr => {
            find(rec, br#""target":"ReceiveMessage""#)?;
            content(string_after(rec, br#""message":""#)?)
        }
    }
}

/// The next command of a sending shard.
async fn next_cmd(cmds: &mut Option<mpsc::UnboundedReceiver<SendCmd>>) -> Option<SendCmd> {
    cmds.as_mut()?.recv().await
}

/// A shard: open `specs`, report them opened, then read until `stop` turns true; a
/// sending shard (`cmds`) also writes the frames it is handed on the named sockets.
pub async fn shard(
    cfg: Arc<ShardCfg>,
    specs: Vec<SockSpec>,
    live: Arc<Live>,
    gate: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
    mut cmds: Option<mpsc::UnboundedReceiver<SendCmd>>,
) -> ShardOut {
    let mut out = ShardOut {
        connect: histogram(),
        delivery: histogram(),
        sockets: Vec::with_capacity(specs.len()),
        last_delivery: None,
        unparsed: 0,
    };
    let mut set = SelectAll::new();
    // Sending sockets: user -> index.
    let mut by_user = HashMap::new();
    {
        // Open the shard's sockets, as many at once as the gate lets through.
        let mut opening = futures_util::stream::FuturesUnordered::new();
        for spec in specs {
            let (cfg, gate) = (cfg.clone(), gate.clone());
            opening.push(async move {
                let _permit = gate.acquire_owned().await;
                let t = Instant::now();
                let r = tokio::time::timeout(cfg.setup_timeout, open(&cfg, &spec)).await;
                let r = r.unwrap_or_else(|_| Err("setup timed out".into()));
                (spec, r, t.elapsed())
            });
        }
        while let Some((spec, r, took)) = opening.next().await {
            match r {
                Ok(ws) => {
                    out.connect.saturating_record(took.as_micros().max(1) as u64);
                    let idx = out.sockets.len();
                    if spec.sends {
                        by_user.insert(spec.user, idx);
                    }
                    out.sockets.push(SockOut {
                        room: spec.room,
                        user: spec.user,
                        server: spec.server,
                        seen: HashSet::new(),
                        duplicates: 0,
                        closed: false,
                    });
                    set.push(Tagged { idx, ws, done: false });
                    live.opened.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => live.fail(e),
            }
        }
    }
    let signalr = cfg.protocol == Protocol::Signalr;
    let mut sending = cmds.is_some();
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + SIGNALR_PING_EVERY, SIGNALR_PING_EVERY);
    loop {
        tokio::select! {
            item = set.next(), if !set.is_empty() => {
                let Some((idx, item)) = item else { continue };
                match item {
                    Some(Ok(Message::Text(t))) => on_text(&cfg, &live, &mut out, idx, t.as_bytes()),
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                        if !out.sockets[idx].closed {
                            out.sockets[idx].closed = true;
                            live.closed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Some(Ok(_)) => {}
                }
            }
            cmd = next_cmd(&mut cmds), if sending => {
                let Some(cmd) = cmd else {
                    sending = false;
                    continue;
                };
                let socket = by_user.get(&cmd.user).and_then(|i| set.iter_mut().find(|t| t.idx == *i && !t.done));
                let r = match socket {
                    Some(t) => match tokio::time::timeout(SEND_TIMEOUT, t.ws.send(Message::text(cmd.text))).await {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(e)) => Err(format!("write: {e}")),
                        Err(_) => Err("write timed out".into()),
                    },
                    None => Err("the sender's socket is not open".into()),
                };
                let _ = cmd.done.send(r);
            }
            _ = ping.tick(), if signalr => {
                for t in set.iter_mut() {
                    let _ = t.ws.send(Message::text("{\"type\":6}\u{1e}")).await;
                }
            }
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
            }
        }
    }
    // Say goodbye briefly; whatever does not close in time is dropped.
    let closing = futures_util::future::join_all(set.iter_mut().map(|t| t.ws.close(None)));
    let _ = tokio::time::timeout(Duration::from_secs(2), closing).await;
    out
}

fn on_text(cfg: &ShardCfg, live: &Live, out: &mut ShardOut, idx: usize, bytes: &[u8]) {
    let Mode::Chat { user_base } = cfg.mode else { return };
    let mut handle = |rec: &[u8]| {
        if let Some((sender, seq, sent)) = scan(cfg.protocol, rec) {
            let now = unix_micros();
            out.delivery.saturating_record(now.saturating_sub(sent).max(1));
            out.last_delivery = Some(Instant::now());
            live.delivered.fetch_add(1, Ordering::Relaxed);
            let key = (sender.wrapping_sub(user_base) << 32) | (seq & 0xffff_ffff);
            if !out.sockets[idx].seen.insert(key) {
                out.sockets[idx].duplicates += 1;
                live.duplicates.fetch_add(1, Ordering::Relaxed);
            }
        } else if cfg.protocol == Protocol::Plain && find(rec, br#""type":"error""#).is_some() {
            live.error_frames.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut e) = live.errors.lock() {
                e.add(format!("server error frame: {}", String::from_utf8_lossy(&rec[..rec.len().min(160)])));
            }
        } else if cfg.protocol == Protocol::Signalr && find(rec, br#""type":7"#).is_some() {
            if !out.sockets[idx].closed {
                out.sockets[idx].closed = true;
                live.closed.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            out.unparsed += 1;
        }
    };
    match cfg.protocol {
        Protocol::Plain => handle(bytes),
        Protocol::Signalr => bytes.split(|b| *b == RS).filter(|r| !r.is_empty()).for_each(handle),
    }
}

/// Split `specs` into shards of `per_shard` and start them on `rt`; the sending sockets
/// (`sends`) go to sending shards of at most [`SENDERS_PER_SHARD`], reached through the
/// [`Outlets`] returned.
pub fn start_shards(
    rt: &tokio::runtime::Handle,
    cfg: Arc<ShardCfg>,
    specs: Vec<SockSpec>,
    per_shard: usize,
    live: Arc<Live>,
    concurrency: usize,
    stop: watch::Receiver<bool>,
) -> (Vec<tokio::task::JoinHandle<ShardOut>>, Outlets) {
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut handles = Vec::new();
    let mut outlets = Outlets::default();
    let (senders, receivers): (Vec<SockSpec>, Vec<SockSpec>) = specs.into_iter().partition(|s| s.sends);
    for (specs, size, sending) in
        [(senders, per_shard.clamp(1, SENDERS_PER_SHARD), true), (receivers, per_shard.max(1), false)]
    {
        let mut specs = specs.into_iter().peekable();
        while specs.peek().is_some() {
            let chunk: Vec<SockSpec> = specs.by_ref().take(size).collect();
            let cmds = sending.then(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                outlets.by_user.extend(chunk.iter().map(|s| (s.user, tx.clone())));
                rx
            });
            handles.push(rt.spawn(shard(cfg.clone(), chunk, live.clone(), gate.clone(), stop.clone(), cmds)));
        }
    }
    (handles, outlets)
}

/// Wait until every socket opened or failed, or the deadline; updates `progress`.
pub async fn wait_opened(live: &Live, total: u64, deadline: Instant, progress: &indicatif::ProgressBar) -> bool {
    loop {
        let (o, f) = (live.opened.load(Ordering::Relaxed), live.failed.load(Ordering::Relaxed));
        progress.set_position(o + f);
        progress.set_message(format!("open {o} failed {f}"));
        if o + f >= total {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_frames_are_scanned_without_parsing() {
        let f = br#"{"content":"1000007:42:1700000000123456","file_name":null,"message_id":9,"room_id":3,"type":"message"}"#;
        assert_eq!(scan(Protocol::Plain, f), Some((1000007, 42, 1700000000123456)));
        let other = br#"{"content":"1:2:3","type":"message_updated"}"#;
        assert_eq!(scan(Protocol::Plain, other), None);
        assert_eq!(scan(Protocol::Plain, br#"{"type":"user_status","user_id":1}"#), None);
        assert_eq!(scan(Protocol::Plain, br#"{"content":"hello","type":"message"}"#), None);
    }

    #[test]
    fn signalr_records_are_scanned_without_parsing() {
        let r = br#"{"arguments":[{"createdAt":"x","message":"5:6:7","messageId":1,"roomId":2}],"target":"ReceiveMessage","type":1}"#;
        assert_eq!(scan(Protocol::Signalr, r), Some((5, 6, 7)));
        assert_eq!(scan(Protocol::Signalr, br#"{"type":6}"#), None);
        let status = br#"{"arguments":[{"message":"1:2:3"}],"target":"RoomUpdated","type":1}"#;
        assert_eq!(scan(Protocol::Signalr, status), None);
    }

    #[tokio::test]
    async fn a_send_for_a_user_without_a_sending_socket_fails() {
        let r = Outlets::default().send(7, r#"{"type":"ping"}"#.into()).await;
        assert_eq!(r, Err("user 7 has no sending socket".into()));
    }

    #[test]
    fn find_finds() {
        assert_eq!(find(b"abcabd", b"abd"), Some(3));
        assert_eq!(find(b"ab", b"abc"), None);
        assert_eq!(find(b"", b"a"), None);
    }
}
