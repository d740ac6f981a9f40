//! Group conversations (`docs/protocol.md` section 10): messages that are not answered,
//! `answer_policy`, named assistants, `message_added`, read marks.

use std::time::Duration;

use marie_core::{
    AnswerPolicy, Assistant, ConversationChange, EngineConfig, Error, ErrorCode, Identity,
    MessageRole, SendRequest, StreamEvent,
};
use marie_llm::ScriptedProvider;
use marie_testkit::engine::{Harness, contents, conv, harness_with, streamed, user, within};

fn two_assistants() -> EngineConfig {
    EngineConfig::default().assistants([Assistant::new("echo"), Assistant::new("calc")])
}

fn answer(send: SendRequest, answer: bool) -> SendRequest {
    SendRequest {
        answer: Some(answer),
        ..send
    }
}

async fn set_policy(
    h: &Harness,
    who: &Identity,
    room: &marie_core::ConversationId,
    p: AnswerPolicy,
) {
    let change = ConversationChange {
        answer_policy: Some(p),
        ..ConversationChange::default()
    };
    let info = h
        .engine
        .update_conversation(who, room, change)
        .await
        .unwrap();
    assert_eq!(info.answer_policy, p);
}

/// The names of the events recorded so far, in order.
fn names(h: &Harness) -> Vec<&'static str> {
    h.sink.events().iter().map(StreamEvent::name).collect()
}

/// While an answer streams, people go on talking: their messages are stored and told at
/// once (never `busy`), and the answer, when stored, goes after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_that_ask_no_answer_flow_while_an_answer_streams() {
    let h = harness_with(
        ScriptedProvider::new(["a", "b", "c"]).delay(Duration::from_millis(40)),
        two_assistants(),
    );
    let (alice, bob) = (user("alice"), user("bob"));
    let room = conv("room-talk");
    h.create(&alice, &room).await;
    h.engine.invite(&alice, &room, &bob.user_id).await.unwrap();

    let asked = h.send(&alice, streamed(&room, "question")).await;
    h.chunk(&asked.stream_id, 1).await;
    let said = h
        .engine
        .send(&bob, answer(streamed(&room, "meanwhile"), false))
        .await
        .expect("a message that asks no answer is never busy");
    assert!(!said.answered);
    assert_eq!(said.queued, None);
    // A second one, and one more from Alice: none refused.
    let more = h
        .engine
        .send(&alice, answer(streamed(&room, "and more"), false))
        .await
        .unwrap();
    h.end(&asked.stream_id).await;

    let history = h.history(&alice, &room).await;
    assert_eq!(
        contents(&history),
        ["question", "meanwhile", "and more", "abc"]
    );
    assert_eq!(history[1].parent_id.as_ref(), Some(&asked.message_id));
    assert_eq!(history[2].parent_id.as_ref(), Some(&said.message_id));
    assert_eq!(history[3].parent_id.as_ref(), Some(&more.message_id));
    assert_eq!(history[3].assistant.as_deref(), Some("echo"));
    assert!(history.iter().all(|m| m.siblings.is_empty()), "one branch");
    // Each message went to the room, the question before its answer's start.
    let events = names(&h);
    assert_eq!(events[..2], ["message_added", "stream_start"]);
    assert_eq!(events.iter().filter(|n| **n == "message_added").count(), 3);
    assert_eq!(h.provider.requests().len(), 1, "one answer only");
    h.assert_one_terminal_per_stream();
}

