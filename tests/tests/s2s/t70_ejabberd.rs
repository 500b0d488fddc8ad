//! A three-node Starling cluster (starling.test) federating with ejabberd
//! (ejabberd.test) in a private network whose DNS server lists every
//! member under `_xmpp-server._tcp.starling.test`. Users on every member
//! talk to an ejabberd user: messages, presence subscriptions and
//! broadcast, iqs, both ways: with certificates of one test CA on both
//! sides (SASL EXTERNAL both ways), and with Starling's self-signed one
//! (ejabberd offers EXTERNAL anyway and refuses the certificate; dialback
//! follows, its elements with the `db:` prefix ejabberd needs).

use starling_tests::TestCluster;
use starling_tests::netns::NetNs;
use starling_tests::peers::{Ejabberd, PeerSpec, require_ejabberd};
use starling_tests::pki::Pki;

use crate::support::*;
use crate::t60_prosody::{cluster, exchange, members_online, zone};

const EJABBERD: &str = "ejabberd.test";

/// ejabberd.test at address 4 with eve, a certificate of `pki` and `pki`
/// trusted for peers; eve online and available.
async fn ejabberd_with_eve(netns: &NetNs, pki: &Pki) -> (Ejabberd, starling_tests::Client) {
    let ejabberd = Ejabberd::start(
        netns,
        &PeerSpec {
            domain: EJABBERD,
            address: netns.addr(4),
            users: &[("eve", PW)],
            cert: pki.issue(EJABBERD),
            ca_file: pki.ca_path(),
            modules: &[],
            muc: None,
            secure_auth: false,
            bidi: false,
        },
    );
    let mut eve = ejabberd.login("eve", PW, "desk").await;
    roster_get(&mut eve).await;
    available(&mut eve, "<presence/>").await;
    (ejabberd, eve)
}

/// Prints and returns each member's authentications: (out, in) for `method`.
async fn counts(cluster: &TestCluster, method: &str) -> Vec<(f64, f64)> {
    let mut counts = Vec::new();
    for index in 0..3 {
        let node = cluster.node(index);
        let out = authentications(node, "out", method).await;
        let inc = authentications(node, "in", method).await;
        println!("member {}: {method} out {out}, in {inc}", index + 1);
        counts.push((out, inc));
    }
    counts
}

#[tokio::test]
#[ignore = "needs root, iproute2, dnsmasq-base and ejabberd: run tests/run"]
async fn a_cluster_and_ejabberd_federate_both_ways_with_certificates() {
    require_private_network();
    require_ejabberd();
    let netns = NetNs::start(&zone(EJABBERD));
    let pki = Pki::new(netns.dir(), "federation");
    let cluster = cluster(&netns, Some(&pki));
    let (_ejabberd, mut eve) = ejabberd_with_eve(&netns, &pki).await;
    let mut members = members_online(&cluster).await;

    exchange(&mut members, &mut eve, EJABBERD, false).await;

    // Every member opened its own stream to ejabberd, and ejabberd's
    // streams reached the cluster: all with EXTERNAL.
    let external = counts(&cluster, "external").await;
    let dialback = counts(&cluster, "dialback").await;
    for (index, (out, _)) in external.iter().enumerate() {
        assert!(
            *out >= 1.0,
            "member {} did not authenticate with EXTERNAL:\n{}",
            index + 1,
            cluster.node(index).log()
        );
    }
    assert!(external.iter().map(|(_, inc)| inc).sum::<f64>() >= 1.0);
    assert!(dialback.iter().all(|&(out, inc)| out == 0.0 && inc == 0.0));
}

#[tokio::test]
#[ignore = "needs root, iproute2, dnsmasq-base and ejabberd: run tests/run"]
async fn a_cluster_without_a_trusted_certificate_and_ejabberd_use_dialback() {
    require_private_network();
    require_ejabberd();
    let netns = NetNs::start(&zone(EJABBERD));
    let pki = Pki::new(netns.dir(), "federation");
    let cluster = cluster(&netns, None);
    let (ejabberd, mut eve) = ejabberd_with_eve(&netns, &pki).await;
    let mut members = members_online(&cluster).await;

    exchange(&mut members, &mut eve, EJABBERD, false).await;

    let external = counts(&cluster, "external").await;
    let dialback = counts(&cluster, "dialback").await;
    for (index, (out, _)) in dialback.iter().enumerate() {
        assert!(
            *out >= 1.0,
            "member {} did not authenticate with dialback:\n{}",
            index + 1,
            cluster.node(index).log()
        );
    }
    assert!(dialback.iter().map(|(_, inc)| inc).sum::<f64>() >= 1.0);
    assert!(external.iter().all(|&(out, inc)| out == 0.0 && inc == 0.0));
    // ejabberd offered EXTERNAL and refused the self-signed certificate.
    assert!(
        ejabberd
            .log()
            .contains("Failed inbound s2s EXTERNAL authentication"),
        "ejabberd never refused EXTERNAL: the fallback went untested"
    );
}
