//! The `boxoffice` binary: `serve` (the default) or `token`.

use boxoffice::app::Application;
use boxoffice::auth::{load_secret, mint};
use boxoffice::config::{apply_config_file, Cli, Command, LogFormat};
use clap::Parser;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// jemalloc, with a background thread that returns pages freed for a second
/// (`.cargo/config.toml` sets the decay): RSS falls when idle actors stop.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Err(e) = apply_config_file(&args) {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    let cli = Cli::parse_from(args);
    let settings = match &cli.command {
        Some(Command::Token(args)) => &args.settings,
        Some(Command::Serve(settings)) => settings,
        None => &cli.settings,
    };
    // Kept until main returns: dropping it writes out the lines still queued.
    let _logs = logs(settings.log_format);
    match cli.command {
        Some(Command::Token(args)) => {
            let secret = load_secret(&args.settings)?;
            println!("{}", mint(&secret, args.user, args.name.as_deref(), args.admin, args.ttl)?);
            Ok(())
        }
        Some(Command::Serve(settings)) => serve(settings),
        None => serve(cli.settings),
    }
}

fn serve(settings: boxoffice::config::Settings) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings).await?;
        // The one line on stdout: scripts and tests read the address from it.
        println!("boxoffice listening on http://{}", app.addr());
        tracing::info!(addr = %app.addr(), "serving");
        app.run_until_stopped().await
    })
}

/// Log lines to stderr: text, coloured only when stderr is a terminal (no escape codes in
/// files and pipes), or one JSON object per line. A logging thread writes them, many lines
/// per `write` under load, so that a request's access line costs its formatting and not a
/// system call; if it falls 128k lines behind, lines are dropped rather than requests
/// slowed.
fn logs(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .thread_name("boxoffice-log")
        .finish(std::io::BufWriter::with_capacity(64 << 10, std::io::stderr()));
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sled=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).init(),
    }
    guard
}
