//! Settings: every knob of the server, from flags, `BOXOFFICE_*` environment variables or
//! a TOML file, each with a documented default. Durations are written `300ms`, `5m`, `24h`.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (write durations like 300ms, 5m, 24h)"))
}

#[derive(Debug, Parser)]
#[command(name = "boxoffice", version, about = "Seats, tickets and the chat around them: one realtime server")]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings for a bare `boxoffice`, which serves.
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve(Settings),
    /// Print a JWT signed with the configured secret, to try the API with curl.
    Token(TokenArgs),
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The user id the token speaks for (`sub`).
    #[arg(long)]
    pub user: u64,
    /// The nickname (`name` claim).
    #[arg(long)]
    pub name: Option<String>,
    /// Add `role: "admin"`, which may create catalog data.
    #[arg(long)]
    pub admin: bool,
    /// How long the token is valid.
    #[arg(long, default_value = "1h", value_parser = duration)]
    pub ttl: Duration,
    #[command(flatten)]
    pub settings: Settings,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text per event (coloured only when stderr is a terminal).
    Text,
    /// One JSON object per line.
    Json,
}

/// Everything the server reads at start-up.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// A TOML file with any of these settings (keys as the flags without `--`, `-` or `_`
    /// alike). A flag beats the environment, which beats the file, which beats the default;
    /// an unknown key is refused. See boxoffice.example.toml.
    #[arg(long, env = "BOXOFFICE_CONFIG")]
    pub config: Option<PathBuf>,
    /// `text`, or `json` for one JSON object per line. Text is coloured only when stderr
    /// is a terminal. Which events: RUST_LOG (default `info,sled=warn`; each request is one
    /// `boxoffice::access` line).
    #[arg(long, env = "BOXOFFICE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Serve /metrics on this address too, without a token (Prometheus text format; on the
    /// main address it answers admin tokens only).
    #[arg(long, env = "BOXOFFICE_METRICS_BIND")]
    pub metrics_bind: Option<String>,
    /// On SIGTERM or SIGINT: stop accepting, close WebSockets with 1001, let requests
    /// finish for at most this long, flush, exit 0.
    #[arg(long, env = "BOXOFFICE_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub shutdown_timeout: Duration,
    /// Address to listen on; port 0 picks a free port (the chosen one is printed).
    #[arg(long, env = "BOXOFFICE_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,
    /// Where sled keeps the data (and the generated JWT secret).
    #[arg(long, env = "BOXOFFICE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// HS256 secret for JWTs. Unset: a random one is created once and kept in the data dir.
    #[arg(long, env = "BOXOFFICE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM file with an RSA or EC public key: RS256/ES256 tokens signed by an identity
    /// provider are then accepted beside HS256 ones.
    #[arg(long, env = "BOXOFFICE_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,
    /// How long a contract Q seat hold lasts before it expires.
    #[arg(long, env = "BOXOFFICE_HOLD_TTL", default_value = "5m", value_parser = duration)]
    pub hold_ttl: Duration,
    /// Queue tokens admitted from waiting to active per second.
    #[arg(long, env = "BOXOFFICE_QUEUE_ADMIT_RATE", default_value_t = 100)]
    pub queue_admit_rate: u32,
    /// At most this many queue tokens are active at once.
    #[arg(long, env = "BOXOFFICE_QUEUE_MAX_ACTIVE", default_value_t = 1000)]
    pub queue_max_active: u32,
    /// An active queue token expires this long after admission (and at payment).
    #[arg(long, env = "BOXOFFICE_QUEUE_ACTIVE_TTL", default_value = "10m", value_parser = duration)]
    pub queue_active_ttl: Duration,
    /// A waiting queue token expires this long after issue if it was never admitted.
    #[arg(long, env = "BOXOFFICE_QUEUE_WAIT_TTL", default_value = "2h", value_parser = duration)]
    pub queue_wait_ttl: Duration,
    /// The largest single wallet charge.
    #[arg(long, env = "BOXOFFICE_CHARGE_MAX_SINGLE", default_value_t = 1_000_000)]
    pub charge_max_single: u64,
    /// The most one user may charge in a calendar month (UTC).
    #[arg(long, env = "BOXOFFICE_CHARGE_MAX_MONTHLY", default_value_t = 5_000_000)]
    pub charge_max_monthly: u64,
    /// How long a contract B booking locks its seats before it expires unless paid.
    #[arg(long, env = "BOXOFFICE_BOOKING_LOCK_TTL", default_value = "10m", value_parser = duration)]
    pub booking_lock_ttl: Duration,
    /// How long the server waits for the payment gateway before it calls a charge's
    /// outcome unknown (a retry then reuses the charge's key; an expiry refunds it).
    #[arg(long, env = "BOXOFFICE_GATEWAY_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub gateway_timeout: Duration,
    /// How long the test gateway takes to answer the `tok_slow` card.
    #[arg(long, env = "BOXOFFICE_TEST_GATEWAY_DELAY", default_value = "2s", value_parser = duration)]
    pub test_gateway_delay: Duration,
    /// How long a contract T payment request reserves its tickets before it expires.
    #[arg(long, env = "BOXOFFICE_TRADE_RESERVATION_TTL", default_value = "24h", value_parser = duration)]
    pub trade_reservation_ttl: Duration,
    /// Most participants a chat room may have (contract C's `max_participants`).
    #[arg(long, env = "BOXOFFICE_CHAT_MAX_PARTICIPANTS", default_value_t = 100)]
    pub chat_max_participants: u32,
    /// The largest file a chat message may carry.
    #[arg(long, env = "BOXOFFICE_CHAT_MAX_FILE_BYTES", default_value_t = 10 << 20)]
    pub chat_max_file_bytes: usize,
    /// How many events may wait for one WebSocket client; a client that lets more pile up
    /// (it stopped reading) is disconnected with close code 1008.
    #[arg(long, env = "BOXOFFICE_WS_OUTBOX", default_value_t = 1024)]
    pub ws_outbox: usize,
    /// How many bytes of events may wait for one WebSocket client (at least 64 KiB); a
    /// client over it (it stopped reading, or a burst outran it) is disconnected with
    /// close code 1008 at once.
    #[arg(long, env = "BOXOFFICE_WS_OUTBOX_BYTES", default_value_t = 256 << 10)]
    pub ws_outbox_bytes: usize,
    /// SignalR stateful reconnect: how long a connection whose socket dropped waits for
    /// its client to reconnect with the same connection token (ASP.NET Core's
    /// `DisconnectTimeout`).
    #[arg(long, env = "BOXOFFICE_SIGNALR_RECONNECT_WINDOW", default_value = "15s", value_parser = duration)]
    pub signalr_reconnect_window: Duration,
    /// How long a closing WebSocket waits for its close frame to be taken by a client that
    /// does not read, before the socket is dropped.
    #[arg(long, env = "BOXOFFICE_WS_CLOSE_GRACE", default_value = "10s", value_parser = duration)]
    pub ws_close_grace: Duration,
    /// SignalR stateful reconnect: most bytes of messages sent and not yet acknowledged
    /// that a connection keeps for a replay (ASP.NET Core's `StatefulReconnectBufferSize`,
    /// 100,000 there); a client that lets more pile up is closed with an error. 256 KiB, the
    /// outbox's bound, holds a 5 s drop of a room at 100 JSON messages a second (~165 KB).
    #[arg(long, env = "BOXOFFICE_SIGNALR_RECONNECT_BUFFER_BYTES", default_value_t = 256 << 10)]
    pub signalr_reconnect_buffer_bytes: usize,
    /// Largest WebSocket frame a client may send, in bytes; a bigger one closes the socket
    /// with 1009 (Message Too Big).
    #[arg(long, env = "BOXOFFICE_WS_MAX_FRAME", default_value_t = 64 << 10)]
    pub ws_max_frame: usize,
    /// Shortest time between two store flushes (fsyncs). Writes acknowledged in one window
    /// share one fsync: less CPU per write under load, at most this much more latency.
    #[arg(long, env = "BOXOFFICE_COMMIT_WINDOW", default_value = "2ms", value_parser = duration)]
    pub commit_window: Duration,
    /// How many bytes of the store sled may cache in memory (its page cache). Past
    /// records are read from disk when the cache does not hold them.
    #[arg(long, env = "BOXOFFICE_STORE_CACHE_BYTES", default_value_t = 64 << 20)]
    pub store_cache_bytes: u64,
    /// How long a wallet, room, ticket listing or seat map actor stays in memory after it
    /// was last asked for; then it stops unless it still has work (a pending deadline, a
    /// payment in flight, a write not yet durable), and starts again from its records on
    /// the next request. Lower keeps less in memory; higher reloads less often.
    #[arg(long, env = "BOXOFFICE_ACTOR_IDLE", default_value = "2m", value_parser = duration)]
    pub actor_idle: Duration,
    /// `off` turns every rate limit below off (for benchmarks and load tests that play
    /// one user many times over); `on` applies them.
    #[arg(long, env = "BOXOFFICE_RATE_LIMIT", value_enum, default_value = "on")]
    pub rate_limit: Switch,
    /// Requests one user (JWT subject) may make per second, sustained. A mobile app that
    /// polls every 50 ms stays under it; a client sending 1,000 in a second gets 429 for
    /// most of them.
    #[arg(long, env = "BOXOFFICE_RATE_USER_PER_SECOND", default_value_t = 40)]
    pub rate_user_per_second: u32,
    /// Requests one user may make at once, above the sustained rate (a screen that loads
    /// ten things in parallel).
    #[arg(long, env = "BOXOFFICE_RATE_USER_BURST", default_value_t = 80)]
    pub rate_user_burst: u32,
    /// Requests per second from one address (an IPv6 /64) that carry no valid token:
    /// logins gone wrong, probes, scanners.
    #[arg(long, env = "BOXOFFICE_RATE_ADDRESS_PER_SECOND", default_value_t = 20)]
    pub rate_address_per_second: u32,
    #[arg(long, env = "BOXOFFICE_RATE_ADDRESS_BURST", default_value_t = 40)]
    pub rate_address_burst: u32,
    /// WebSocket and SignalR handshakes per second one user may make (reconnects), on
    /// top of counting as requests.
    #[arg(long, env = "BOXOFFICE_RATE_HANDSHAKE_PER_SECOND", default_value_t = 2)]
    pub rate_handshake_per_second: u32,
    #[arg(long, env = "BOXOFFICE_RATE_HANDSHAKE_BURST", default_value_t = 20)]
    pub rate_handshake_burst: u32,
    /// Chat posts, typing frames and SignalR invocations per second on one socket. One
    /// over it gets an error; a socket that keeps going over it is closed (1008).
    #[arg(long, env = "BOXOFFICE_RATE_FRAMES_PER_SECOND", default_value_t = 30)]
    pub rate_frames_per_second: u32,
    #[arg(long, env = "BOXOFFICE_RATE_FRAMES_BURST", default_value_t = 60)]
    pub rate_frames_burst: u32,
    /// Reverse proxies (IP addresses, comma-separated) whose `X-Forwarded-For` names the
    /// client. From any other peer the header is ignored and the peer is the client.
    #[arg(long, env = "BOXOFFICE_RATE_TRUSTED_PROXIES", value_delimiter = ',')]
    pub rate_trusted_proxies: Vec<std::net::IpAddr>,
    /// Do not load the demo catalog into an empty store.
    #[arg(long, env = "BOXOFFICE_NO_DEMO")]
    pub no_demo: bool,
    /// For tests only: serve `POST /admin/clock` (admins), which moves this process's clock
    /// forward for every expiry, hold, queue tick and idle stop, so a timer test need not
    /// sleep. Off, the path is unknown (404).
    #[arg(long, env = "BOXOFFICE_CLOCK_ADJUSTABLE")]
    pub clock_adjustable: bool,
    /// HTTP worker threads (0: one per core).
    #[arg(long, env = "BOXOFFICE_WORKERS", default_value_t = 0)]
    pub workers: usize,
    /// Threads the actors run on (0: half the HTTP workers, at least one). Each request
    /// crosses from its HTTP worker to its actors and back: fewer actor threads make more
    /// of those hops land on a thread that is awake already (docs/performance.md).
    #[arg(long, env = "BOXOFFICE_ACTOR_THREADS", default_value_t = 0)]
    pub actor_threads: usize,
    /// `core` owns the actors and the store (alone, it is the whole server); `edge` holds
    /// WebSockets only and reaches the core over NATS (needs `--nats`).
    #[arg(long, env = "BOXOFFICE_ROLE", value_enum, default_value = "core")]
    pub role: Role,
    /// The NATS server that carries events and requests between a core and its edges
    /// (`nats://127.0.0.1:4222`). A core without it serves alone.
    #[arg(id = "nats", long = "nats", env = "BOXOFFICE_NATS_URL")]
    pub nats_url: Option<String>,
    /// The prefix of every NATS subject this deployment uses.
    #[arg(long, env = "BOXOFFICE_NATS_PREFIX", default_value = "boxoffice")]
    pub nats_prefix: String,
}

