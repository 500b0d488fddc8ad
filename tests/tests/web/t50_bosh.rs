//! XEP-0124/0206 BOSH at `/http-bind`: the same login and session as TCP,
//! the rid window, the end of a session whose client stops polling, and
//! the Origin policy.

use starling_tests::bosh::{self, BoshOptions, HTTPBIND, XBOSH};
use starling_tests::http::HttpRequest;
use starling_tests::{Client, TestNode};

use crate::support::*;

fn bosh_options(node: &TestNode) -> BoshOptions {
    BoshOptions::new(node.http, true)
}

async fn login_bosh(node: &TestNode, user: &str, resource: &str) -> Client {
    Client::login_bosh(&bosh_options(node), &options(node, user, resource))
        .await
        .unwrap_or_else(|error| panic!("{user} cannot log in over BOSH: {error}\n{}", node.log()))
}

/// A raw session creation; returns the answer's text.
async fn create(options: &BoshOptions, rid: u64) -> String {
    let answer = options
        .post(&format!(
            "<body xmlns='{HTTPBIND}' rid='{rid}' to='localhost' wait='5' hold='1' \
             ver='1.6' xmlns:xmpp='{XBOSH}' xmpp:version='1.0'/>"
        ))
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.text()
}

#[tokio::test]
async fn t50_login_roster_and_chat_over_bosh() {
    let node = https_node(&["alice", "bob"]).start();
    let mut alice = login_bosh(&node, "alice", "web").await;
    let mut bob = login_tcp(&node, "bob", "desk").await;
    assert_eq!(jid(&alice), "alice@localhost/web");
    let roster = iq(&mut alice, "get", "<query xmlns='jabber:iq:roster'/>").await;
    assert_eq!(roster.attr("type"), Some("result"), "{roster}");
    chat(&mut alice, &mut bob, "hello over BOSH").await;
    chat(&mut bob, &mut alice, "hello back").await;
    for round in 0..5 {
        chat(&mut bob, &mut alice, &format!("push {round}")).await;
        chat(&mut alice, &mut bob, &format!("answer {round}")).await;
    }
    alice.close().await.expect("a terminate answered");
}

#[tokio::test]
async fn t51_session_creation_answer() {
    let node = https_node(&[]).start();
    let answer = create(&bosh_options(&node), 1000).await;
    for attribute in [
        "sid",
        "wait",
        "requests",
        "hold",
        "inactivity",
        "polling",
        "authid",
    ] {
        assert!(
            bosh::attribute(&answer, attribute).is_some(),
            "{attribute}: {answer}"
        );
    }
    assert_eq!(
        bosh::attribute(&answer, "from").as_deref(),
        Some("localhost")
    );
    assert_eq!(
        bosh::attribute(&answer, "xmpp:version").as_deref(),
        Some("1.0")
    );
    assert!(answer.contains("<stream:features"), "{answer}");
    assert!(answer.contains("SCRAM-SHA-256"), "{answer}");
    assert!(!answer.contains("starttls"), "{answer}");
}

