//! `chat-fanout`: R group rooms of M members, every member on its own WebSocket (plain or
//! SignalR), S senders per room posting over REST (or, with `--send ws`, sending
//! `{"type":"message"}` frames on their own member socket) at a fixed total rate. Each
//! message reaches the M members of its room, so deliveries per second = rate x M.
//! Measures deliveries per second and send-to-receive latency from the timestamp embedded
//! in each message, and counts lost and duplicated deliveries.
//!
//! With `--peer` the target is a bare WebSocket fan-out server with no REST (the Node.js
//! one in `benches/node-peer`): no room is created, the rooms are 1..=R and room r's
//! members are users `user_base + r * M + i`, as they are against boxoffice. Either way a
//! message counts as sent once it was acknowledged (201 over REST) or written to its
//! socket (`--send ws`), and the same per-socket accounting finds what was lost or doubled.
//!
//! With `--ws-url` the sockets go elsewhere than the REST calls: to a core's edges, say,
//! while rooms are created and REST sends posted on the core (`--url`). Members are dealt
//! round-robin over the WebSocket servers, counting over all rooms, so every room has
//! members on each of them; what each server's sockets received, lost and saw twice is
//! reported apart.

use crate::common::{jwt, reach, unix_micros, Common, ErrorTally, Http, Target};
use crate::metrics::{bar, histogram, Report, ServerProbe, ToolProbe};
use crate::queue_rush::first;
use crate::ws::{start_shards, wait_opened, Live, Mode, Protocol, ShardCfg, SockSpec};
use anyhow::{anyhow, bail};
use awc::http::Method;
use futures_util::future::LocalBoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Group rooms to create.
    #[arg(long, default_value_t = 2)]
    pub rooms: u64,
    /// Members of each room, each with one WebSocket. The server allows
    /// BOXOFFICE_CHAT_MAX_PARTICIPANTS (100 by default) per room.
    #[arg(long, default_value_t = 5)]
    pub members: u64,
    /// Senders per room (its first members), posting over REST or, with `--send ws`,
    /// sending on their own member socket.
    #[arg(long, default_value_t = 1)]
    pub senders: u64,
    /// How the senders send: `rest` posts each message (`POST /chat/rooms/{id}/messages/`,
    /// sent once answered 201), `ws` writes `{"type":"message","content":...}` on the
    /// sender's member socket (sent once written). Default: `rest`, or `ws` with `--peer`.
    #[arg(long, value_enum)]
    pub send: Option<SendVia>,
    /// The target is a bare WebSocket peer without REST (benches/node-peer): create no
    /// rooms and skip /healthz; the rooms are 1..=--rooms and the members' user ids are
    /// assigned as usual from --user-base. Needs `--send ws` and `--protocol plain`.
    #[arg(long)]
    pub peer: bool,
    /// Messages per second, in total over all senders (token-bucket pacing).
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// How long the senders send.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// The receivers' protocol.
    #[arg(long, value_enum, default_value = "plain")]
    pub protocol: Protocol,
    /// How long to wait after the last send for deliveries still on their way.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub grace: Duration,
    /// Sockets read by one task.
    #[arg(long, default_value_t = 256)]
    pub sockets_per_task: usize,
    /// Where the WebSockets connect (plain `/chat/ws/{room}` and SignalR `/hubs/chat`),
    /// e.g. a core's edges: `--ws-url http://127.0.0.1:8081,http://127.0.0.1:8082` or the
    /// flag repeated, loopback only like --url. The run's i-th member (counting over all
    /// rooms) connects to the (i mod n)-th. Room creation and REST sends still go to
    /// --url. Default: --url.
    #[arg(long, value_delimiter = ',')]
    pub ws_url: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SendVia {
    /// `POST /chat/rooms/{id}/messages/`.
    Rest,
    /// A `{"type":"message"}` frame on the sender's own plain WebSocket.
    Ws,
}

/// A send's outcome: the room, the message key, `Err` with what went wrong, and its time.
type Sent = (u64, u64, Result<(), String>, Duration);

