//! WebSocket upgrades leave actix-http's HTTP/1 dispatcher: the socket is handed to the
//! session itself.
//!
//! The dispatcher keeps two 8 KiB buffers per connection for as long as the connection
//! lives, and runs every outgoing frame through a streaming response body (a task wake,
//! a copy into its write buffer, a flush). An idle WebSocket needs neither. So the server
//! is built with actix-http's upgrade hook ([`server_factory`]): a request with
//! `Connection: upgrade` goes through the same actix-web `App` (routing, extractors,
//! authentication, the contracts' refusals), and when the handler accepted the upgrade
//! (a 101 carrying a [`Takeover`] in its extensions) the 101 is written and the bare
//! `TcpStream`, with any bytes the client sent after its handshake, goes to the session
//! ([`crate::http::session`]). Any other answer is written as it is and the connection
//! closes.

use actix_codec::Framed;
use actix_http::body::{BodySize, BoxBody, MessageBody};
use actix_http::{h1, Request, Response};
use actix_service::{fn_service, Service, ServiceFactory};
use actix_web::dev::{AppConfig, ServiceResponse};
use actix_web::web::BytesMut;
use futures_util::SinkExt;
use std::rc::Rc;
use tokio::net::TcpStream;

/// In a 101's extensions: what runs the socket once the 101 is written.
pub struct Takeover(pub Box<dyn FnOnce(TcpStream, BytesMut)>);

/// The upgrade service of one worker: each upgrade request goes through its own instance of
/// the app (`app()`), as every other request goes through the worker's.
pub fn upgrades<F, T, SF, B>(
    app: F,
) -> impl ServiceFactory<
    (Request, Framed<TcpStream, h1::Codec>),
    Config = (),
    Response = (),
    Error = actix_web::Error,
    InitError = (),
>
where
    F: Fn() -> T + 'static,
    T: actix_service::IntoServiceFactory<SF, Request>,
    SF: ServiceFactory<
            Request,
            Config = AppConfig,
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
    SF::Service: 'static,
    B: MessageBody + 'static,
{
    actix_service::fn_factory(move || {
        let factory = app().into_factory();
        async move {
            let app = Rc::new(factory.new_service(AppConfig::default()).await?);
            Ok(fn_service(move |(req, framed): (Request, Framed<TcpStream, h1::Codec>)| {
                upgrade(app.clone(), req, framed)
            }))
        }
    })
}

/// Answer an upgrade request through the app; hand the socket over on a 101.
async fn upgrade<S, B>(
    app: Rc<S>,
    req: Request,
    mut framed: Framed<TcpStream, h1::Codec>,
) -> Result<(), actix_web::Error>
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody + 'static,
{
    let res: Response<BoxBody> = match app.call(req).await {
        Ok(r) => r.map_into_boxed_body().into(),
        Err(e) => e.as_response_error().error_response().into(),
    };
    let (mut head, body) = res.into_parts();
    let takeover = head.extensions_mut().remove::<Takeover>();
    match takeover {
        Some(Takeover(start)) if head.status().as_u16() == 101 => {
            framed.send(h1::Message::Item((head, BodySize::None))).await?;
            let parts = framed.into_parts();
            start(parts.io, parts.read_buf);
        }
        _ => {
            let size = body.size();
            let bytes = actix_web::body::to_bytes(body)
                .await
                .map_err(|e| actix_web::error::ErrorInternalServerError(e.to_string()))?;
            let size = match size {
                BodySize::None => BodySize::None,
                _ => BodySize::Sized(bytes.len() as u64),
            };
            framed.send(h1::Message::Item((head, size))).await?;
            if !bytes.is_empty() {
                framed.send(h1::Message::Chunk(Some(bytes))).await?;
            }
            framed.send(h1::Message::Chunk(None)).await?;
        }
    }
    Ok(())
}