/// Under `mention`, only a message that names an assistant is answered, by that one; a name
/// no assistant has, or an e-mail address, is plain text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mention_answers_only_the_named_assistant() {
    let h = harness_with(ScriptedProvider::new(["84"]), two_assistants());
    let (alice, bob) = (user("alice"), user("bob"));
    let room = conv("room-mention");
    h.create(&alice, &room).await;
    h.engine.invite(&alice, &room, &bob.user_id).await.unwrap();
    set_policy(&h, &alice, &room, AnswerPolicy::Mention).await;

    for text in ["hello bob", "@bob are you there?", "mail bob@calc.com"] {
        let sent = h.send(&alice, streamed(&room, text)).await;
        assert!(!sent.answered, "{text:?} is not answered");
    }
    let asked = h.send(&bob, streamed(&room, "@calc 12*7")).await;
    assert!(asked.answered);
    assert_eq!(asked.assistant.as_deref(), Some("calc"));
    h.end(&asked.stream_id).await;
    let start = h
        .events(&asked.stream_id)
        .into_iter()
        .find_map(|e| match e {
            StreamEvent::Start(s) => Some(s),
            _ => None,
        })
        .unwrap();
    assert_eq!(start.assistant.as_deref(), Some("calc"));
    let history = h.history(&alice, &room).await;
    assert_eq!(history.len(), 5);
    assert_eq!(history[4].role, MessageRole::Assistant);
    assert_eq!(history[4].assistant.as_deref(), Some("calc"));
    assert_eq!(h.provider.requests().len(), 1, "exactly one answer");
    // `answer:true` asks the first assistant without a mention.
    let forced = h
        .send(&alice, answer(streamed(&room, "anyone?"), true))
        .await;
    assert_eq!(forced.assistant.as_deref(), Some("echo"));
    h.end(&forced.stream_id).await;
}

/// Under `never`, nothing is answered, and `answer:true` is refused with nothing stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_answers_nothing_and_refuses_answer_true() {
    let h = harness_with(ScriptedProvider::new(["no"]), two_assistants());
    let alice = user("alice");
    let room = conv("room-never");
    h.create(&alice, &room).await;
    set_policy(&h, &alice, &room, AnswerPolicy::Never).await;

    let said = h.send(&alice, streamed(&room, "@calc 1+1")).await;
    assert!(!said.answered);
    let refused = h
        .engine
        .send(&alice, answer(streamed(&room, "answer me"), true))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), ErrorCode::BadRequest);
    assert!(refused.to_string().contains("never"), "{refused}");
    let regenerate = h
        .engine
        .regenerate(&alice, &room, None, true)
        .await
        .unwrap_err();
    assert_eq!(regenerate.code(), ErrorCode::BadRequest, "{regenerate}");
    assert_eq!(contents(&h.history(&alice, &room).await), ["@calc 1+1"]);
    assert!(h.provider.requests().is_empty());
    assert_eq!(names(&h), ["message_added"]);
}

/// A message that asks no answer, sent twice at once with one `client_message_id`, is
/// stored once; the repeat gets the first outcome, marked `duplicate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_post_is_stored_once() {
    let h = harness_with(ScriptedProvider::new(["x"]), EngineConfig::default());
    let alice = user("alice");
    let room = conv("room-repeat");
    h.create(&alice, &room).await;
    let send = || SendRequest {
        client_message_id: Some("k1".into()),
        ..answer(streamed(&room, "once"), false)
    };
    let (a, b) = tokio::join!(h.engine.send(&alice, send()), h.engine.send(&alice, send()));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.message_id, b.message_id);
    assert!(
        a.duplicate != b.duplicate,
        "one is the first, one the repeat"
    );
    assert_eq!(contents(&h.history(&alice, &room).await), ["once"]);
    assert_eq!(names(&h), ["message_added"]);
}

/// Messages sent at once by several people follow each other on one branch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_messages_stay_on_one_branch() {
    let h = harness_with(ScriptedProvider::new(["x"]), EngineConfig::default());
    let alice = user("alice");
    let room = conv("room-concurrent");
    h.create(&alice, &room).await;
    let sends = (0..20).map(|i| {
        let (engine, alice, room) = (h.engine.clone(), alice.clone(), room.clone());
        tokio::spawn(async move {
            engine
                .send(&alice, answer(streamed(&room, &format!("m{i}")), false))
                .await
        })
    });
    for send in futures_util::future::join_all(sends).await {
        send.unwrap().unwrap();
    }
    let history = h.history(&alice, &room).await;
    assert_eq!(history.len(), 20, "every message on the active branch");
}

