//! Finding peers through DNS, no `[s2s.routes]`: servers in a private
//! network namespace whose DNS server (dnsmasq) holds the test's records.

use starling_tests::free_port;
use starling_tests::netns::{NetNs, Zone};

use crate::support::*;

#[tokio::test]
#[ignore = "needs root, iproute2 and dnsmasq-base: run tests/run"]
async fn a_peer_is_found_by_its_srv_record() {
    require_private_network();
    // Ports other than 5269, so only the SRV records can name them.
    let (pa, pb) = (free_port(), free_port());
    let zone = Zone::new()
        .host("xmpp.a.test", 1)
        .host("xmpp.b.test", 2)
        .xmpp_server("a.test", "xmpp.a.test", pa, 5, 0)
        .xmpp_server("b.test", "xmpp.b.test", pb, 5, 0);
    let netns = NetNs::start(&zone);
    let a = dns_server(&netns, "a.test", netns.addr(1), pa).start();
    let b = dns_server(&netns, "b.test", netns.addr(2), pb).start();
    let mut alice = online(&a, "alice", PW, "phone").await;
    let mut bob = online(&b, "bob", PW, "laptop").await;
    chat(&mut alice, &mut bob, "found you by SRV").await;
    chat(&mut bob, &mut alice, "and I you").await;
    let queries = netns.dns_queries();
    for service in ["_xmpp-server._tcp.b.test", "_xmpp-server._tcp.a.test"] {
        assert!(
            queries.contains(&format!("query[SRV] {service}")),
            "no SRV query for {service}:\n{queries}"
        );
    }
    // a.test dialed; b.test answered on the same (bidirectional) stream.
    for (node, direction) in [(&a, "out"), (&b, "in")] {
        assert_eq!(
            authentications(node, direction, "dialback").await,
            1.0,
            "{}",
            node.log()
        );
    }
}

#[tokio::test]
#[ignore = "needs root, iproute2 and dnsmasq-base: run tests/run"]
async fn without_srv_records_the_domain_address_on_port_5269_is_used() {
    require_private_network();
    let zone = Zone::new().host("a.test", 1).host("b.test", 2);
    let netns = NetNs::start(&zone);
    let a = dns_server(&netns, "a.test", netns.addr(1), 5269).start();
    let b = dns_server(&netns, "b.test", netns.addr(2), 5269).start();
    let mut alice = online(&a, "alice", PW, "phone").await;
    let mut bob = online(&b, "bob", PW, "laptop").await;
    chat(&mut alice, &mut bob, "found you by address").await;
    chat(&mut bob, &mut alice, "likewise").await;
    let queries = netns.dns_queries();
    assert!(
        queries.contains("query[SRV] _xmpp-server._tcp.b.test")
            && queries.contains("query[A] b.test"),
        "{queries}"
    );
}

#[tokio::test]
#[ignore = "needs root, iproute2 and dnsmasq-base: run tests/run"]
async fn unresolvable_domains_bounce_remote_server_not_found() {
    require_private_network();
    let zone = Zone::new().host("a.test", 1);
    let netns = NetNs::start(&zone);
    let a = dns_server(&netns, "a.test", netns.addr(1), 5269).start();
    let mut alice = online(&a, "alice", PW, "phone").await;
    // A .test name the DNS server says does not exist, and a name outside
    // .test, which it refuses (it has no upstream).
    for (n, remote) in ["someone@nowhere.test", "someone@elsewhere.example"]
        .iter()
        .enumerate()
    {
        alice
            .send(&format!(
                "<message to='{remote}' id='u{n}' type='chat'><body>hello?</body></message>"
            ))
            .await
            .unwrap();
        let condition = expect_bounce(&mut alice, remote).await;
        // Not remote-server-timeout: the answer came from DNS, not from
        // waiting out connect_timeout_secs.
        assert_eq!(condition, "remote-server-not-found", "{remote}");
    }
    assert!(a.metric("starling_s2s_bounced_total").await >= 2.0);
    let queries = netns.dns_queries();
    assert!(
        queries.contains("nowhere.test") && queries.contains("elsewhere.example"),
        "{queries}"
    );
}
