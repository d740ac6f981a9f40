//! Files end to end with real clients: uploads over HTTP (`reqwest` multipart), attachments
//! named in `send_message` by a real Socket.IO client, the bytes in the model's request,
//! the references in history, downloads by members only; and every refusal, with nothing
//! stored.

#![allow(clippy::unwrap_used)]

use marie_adapters::MemoryFileStore;
use marie_axum::MarieConfig;
use marie_core::{FileStore, MessageRole, UserId};
use marie_llm::ScriptedProvider;
use marie_testkit::server::{TestServer, start, start_custom};
use marie_testkit::socketio::{TestClient, WAIT, connect, two_members};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A 1×1 PNG.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89\0\0\0\rIDATx\x9cc\xf8\xff\xff?\0\x05\xfe\x02\xfe\xa7\x35\x81\x84\0\0\0\0IEND\xaeB`\x82";
const PDF: &[u8] = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n";
const ZIP: &[u8] = b"PK\x03\x04\x14\0\0\0\x08\0\0\0!\0";

/// Limits small enough to reach: 1 KiB a file, 3 KiB a user.
fn config() -> MarieConfig {
    let mut config = MarieConfig::default();
    config.engine = config
        .engine
        .max_file_bytes(1024)
        .file_quota_bytes(Some(3 * 1024))
        .max_attachments(3);
    config
}

async fn server(provider: ScriptedProvider) -> (TestServer, MemoryFileStore) {
    let files = MemoryFileStore::new();
    let store = files.clone();
    let server = start_custom(provider, config(), move |b| b.files(store)).await;
    (server, files)
}

/// `POST /api/chat/files` as `user`: the status and the JSON body.
async fn upload(
    server: &TestServer,
    user: Option<&str>,
    conversation: &str,
    name: &str,
    content_type: Option<&str>,
    bytes: &[u8],
) -> (StatusCode, Value) {
    let mut part = reqwest::multipart::Part::bytes(bytes.to_vec()).file_name(name.to_owned());
    if let Some(content_type) = content_type {
        part = part.mime_str(content_type).unwrap();
    }
    let form = reqwest::multipart::Form::new()
        .text("conversation_id", conversation.to_owned())
        .part("file", part);
    let mut request = reqwest::Client::new()
        .post(format!("http://{}/api/chat/files", server.addr))
        .multipart(form);
    if let Some(user) = user {
        request = request.bearer_auth(format!("t-{user}"));
    }
    let response = request.send().await.expect("upload");
    let status = response.status();
    (status, response.json().await.expect("a JSON body"))
}

async fn download(server: &TestServer, user: &str, file_id: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("http://{}/api/chat/files/{file_id}", server.addr))
        .bearer_auth(format!("t-{user}"))
        .send()
        .await
        .expect("download")
}

async fn used(files: &MemoryFileStore, user: &str) -> u64 {
    files
        .used_bytes(&UserId::parse(user).unwrap())
        .await
        .unwrap()
}

/// alice in `conversation` with bob invited; carol is in none of it.
async fn alice_and_bob(server: &TestServer, conversation: &str) -> (TestClient, TestClient) {
    two_members(server.addr, conversation).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attached_image_reaches_the_model_and_history_keeps_its_reference() {
    let provider = ScriptedProvider::new(["a ", "cat"]);
    let (server, files) = server(provider.clone()).await;
    let (mut alice, _bob) = alice_and_bob(&server, "f1").await;

    let (status, image) = upload(
        &server,
        Some("alice"),
        "f1",
        "../cat.png",
        Some("image/png"),
        PNG,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{image}");
    assert_eq!(image["name"], "cat.png", "the name is cleaned: {image}");
    assert_eq!(image["content_type"], "image/png");
    assert_eq!(image["size"], PNG.len());
    assert_eq!(image["conversation_id"], "f1");
    assert_eq!(image["user_id"], "alice");
    // No declared type: the bytes say text.
    let (status, text) = upload(&server, Some("alice"), "f1", "notes.md", None, b"# notes").await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    assert_eq!(text["content_type"], "text/plain");
    assert_eq!(used(&files, "alice").await, (PNG.len() + 7) as u64);

    let ack = alice
        .ack(
            "send_message",
            json!({ "conversation_id": "f1", "message": "what is this?",
                    "attachments": [image["file_id"], text["file_id"]] }),
        )
        .await;
    assert_eq!(ack["status"], "ok", "{ack}");
    let seen = alice.stream().await;
    assert_eq!(seen.terminal.event, "stream_end", "{:?}", seen.terminal);

    // The model got the bytes, in order, with the question.
    let requests = provider.requests();
    let question = requests[0]
        .messages
        .iter()
        .rfind(|m| m.role == MessageRole::User)
        .expect("the question");
    assert_eq!(question.content, "what is this?");
    let sent: Vec<_> = question
        .attachments
        .iter()
        .map(|a| (a.name.as_str(), a.content_type.as_str(), a.data.as_deref()))
        .collect();
    assert_eq!(
        sent,
        [
            ("cat.png", "image/png", Some(PNG)),
            ("notes.md", "text/plain", Some(&b"# notes"[..]))
        ]
    );

    // History keeps the references, never the bytes.
    let history = alice
        .ack("get_history", json!({ "conversation_id": "f1" }))
        .await;
    let stored = &history["messages"][0];
    assert_eq!(stored["role"], "user", "{history}");
    assert_eq!(
        stored["attachments"],
        json!([
            { "file_id": image["file_id"], "name": "cat.png", "content_type": "image/png", "size": PNG.len() },
            { "file_id": text["file_id"], "name": "notes.md", "content_type": "text/plain", "size": 7 },
        ])
    );
    assert!(
        history["messages"][1].get("attachments").is_none(),
        "{history}"
    );

    // Members read the file back, exactly, served so that a browser never runs it.
    let id = image["file_id"].as_str().unwrap();
    for member in ["alice", "bob"] {
        let response = download(&server, member, id).await;
        assert_eq!(response.status(), StatusCode::OK, "{member}");
        let headers = response.headers();
        assert_eq!(headers["content-type"], "image/png");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert!(
            headers["content-disposition"]
                .to_str()
                .unwrap()
                .starts_with("inline; filename=\"cat.png\"")
        );
        assert_eq!(response.bytes().await.unwrap().as_ref(), PNG);
    }
    let text_id = text["file_id"].as_str().unwrap();
    let response = download(&server, "bob", text_id).await;
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment;"),
        "anything but an image is a download"
    );
    // To anyone else, the file does not exist.
    let response = download(&server, "carol", id).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "not_found", "{body}");
    let response = download(&server, "alice", "nosuchfile").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // Only its owner deletes a file; then it is gone for everyone, its bytes free, and
    // history keeps the reference (the model is told the file is gone).
    let remove = |user: &'static str, id: String| {
        reqwest::Client::new()
            .delete(format!("http://{}/api/chat/files/{id}", server.addr))
            .bearer_auth(format!("t-{user}"))
            .send()
    };
    assert_eq!(
        remove("bob", id.to_owned()).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        remove("carol", id.to_owned()).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        remove("alice", id.to_owned()).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        remove("alice", id.to_owned()).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        download(&server, "alice", id).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(used(&files, "alice").await, 7);
    let ack = alice
        .ack("regenerate", json!({ "conversation_id": "f1" }))
        .await;
    assert_eq!(ack["status"], "ok", "{ack}");
    assert_eq!(alice.stream().await.terminal.event, "stream_end");
    let asked = provider.requests();
    let question = asked[1]
        .messages
        .iter()
        .rfind(|m| m.role == MessageRole::User)
        .unwrap();
    assert_eq!(question.attachments[0].data, None, "the image is gone");
    assert!(
        question.attachments[0]
            .as_text()
            .contains("no longer available")
    );
    assert!(
        question.attachments[1].data.is_some(),
        "the text file is not"
    );
}

/// An upload that must be refused, and how.
struct Refusal {
    what: &'static str,
    user: Option<&'static str>,
    conversation: &'static str,
    name: &'static str,
    content_type: Option<&'static str>,
    bytes: Vec<u8>,
    status: StatusCode,
    code: &'static str,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_uploads_say_why_and_store_nothing() {
    let (server, files) = server(ScriptedProvider::new(["ok"])).await;
    let (_alice, _bob) = alice_and_bob(&server, "f2").await;
    let mut carol = connect(server.addr, "carol").await;
    carol.join("carols").await;

    let cases = [
        Refusal {
            what: "too large",
            user: Some("alice"),
            conversation: "f2",
            name: "big.txt",
            content_type: None,
            bytes: vec![b'a'; 1025],
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "payload_too_large",
        },
        Refusal {
            what: "far too large (past the body limit)",
            user: Some("alice"),
            conversation: "f2",
            name: "huge.txt",
            content_type: None,
            bytes: vec![b'a'; 200 * 1024],
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "payload_too_large",
        },
        Refusal {
            what: "a type not taken",
            user: Some("alice"),
            conversation: "f2",
            name: "x.zip",
            content_type: Some("application/zip"),
            bytes: ZIP.to_vec(),
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported_file_type",
        },
        Refusal {
            what: "a PDF that claims to be an image",
            user: Some("alice"),
            conversation: "f2",
            name: "photo.png",
            content_type: Some("image/png"),
            bytes: PDF.to_vec(),
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported_file_type",
        },
        Refusal {
            what: "binary of no type",
            user: Some("alice"),
            conversation: "f2",
            name: "blob",
            content_type: None,
            bytes: vec![0, 1, 2, 0xff, 0xfe],
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported_file_type",
        },
        Refusal {
            what: "a conversation the user cannot access",
            user: Some("carol"),
            conversation: "f2",
            name: "cat.png",
            content_type: None,
            bytes: PNG.to_vec(),
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
        },
        Refusal {
            what: "a conversation that does not exist",
            user: Some("alice"),
            conversation: "nowhere",
            name: "cat.png",
            content_type: None,
            bytes: PNG.to_vec(),
            status: StatusCode::NOT_FOUND,
            code: "not_found",
        },
        Refusal {
            what: "no credentials",
            user: None,
            conversation: "f2",
            name: "cat.png",
            content_type: None,
            bytes: PNG.to_vec(),
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
        },
    ];
    for Refusal {
        what,
        user,
        conversation,
        name,
        content_type,
        bytes,
        status,
        code,
    } in cases
    {
        let (got, body) = upload(&server, user, conversation, name, content_type, &bytes).await;
        assert_eq!(
            (got, body["code"].as_str()),
            (status, Some(code)),
            "{what}: {body}"
        );
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {body}"
        );
        for user in ["alice", "carol"] {
            assert_eq!(used(&files, user).await, 0, "{what}: nothing stored");
        }
    }

    // A body that is not multipart, and one without its file.
    let response = reqwest::Client::new()
        .post(format!("http://{}/api/chat/files", server.addr))
        .bearer_auth("t-alice")
        .json(&json!({ "conversation_id": "f2" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let form = reqwest::multipart::Form::new().text("conversation_id", "f2");
    let response = reqwest::Client::new()
        .post(format!("http://{}/api/chat/files", server.addr))
        .bearer_auth("t-alice")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("`file`"),
        "{body}"
    );

    // The quota: three files of 1 KiB fit in 3 KiB, a fourth byte does not.
    for i in 0..3 {
        let (status, body) = upload(
            &server,
            Some("alice"),
            "f2",
            &format!("{i}.txt"),
            None,
            &[b'x'; 1024],
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) = upload(&server, Some("alice"), "f2", "one.txt", None, b"y").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("quota_exceeded")),
        "{body}"
    );
    assert_eq!(used(&files, "alice").await, 3 * 1024);
    // Another user's quota is their own.
    let (status, body) = upload(&server, Some("bob"), "f2", "b.txt", None, b"b").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_carries_only_its_authors_files_from_its_conversation() {
    let provider = ScriptedProvider::new(["ok"]);
    let (server, _files) = server(provider.clone()).await;
    let (mut alice, mut bob) = alice_and_bob(&server, "f3").await;
    alice.join("elsewhere").await;
    let mut carol = connect(server.addr, "carol").await;
    carol.join("carols").await;

    let id = |body: &Value| body["file_id"].as_str().unwrap().to_owned();
    let (_, alices) = upload(&server, Some("alice"), "f3", "a.png", None, PNG).await;
    let (_, alices_elsewhere) =
        upload(&server, Some("alice"), "elsewhere", "e.png", None, PNG).await;
    let (_, carols) = upload(&server, Some("carol"), "carols", "c.png", None, PNG).await;
    let (_, bobs) = upload(&server, Some("bob"), "f3", "b.png", None, PNG).await;

    let send = |files: Vec<String>| json!({ "conversation_id": "f3", "message": "look", "attachments": files });
    let cases = [
        ("someone else's file", &bob, vec![id(&alices)], "forbidden"),
        (
            "a file of a conversation the sender is not in",
            &bob,
            vec![id(&carols)],
            "not_found",
        ),
        (
            "a file of another conversation",
            &alice,
            vec![id(&alices_elsewhere)],
            "bad_request",
        ),
        (
            "an unknown file",
            &alice,
            vec!["0123456789abcdef".to_owned()],
            "not_found",
        ),
        (
            "an invalid id",
            &alice,
            vec!["../etc".to_owned()],
            "bad_request",
        ),
        (
            "a file named twice",
            &alice,
            vec![id(&alices), id(&alices)],
            "bad_request",
        ),
        (
            "more files than max_attachments",
            &bob,
            vec![id(&bobs); 4],
            "bad_request",
        ),
    ];
    for (what, client, files, code) in cases {
        let ack = client.ack("send_message", send(files)).await;
        assert_eq!(ack["code"], code, "{what}: {ack}");
    }
    // Nothing was stored, nothing was asked.
    let history = alice
        .ack("get_history", json!({ "conversation_id": "f3" }))
        .await;
    assert_eq!(history["messages"], json!([]), "{history}");
    assert!(provider.requests().is_empty());

    // Bob's own file, in the conversation it was uploaded to, goes.
    let ack = bob.ack("send_message", send(vec![id(&bobs)])).await;
    assert_eq!(ack["status"], "ok", "{ack}");
    assert_eq!(bob.stream().await.terminal.event, "stream_end");

    // Files alone make a message; no text and no file is still no message.
    let ack = bob
        .ack(
            "send_message",
            json!({ "conversation_id": "f3", "message": "", "attachments": [id(&bobs)] }),
        )
        .await;
    assert_eq!(ack["status"], "ok", "{ack}");
    assert_eq!(bob.stream().await.terminal.event, "stream_end");
    let asked = provider.requests();
    let question = asked[1].messages.last().unwrap();
    assert_eq!(
        (question.content.as_str(), question.attachments.len()),
        ("", 1)
    );
    let ack = bob
        .ack(
            "send_message",
            json!({ "conversation_id": "f3", "message": " ", "attachments": [] }),
        )
        .await;
    assert_eq!(ack["code"], "bad_request", "{ack}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_sends_edits_and_regenerations_keep_their_files() {
    let provider =
        ScriptedProvider::new(["one ", "two"]).delay(std::time::Duration::from_millis(30));
    let (server, _files) = server(provider.clone()).await;
    let mut alice = connect(server.addr, "alice").await;
    alice.join("f4").await;
    let (_, image) = upload(&server, Some("alice"), "f4", "q.png", None, PNG).await;
    let file = image["file_id"].clone();

    // A send queued behind a running answer is asked with its file when its turn comes.
    let first = alice
        .ack(
            "send_message",
            json!({ "conversation_id": "f4", "message": "first" }),
        )
        .await;
    assert_eq!(first["status"], "ok", "{first}");
    let queued = alice
        .ack(
            "send_message",
            json!({ "conversation_id": "f4", "message": "second", "on_busy": "enqueue",
                    "attachments": [file] }),
        )
        .await;
    assert_eq!(queued["queued"], 1, "{queued}");
    assert_eq!(alice.stream().await.terminal.event, "stream_end");
    assert_eq!(alice.stream().await.terminal.event, "stream_end");
    let asked = provider.requests();
    let second = asked[1].messages.last().unwrap();
    assert_eq!(second.content, "second");
    assert_eq!(second.attachments.len(), 1);
    assert_eq!(second.attachments[0].data.as_deref(), Some(PNG));

    // An edit of that message keeps its file.
    let edited = alice
        .ack(
            "edit_message",
            json!({ "conversation_id": "f4", "message_id": queued["message_id"],
                    "message": "second, again" }),
        )
        .await;
    assert_eq!(edited["status"], "ok", "{edited}");
    assert_eq!(alice.stream().await.terminal.event, "stream_end");
    let asked = provider.requests();
    let again = asked[2].messages.last().unwrap();
    assert_eq!(again.content, "second, again");
    assert_eq!(again.attachments[0].data.as_deref(), Some(PNG));
    let history = alice
        .ack("get_history", json!({ "conversation_id": "f4" }))
        .await;
    let last_question = &history["messages"][2];
    assert_eq!(last_question["content"], "second, again", "{history}");
    assert_eq!(last_question["attachments"][0]["file_id"], file);

    // A regenerated answer is asked with the file too (read back from history).
    let again = alice
        .ack("regenerate", json!({ "conversation_id": "f4" }))
        .await;
    assert_eq!(again["status"], "ok", "{again}");
    assert_eq!(alice.stream().await.terminal.event, "stream_end");
    let asked = provider.requests();
    let regenerated = asked[3].messages.last().unwrap();
    assert_eq!(regenerated.content, "second, again");
    assert_eq!(regenerated.attachments[0].data.as_deref(), Some(PNG));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_file_store_uploads_and_attachments_are_refused() {
    let server = start(ScriptedProvider::new(["ok"])).await;
    let mut alice = connect(server.addr, "alice").await;
    alice.join("f5").await;
    let (status, body) = upload(&server, Some("alice"), "f5", "a.png", None, PNG).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found")),
        "{body}"
    );
    let ack = alice
        .ack(
            "send_message",
            json!({ "conversation_id": "f5", "message": "x", "attachments": ["abc"] }),
        )
        .await;
    assert_eq!(ack["code"], "not_found", "{ack}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_send_takes_attachments_too() {
    let provider = ScriptedProvider::new(["seen"]);
    let (server, _files) = server(provider.clone()).await;
    let mut alice = connect(server.addr, "alice").await;
    alice.join("f6").await;
    let (_, image) = upload(&server, Some("alice"), "f6", "h.png", None, PNG).await;
    let send = |attachments: Value| {
        reqwest::Client::new()
            .post(format!("http://{}/api/chat/send", server.addr))
            .bearer_auth("t-alice")
            .json(&json!({ "conversation_id": "f6", "message": "and this?",
                           "attachments": attachments }))
            .send()
    };
    let refused = send(json!(["0123456789abcdef"])).await.unwrap();
    assert_eq!(refused.status(), StatusCode::NOT_FOUND);
    let response = send(json!([image["file_id"]])).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = tokio::time::timeout(WAIT, response.text())
        .await
        .expect("the SSE response ends with the answer")
        .unwrap();
    assert!(body.contains("event: stream_end"), "{body}");
    let asked = provider.requests();
    assert_eq!(asked.len(), 1, "the refused send asked nothing");
    let question = asked[0].messages.last().unwrap();
    assert_eq!(question.attachments[0].data.as_deref(), Some(PNG));
}
