//! A peer whose certificate comes from a trusted CA but names another
//! domain (a.test presenting one for other.test): it is no proof of
//! a.test, so SASL EXTERNAL is not offered; with
//! `require_valid_certificates` the peer is refused both ways, without it
//! dialback proves the domain instead.

use starling_tests::pki::Pki;
use starling_tests::{TestNode, free_port};

use crate::support::*;

/// a.test with a certificate of `pki` for other.test, b.test with one for
/// b.test; both trust `pki`. `b_requires`: b.test has
/// `require_valid_certificates`.
/// Without XEP-0288 (t65 has it): each server authenticates a stream of
/// its own.
fn servers(pki: &Pki, b_requires: bool) -> (TestNode, TestNode) {
    let (pa, pb) = (free_port(), free_port());
    let a = certified(server("a.test", pa, &[("b.test", pb)]), pki, "other.test")
        .set("s2s", "bidi = false")
        .start();
    let mut b = certified(server("b.test", pb, &[("a.test", pa)]), pki, "b.test")
        .set("s2s", "bidi = false");
    if b_requires {
        b = b.set("s2s", "require_valid_certificates = true");
    }
    (a, b.start())
}

#[tokio::test]
async fn a_certificate_for_another_domain_is_refused_where_valid_ones_are_required() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "federation");
    let (a, b) = servers(&pki, true);
    let mut alice = online(&a, "alice", PW, "phone").await;
    let mut bob = online(&b, "bob", PW, "laptop").await;

    // a.test -> b.test: no EXTERNAL offered, dialback refused.
    alice
        .send("<message to='bob@b.test' type='chat'><body>it is me</body></message>")
        .await
        .unwrap();
    assert_eq!(
        expect_bounce(&mut alice, "bob@b.test").await,
        "remote-server-not-found"
    );
    assert!(
        b.log().contains("Dialback is not accepted here"),
        "{}",
        b.log()
    );
    // b.test -> a.test: b.test refuses a.test's certificate itself.
    bob.send("<message to='alice@a.test' type='chat'><body>who?</body></message>")
        .await
        .unwrap();
    assert_eq!(
        expect_bounce(&mut bob, "alice@a.test").await,
        "remote-server-not-found"
    );
    assert!(
        b.log().contains("the certificate is not valid for a.test"),
        "{}",
        b.log()
    );
    for node in [&a, &b] {
        for direction in ["in", "out"] {
            for method in ["external", "dialback"] {
                assert_eq!(
                    authentications(node, direction, method).await,
                    0.0,
                    "{direction} {method}"
                );
            }
        }
    }
    sync(&mut bob).await;
    assert_none(&bob, "a message from a.test", |e| {
        is_message_with_body(e, "it is me")
    });
}

#[tokio::test]
async fn a_certificate_for_another_domain_falls_back_to_dialback() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "federation");
    let (a, b) = servers(&pki, false);
    let mut alice = online(&a, "alice", PW, "phone").await;
    let mut bob = online(&b, "bob", PW, "laptop").await;
    chat(&mut alice, &mut bob, "proved by dialback").await;
    chat(&mut bob, &mut alice, "proved by certificate").await;
    // a.test's streams: dialback; b.test's: EXTERNAL (its certificate is
    // valid for b.test).
    assert_eq!(
        authentications(&a, "out", "dialback").await,
        1.0,
        "{}",
        a.log()
    );
    assert_eq!(authentications(&a, "out", "external").await, 0.0);
    assert_eq!(
        authentications(&b, "in", "dialback").await,
        1.0,
        "{}",
        b.log()
    );
    assert_eq!(authentications(&b, "in", "external").await, 0.0);
    assert_eq!(
        authentications(&b, "out", "external").await,
        1.0,
        "{}",
        b.log()
    );
    assert_eq!(
        authentications(&a, "in", "external").await,
        1.0,
        "{}",
        a.log()
    );
}