struct SenderSpec {
    room: u64,
    user: u64,
    jwt: String,
}

pub async fn run(
    a: Args,
    http: Http,
    secret: Vec<u8>,
    run_id: String,
    target: Target,
    ws_rt: tokio::runtime::Handle,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let c = &a.common;
    if a.members < 2 {
        bail!("--members must be at least 2 (a group room has its creator and at least one other)");
    }
    if a.senders == 0 || a.senders > a.members {
        bail!("--senders must be 1 to --members");
    }
    if a.rate.is_nan() || a.rate <= 0.0 {
        bail!("--rate must be positive");
    }
    let send = a.send.unwrap_or(if a.peer { SendVia::Ws } else { SendVia::Rest });
    if a.peer && send == SendVia::Rest {
        bail!("--peer has no REST to post to: use --send ws");
    }
    if send == SendVia::Ws && a.protocol != Protocol::Plain {
        bail!("--send ws sends contract C's plain frames: use --protocol plain");
    }
    let m = a.members;
    let user = |room: u64, i: u64| c.user_base + room * m + i;

    // The WebSocket servers: --ws-url's, each checked to be on loopback and to answer, or --url.
    let split = !a.ws_url.is_empty();
    let ws_servers = if split {
        let servers = a.ws_url.iter().map(|u| Target::parse_as("--ws-url", u)).collect::<anyhow::Result<Vec<_>>>()?;
        for (i, s) in servers.iter().enumerate() {
            if servers[..i].iter().any(|t| t.addr == s.addr) {
                bail!("--ws-url names {} twice", s.base);
            }
        }
        for s in &servers {
            reach(&Http::new(s, 1), s, a.peer, "WebSocket server").await?;
        }
        servers
    } else {
        vec![target.clone()]
    };

    // Rooms: the peer's are there for the asking; boxoffice's are created over REST.
    let rooms =
        if a.peer { (1..=a.rooms).collect() } else { create_rooms(&http, &secret, &run_id, a.rooms, m, user).await? };

    // Sockets: every member of every room, dealt round-robin over the WebSocket servers.
    let mut specs = Vec::new();
    for (r, &room) in rooms.iter().enumerate() {
        for i in 0..m {
            let u = user(r as u64, i);
            let sends = send == SendVia::Ws && i < a.senders;
            let server = specs.len() % ws_servers.len();
            specs.push(SockSpec { room, user: u, jwt: jwt(&secret, u, false), src: None, server, sends });
        }
    }
    let total = specs.len() as u64;
    let assigned: Vec<u64> =
        (0..ws_servers.len()).map(|j| specs.iter().filter(|s| s.server == j).count() as u64).collect();
    let cfg = Arc::new(ShardCfg {
        servers: ws_servers.clone(),
        protocol: a.protocol,
        mode: Mode::Chat { user_base: c.user_base },
        setup_timeout: Duration::from_secs(20),
    });
    let live = Arc::new(Live::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let connect_bar = bar(!c.no_progress, total, "connect");
    let (handles, outlets) = start_shards(&ws_rt, cfg, specs, a.sockets_per_task, live.clone(), c.concurrency, stop_rx);
    let all_opened = wait_opened(&live, total, Instant::now() + c.timeout, &connect_bar).await;
    connect_bar.finish_and_clear();
    let opened = live.opened.load(Ordering::Relaxed);
    let failed = live.failed.load(Ordering::Relaxed);

    let mut report = Report::new(
        "chat-fanout",
        json!({
            "rooms": a.rooms, "members": m, "senders_per_room": a.senders, "rate": a.rate,
            "duration_s": a.duration.as_secs_f64(), "protocol": format!("{:?}", a.protocol).to_lowercase(),
            "grace_s": a.grace.as_secs_f64(), "user_base": c.user_base, "run_id": run_id, "ws_threads": c.ws_threads,
            "send": format!("{send:?}").to_lowercase(), "peer": a.peer,
        }),
    );
    if split {
        report.params["ws_urls"] = ws_servers.iter().map(|s| s.base.clone()).collect::<Vec<_>>().into();
    }

    // Senders.
    let senders: Vec<SenderSpec> = rooms
        .iter()
        .enumerate()
        .flat_map(|(r, &room)| (0..a.senders).map(move |i| (r as u64, room, i)).collect::<Vec<_>>())
        .map(|(r, room, i)| {
            let u = user(r, i);
            SenderSpec { room, user: u, jwt: jwt(&secret, u, false) }
        })
        .collect();
    let planned = if all_opened { (a.rate * a.duration.as_secs_f64()).round() as u64 } else { 0 };
    let interval = Duration::from_secs_f64(1.0 / a.rate);
    let cap = c.concurrency.max(1);

    let server = ServerProbe::start(&c.server_pid, &c.extra_pid)?;
    let tool = ToolProbe::start();
    let send_bar = bar(!c.no_progress && planned > 0, planned, "send");
    let mut send_lat = histogram();
    let mut acked: HashMap<u64, HashSet<u64>> = rooms.iter().map(|r| (*r, HashSet::new())).collect();
    let mut send_errors = ErrorTally::default();
    let mut seqs = vec![0u64; senders.len()];
    let mut lagged = 0u64;
    let t0 = Instant::now();
    let deadline = t0 + c.timeout;
    let mut inflight: FuturesUnordered<LocalBoxFuture<'_, Sent>> = FuturesUnordered::new();
    let mut k = 0u64;
    let mut last_ui = Instant::now();
    let mut handle = |r: Sent, acked: &mut HashMap<u64, HashSet<u64>>| {
        let (room, key, res, took) = r;
        send_lat.saturating_record(took.as_micros().max(1) as u64);
        match res {
            Ok(()) => {
                acked.entry(room).or_default().insert(key);
            }
            Err(e) => send_errors.add(e),
        }
    };
    while k < planned && Instant::now() < deadline {
        let due = t0 + interval.mul_f64(k as f64);
        tokio::select! {
            biased;
            Some(r) = inflight.next(), if !inflight.is_empty() => handle(r, &mut acked),
            _ = actix_rt::time::sleep_until(due.into()) => {
                if inflight.len() >= cap {
                    // Every slot is busy: the schedule slips until one is free.
                    lagged += 1;
                    if let Some(r) = inflight.next().await {
                        handle(r, &mut acked);
                    }
                }
                let si = (k % senders.len() as u64) as usize;
                seqs[si] += 1;
                let (s, seq, http) = (&senders[si], seqs[si], &http);
                let key = ((s.user - c.user_base) << 32) | seq;
                inflight.push(match send {
                    SendVia::Rest => async move {
                        let body = json!({ "message_content": format!("{}:{seq}:{}", s.user, unix_micros()), "message_type": "text" });
                        let path = format!("/chat/rooms/{}/messages/", s.room);
                        let t = Instant::now();
                        let r = match http.req(Method::POST, &path, Some(&s.jwt), &[], Some(&body)).await {
                            Ok(r) if r.status == 201 => Ok(()),
                            Ok(r) => Err(format!("POST messages: HTTP {}", r.status)),
                            Err(e) => Err(format!("POST messages: {e}")),
                        };
                        (s.room, key, r, t.elapsed())
                    }
                    .boxed_local(),
                    SendVia::Ws => {
                        let content = format!("{}:{seq}:{}", s.user, unix_micros());
                        let frame = json!({ "type": "message", "content": content, "message_type": "text" });
                        let t = Instant::now();
                        let written = outlets.send(s.user, frame.to_string());
                        async move {
                            let r = written.await.map_err(|e| format!("WebSocket send: {e}"));
                            (s.room, key, r, t.elapsed())
                        }
                        .boxed_local()
                    }
                });
                k += 1;
                if last_ui.elapsed() > Duration::from_millis(200) {
                    last_ui = Instant::now();
                    send_bar.set_position(k);
                    send_bar.set_message(format!("delivered {}", live.delivered.load(Ordering::Relaxed)));
                }
            }
        }
    }
    while let Some(r) = inflight.next().await {
        handle(r, &mut acked);
    }
    let send_wall = t0.elapsed();
    send_bar.finish_and_clear();
    drop(outlets);

    // Grace: until every expected delivery arrived, or the grace ran out.
    let expected: u64 = acked.values().map(|s| s.len() as u64).sum::<u64>() * m;
    let grace_end = Instant::now() + a.grace;
    while live.delivered.load(Ordering::Relaxed) < expected && Instant::now() < grace_end {
        actix_rt::time::sleep(Duration::from_millis(25)).await;
    }
    // A moment more to see duplicates that might trail.
    actix_rt::time::sleep(Duration::from_millis(300).min(a.grace)).await;
    let (wall, tool_cpu) = tool.finish();
    report.wall = wall;
    report.tool_cpu = tool_cpu;
    server.finish(&mut report);

    let _ = stop_tx.send(true);
    let mut outs = Vec::new();
    for h in handles {
        match tokio::time::timeout(Duration::from_secs(15), h).await {
            Ok(Ok(o)) => outs.push(o),
            Ok(Err(e)) => bail!("a receiver task failed: {e}"),
            Err(_) => bail!("a receiver task did not stop"),
        }
    }

    // Lost, duplicated and unexpected deliveries, per socket and per WebSocket server.
    let mut by_server = vec![PerServer::default(); ws_servers.len()];
    let mut lost = 0u64;
    let mut unexpected = 0u64;
    let mut lost_detail = Vec::new();
    let mut delivery = histogram();
    let mut connect = histogram();
    let mut last_delivery = None::<Instant>;
    let mut unparsed = 0;
    for o in &outs {
        let _ = delivery.add(&o.delivery);
        let _ = connect.add(&o.connect);
        unparsed += o.unparsed;
        last_delivery = last_delivery.max(o.last_delivery);
        for s in &o.sockets {
            let want = acked.get(&s.room).map(HashSet::len).unwrap_or(0) as u64;
            let got = acked.get(&s.room).map_or(0, |set| s.seen.iter().filter(|k| set.contains(k)).count()) as u64;
            if got < want {
                lost += want - got;
                if lost_detail.len() < 5 {
                    let via = if split { format!(" via {}", ws_servers[s.server].authority) } else { String::new() };
                    lost_detail.push(format!("user {} in room {}{via} missed {}", s.user, s.room, want - got));
                }
            }
            unexpected += s.seen.len() as u64 - got;
            if let Some(p) = by_server.get_mut(s.server) {
                p.opened += 1;
                p.closed += u64::from(s.closed);
                p.deliveries += s.seen.len() as u64 + s.duplicates;
                p.lost += want.saturating_sub(got);
                p.duplicates += s.duplicates;
            }
        }
    }
    let duplicates = live.duplicates.load(Ordering::Relaxed);
    let delivered = live.delivered.load(Ordering::Relaxed);
    let closed = live.closed.load(Ordering::Relaxed);
    let sent_ok: u64 = acked.values().map(|s| s.len() as u64).sum();
    let span = last_delivery.map(|l| l.saturating_duration_since(t0)).unwrap_or(send_wall).max(send_wall);

    report.fig("sockets", total);
    report.fig("sockets_opened", opened);
    report.fig("sockets_failed", failed);
    report.fig("sockets_closed_by_server", closed);
    report.fig("messages_planned", planned);
    report.fig("messages_sent_ok", sent_ok);
    report.fig("send_errors", send_errors.total());
    report.fig_f("send_rate_per_s", sent_ok as f64 / send_wall.as_secs_f64().max(1e-9));
    report.fig("send_slots_full", lagged);
    report.fig("deliveries_expected", expected);
    report.fig("deliveries", delivered);
    report.fig_f("deliveries_per_s", delivered as f64 / span.as_secs_f64().max(1e-9));
    report.fig("lost", lost);
    report.fig("duplicates", duplicates);
    report.fig("unacknowledged_messages_delivered", unexpected);
    report.fig("frames_not_messages", unparsed);
    report.fig("error_frames", live.error_frames.load(Ordering::Relaxed));
    if split {
        for ((s, p), n) in ws_servers.iter().zip(&by_server).zip(&assigned) {
            let via = &s.authority;
            report.fig(&format!("sockets_via_{via}"), *n);
            report.fig(&format!("sockets_opened_via_{via}"), p.opened);
            report.fig(&format!("sockets_closed_by_server_via_{via}"), p.closed);
            report.fig(&format!("deliveries_via_{via}"), p.deliveries);
            report.fig(&format!("lost_via_{via}"), p.lost);
            report.fig(&format!("duplicates_via_{via}"), p.duplicates);
        }
    }
    report.server_cpu_per("delivery", delivered);
    report.server_cpu_per("message", sent_ok);
    report.latencies.merge("connect+setup", &connect);
    let send_op = match send {
        SendVia::Rest => "send (REST)",
        SendVia::Ws => "send (WebSocket write)",
    };
    report.latencies.merge(send_op, &send_lat);
    report.latencies.merge("delivery (send->receive)", &delivery);
    report.notes.extend(send_errors.notes("send error"));
    if let Ok(e) = live.errors.lock() {
        report.notes.extend(e.notes("socket error"));
    }
    if !all_opened {
        report.notes.push("not every socket opened within --timeout: no message was sent".into());
    }

    report.check(
        "every socket opened and stayed open",
        opened == total && closed == 0,
        format!("{opened}/{total} opened, {failed} failed, {closed} closed by the server"),
    );
    report.check(
        "no lost deliveries",
        lost == 0 && planned > 0,
        if lost == 0 {
            format!("{sent_ok} messages x {m} members = {expected} deliveries, all seen")
        } else {
            format!(
                "{lost} of {expected} not seen after {:.1} s of grace: {}",
                a.grace.as_secs_f64(),
                first(&lost_detail)
            )
        },
    );
    report.check("no duplicate deliveries", duplicates == 0, format!("{duplicates} duplicates"));
    report.total_wall = started.elapsed();
    Ok(report)
}

/// What the sockets of one WebSocket server saw (with `--ws-url`).
#[derive(Debug, Clone, Default)]
struct PerServer {
    opened: u64,
    closed: u64,
    /// Chat messages received, duplicates included.
    deliveries: u64,
    lost: u64,
    duplicates: u64,
}

/// Create `count` group rooms of `m` members over REST, room r's creator `user(r, 0)` and
/// its other members `user(r, 1..m)`; their ids in order.
async fn create_rooms(
    http: &Http,
    secret: &[u8],
    run_id: &str,
    count: u64,
    m: u64,
    user: impl Fn(u64, u64) -> u64,
) -> anyhow::Result<Vec<u64>> {
    let mut rooms = Vec::new();
    for r in 0..count {
        let creator = user(r, 0);
        let others: Vec<u64> = (1..m).map(|i| user(r, i)).collect();
        let body =
            json!({ "room_name": format!("load {run_id} {r}"), "room_type": "group", "participant_ids": others });
        let token = jwt(secret, creator, false);
        let res =
            http.req(Method::POST, "/chat/rooms/", Some(&token), &[], Some(&body)).await.map_err(|e| anyhow!(e))?;
        match res.status {
            201 | 200 => {
                rooms.push(res.json()["room_id"].as_u64().ok_or_else(|| anyhow!("POST /chat/rooms/: no room_id"))?)
            }
            422 if m > 100 => bail!(
                "the server refused a room of {m} members ({}): a group room holds at most \
                 BOXOFFICE_CHAT_MAX_PARTICIPANTS participants (100 unless the server was started with more); \
                 use --members 100 or fewer, more rooms, or start the server with a higher limit",
                res.snippet()
            ),
            _ => bail!("POST /chat/rooms/: {}", res.snippet()),
        }
    }
    Ok(rooms)
}
