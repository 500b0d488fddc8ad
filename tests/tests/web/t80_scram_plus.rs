//! SCRAM-SHA-1-PLUS and SCRAM-SHA-256-PLUS: channel binding to the TLS
//! connection (`tls-exporter`) or to the server's certificate
//! (`tls-server-end-point`), advertised per XEP-0440, on STARTTLS, direct
//! TLS, WebSocket and BOSH; forged bindings and downgrades refused.

use starling_core::xml::ns;
use starling_tests::bosh::BoshOptions;
use starling_tests::sasl::{ChannelBinding, SASL_CB, end_point_hash};
use starling_tests::transport::connect_direct_tls;
use starling_tests::{Client, ClientError, Mechanism, TestNode, TlsMode};

use crate::support::*;

const PLUS: [Mechanism; 2] = [Mechanism::ScramSha256Plus, Mechanism::ScramSha1Plus];
const BOTH_TYPES: [&str; 2] = ["tls-exporter", "tls-server-end-point"];

/// A TCP client after STARTTLS, before SASL.
async fn starttls_probe(node: &TestNode) -> Client {
    let mut client = Client::connect(node.c2s, &node.domain).await.unwrap();
    client.starttls().await.unwrap();
    client
}

fn assert_plus_offered(client: &Client, types: &[&str]) {
    let mechanisms = client.mechanisms();
    for mechanism in PLUS {
        assert!(
            mechanisms.iter().any(|m| m == mechanism.name()),
            "{mechanisms:?}"
        );
    }
    assert_eq!(
        client.advertised_binding_types(),
        types,
        "{}",
        client.features()
    );
}

fn assert_refused(result: Result<Mechanism, ClientError>, condition: &str) {
    match result {
        Err(ClientError::SaslFailure {
            condition: found, ..
        }) => assert_eq!(found, condition),
        other => panic!("expected a <{condition}/> failure, got {other:?}"),
    }
}

#[tokio::test]
async fn t80_plus_with_both_binding_types_over_starttls_and_direct_tls() {
    let node = https_node(&["alice", "bob"]).start();
    // The client's default: the strongest mechanism, bound to the connection.
    let mut options = options(&node, "alice", "default");
    options.mechanism = None;
    let mut alice = Client::login(node.c2s, &options).await.unwrap();
    let mut bob = login_tcp(&node, "bob", "desk").await;
    chat(&mut alice, &mut bob, "bound by default").await;

    for mechanism in PLUS {
        for binding in BOTH_TYPES {
            let mut client = starttls_probe(&node).await;
            assert_plus_offered(&client, &BOTH_TYPES);
            let used = client
                .authenticate_with(
                    "alice",
                    PASSWORD,
                    Some(mechanism),
                    &ChannelBinding::Type(binding.into()),
                )
                .await
                .unwrap_or_else(|error| panic!("{mechanism} with {binding}: {error}"));
            assert_eq!(used, mechanism);
            client
                .bind(Some(&format!("{binding}-{used}")))
                .await
                .unwrap();

            let transport = connect_direct_tls(node.direct_tls).await.unwrap();
            let mut client = Client::connect_over(transport, &node.domain).await.unwrap();
            assert_plus_offered(&client, &BOTH_TYPES);
            client
                .authenticate_with(
                    "alice",
                    PASSWORD,
                    Some(mechanism),
                    &ChannelBinding::Type(binding.into()),
                )
                .await
                .unwrap_or_else(|error| panic!("direct TLS {mechanism} with {binding}: {error}"));
        }
    }
}

#[tokio::test]
async fn t81_plus_over_websocket_and_bosh() {
    let node = https_node(&["alice", "bob"]).start();
    // A WebSocket is one TLS connection: both types, as on TCP.
    for binding in BOTH_TYPES {
        let mut client = Client::connect_websocket(node.http, &wss(), &node.domain)
            .await
            .unwrap();
        assert_plus_offered(&client, &BOTH_TYPES);
        client
            .authenticate_with(
                "alice",
                PASSWORD,
                Some(Mechanism::ScramSha256Plus),
                &ChannelBinding::Type(binding.into()),
            )
            .await
            .unwrap_or_else(|error| panic!("WebSocket with {binding}: {error}"));
    }

    // A BOSH session's requests may use several connections: only the
    // certificate can be bound to. The BOSH client has no TLS connection of
    // its own to read, so it takes the certificate from a TCP one.
    let certificate = starttls_probe(&node)
        .await
        .peer_certificate()
        .expect("a certificate");
    let hash = end_point_hash(&certificate).expect("an ECDSA-SHA256 certificate");
    let mut options = options(&node, "alice", "bosh");
    options.mechanism = Some(Mechanism::ScramSha256Plus);
    options.channel_binding = ChannelBinding::Data("tls-server-end-point".into(), hash.clone());
    let mut alice = Client::login_bosh(&BoshOptions::new(node.http, true), &options)
        .await
        .expect("BOSH login with tls-server-end-point");
    let mut bob = login_tcp(&node, "bob", "desk").await;
    chat(&mut bob, &mut alice, "bound over BOSH").await;

    let mut probe = Client::connect_over(
        starling_tests::transport::Transport::Bosh(Box::new(starling_tests::bosh::BoshPipe::new(
            BoshOptions::new(node.http, true),
        ))),
        &node.domain,
    )
    .await
    .unwrap();
    assert_plus_offered(&probe, &["tls-server-end-point"]);
    // tls-exporter is not offered over BOSH.
    assert_refused(
        probe
            .authenticate_with(
                "alice",
                PASSWORD,
                Some(Mechanism::ScramSha256Plus),
                &ChannelBinding::Data("tls-exporter".into(), vec![0; 32]),
            )
            .await,
        "malformed-request",
    );
}

