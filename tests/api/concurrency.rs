//! Many real clients at once; invariants checked at the end, not only status codes.

use crate::helpers::*;
use futures_util::future::{join_all, LocalBoxFuture};
use std::collections::HashMap;

async fn buyers(api: &Api, ids: std::ops::Range<u64>) -> Vec<Buyer> {
    let mut out = Vec::new();
    let ids: Vec<u64> = ids.collect();
    for chunk in ids.chunks(200) {
        out.extend(join_all(chunk.iter().map(|id| Buyer::enter(api, *id))).await);
    }
    out
}

#[actix_rt::test]
async fn five_hundred_clients_one_seat_exactly_one_hold() {
    let server = TestServer::spawn(&fast_queue());
    let api = server.api();
    let all = buyers(&api, 1000..1500).await;
    let replies = join_all(all.iter().map(|b| {
        let api = &api;
        async move { b.hold(api, 1, 25, &format!("race-{}", b.id)).await }
    }))
    .await;
    let won: Vec<_> = replies.iter().filter(|r| r.status == 200).collect();
    assert_eq!(won.len(), 1, "exactly one hold");
    assert!(replies.iter().all(|r| r.status == 200 || r.status == 409), "every other answer is 409");
    let seats = seat_statuses(&all[0].seats(&api, 1).await);
    assert_eq!(seats.iter().filter(|(_, s)| s != "AVAILABLE").count(), 1);
    assert_eq!(seats[24].1, "TEMP_RESERVED");
}

#[actix_rt::test]
async fn two_thousand_clients_fifty_seats_exactly_fifty_holds() {
    let server = TestServer::spawn(&fast_queue());
    let api = server.api();
    let all = buyers(&api, 1..2001).await;
    // Everyone wants a seat; each client picks one of the 50 seats.
    let replies = join_all(all.iter().map(|b| b.hold(&api, 2, (b.id % 50) + 1, "rush"))).await;
    assert!(replies.iter().all(|r| r.status == 200 || r.status == 409), "only 200 or 409");
    let won: Vec<_> = replies.iter().filter(|r| r.status == 200).collect();
    assert_eq!(won.len(), 50, "exactly 50 holds");
    let mut by_seat: HashMap<u64, u64> = HashMap::new();
    for r in &won {
        *by_seat.entry(r.body["seatNumber"].as_u64().expect("seat")).or_default() += 1;
    }
    assert_eq!(by_seat.len(), 50, "every seat held once");
    assert!(by_seat.values().all(|n| *n == 1));
    let seats = seat_statuses(&all[0].seats(&api, 2).await);
    assert!(seats.iter().all(|(_, s)| s == "TEMP_RESERVED"), "the seat map agrees");
    // Now the schedule is not listed as having seats left.
    let list = api.get("/concerts/1/schedules", &all[0].jwt, &[]).await;
    let ids: Vec<u64> = list.body["schedules"]
        .as_array()
        .expect("list")
        .iter()
        .map(|s| s["scheduleId"].as_u64().expect("id"))
        .collect();
    assert_eq!(ids, vec![1, 3]);
}

#[actix_rt::test]
async fn concurrent_charges_and_payments_on_one_wallet_conserve_money() {
    let server = TestServer::spawn(&fast_queue());
    let api = server.api();
    let kim = Buyer::enter(&api, 7).await;
    let mut held = Vec::new();
    for seat in 1..=10u64 {
        let r = kim.hold(&api, 3, seat, &format!("h{seat}")).await;
        assert_eq!(r.status, 200);
        held.push(r.body["reservationId"].as_u64().expect("id"));
    }
    // 40 charges of 30,000 and 10 payments of 80,000, interleaved, all at once, on one
    // wallet. The first payment to succeed retires the queue token, so later requests may
    // be refused at the gate (403); whatever was acknowledged must add up.
    let (kim_ref, api_ref) = (&kim, &api);
    let mut all: Vec<LocalBoxFuture<'_, (&str, Reply)>> = Vec::new();
    for i in 0..40usize {
        all.push(Box::pin(async move { ("charge", kim_ref.charge(api_ref, 30_000, &format!("c{i}")).await) }));
        if i % 4 == 3 {
            let id = held[i / 4];
            all.push(Box::pin(async move { ("pay", kim_ref.pay(api_ref, id, 80_000, &format!("p{id}")).await) }));
        }
    }
    let replies = join_all(all).await;
    let charged: u64 = replies
        .iter()
        .filter(|(k, r)| *k == "charge" && r.status == 200)
        .map(|(_, r)| r.body["chargedAmount"].as_u64().expect("charged"))
        .sum();
    let paid: u64 = replies
        .iter()
        .filter(|(k, r)| *k == "pay" && r.status == 200)
        .map(|(_, r)| r.body["amount"].as_u64().expect("amount"))
        .sum();
    for (kind, r) in &replies {
        assert!(matches!(r.status, 200 | 402 | 403), "{kind}: {r:?}");
    }
    let kim = Buyer::enter(&api, 7).await;
    let balance = kim.balance(&api).await.body["amount"].as_u64().expect("balance");
    assert_eq!(balance, charged - paid, "balance = acknowledged charges - acknowledged payments");
    // Every acknowledged payment's reservation is confirmed; no other is.
    let paid_ids: Vec<u64> = replies
        .iter()
        .filter(|(k, r)| *k == "pay" && r.status == 200)
        .map(|(_, r)| r.body["reservationId"].as_u64().expect("id"))
        .collect();
    for id in &held {
        let status = kim.reservation(&api, *id).await.body["status"].as_str().expect("status").to_string();
        assert_eq!(status == "CONFIRMED", paid_ids.contains(id), "reservation {id} is {status}");
    }
}
