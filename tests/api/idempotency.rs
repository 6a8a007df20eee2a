//! `Idempotency-Key`: replay, mismatch, and one execution under concurrency.

use crate::helpers::*;
use futures_util::future::join_all;
use serde_json::json;

#[actix_rt::test]
async fn replay_mismatch_and_concurrent_retries() {
    let server = TestServer::spawn(&fast_queue());
    let api = server.api();
    let kim = Buyer::enter(&api, 20).await;

    // A replay returns the first body, even when the world has changed since.
    let first = kim.hold(&api, 1, 3, "k-hold").await;
    assert_eq!(first.status, 200);
    let again = kim.hold(&api, 1, 3, "k-hold").await;
    assert_eq!((again.status, &again.body), (200, &first.body));
    // The same key with another body: 422, even on another schedule (another seat map).
    assert_q_error(&kim.hold(&api, 1, 4, "k-hold").await, 422);
    assert_q_error(&kim.hold(&api, 2, 3, "k-hold").await, 422);
    // ...or on another endpoint.
    assert_q_error(&kim.charge(&api, 10, "k-hold").await, 422);
    // An error answer is replayed too.
    let lee = Buyer::enter(&api, 21).await;
    let taken = lee.hold(&api, 1, 3, "k-lee").await;
    assert_q_error(&taken, 409);
    let replay = lee.hold(&api, 1, 3, "k-lee").await;
    assert_eq!((replay.status, &replay.body), (409, &taken.body));

    // The same charge sent 30 times at once executes once.
    let sends = (0..30).map(|_| kim.charge(&api, 70_000, "k-charge"));
    let replies = join_all(sends).await;
    let ok: Vec<_> = replies.iter().filter(|r| r.status == 200).collect();
    assert!(!ok.is_empty());
    assert!(replies.iter().all(|r| r.status == 200 || r.status == 409), "{replies:?}");
    assert!(ok.iter().all(|r| r.body == ok[0].body));
    assert_eq!(kim.balance(&api).await.body["amount"].as_u64(), Some(70_000));

    // A payment refused for lack of balance is replayed as refused.
    let id = first.body["reservationId"].as_u64().expect("id");
    assert_q_error(&kim.pay(&api, id, 80_000, "k-pay-poor").await, 402);
    assert_eq!(kim.charge(&api, 10_000, "k-charge-2").await.status, 200);
    assert_q_error(&kim.pay(&api, id, 80_000, "k-pay-poor").await, 402);

    // The same payment sent 10 times at once debits once; every success is the same
    // answer, the others are 409 (still running).
    let replies = join_all((0..10).map(|_| kim.pay(&api, id, 80_000, "k-pay"))).await;
    let ok: Vec<_> = replies.iter().filter(|r| r.status == 200).collect();
    assert!(!ok.is_empty(), "{replies:?}");
    assert!(replies.iter().all(|r| r.status == 200 || r.status == 409), "{replies:?}");
    assert!(ok.iter().all(|r| r.body == ok[0].body));
    // A retry after the payment retired the queue token still gets the first answer.
    let late = kim.pay(&api, id, 80_000, "k-pay").await;
    assert_eq!((late.status, &late.body), (200, &ok[0].body));
    let kim = Buyer::enter(&api, 20).await;
    assert_eq!(kim.balance(&api).await.body["amount"].as_u64(), Some(0));
    assert_eq!(kim.reservation(&api, id).await.body["status"], "CONFIRMED");
    let _ = json!(null);
}
