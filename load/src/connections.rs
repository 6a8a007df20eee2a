//! `connections`: open N idle plain WebSockets to one room, holding them for `--hold`
//! (answering the server's pings), spreading the sockets' source addresses over several
//! 127.0.0.x when N is more than one address's ephemeral ports. Reports how many opened
//! and failed, and the server's RSS growth per connection. With `--peer` the target is a
//! bare WebSocket peer without REST (benches/node-peer): no room is created and the
//! sockets join room `--room` (default 1).

use crate::common::{jwt, reach, source_addresses, Common, Http, Target};
use crate::metrics::{bar, histogram, Report, ServerProbe, ToolProbe};
use crate::ws::{start_shards, wait_opened, Live, Mode, Protocol, ShardCfg, SockSpec};
use anyhow::{anyhow, bail};
use awc::http::Method;
use serde_json::json;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Connections per source address before the next 127.0.0.x is used (one address has
/// about 28,000 ephemeral ports by default).
const PER_ADDRESS: usize = 25_000;
/// Most sockets the tool opens as one user, and most users in one of its rooms (the
/// server's default `BOXOFFICE_CHAT_MAX_PARTICIPANTS`).
const SOCKETS_PER_USER: usize = 10;
const ROOM_USERS: usize = 100;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// WebSockets to open.
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// Source addresses to spread the sockets over (loopback only), comma-separated.
    /// Without it, more than 25,000 sockets are spread over 127.0.0.1, 127.0.0.2, ...
    #[arg(long, value_delimiter = ',')]
    pub addresses: Vec<IpAddr>,
    /// How long to hold the sockets open once they are all open.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub hold: Duration,
    /// An existing room to connect to (default: the tool creates rooms of up to 100 users
    /// and opens at most 10 sockets per user, as the server's per-user handshake limit
    /// allows; with --peer, room 1).
    #[arg(long)]
    pub room: Option<u64>,
    /// A participant of --room whose JWT the sockets use (default: --user-base).
    #[arg(long)]
    pub room_user: Option<u64>,
    /// Sockets read by one task.
    #[arg(long, default_value_t = 512)]
    pub sockets_per_task: usize,
    /// Where the sockets connect instead of --url (e.g. a core's edges), in turn: socket i
    /// to the (i mod n)-th; the room is still made through --url. Loopback only.
    #[arg(long, value_delimiter = ',')]
    pub ws_url: Vec<String>,
    /// The target is a bare WebSocket peer without REST (benches/node-peer): create no
    /// room and skip /healthz; the sockets join --room (default 1) as --room-user, or as
    /// --user-base and --user-base + 1 alternately.
    #[arg(long)]
    pub peer: bool,
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
    // Each socket's (room, user). The tool's own rooms spread the sockets over users as a
    // crowd of phones would: at most SOCKETS_PER_USER each (so no user's handshakes go
    // over the server's per-user limit), in rooms of at most ROOM_USERS.
    let placed: Vec<(u64, u64)> = match a.room {
        Some(room) => vec![(room, a.room_user.unwrap_or(c.user_base))],
        None if a.peer => a.room_user.map_or_else(|| vec![(1, c.user_base), (1, c.user_base + 1)], |u| vec![(1, u)]),
        None => {
            let users = a.count.div_ceil(SOCKETS_PER_USER).max(2) as u64;
            let mut placed = Vec::new();
            for first in (0..users).step_by(ROOM_USERS) {
                let members: Vec<u64> =
                    (first..(first + ROOM_USERS as u64).min(users)).map(|u| c.user_base + u).collect();
                let room_name = format!("load {run_id} connections {}", first / ROOM_USERS as u64);
                let body = json!({ "room_name": room_name, "room_type": "group", "participant_ids": &members[1..] });
                let token = jwt(&secret, members[0], false);
                let r = http
                    .req(Method::POST, "/chat/rooms/", Some(&token), &[], Some(&body))
                    .await
                    .map_err(|e| anyhow!(e))?;
                if r.status != 201 {
                    bail!("POST /chat/rooms/: {}", r.snippet());
                }
                let room = r.json()["room_id"].as_u64().ok_or_else(|| anyhow!("POST /chat/rooms/: no room_id"))?;
                placed.extend(members.into_iter().map(|u| (room, u)));
            }
            placed
        }
    };
    let room = placed[0].0;
    let servers = if a.ws_url.is_empty() {
        vec![target]
    } else {
        let servers = a.ws_url.iter().map(|u| Target::parse_as("--ws-url", u)).collect::<anyhow::Result<Vec<_>>>()?;
        for (i, s) in servers.iter().enumerate() {
            if servers[..i].iter().any(|t| t.addr == s.addr) {
                bail!("--ws-url names {} twice", s.base);
            }
            reach(&Http::new(s, 1), s, a.peer, "WebSocket server").await?;
        }
        servers
    };
    let addrs = source_addresses(&a.addresses, a.count, PER_ADDRESS)?;
    let tokens: Vec<String> = placed.iter().map(|(_, u)| jwt(&secret, *u, false)).collect();
    let specs: Vec<SockSpec> = (0..a.count)
        .map(|i| SockSpec {
            room: placed[i % placed.len()].0,
            user: placed[i % placed.len()].1,
            jwt: tokens[i % placed.len()].clone(),
            src: if addrs.is_empty() { None } else { Some(addrs[i % addrs.len()]) },
            server: i % servers.len(),
            sends: false,
        })
        .collect();
    let ws_urls: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
    let cfg = Arc::new(ShardCfg {
        servers,
        protocol: Protocol::Plain,
        mode: Mode::Idle,
        setup_timeout: Duration::from_secs(30),
    });
    let mut report = Report::new(
        "connections",
        json!({
            "count": a.count, "room": room, "rooms": placed.iter().map(|(r, _)| *r).collect::<std::collections::BTreeSet<_>>().len(),
            "users": placed.len(), "hold_s": a.hold.as_secs_f64(), "concurrency": c.concurrency,
            "source_addresses": addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(), "run_id": run_id,
            "ws_threads": c.ws_threads, "peer": a.peer, "ws_urls": ws_urls,
        }),
    );

    let server = ServerProbe::start(&c.server_pid, &c.extra_pid)?;
    let tool = ToolProbe::start();
    let live = Arc::new(Live::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let open_bar = bar(!c.no_progress, a.count as u64, "open");
    let t0 = Instant::now();
    let (handles, _) = start_shards(&ws_rt, cfg, specs, a.sockets_per_task, live.clone(), c.concurrency, stop_rx);
    let all = wait_opened(&live, a.count as u64, t0 + c.timeout, &open_bar).await;
    let open_wall = t0.elapsed();
    open_bar.finish_and_clear();
    let opened = live.opened.load(Ordering::Relaxed);
    let failed = live.failed.load(Ordering::Relaxed);
    let open_cpu = server.cpu_now();
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let rss_open = server.rss_now();

    // Hold.
    let hold_bar = bar(!c.no_progress, a.hold.as_secs().max(1), "hold");
    let hold_end = Instant::now() + a.hold;
    while Instant::now() < hold_end {
        hold_bar.set_position(
            a.hold.as_secs().saturating_sub(hold_end.saturating_duration_since(Instant::now()).as_secs()),
        );
        hold_bar.set_message(format!("open {} closed by server {}", opened, live.closed.load(Ordering::Relaxed)));
        actix_rt::time::sleep(Duration::from_millis(100).min(hold_end.saturating_duration_since(Instant::now()))).await;
    }
    hold_bar.finish_and_clear();
    let rss_held = server.rss_now();
    let closed = live.closed.load(Ordering::Relaxed);
    let (wall, tool_cpu) = tool.finish();

    let _ = stop_tx.send(true);
    let mut connect = histogram();
    for h in handles {
        match tokio::time::timeout(Duration::from_secs(20), h).await {
            Ok(Ok(o)) => {
                let _ = connect.add(&o.connect);
            }
            Ok(Err(e)) => bail!("a socket task failed: {e}"),
            Err(_) => bail!("a socket task did not stop"),
        }
    }
    // Let the server notice the closes before the last RSS reading.
    actix_rt::time::sleep(Duration::from_secs(1)).await;
    report.wall = wall;
    report.tool_cpu = tool_cpu;
    server.finish(&mut report);

    report.fig("requested", a.count as u64);
    report.fig("opened", opened);
    report.fig("failed", failed);
    report.fig("closed_by_server_while_held", closed);
    report.fig_f("open_phase_s", open_wall.as_secs_f64());
    report.fig_f("opened_per_s", opened as f64 / open_wall.as_secs_f64().max(1e-9));
    report.fig("source_addresses", addrs.len().max(1) as u64);
    if let (Some(s), Some(open), Some(held)) = (&report.server, rss_open, rss_held) {
        let before = s.rss_before_kb;
        report.fig("server_rss_kb_before", before);
        report.fig("server_rss_kb_all_open", open);
        report.fig("server_rss_kb_end_of_hold", held);
        if opened > 0 {
            report.fig_f("server_rss_kb_per_connection", open.saturating_sub(before) as f64 / opened as f64);
        }
    }
    if let Some(cpu) = open_cpu {
        if opened > 0 {
            report.fig_f("server_cpu_us_per_connection_opened", cpu.as_micros() as f64 / opened as f64);
        }
    }
    report.latencies.merge("connect+handshake+join", &connect);
    if let Ok(e) = live.errors.lock() {
        report.notes.extend(e.notes("open error"));
    }
    if !all {
        report.notes.push("not every socket opened or failed within --timeout".into());
    }
    report.check(
        "every connection opened",
        opened == a.count as u64,
        format!("{opened}/{} opened, {failed} failed", a.count),
    );
    report.check(
        "every connection stayed open for --hold",
        closed == 0,
        format!("{closed} closed by the server during {:.1} s", a.hold.as_secs_f64()),
    );
    report.total_wall = started.elapsed();
    Ok(report)
}