/// `mark_read` moves the reader's mark; the list counts what came after it, and a mark never
/// moves back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_counts_follow_read_marks() {
    let h = harness_with(ScriptedProvider::new(["x"]), EngineConfig::default());
    let (alice, bob) = (user("alice"), user("bob"));
    let room = conv("room-unread");
    h.create(&alice, &room).await;
    h.engine.invite(&alice, &room, &bob.user_id).await.unwrap();
    let mut sent = Vec::new();
    for text in ["one", "two", "three"] {
        sent.push(h.send(&alice, answer(streamed(&room, text), false)).await);
    }
    let unread = |who: Identity| {
        let engine = h.engine.clone();
        async move {
            let page = engine
                .list_conversations(&who, None, None, None, false)
                .await
                .unwrap();
            page.conversations[0].unread
        }
    };
    assert_eq!(unread(bob.clone()).await, 3, "never marked: all");
    let mark = h
        .engine
        .mark_read(&bob, &room, &sent[1].message_id)
        .await
        .unwrap();
    assert_eq!(mark.as_ref(), Some(&sent[1].message_id));
    assert_eq!(unread(bob.clone()).await, 1);
    let kept = h
        .engine
        .mark_read(&bob, &room, &sent[0].message_id)
        .await
        .unwrap();
    assert_eq!(kept.as_ref(), Some(&sent[1].message_id), "the mark kept");
    assert_eq!(unread(bob.clone()).await, 1, "a mark never moves back");
    // A message Bob's marks have not seen, and a mark of a message that is not there.
    h.send(&alice, answer(streamed(&room, "four"), false)).await;
    assert_eq!(unread(bob.clone()).await, 2);
    let missing = h
        .engine
        .mark_read(&bob, &room, &marie_core::MessageId::new_time_ordered())
        .await
        .unwrap_err();
    assert_eq!(missing.code(), ErrorCode::NotFound);
    let eve = user("eve");
    let forbidden = h
        .engine
        .mark_read(&eve, &room, &sent[0].message_id)
        .await
        .unwrap_err();
    assert!(matches!(forbidden, Error::Forbidden(_)), "{forbidden}");
}

/// The model is told who wrote what in a group, and nothing changes for one person.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_is_told_the_authors_in_a_group_only() {
    let h = harness_with(ScriptedProvider::new(["ok"]), two_assistants());
    let (alice, bob) = (user("alice"), user("bob"));
    let alone = conv("room-alone");
    h.create(&alice, &alone).await;
    let sent = h.send(&alice, streamed(&alone, "hi")).await;
    h.end(&sent.stream_id).await;
    let request = h.provider.requests().last().unwrap().clone();
    assert!(request.messages.iter().all(|m| m.author.is_none()));
    assert!(
        request
            .messages
            .iter()
            .all(|m| m.role != MessageRole::System)
    );

    let group = conv("room-group");
    h.create(&alice, &group).await;
    h.engine.invite(&alice, &group, &bob.user_id).await.unwrap();
    h.send(&alice, answer(streamed(&group, "hi bob"), false))
        .await;
    let asked = h.send(&bob, streamed(&group, "@calc 2+2")).await;
    within("the answer", h.end(&asked.stream_id)).await;
    let request = h.provider.requests().last().unwrap().clone();
    let system = &request.messages[0];
    assert_eq!(system.role, MessageRole::System);
    assert!(system.content.contains("alice, bob"), "{}", system.content);
    assert!(system.content.contains("\"calc\""), "{}", system.content);
    let authors: Vec<_> = request.messages[1..]
        .iter()
        .map(|m| (m.content.as_str(), m.author.as_deref()))
        .collect();
    assert_eq!(
        authors,
        [("hi bob", Some("alice")), ("@calc 2+2", Some("bob"))]
    );
}