/// On or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    #[value(alias = "true")]
    On,
    #[value(alias = "false")]
    Off,
}

/// What a process of the one binary does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Owns every actor and the store; serves everything.
    Core,
    /// Holds WebSocket and SignalR connections; everything else is the core's.
    Edge,
}

impl Settings {
    /// Clamp values that would make the server misbehave, and say what was changed.
    pub fn sanitize(mut self) -> Self {
        if self.queue_admit_rate == 0 {
            tracing::warn!("BOXOFFICE_QUEUE_ADMIT_RATE=0 would admit nobody; using 1");
            self.queue_admit_rate = 1;
        }
        if self.queue_max_active == 0 {
            tracing::warn!("BOXOFFICE_QUEUE_MAX_ACTIVE=0 would admit nobody; using 1");
            self.queue_max_active = 1;
        }
        if self.store_cache_bytes < 1 << 20 {
            tracing::warn!("BOXOFFICE_STORE_CACHE_BYTES below 1 MiB makes every read a disk read; using 1 MiB");
            self.store_cache_bytes = 1 << 20;
        }
        for (limit, name) in [
            (&mut self.charge_max_single, "BOXOFFICE_CHARGE_MAX_SINGLE"),
            (&mut self.charge_max_monthly, "BOXOFFICE_CHARGE_MAX_MONTHLY"),
        ] {
            if *limit > crate::money::MAX_AMOUNT {
                tracing::warn!("{name} above 2^53-1 cannot be read exactly by clients; using 2^53-1");
                *limit = crate::money::MAX_AMOUNT;
            }
        }
        if self.workers == 0 {
            self.workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        }
        if self.actor_threads == 0 {
            self.actor_threads = (self.workers / 2).max(1);
        }
        self
    }
}

