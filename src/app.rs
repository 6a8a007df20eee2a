//! Start-up and shutdown: open the store, bring the actors back, bind, serve until
//! SIGINT or SIGTERM, stop taking requests, flush, exit.

use crate::actors::Registry;
use crate::auth::{load_secret, Verifier};
use crate::config::Settings;
use crate::http::{self, AppState};
use crate::store::Store;
use actix_web::{web, App};
use std::net::{SocketAddr, TcpListener};

pub struct Application {
    server: actix_server::Server,
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
        let app = move || {
            App::new()
                // A query string that is not UTF-8 is 400 before any handler reads it.
                .wrap_fn(|req, srv| {
                    use actix_web::dev::Service;
                    use futures_util::future::{ready, Either};
                    match http::health::bad_query(req.request()) {
                        Some(res) => Either::Left(ready(Err(actix_web::error::InternalError::from_response(
                            "the query string is not UTF-8",
                            res,
                        )
                        .into()))),
                        None => Either::Right(srv.call(req)),
                    }
                })
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(1 << 20))
                .configure(http::routes)
                .default_service(web::to(http::health::not_found))
        };
        // actix-web's HttpServer, plus actix-http's upgrade hook: WebSockets leave the
        // HTTP/1 dispatcher once their handshake is answered (see `http::upgrade`).
        let server = actix_server::Server::build()
            .workers(settings.workers)
            .backlog(4096)
            .shutdown_timeout(5)
            .listen("boxoffice", listener, move || {
                let app = app.clone();
                actix_http::HttpService::build()
                    .keep_alive(actix_http::KeepAlive::default())
                    .client_request_timeout(std::time::Duration::from_secs(5))
                    .client_disconnect_timeout(std::time::Duration::from_secs(1))
                    .local_addr(addr)
                    .upgrade(http::upgrade::upgrades(app.clone()))
                    .finish(actix_service::map_config(
                        actix_service::ServiceFactoryExt::map_err(
                            actix_service::IntoServiceFactory::into_factory(app()),
                            |e: actix_web::Error| e.error_response(),
                        ),
                        |()| actix_web::dev::AppConfig::default(),
                    ))
                    .tcp()
            })?
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
