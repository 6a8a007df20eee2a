//! The directory: one direct room per pair and one open trade room per listing and buyer,
//! however many ask at once, and who is in which room after a restart.

use crate::chat::Chat;
use crate::helpers::*;
use futures_util::future::join_all;
use serde_json::json;

/// Both users of a pair ask for their direct room 20 times at once: one room is created
/// (one 201), every answer names it, and each user's room list holds it once, also after a
/// `kill -9`.
#[actix_rt::test]
async fn a_direct_room_is_created_once_however_many_ask_at_once() {
    let mut server = TestServer::spawn(&[("BOXOFFICE_WORKERS", "4")]);
    let chat = Chat::new(&server);
    let (kim, lee) = (31, 32);
    chat.touch(&[kim, lee]).await;
    let asks = (0..20).map(|i| {
        let (me, other) = if i % 2 == 0 { (kim, lee) } else { (lee, kim) };
        chat.create(me, json!({ "room_type": "direct", "participant_ids": [other] }))
    });
    let replies = join_all(asks).await;
    let created = replies.iter().filter(|r| r.status == 201).count();
    assert_eq!(created, 1, "one room is created: {replies:?}");
    let ids: std::collections::BTreeSet<u64> = replies
        .iter()
        .map(|r| {
            assert!(r.status == 201 || r.status == 200, "{r:?}");
            r.body["room_id"].as_u64().expect("room_id")
        })
        .collect();
    assert_eq!(ids.len(), 1, "every answer names the same room: {ids:?}");
    let room = *ids.iter().next().expect("one id");
    server.kill9();
    server.restart();
    let chat = Chat::new(&server);
    assert_eq!(chat.room_ids(kim).await, [room]);
    assert_eq!(chat.room_ids(lee).await, [room]);
    let again = chat.create(lee, json!({ "room_type": "direct", "participant_ids": [kim] })).await;
    assert_eq!((again.status, again.body["room_id"].as_u64()), (200, Some(room)), "{again:?}");
}

/// A buyer opening their room about a listing 10 times at once gets one room; after they
/// leave it, the next open makes a new one.
#[actix_rt::test]
async fn a_trade_room_is_opened_once_and_a_new_one_after_leaving() {
    let server = TestServer::spawn(&[("BOXOFFICE_WORKERS", "4")]);
    let api = server.api();
    let (seller, buyer) = (41, 42);
    let body = json!({ "title": "콘서트 R석", "unitPrice": 1000, "totalQuantity": 5 });
    let r = api.call("POST", "/api/tickets", Some(&jwt(seller)), &[], Some(body)).await;
    let ticket = r.body["data"]["ticketId"].as_u64().unwrap_or_else(|| panic!("{r:?}"));
    let token = jwt(buyer);
    let open = || api.call("POST", "/api/chat/rooms", Some(&token), &[], Some(json!({ "ticketId": ticket })));
    let replies = join_all((0..10).map(|_| open())).await;
    assert_eq!(replies.iter().filter(|r| r.status == 201).count(), 1, "{replies:?}");
    let ids: std::collections::BTreeSet<u64> =
        replies.iter().map(|r| r.body["data"]["roomId"].as_u64().unwrap_or_else(|| panic!("{r:?}"))).collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let room = *ids.iter().next().expect("one id");
    let left = api.call("POST", "/api/chat/rooms/leave", Some(&jwt(buyer)), &[], Some(json!({ "roomId": room }))).await;
    assert_eq!(left.status, 200, "{left:?}");
    let next = open().await;
    assert_eq!(next.status, 201, "{next:?}");
    assert_ne!(next.body["data"]["roomId"].as_u64(), Some(room));
}
