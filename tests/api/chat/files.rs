//! Contract C's files: uploaded as multipart, checked, and served to participants only.

use super::*;
use crate::helpers::*;
use serde_json::json;

#[actix_rt::test]
async fn files_are_uploaded_as_multipart_and_served_to_participants_only() {
    let server = TestServer::spawn(&[("BOXOFFICE_CHAT_MAX_FILE_BYTES", "1024")]);
    let chat = Chat::new(&server);
    let (kim, lee, outsider) = (1u64, 2u64, 3u64);
    chat.touch(&[kim, lee, outsider]).await;
    let room = chat.group(kim, "files", &[lee]).await;

    // An image, as the seed sends it.
    let img = png(600);
    let file = FilePart { name: "photo.png", content_type: "image/png", bytes: &img };
    let r = chat
        .upload(kim, room, &[("message_content", "사진을 보내드려요"), ("message_type", "image")], Some(file))
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let photo = r.body.clone();
    assert_message(&photo);
    assert_eq!((&photo["message_type"], &photo["message_content"]), (&json!("image"), &json!("사진을 보내드려요")));
    assert_eq!((&photo["file_name"], num(&photo, "file_size")), (&json!("photo.png"), 600), "{photo}");
    assert_eq!((num(&photo, "sender_id"), num(&photo, "room_id")), (kim, room));
    let url = photo["file_url"].as_str().unwrap_or_else(|| panic!("file_url: {photo}")).to_string();
    assert!(url.starts_with(&format!("/chat/files/{room}/")), "file_url is /chat/files/{{room_id}}/...: {url}");

    // Participants get the exact bytes, by header or ?token=; others don't.
    for who in [kim, lee] {
        let f = chat.fetch(&url, Some(&jwt(who))).await;
        assert_eq!(f.status, 200, "user {who} fetches {url}");
        assert!(f.bytes == img, "the same bytes ({} vs {})", f.bytes.len(), img.len());
        assert!(f.content_type.starts_with("image/png"), "the stored content type: {}", f.content_type);
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    let f = chat.fetch(&format!("{url}{sep}token={}", jwt(lee)), None).await;
    assert!(f.status == 200 && f.bytes == img, "?token= works too: {}", f.status);
    let f = chat.fetch(&url, Some(&jwt(outsider))).await;
    assert_eq!(f.status, 403, "a non-participant: {}", f.body);
    assert!(f.body["detail"].is_string(), "{}", f.body);
    let f = chat.fetch(&format!("{url}{sep}token={}", jwt(outsider)), None).await;
    assert_eq!(f.status, 403, "a non-participant's ?token=");
    assert_eq!(chat.fetch(&url, None).await.status, 401, "no token");
    let f = chat.fetch(&format!("/chat/files/{room}/no-such-file.png"), Some(&jwt(kim))).await;
    assert_eq!(f.status, 404, "an unknown file: {}", f.body);

    // A plain file: message_type defaults to file; a JPEG image; exactly the limit is fine.
    let notes = b"hello\r\n--not-the-boundary\r\n\x00\x01binary tail".to_vec();
    let file = FilePart { name: "notes.txt", content_type: "text/plain", bytes: &notes };
    let r = chat.upload(lee, room, &[], Some(file)).await;
    assert_eq!(r.status, 201, "{r:?}");
    let doc = r.body.clone();
    assert_message(&doc);
    assert_eq!((&doc["message_type"], &doc["file_name"]), (&json!("file"), &json!("notes.txt")), "{doc}");
    assert_eq!(num(&doc, "file_size"), notes.len() as u64);
    let f = chat.fetch(doc["file_url"].as_str().expect("file_url"), Some(&jwt(kim))).await;
    assert!(f.status == 200 && f.bytes == notes, "the text file comes back as sent: {}", f.status);
    let jpg = jpeg(500);
    let file = FilePart { name: "p.jpg", content_type: "image/jpeg", bytes: &jpg };
    let r = chat.upload(lee, room, &[("message_type", "image")], Some(file)).await;
    assert_eq!((r.status, &r.body["message_type"]), (201, &json!("image")), "a JPEG: {r:?}");
    let photo2 = r.body.clone();
    let edge = png(1024);
    let file = FilePart { name: "edge.png", content_type: "image/png", bytes: &edge };
    let r = chat.upload(kim, room, &[("message_type", "image")], Some(file)).await;
    assert_eq!((r.status, r.body["file_size"].as_u64()), (201, Some(1024)), "exactly the limit: {r:?}");
    let at_limit = r.body.clone();

    // Refusals: 400 (422 without a file); nothing stored.
    let text = b"just some text, not a picture".to_vec();
    let big = png(1025);
    let big_text = vec![b'a'; 2000];
    let mut exe = b"MZ\x90\x00\x03\x00\x00\x00".to_vec();
    exe.extend(std::iter::repeat_n(0u8, 100));
    let cases = [
        ("text declared as an image", "image", FilePart { name: "fake.png", content_type: "image/png", bytes: &text }),
        ("an image over the limit", "image", FilePart { name: "big.png", content_type: "image/png", bytes: &big }),
        ("a file over the limit", "file", FilePart { name: "big.txt", content_type: "text/plain", bytes: &big_text }),
        (
            "an executable",
            "file",
            FilePart { name: "setup.exe", content_type: "application/octet-stream", bytes: &exe },
        ),
    ];
    for (what, kind, file) in cases {
        let r = chat.upload(kim, room, &[("message_type", kind)], Some(file)).await;
        assert_eq!(r.status, 400, "{what}: {r:?}");
        assert_detail(&r, 400);
    }
    let r = chat.upload(kim, room, &[("message_content", "no file"), ("message_type", "file")], None).await;
    assert_eq!(r.status, 422, "multipart without a file: {r:?}");
    assert_detail(&r, 422);
    let all = chat.all_messages(kim, room).await;
    assert_eq!(all, [photo.clone(), doc.clone(), photo2, at_limit], "only the accepted uploads were stored");

    // A deleted file message keeps its place without its file.
    let pid = num(&photo, "message_id");
    assert_eq!(chat.delete(lee, room, pid).await.status, 403);
    assert_eq!(chat.delete(kim, room, pid).await.status, 200);
    let first = chat.all_messages(lee, room).await.remove(0);
    assert_eq!((num(&first, "message_id"), &first["is_deleted"]), (pid, &json!(true)), "{first}");
    assert!(first["file_url"].is_null() && first["file_name"].is_null() && first["file_size"].is_null(), "{first}");
}
