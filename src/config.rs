//! Settings: every knob of the server, from flags or `BOXOFFICE_*` environment
//! variables, each with a documented default. Durations are written `300ms`, `5m`, `24h`.

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

/// Everything the server reads at start-up.
#[derive(Debug, Clone, Args)]
pub struct Settings {
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
    /// Do not load the demo catalog into an empty store.
    #[arg(long, env = "BOXOFFICE_NO_DEMO")]
    pub no_demo: bool,
    /// HTTP worker threads (0: one per core).
    #[arg(long, env = "BOXOFFICE_WORKERS", default_value_t = 0)]
    pub workers: usize,
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
        self
    }
}
