//! Actors that live only while they are needed (`BOXOFFICE_ACTOR_IDLE`): wallets, seat
//! maps, rooms and listings stop when idle and come back from their records, and a client
//! cannot tell, byte for byte.

use crate::chat::{ids, Chat};
use crate::helpers::*;
use serde_json::json;
use std::time::{Duration, Instant};

/// A server with the default idle window ([`IDLE`]), which its tests pass by moving its
/// clock ([`idle_out`]).
fn idle_server() -> TestServer {
    TestServer::spawn(&fast_queue())
}

/// `BOXOFFICE_ACTOR_IDLE`'s default.
const IDLE: Duration = Duration::from_secs(120);

/// Move the server's clock past the idle window: every actor nobody asked for since is
/// idle, and the book's sweep (woken by the move) stops those with no work left. Short of
/// the window (by 30 s, more than the test's own steps take), none of them stops.
async fn idle_out(server: &TestServer, api: &Api, kind: &str) {
    let before = live(api, kind).await;
    assert!(before > 0, "no {kind} actor runs");
    server.advance(IDLE - Duration::from_secs(30)).await;
    actix_rt::time::sleep(NOTHING_FIRES).await;
    assert_eq!(live(api, kind).await, before, "a {kind} actor stopped before the idle window was over");
    server.advance(Duration::from_secs(31)).await;
}