#[tokio::test]
async fn t52_a_rid_out_of_the_window_terminates_the_session() {
    let node = https_node(&[]).start();
    let options = bosh_options(&node);
    let created = create(&options, 2000).await;
    let sid = bosh::attribute(&created, "sid").unwrap();
    let bad = options
        .post(&format!(
            "<body xmlns='{HTTPBIND}' rid='2010' sid='{sid}'/>"
        ))
        .await
        .unwrap();
    let text = bad.text();
    assert_eq!(
        bosh::attribute(&text, "type").as_deref(),
        Some("terminate"),
        "{text}"
    );
    assert_eq!(
        bosh::attribute(&text, "condition").as_deref(),
        Some("item-not-found"),
        "{text}"
    );
    // The session is gone: its next request is refused too.
    let mut gone = None;
    for _ in 0..100 {
        let answer = options
            .post(&format!(
                "<body xmlns='{HTTPBIND}' rid='2001' sid='{sid}'/>"
            ))
            .await
            .unwrap();
        if answer.status == 404 {
            gone = Some(answer.text());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let gone = gone.expect("the session ends after a bad rid");
    assert_eq!(
        bosh::attribute(&gone, "condition").as_deref(),
        Some("item-not-found"),
        "{gone}"
    );
    // An unknown sid is item-not-found as well.
    let unknown = options
        .post(&format!("<body xmlns='{HTTPBIND}' rid='1' sid='nope'/>"))
        .await
        .unwrap();
    assert_eq!(unknown.status, 404, "{}", unknown.text());
}

#[tokio::test]
async fn t53_a_client_that_stops_polling_times_out() {
    let node = https_node(&["alice", "bob"])
        .set("bosh", "inactivity_secs = 1")
        .start();
    let mut options = bosh_options(&node);
    options.wait = 1;
    let mut alice = Client::login_bosh(&options, &crate::support::options(&node, "alice", "web"))
        .await
        .expect("login over BOSH");
    let mut bob = login_tcp(&node, "bob", "desk").await;
    chat(&mut bob, &mut alice, "before").await;
    alice.abandon_bosh();
    // Until the session ends, a ping to alice waits in her queue; once it
    // has ended, the server answers for her: service-unavailable.
    let mut ended = false;
    for _ in 0..60 {
        let id = bob.next_id();
        bob.send(&format!(
            "<iq type='get' id='{id}' to='alice@localhost/web'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await
        .unwrap();
        if let Ok(reply) = bob
            .expect(
                |e| e.name() == "iq" && e.attr("id") == Some(id.as_str()),
                std::time::Duration::from_millis(500),
            )
            .await
        {
            assert_eq!(reply.attr("type"), Some("error"), "{reply}");
            ended = true;
            break;
        }
    }
    assert!(ended, "alice's abandoned BOSH session never ended");
}

#[tokio::test]
async fn t54_origins_and_cors() {
    let node = https_node(&[])
        .set("http", "allowed_origins = [\"https://web.example\"]")
        .start();
    let preflight = |origin: &str| {
        HttpRequest::new(node.http, "OPTIONS", "/http-bind")
            .tls()
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    let allowed = preflight("https://web.example").await.unwrap();
    assert_eq!(allowed.status, 204);
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://web.example")
    );
    assert!(
        allowed
            .header("access-control-allow-methods")
            .is_some_and(|m| m.contains("POST")),
        "{:?}",
        allowed.headers
    );
    let refused = preflight("https://evil.example").await.unwrap();
    assert_eq!(refused.status, 403);
    assert!(refused.header("access-control-allow-origin").is_none());
    let mut options = bosh_options(&node);
    options.origin = Some("https://web.example".into());
    let created = options
        .post(&format!(
            "<body xmlns='{HTTPBIND}' rid='7' to='localhost' wait='5' hold='1'/>"
        ))
        .await
        .unwrap();
    assert_eq!(created.status, 200, "{}", created.text());
    assert_eq!(
        created.header("access-control-allow-origin"),
        Some("https://web.example")
    );
    options.origin = Some("https://evil.example".into());
    let refused = options
        .post(&format!(
            "<body xmlns='{HTTPBIND}' rid='7' to='localhost' wait='5' hold='1'/>"
        ))
        .await
        .unwrap();
    assert_eq!(refused.status, 403, "{}", refused.text());
}

#[tokio::test]
async fn t55_plain_http_needs_allow_plain_without_tls() {
    let node = TestNode::builder().start();
    let options = BoshOptions::new(node.http, false);
    let answer = options
        .post(&format!(
            "<body xmlns='{HTTPBIND}' rid='7' to='localhost' wait='5' hold='1'/>"
        ))
        .await
        .unwrap();
    assert_eq!(answer.status, 403, "{}", answer.text());
}

/// XEP-0124 14.1 and 14.3: a request that overtakes an earlier one waits for
/// it (the session sees the payloads in rid order), and a request sent
/// again gets the same answer.
#[tokio::test]
async fn t56_requests_are_handled_in_rid_order() {
    use base64::Engine;
    let node = https_node(&["alice"]).start();
    let options = bosh_options(&node);
    let created = create(&options, 3000).await;
    let sid = bosh::attribute(&created, "sid").unwrap();
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("\0alice\0{PASSWORD}"));
    let auth = format!(
        "<body xmlns='{HTTPBIND}' rid='3001' sid='{sid}'>\
         <auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{credentials}</auth>\
         </body>"
    );
    let restart = format!(
        "<body xmlns='{HTTPBIND}' rid='3002' sid='{sid}' xmlns:xmpp='{XBOSH}' xmpp:restart='true'/>"
    );
    // The restart is sent first; it must wait for the authentication.
    let early = {
        let options = options.clone();
        tokio::spawn(async move { options.post(&restart).await.unwrap().text() })
    };
    // Give the early request time to arrive first (if it does not, the
    // order is the natural one and the checks below hold all the same).
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let first = options.post(&auth).await.unwrap().text();
    let second = early.await.unwrap();
    let poll = options
        .post(&format!(
            "<body xmlns='{HTTPBIND}' rid='3003' sid='{sid}'/>"
        ))
        .await
        .unwrap()
        .text();
    let all = format!("{first}{second}{poll}");
    assert!(all.contains("<success"), "{all}");
    // The restart came after the authentication: the new stream offers bind.
    assert!(all.contains("urn:ietf:params:xml:ns:xmpp-bind"), "{all}");
    assert!(!all.contains("stream:error"), "{all}");
    // The answer to 3002 again, for a client that lost it.
    let restart_again = format!(
        "<body xmlns='{HTTPBIND}' rid='3002' sid='{sid}' xmlns:xmpp='{XBOSH}' xmpp:restart='true'/>"
    );
    let again = options.post(&restart_again).await.unwrap().text();
    assert_eq!(again, second);
}
