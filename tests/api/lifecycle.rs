//! Actors that live only while they are needed (`BOXOFFICE_ACTOR_IDLE`): wallets, seat
//! maps, rooms and listings stop when idle and come back from their records, and a client
//! cannot tell, byte for byte.

use crate::chat::{ids, Chat};
use crate::helpers::*;
use std::time::{Duration, Instant};

fn idle_server() -> TestServer {
    let mut env = fast_queue();
    env.push(("BOXOFFICE_ACTOR_IDLE", "150ms"));
    TestServer::spawn(&env)
}

/// `boxoffice_actors_live{kind="..."}` as `/metrics` says now.
async fn live(api: &Api, kind: &str) -> u64 {
    let r = api.raw("GET", "/metrics", Some(&admin_jwt(999)), &[], None).await;
    assert_eq!(r.status, 200, "{r:?}");
    let text = String::from_utf8(r.raw.to_vec()).expect("text");
    let prefix = format!("boxoffice_actors_live{{kind=\"{kind}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0, |v| v.trim().parse::<f64>().expect("number") as u64)
}

async fn until_live(api: &Api, kind: &str, n: u64) {
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
    until_live(&api, "wallet", 0).await;
    // The payment retired the queue token: its replay is found all the same.
    let replay = kim.pay(&api, reservation, 80_000, "p1").await;
    assert_eq!((replay.status, &replay.raw), (paid.status, &paid.raw));
    let kim = Buyer::enter(&api, 31).await;
    assert_eq!(kim.balance(&api).await.body["amount"].as_u64(), Some(20_000), "charged once, paid once");
}

#[actix_rt::test]
async fn a_room_stopped_when_idle_carries_on_from_its_records() {
    let server = idle_server();
    let chat = Chat::new(&server);
    let api = server.api();
    let room = chat.group(41, "idle", &[42]).await;
    let first = chat.post(41, room, "before").await;
    until_live(&api, "room", 0).await;
    let second = chat.post(42, room, "after").await;
    let all = chat.all_messages(41, room).await;
    let (a, b) = (first["message_id"].as_u64().expect("id"), second["message_id"].as_u64().expect("id"));
    assert!(b > a, "ids keep growing across the stop");
    assert!(ids(&all).ends_with(&[a, b]), "both messages, in order: {all:?}");
    assert_eq!(chat.summary(41, room).await["unread_count"].as_u64(), Some(1), "read state came back");
}