/// Reads the config file named by `--config` (or `BOXOFFICE_CONFIG`) into the environment,
/// under each setting's `BOXOFFICE_*` name, where the environment does not set it already.
/// Clap then reads flags over the environment over these over its defaults: the
/// precedence docs/configuration.md promises, with one parser for every source. Call before parsing
/// the command line, while the process has one thread.
pub fn apply_config_file(args: &[std::ffi::OsString]) -> anyhow::Result<Option<PathBuf>> {
    let mut path = None;
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == "--" {
            break;
        }
        if let Some(v) = a.strip_prefix("--config=") {
            path = Some(PathBuf::from(v));
        } else if a == "--config" {
            path = it.next().map(PathBuf::from);
        }
    }
    let path = match path.or_else(|| std::env::var_os("BOXOFFICE_CONFIG").map(PathBuf::from)) {
        Some(p) => p,
        None => return Ok(None),
    };
    let text = std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    for (env, value) in file_settings(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))? {
        if std::env::var_os(&env).is_none() {
            std::env::set_var(env, value);
        }
    }
    Ok(Some(path))
}

/// The settings a config file gives, as (environment variable, value) pairs; an unknown
/// key, or a value of the wrong kind, is an error naming it.
pub fn file_settings(text: &str) -> Result<Vec<(String, String)>, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.message().to_string())?;
    let cmd = <Settings as Args>::augment_args(clap::Command::new("boxoffice"));
    let known: Vec<(String, String)> = cmd
        .get_arguments()
        .filter(|a| a.get_id() != "config")
        .filter_map(|a| Some((a.get_id().as_str().to_string(), a.get_env()?.to_string_lossy().into_owned())))
        .collect();
    let mut out = Vec::new();
    for (key, value) in table {
        let id = key.replace('-', "_");
        let Some((_, env)) = known.iter().find(|(k, _)| *k == id) else {
            let names: Vec<&str> = known.iter().map(|(k, _)| k.as_str()).collect();
            return Err(format!("unknown setting `{key}`; the settings are: {}", names.join(", ")));
        };
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            // A list (of trusted proxies): as the environment writes it.
            toml::Value::Array(items) if items.iter().all(|i| i.is_str()) => {
                items.iter().filter_map(|i| i.as_str()).collect::<Vec<_>>().join(",")
            }
            other => {
                return Err(format!("`{key}` must be a string, an integer or a boolean, not {}", other.type_str()))
            }
        };
        out.push((env.clone(), value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_names_settings_by_their_flags() {
        let got = file_settings("bind = \"0.0.0.0:9000\"\nhold-ttl = \"90s\"\nqueue_admit_rate = 7\nno_demo = true\n")
            .expect("a valid file");
        assert_eq!(
            got,
            vec![
                ("BOXOFFICE_BIND".to_string(), "0.0.0.0:9000".to_string()),
                ("BOXOFFICE_HOLD_TTL".to_string(), "90s".to_string()),
                ("BOXOFFICE_NO_DEMO".to_string(), "true".to_string()),
                ("BOXOFFICE_QUEUE_ADMIT_RATE".to_string(), "7".to_string()),
            ]
        );
    }

    #[test]
    fn unknown_keys_and_wrong_kinds_are_refused() {
        let e = file_settings("bnid = \"x\"").expect_err("a typo");
        assert!(e.contains("unknown setting `bnid`") && e.contains("bind"), "{e}");
        assert!(file_settings("config = \"other.toml\"").is_err(), "a file cannot name another");
        assert!(file_settings("workers = 1.5").is_err());
        assert!(file_settings("[server]\nbind = \"x\"").is_err(), "no tables");
    }

    /// Every setting can come from the file: the example file names each one.
    #[test]
    fn the_example_file_names_every_setting() {
        let example = include_str!("../boxoffice.example.toml");
        let named = file_settings(example).expect("the example parses");
        let cmd = <Settings as Args>::augment_args(clap::Command::new("boxoffice"));
        for a in cmd.get_arguments().filter(|a| a.get_id() != "config") {
            let env = a.get_env().expect("every setting has a variable").to_string_lossy().into_owned();
            let commented = example.contains(&format!("# {} =", a.get_id().as_str().replace('_', "-")));
            assert!(
                commented || named.iter().any(|(e, _)| *e == env),
                "boxoffice.example.toml does not mention {}",
                a.get_id()
            );
        }
    }
}
