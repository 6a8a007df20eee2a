//! Start-up and shutdown: open the store, bring the actors back, bind, serve until
//! SIGINT or SIGTERM, stop taking requests, flush, exit.

use crate::actors::Registry;
use crate::auth::{load_secret, Verifier};
use crate::config::Settings;
use crate::http::{self, AppState};
use crate::store::Store;
use actix_web::{web, App, HttpServer};
use std::net::{SocketAddr, TcpListener};

pub struct Application {
    server: actix_web::dev::Server,
    addr: SocketAddr,
    store: Store,
}

impl Application {
    /// Open everything and bind the listener (port 0 picks a free port).
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let settings = settings.sanitize();
        std::fs::create_dir_all(&settings.data_dir)?;
        let secret = load_secret(&settings)?;
        let public_key = match &settings.jwt_public_key {
            Some(p) => Some(std::fs::read(p).map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))?),
            None => None,
        };
        let verifier = Verifier::new(&secret, public_key.as_deref())?;
        let store = Store::open_with(&settings.data_dir, settings.commit_window, settings.store_cache_bytes)?;
        let registry = Registry::start(store.clone(), settings.clone()).await?;
        let links = http::signed::LinkSigner::new(&secret);
        let state = web::Data::new(AppState {
            registry,
            verifier,
            settings: settings.clone(),
            links,
            noted: Default::default(),
        });
        let listener = TcpListener::bind(&settings.bind)?;
        let addr = listener.local_addr()?;
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(1 << 20))
                .configure(http::routes)
                .default_service(web::to(http::health::not_found))
        })
        .workers(settings.workers)
        .backlog(4096)
        .max_connection_rate(4096)
        .shutdown_timeout(5)
        .listen(listener)?
        .run();
        Ok(Application { server, addr, store })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serve until a signal stops the server, then make everything durable.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.server.await?;
        self.store.flush_blocking()?;
        tracing::info!("stopped; everything is on disk");
        Ok(())
    }
}
