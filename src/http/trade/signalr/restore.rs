//! A connection of the process before this one resumed (see [`super::parking`] for its
//! record and why it is exact): the reconnect starts a session for it, joins the claim's
//! rooms again, makes its frames again and hands it the socket.

use super::parking::{remake, Parked, Parking, SentKind};
use super::protocol::HubRender;
use super::session::{resumable, Replay, SignalRWire};
use super::{Refused, PROTOCOLS};
use crate::actors::hub::Frame;
use crate::auth::Identity;
use crate::cluster::Backend;
use crate::http::session::{Abandon, Ctx, Reopen, Session};
use crate::http::Realtime;
use crate::store::{Batch, Key};
use actix::prelude::*;
use actix_web::{HttpRequest, HttpResponse};
use std::sync::Arc;

type S = Session<SignalRWire>;

/// Resume the connection `token` of the process before (see the module's doc): the 101,
/// or `Gone` (404) where it cannot be resumed exactly.
pub async fn reopen(
    state: &Realtime,
    req: &HttpRequest,
    me: &Identity,
    token: &str,
    parked: Parked,
    max_frame: usize,
) -> Result<Result<HttpResponse, actix_web::Error>, Refused> {
    let outcome = |o: &'static str| crate::observe::restored(o);
    let Backend::Local(registry) = &state.backend else { return Err(Refused::Gone) };
    let store = registry.store().clone();
    let key = Key::HubConnection(token.to_string());
    let forget = || {
        let mut b = Batch::default();
        b.delete(&key);
        let _ = store.apply(b);
    };
    let (Some(claim), Some(&protocol)) = (parked.claim, PROTOCOLS.iter().find(|p| p.name() == parked.protocol)) else {
        forget();
        outcome("not_exact");
        return Err(Refused::Gone);
    };
    let s = &state.settings;
    let replay = Replay::reopened(token.to_string(), s.signalr_reconnect_window, s.signalr_reconnect_buffer_bytes)
        .park_in(store.clone());
    let me_author = crate::http::author(me);
    let session =
        Actor::start(Session::arriving(state, me_author, SignalRWire::new(state.links.clone(), Some(replay))));
    let render = Arc::new(HubRender { protocol, links: state.links.clone() });
    let Ok(Some(missed)) = session.send(Reopen { render, rooms: claim.rooms.clone() }).await else {
        session.do_send(Abandon);
        forget();
        outcome("unavailable");
        return Err(Refused::Gone);
    };
    let Some(frames) = remake(&claim, &missed, &HubRender { protocol, links: state.links.clone() }) else {
        tracing::info!("signalr: a connection of the process before could have a gap; it is not resumed");
        session.do_send(Abandon);
        forget();
        outcome("not_exact");
        return Err(Refused::Gone);
    };
    let stream = frames.iter().rev().find_map(|(_, sent)| match sent {
        SentKind::Message { room, id } if !claim.kept.iter().any(|k| k.message == Some((*room, *id))) => {
            Some((*room, *id))
        }
        _ => None,
    });
    let sent_before: Vec<(u64, u64)> = claim
        .rooms
        .iter()
        .map(|(room, _)| {
            let last = frames
                .iter()
                .filter_map(|(_, s)| match s {
                    SentKind::Message { room: r, id } if r == room => Some(*id),
                    _ => None,
                })
                .max();
            (*room, last.unwrap_or(0))
        })
        .filter(|(_, id)| *id > 0)
        .collect();
    let parking =
        Parking::reopened(store.clone(), key.clone(), me.user_id, protocol.name(), &claim, stream, parked.processed);
    let install = Install { protocol, from: claim.from, frames, sent_before, parking };
    if !session.send(install).await.unwrap_or(false) {
        session.do_send(Abandon);
        forget();
        outcome("not_exact");
        return Err(Refused::Gone);
    }
    outcome("resumed");
    Ok(Session::take_over(req, session, max_frame))
}

/// The reopened connection takes back what it sent from `from` on, made again
/// ([`remake`]), and its record; `sent_before`: the newest message of each room in it.
#[derive(Message)]
#[rtype(result = "bool")]
struct Install {
    protocol: &'static dyn super::HubProtocol,
    from: u64,
    frames: Vec<(Frame, SentKind)>,
    sent_before: Vec<(u64, u64)>,
    parking: Parking,
}

impl Handler<Install> for S {
    type Result = bool;
    fn handle(&mut self, msg: Install, ctx: &mut Ctx<SignalRWire>) -> bool {
        if self.closing() {
            return false;
        }
        let Some(token) = self.wire.reinstate(msg.protocol, msg.from, msg.frames, msg.parking) else { return false };
        self.reopened(ctx, msg.sent_before);
        if self.closing() {
            return false;
        }
        resumable(&token, self.me.id, ctx.address());
        true
    }
}
