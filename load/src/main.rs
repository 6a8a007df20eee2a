//! # boxoffice-load
//!
//! A load tool for a **running** boxoffice server on this machine. It refuses any target
//! that is not a loopback address, every scenario is bounded in count and in time
//! (`--timeout`, `--duration`, `--hold`) and stops by itself, a progress bar runs on
//! stderr, and a summary (figures, latency p50/p99/p99.9/max from HDR histograms,
//! invariant checks, the tool's own CPU and wall time, and with `--server-pid` the
//! server's CPU time per operation and its RSS) is printed on stdout at the end, or one
//! JSON object with `--json`. `--server-pid` takes several pids (comma-separated or
//! repeated: a core and its edges), whose CPU times and RSS are summed into the server's
//! figures and shown each too; `--extra-pid` measures a process beside the server without
//! counting it in (nats-server, say), on lines of its own. The exit code is 0 when every
//! check passed, 1 when one failed, 2 when the run could not be done (bad flags,
//! unreachable server, refused setup).
//!
//! The tool mints its own HS256 JWTs with the server's secret (`--secret` or
//! `BOXOFFICE_JWT_SECRET`), so user ids are free: each run takes `--user-base` (default
//! 1,000,000) and up; give runs against one server different bases.
//!
//! ## Scenarios
//!
//! - `queue-rush --users N`: contract Q. Each user takes a queue token and polls until it
//!   is active, holds a random free seat (another on 409, `--hold-retries` times), charges
//!   its wallet with the price and pays. Checks: no seat sold twice (every newly RESERVED
//!   seat is one acknowledged payment's reservation), no schedule oversold, every
//!   acknowledged payment's reservation CONFIRMED, every wallet = charged - paid. The demo
//!   data has 150 seats; `--create-schedules K --seats-per-schedule S` creates a concert
//!   with K schedules of S (at most 1,000) seats first. **The server's queue admits
//!   `BOXOFFICE_QUEUE_ADMIT_RATE` tokens per second while fewer than
//!   `BOXOFFICE_QUEUE_MAX_ACTIVE` are active: for a rush, start it with high values**
//!   (e.g. both 1000000), or the users mostly wait in the queue.
//! - `booking-rush --users N [--performance perf_001 | --create-performance 26x100]`:
//!   contract B. Users book overlapping random sets of 1 to 3 seats and pay the bookings
//!   they got with a test card. Checks: a seat is in at most one confirmed booking, every
//!   200 execute's booking is confirmed, and the test gateway's kept charges for this run's
//!   intents equal the paid bookings' amounts exactly.
//! - `chat-fanout --rooms R --members M --senders S --rate X --duration D
//!   [--protocol plain|signalr] [--send rest|ws] [--peer] [--ws-url URL,...]`: R group
//!   rooms of M members, one WebSocket per member; S senders per room post over REST
//!   (`--send ws`: send `{"type":"message"}` frames on their own member socket) at X
//!   messages per second in total (token-bucket pacing), each message
//!   `sender:seq:send_unix_micros`. Deliveries per second = X x M. Measures deliveries/s and send-to-receive latency, counts lost
//!   and duplicated deliveries. A group room holds at most
//!   `BOXOFFICE_CHAT_MAX_PARTICIPANTS` (100 by default) participants: M above that is
//!   refused by the server, and the tool says so. `--ws-url` sends the WebSockets
//!   elsewhere than the REST calls (below).
//! - `connections --count N [--addresses 127.0.0.1,127.0.0.2] --hold 10s`: N idle plain
//!   WebSockets to one room (the tool's, or `--room`), source addresses spread over
//!   127.0.0.x past 25,000 sockets; reports opened, failed and the server's RSS per
//!   connection. The tool raises its own RLIMIT_NOFILE to the hard limit; the server needs
//!   enough descriptors too. `--ws-url` opens them on other servers in turn (edges), the
//!   room still made through `--url`.
//! - `queue-wait --users N [--admit-rate 100] [--max-active 50] [--active-ttl 1s]
//!   [--ws-url URL,...]`: contract Q's queue over `GET /waiting/ws`. The tool sets the
//!   queue's policy (`PUT /waiting/settings`, admin JWT), each user takes a token and waits
//!   on its socket (on the `--ws-url` targets in turn, e.g. a core's edges) until it is
//!   admitted. Checks: every user admitted once and told so; at most the rate's worth (a
//!   one-second bucket) in any second; at most `--max-active` within one TTL; admissions in
//!   the order of the places.
//! - `soak --duration 30m [--queue-users 2000] [--booking-users 500] [--rooms 5]
//!   [--members 200] [--server-pid PID] [--settle 0s]`: the three scenarios above in
//!   rounds, in this process, until `--duration` is over (a round starts only while it is
//!   not; the last one runs to its end). Each round runs a queue-rush of `--queue-users` on
//!   a catalog of its own (a quarter more seats than users), a booking-rush of
//!   `--booking-users` on a performance of its own (20 rows, about two seats a user) and a
//!   chat-fanout of `--rooms` x `--members` (one REST sender a room, `--chat-rate` 20
//!   messages/s for `--chat-duration` 3 s), each from its own `--user-base`: round i's
//!   scenarios take ids from `--user-base` + i x 100,000 on (more per round when the
//!   counts need it), so no two rounds or scenarios share a user. After each round it
//!   prints one line: the round, the time elapsed, the server's RSS in MB (MiB, summed over
//!   `--server-pid`), whether every audit of the round passed, and the live actors per
//!   kind from the `boxoffice_actors_live` gauges of `GET /metrics` (scraped with an admin
//!   JWT; nothing when the server has no such gauge). After the last round it waits
//!   `--settle`, if given, and prints RSS and live actors again; then the summary: the mean
//!   RSS of the first third of the rounds, of the last third, the growth between them and
//!   whether it is within 40 MB (the aim: reported, not enforced). With `--json` the lines
//!   go to stderr and stdout has one JSON object with `rounds` (each with `rss_mb`,
//!   `actors`, `audits_passed` and the scenarios' figures), `start` and `after_settle`.
//!   Exit code 1 when any round's audits failed. The default `--members 200` needs the
//!   server started with `BOXOFFICE_CHAT_MAX_PARTICIPANTS=200` or more, plus the high
//!   queue rates of `queue-rush`.
//!
//! ## Against a bare WebSocket peer
//!
//! `chat-fanout --peer` and `connections --peer` drive a server that has contract C's
//! plain WebSocket and nothing else (`benches/node-peer/server.js`, a Node.js `ws` server,
//! the yardstick of issue 12): no REST setup and no `/healthz` (only a TCP connect), rooms
//! 1..=R, user ids from `--user-base` as usual, and senders on their sockets (`--send ws`).
//! Run the same `--send ws` flags without `--peer` against boxoffice for the other half of
//! the comparison; `--server-pid` takes either server's pid. See
//! `benches/node-peer/README.md`.
//!
//! ## Against a core and its edges
//!
//! A server can run as one core (REST, the store, and WebSockets too) and edges
//! (`BOXOFFICE_ROLE=edge`: WebSockets only, reaching the core over NATS). `chat-fanout
//! --ws-url URL[,URL...]` (or the flag repeated) opens the members' sockets on those
//! servers, member i of the run (counting over all rooms) on URL i mod n, so every room
//! has members on each edge; room creation and REST sends still go to `--url`, the core.
//! Every `--ws-url` must be on loopback and answer `/healthz`. The report adds per-URL
//! figures (`sockets_via_HOST:PORT`, `deliveries_via_...`, `lost_via_...`,
//! `duplicates_via_...`) and `params.ws_urls`. Give `--server-pid CORE,EDGE1,EDGE2` for
//! the CPU per delivery of the whole server and `--extra-pid NATS` for the broker's apart
//! (`extra_cpu_us_per_delivery`, and `server_and_extra_cpu_us_per_delivery` for both). In
//! `--json`, `server` has `pids`, the sums (`cpu_s`, `cpu_pct`, `rss_*_kb`, the peak being
//! the highest sampled sum) and `processes` (each pid's); `pid` is there with one pid only;
//! `extra` is a list of the `--extra-pid` processes.
//!
//! ## Examples
//!
//! ```sh
//! export BOXOFFICE_JWT_SECRET=load-secret
//! BOXOFFICE_DATA_DIR=$(mktemp -d) BOXOFFICE_QUEUE_ADMIT_RATE=1000000 BOXOFFICE_QUEUE_MAX_ACTIVE=1000000 \
//!     RUST_LOG=warn target/release/boxoffice serve &
//! PID=$!
//! target/release/boxoffice-load queue-rush --users 10000 --create-schedules 10 --concurrency 128 --server-pid $PID
//! target/release/boxoffice-load booking-rush --users 2000 --create-performance 26x100 --user-base 2000000 --server-pid $PID
//! target/release/boxoffice-load chat-fanout --rooms 10 --members 100 --senders 2 --rate 100 --duration 10s \
//!     --protocol signalr --user-base 3000000 --server-pid $PID
//! target/release/boxoffice-load connections --count 10000 --hold 10s --user-base 4000000 --server-pid $PID --json
//! target/release/boxoffice-load chat-fanout --rooms 10 --members 100 --rate 100 --send ws --user-base 5000000 --server-pid $PID
//! node benches/node-peer/server.js 9100 & NODE=$!
//! target/release/boxoffice-load chat-fanout --url http://127.0.0.1:9100 --peer --rooms 10 --members 100 --rate 100 \
//!     --server-pid $NODE
//!
//! # Half an hour of rounds against a server of its own, watching its memory.
//! BOXOFFICE_DATA_DIR=$(mktemp -d) BOXOFFICE_BIND=127.0.0.1:8093 BOXOFFICE_QUEUE_ADMIT_RATE=1000000 \
//!     BOXOFFICE_QUEUE_MAX_ACTIVE=1000000 BOXOFFICE_CHAT_MAX_PARTICIPANTS=200 RUST_LOG=warn \
//!     target/release/boxoffice serve & SOAK=$!
//! target/release/boxoffice-load soak --url http://127.0.0.1:8093 --duration 30m --settle 60s --server-pid $SOAK
//!
//! # A core and two edges over NATS; sockets spread over the edges, REST on the core.
//! nats-server -a 127.0.0.1 -p 4333 & NATS=$!
//! BOXOFFICE_DATA_DIR=$(mktemp -d) BOXOFFICE_BIND=127.0.0.1:8090 BOXOFFICE_NATS_URL=nats://127.0.0.1:4333 \
//!     RUST_LOG=warn target/release/boxoffice serve & CORE=$!
//! BOXOFFICE_ROLE=edge BOXOFFICE_BIND=127.0.0.1:8091 BOXOFFICE_NATS_URL=nats://127.0.0.1:4333 \
//!     RUST_LOG=warn target/release/boxoffice serve & E1=$!
//! BOXOFFICE_ROLE=edge BOXOFFICE_BIND=127.0.0.1:8092 BOXOFFICE_NATS_URL=nats://127.0.0.1:4333 \
//!     RUST_LOG=warn target/release/boxoffice serve & E2=$!
//! target/release/boxoffice-load chat-fanout --url http://127.0.0.1:8090 \
//!     --ws-url http://127.0.0.1:8091,http://127.0.0.1:8092 --rooms 10 --members 100 --senders 2 --rate 100 \
//!     --duration 10s --user-base 6000000 --server-pid $CORE,$E1,$E2 --extra-pid $NATS
//! ```