/// `boxoffice_actors_live{kind="..."}` as `/metrics` says now.
async fn live(api: &Api, kind: &str) -> u64 {
    let r = api.raw("GET", "/metrics", Some(&admin_jwt(999)), &[], None).await;
    assert_eq!(r.status, 200, "{r:?}");
    let text = String::from_utf8(r.raw.to_vec()).expect("text");
    let prefix = format!("boxoffice_actors_live{{kind=\"{kind}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0, |v| v.trim().parse::<f64>().expect("number") as u64)
}

/// Wait until `n` actors of `kind` run (also for other test files).
pub(crate) async fn until_live(api: &Api, kind: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = live(api, kind).await;
        if now == n {
            return;
        }
        assert!(Instant::now() < deadline, "{kind} actors stayed at {now}, never {n}");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_rt::test]
async fn keyed_retries_after_the_actors_stopped_replay_the_first_answer_byte_for_byte() {
    let server = idle_server();
    let api = server.api();
    let kim = Buyer::enter(&api, 31).await;
    let charged = kim.charge(&api, 100_000, "c1").await;
    assert_eq!(charged.status, 200, "{charged:?}");
    let held = kim.hold(&api, 2, 9, "h1").await;
    assert_eq!(held.status, 200, "{held:?}");
    let reservation = held.body["reservationId"].as_u64().expect("id");
    let refused = kim.pay(&api, reservation, 1, "p2").await;
    assert_eq!(refused.status, 400, "{refused:?}");

    // Nobody asks for the wallet for a while: it stops (its balance is in its record).
    idle_out(&server, &api, "wallet").await;
    until_live(&api, "wallet", 0).await;
    for (first, again) in [
        (&charged, kim.charge(&api, 100_000, "c1").await),
        (&held, kim.hold(&api, 2, 9, "h1").await),
        (&refused, kim.pay(&api, reservation, 1, "p2").await),
    ] {
        assert_eq!((again.status, &again.raw), (first.status, &first.raw), "a replay after the stop");
    }
    let paid = kim.pay(&api, reservation, 80_000, "p1").await;
    assert_eq!(paid.status, 200, "{paid:?}");
    idle_out(&server, &api, "wallet").await;
    until_live(&api, "wallet", 0).await;
    // The payment retired the queue token: its replay is found all the same.
    let replay = kim.pay(&api, reservation, 80_000, "p1").await;
    assert_eq!((replay.status, &replay.raw), (paid.status, &paid.raw));
    let kim = Buyer::enter(&api, 31).await;
    assert_eq!(kim.balance(&api).await.body["amount"].as_u64(), Some(20_000), "charged once, paid once");
    // Every seat map stopped in the same move (none has a deadline left): a sold seat is
    // read back.
    until_live(&api, "seat_map", 0).await;
    let seats = seat_statuses(&kim.seats(&api, 2).await);
    assert_eq!(seats[8], (9, "RESERVED".to_string()), "the paid seat stays sold");
    assert!(seats.iter().filter(|(_, s)| s == "RESERVED").count() == 1, "{seats:?}");
}

#[actix_rt::test]
async fn a_room_stopped_when_idle_carries_on_from_its_records() {
    let server = idle_server();
    let chat = Chat::new(&server);
    let api = server.api();
    let room = chat.group(41, "idle", &[42]).await;
    let first = chat.post(41, room, "before").await;
    idle_out(&server, &api, "room").await;
    until_live(&api, "room", 0).await;
    let second = chat.post(42, room, "after").await;
    let all = chat.all_messages(41, room).await;
    let (a, b) = (first["message_id"].as_u64().expect("id"), second["message_id"].as_u64().expect("id"));
    assert!(b > a, "ids keep growing across the stop");
    assert!(ids(&all).ends_with(&[a, b]), "both messages, in order: {all:?}");
    assert_eq!(chat.summary(41, room).await["unread_count"].as_u64(), Some(1), "read state came back");
}

/// A keyed request that may get no answer (the server is killed under it): `None` then.
async fn try_keyed(
    api: &Api,
    b: &Buyer,
    method: &str,
    path: &str,
    key: &str,
    body: serde_json::Value,
) -> Option<Reply> {
    let headers = [("X-Queue-Token", b.queue.as_str()), ("Idempotency-Key", key)];
    api.try_call(method, path, Some(&b.jwt), &headers, Some(body)).await.filter(|r| r.status == 200)
}

/// A request the kill may have cut off: its answer never came, so it may or may not have
/// been applied. A retry with its key settles it, exactly once.
enum Unanswered {
    Charge(String),
    Hold(u64),
    Pay(u64),
}

/// Actors stop and start all the time (an idle window of 30 ms, clients pausing past it)
/// while 8 users charge, hold and pay; the server is killed with `kill -9` in the middle.
/// After the restart every acknowledged write is there and every acknowledged answer
/// replays byte for byte; the one request each user had in flight, retried with its key,
/// is applied exactly once: each balance is then exactly what the answers say.
#[actix_rt::test]
async fn kill9_while_actors_stop_and_start_loses_nothing_acknowledged() {
    let mut env = fast_queue();
    env.push(("BOXOFFICE_ACTOR_IDLE", "30ms"));
    env.push(("BOXOFFICE_HOLD_TTL", "10m"));
    let mut server = TestServer::spawn(&env);
    let api = server.api();
    let users: Vec<u64> = (51..=58).collect();
    let mut buyers = Vec::new();
    for &u in &users {
        buyers.push(Buyer::enter(&api, u).await);
    }
    // Each user charges, pauses past the idle window, and so on; at round 2 they hold a
    // seat of their own on schedule 3 and pay for it. The kill comes while they run.
    let runs = buyers.iter().enumerate().map(|(i, b)| {
        let api = api.clone();
        async move {
            let mut acked: Vec<(String, Reply)> = Vec::new();
            let mut balance = 0u64;
            let seat = i as u64 + 1;
            let charge_path = format!("/users/{}/charge", b.id);
            for round in 0..20u64 {
                let key = format!("c{round}");
                let body = json!({ "amount": 100_000 });
                let Some(r) = try_keyed(&api, b, "PATCH", &charge_path, &key, body).await else {
                    return (acked, balance, Some(Unanswered::Charge(key)));
                };
                balance += 100_000;
                acked.push((key, r));
                actix_rt::time::sleep(Duration::from_millis(35 + 5 * i as u64)).await;
                if round == 2 {
                    let body = json!({ "userId": b.id, "concertId": 1, "scheduleId": 3, "seatNumber": seat });
                    let Some(h) = try_keyed(&api, b, "POST", "/reservations", "hold", body).await else {
                        return (acked, balance, Some(Unanswered::Hold(seat)));
                    };
                    let id = h.body["reservationId"].as_u64().expect("id");
                    acked.push(("hold".into(), h));
                    actix_rt::time::sleep(Duration::from_millis(35)).await;
                    let body = json!({ "reservationId": id, "amount": 80_000 });
                    let Some(p) = try_keyed(&api, b, "POST", "/payments", "pay", body).await else {
                        return (acked, balance, Some(Unanswered::Pay(id)));
                    };
                    balance -= 80_000;
                    acked.push(("pay".into(), p));
                    break; // the payment retired the queue token
                }
            }
            (acked, balance, None)
        }
    });
    let killer = async {
        actix_rt::time::sleep(Duration::from_millis(250)).await;
        server.kill9();
    };
    let (results, ()) = futures_util::future::join(futures_util::future::join_all(runs), killer).await;
    server.restart();
    let api = server.api();
    let mut replayed = 0;
    for (u, (acked, mut balance, unanswered)) in users.iter().zip(results) {
        let b = Buyer::enter(&api, *u).await;
        for (key, first) in &acked {
            let again = match key.as_str() {
                "hold" => b.hold(&api, 3, first.body["seatNumber"].as_u64().expect("seat"), key).await,
                "pay" => {
                    let id = first.body["reservationId"].as_u64().expect("id");
                    let r = b.pay(&api, id, 80_000, key).await;
                    assert_eq!(b.reservation(&api, id).await.body["status"], "CONFIRMED", "user {u}'s paid seat");
                    r
                }
                _ => b.charge(&api, 100_000, key).await,
            };
            assert_eq!((again.status, &again.raw), (first.status, &first.raw), "user {u} replays {key}");
            replayed += 1;
        }
        // Whatever became of the request the kill cut off, its retry settles it once.
        let b = Buyer::enter(&api, *u).await;
        match unanswered {
            Some(Unanswered::Charge(key)) => {
                assert_eq!(b.charge(&api, 100_000, &key).await.status, 200, "user {u} retries {key}");
                balance += 100_000;
            }
            Some(Unanswered::Hold(seat)) => assert_eq!(b.hold(&api, 3, seat, "hold").await.status, 200),
            Some(Unanswered::Pay(id)) => {
                assert_eq!(b.pay(&api, id, 80_000, "pay").await.status, 200, "user {u} retries the payment");
                balance -= 80_000;
            }
            None => {}
        }
        let b = Buyer::enter(&api, *u).await;
        assert_eq!(b.balance(&api).await.body["amount"].as_u64(), Some(balance), "user {u}'s balance");
    }
    assert!(replayed >= users.len(), "every user got at least one answer before the kill");
}
