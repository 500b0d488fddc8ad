//! Stanzas for a domain no stream reaches bounce: nothing hangs, nothing
//! is dropped silently.

use starling_tests::free_port;
use tokio::net::TcpListener;

use crate::support::*;

#[tokio::test]
async fn an_unresolvable_domain_bounces() {
    let a = server("a.test", free_port(), &[]).start();
    let mut alice = online(&a, "alice", PW, "phone").await;
    alice
        .send("<message to='someone@nowhere.invalid' type='chat'><body>hello?</body></message>")
        .await
        .unwrap();
    let condition = expect_bounce(&mut alice, "someone@nowhere.invalid").await;
    assert!(
        matches!(
            condition.as_str(),
            "remote-server-not-found" | "remote-server-timeout"
        ),
        "{condition}"
    );
    assert!(a.metric("starling_s2s_bounced_total").await >= 1.0);
}

#[tokio::test]
async fn a_peer_that_never_answers_times_out_and_every_waiting_stanza_bounces() {
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    // Accepts and holds connections without a word.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let a = server("a.test", free_port(), &[("silent.test", port)])
        .set("s2s", "connect_timeout_secs = 2")
        .start();
    let mut alice = online(&a, "alice", PW, "phone").await;
    for n in 0..3 {
        alice
            .send(&format!(
                "<message to='x@silent.test' id='m{n}' type='chat'><body>{n}</body></message>"
            ))
            .await
            .unwrap();
    }
    for n in 0..3 {
        let id = format!("m{n}");
        let error = alice
            .expect(
                |e| e.attr("type") == Some("error") && e.attr("id") == Some(id.as_str()),
                FEDERATION_WAIT,
            )
            .await
            .unwrap_or_else(|error| panic!("message {n} did not bounce: {error}"));
        let (_, condition) = error_of(&error).unwrap();
        assert_eq!(condition, "remote-server-timeout", "{error}");
    }
    holder.abort();
}