mod booking_rush;
mod chat_fanout;
mod common;
mod connections;
mod metrics;
mod queue_rush;
mod queue_wait;
mod soak;
mod ws;

use clap::{Parser, Subcommand};
use common::{Common, Http, Target};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "boxoffice-load", version, about = "Load scenarios against a running boxoffice server on loopback")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Contract Q: queue, hold, charge, pay; then check seats, payments and wallets.
    QueueRush(queue_rush::Args),
    /// Contract B: overlapping bookings paid by card; then check seats and the gateway.
    BookingRush(booking_rush::Args),
    /// Contract C/T chat: REST or WebSocket senders, WebSocket receivers (plain or SignalR).
    ChatFanout(chat_fanout::Args),
    /// Many idle plain WebSockets held open.
    Connections(connections::Args),
    /// Rounds of queue-rush, booking-rush and chat-fanout for --duration, watching the
    /// server's RSS and live actors.
    Soak(soak::Args),
    /// Contract Q's queue over GET /waiting/ws: a crowd waits on sockets (on edges with
    /// --ws-url); then check admissions against the rate, the cap and the order.
    QueueWait(queue_wait::Args),
}

impl Cmd {
    fn common(&self) -> &Common {
        match self {
            Cmd::QueueRush(a) => &a.common,
            Cmd::BookingRush(a) => &a.common,
            Cmd::ChatFanout(a) => &a.common,
            Cmd::Connections(a) => &a.common,
            Cmd::Soak(a) => &a.common,
            Cmd::QueueWait(a) => &a.common,
        }
    }

