//! The `boxoffice` binary: `serve` (the default) or `token`.

use boxoffice::app::Application;
use boxoffice::auth::{load_secret, mint};
use boxoffice::config::{Cli, Command};
use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sled=warn")))
        .with_writer(std::io::stderr)
        .init();
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