#[tokio::test]
async fn t82_forged_binding_is_refused() {
    let node = https_node(&["alice"]).start();
    // A man in the middle relays the exchange from its own TLS connection
    // to the server: what it can bind to is its connection's exporter.
    let relay = starttls_probe(&node).await;
    let relay_exporter = relay.channel_bindings().exporter.expect("TLS 1.3");
    let mut victim = starttls_probe(&node).await;
    let own = victim.channel_bindings().exporter.unwrap();
    assert_ne!(own, relay_exporter);
    assert_refused(
        victim
            .authenticate_with(
                "alice",
                PASSWORD,
                Some(Mechanism::ScramSha256Plus),
                &ChannelBinding::Data("tls-exporter".into(), relay_exporter),
            )
            .await,
        "not-authorized",
    );
    // A certificate hash that is not the server's: another certificate.
    assert_refused(
        victim
            .authenticate_with(
                "alice",
                PASSWORD,
                Some(Mechanism::ScramSha1Plus),
                &ChannelBinding::Data("tls-server-end-point".into(), vec![7; 32]),
            )
            .await,
        "not-authorized",
    );
    // A type the server does not implement.
    assert_refused(
        victim
            .authenticate_with(
                "alice",
                PASSWORD,
                Some(Mechanism::ScramSha256Plus),
                &ChannelBinding::Data("tls-unique".into(), vec![1; 12]),
            )
            .await,
        "malformed-request",
    );
    // The same connection then logs in with its own binding: nothing was
    // left behind, and the type mismatch was not counted as a guess.
    victim
        .authenticate_with(
            "alice",
            PASSWORD,
            Some(Mechanism::ScramSha256Plus),
            &ChannelBinding::Type("tls-exporter".into()),
        )
        .await
        .expect("the genuine binding");
    victim.bind(Some("genuine")).await.unwrap();
}

#[tokio::test]
async fn t83_downgrade_y_flag_is_refused_where_plus_is_offered() {
    let node = https_node(&["alice"]).plain_without_tls().start();
    for mechanism in [Mechanism::ScramSha256, Mechanism::ScramSha1] {
        let mut client = starttls_probe(&node).await;
        assert_refused(
            client
                .authenticate_with(
                    "alice",
                    PASSWORD,
                    Some(mechanism),
                    &ChannelBinding::ClaimUnsupported,
                )
                .await,
            "not-authorized",
        );
        // Without channel binding ("n") the same mechanism works.
        client
            .authenticate_with("alice", PASSWORD, Some(mechanism), &ChannelBinding::Auto)
            .await
            .expect("SCRAM without binding");
    }

    // Without TLS nothing can be bound: no -PLUS, no XEP-0440 feature, and
    // "y" is the truth.
    let mut clear = Client::connect(node.c2s, &node.domain).await.unwrap();
    assert!(
        !clear.mechanisms().iter().any(|m| m.ends_with("-PLUS")),
        "{:?}",
        clear.mechanisms()
    );
    assert!(!clear.features().has_child("sasl-channel-binding", SASL_CB));
    assert!(clear.features().has_child("starttls", ns::TLS));
    clear
        .authenticate_with(
            "alice",
            PASSWORD,
            Some(Mechanism::ScramSha256),
            &ChannelBinding::ClaimUnsupported,
        )
        .await
        .expect("y where no -PLUS is offered");

    let mut options = options(&node, "alice", "clear");
    options.tls = TlsMode::Off;
    options.mechanism = None;
    Client::login(node.c2s, &options)
        .await
        .expect("the default login in the clear picks a mechanism without -PLUS");
}