    /// Whether the target is a bare WebSocket peer with no REST (`--peer`).
    fn peer(&self) -> bool {
        match self {
            Cmd::ChatFanout(a) => a.peer,
            Cmd::Connections(a) => a.peer,
            Cmd::QueueRush(_) | Cmd::BookingRush(_) | Cmd::Soak(_) | Cmd::QueueWait(_) => false,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Cmd::QueueRush(_) => "queue-rush",
            Cmd::BookingRush(_) => "booking-rush",
            Cmd::ChatFanout(_) => "chat-fanout",
            Cmd::Connections(_) => "connections",
            Cmd::Soak(_) => "soak",
            Cmd::QueueWait(_) => "queue-wait",
        }
    }
}

/// Raise the soft RLIMIT_NOFILE to the hard limit: many sockets need many descriptors.
fn raise_nofile() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    lim.current = lim.maximum;
    setrlimit(Resource::Nofile, lim).ok()?;
    getrlimit(Resource::Nofile).current
}

fn fail(json: bool, scenario: &str, e: &anyhow::Error) -> ExitCode {
    eprintln!("boxoffice-load {scenario}: {e:#}");
    if json {
        println!("{}", serde_json::json!({ "scenario": scenario, "passed": false, "error": format!("{e:#}") }));
    }
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let common = cli.cmd.common().clone();
    let name = cli.cmd.name();
    let target = match Target::parse(&common.url) {
        Ok(t) => t,
        Err(e) => return fail(common.json, name, &e),
    };
    if common.secret.is_empty() {
        return fail(common.json, name, &anyhow::anyhow!("--secret (or BOXOFFICE_JWT_SECRET) must not be empty"));
    }
    let nofile = raise_nofile();
    let ws_rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(common.ws_threads.max(1))
        .thread_name("load-ws")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(common.json, name, &e.into()),
    };
    let handle = ws_rt.handle().clone();
    let secret = common.secret.as_bytes().to_vec();
    let run_id = common::run_id();
    let peer = cli.cmd.peer();
    let result = actix_rt::System::new().block_on(async move {
        let http = Http::new(&target, common.concurrency);
        common::reach(&http, &target, peer, if peer { "peer" } else { "server" }).await?;
        match cli.cmd {
            Cmd::QueueRush(a) => queue_rush::run(a, http, secret, run_id).await,
            Cmd::BookingRush(a) => booking_rush::run(a, http, secret, run_id).await,
            Cmd::ChatFanout(a) => chat_fanout::run(a, http, secret, run_id, target, handle).await,
            Cmd::Connections(a) => connections::run(a, http, secret, run_id, target, handle).await,
            Cmd::Soak(a) => soak::run(a, http, secret, run_id, target, handle).await,
            Cmd::QueueWait(a) => queue_wait::run(a, http, secret, run_id, target).await,
        }
    });
    ws_rt.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(mut report) => {
            if let Some(n) = nofile {
                report.params["tool_nofile_limit"] = n.into();
            }
            if common.json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.render());
            }
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => fail(common.json, name, &e),
    }
}
