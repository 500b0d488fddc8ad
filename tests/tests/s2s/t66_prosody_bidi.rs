//! XEP-0288 with Prosody 0.12 (`mod_s2s_bidi`): one Starling node and
//! Prosody in a private network, found by DNS. Whichever side opens the
//! stream, both directions go over it: messages, presence subscriptions
//! and iqs.

use starling_tests::Client;
use starling_tests::TestNode;
use starling_tests::netns::{NetNs, Zone};
use starling_tests::peers::{PeerSpec, Prosody, S2S_PORT};
use starling_tests::pki::Pki;

use crate::support::*;
use crate::t60_prosody::{expect_presence_long, federated_befriend, remote_iq};

const STARLING: &str = "starling.test";
const PROSODY: &str = "prosody.test";

struct Pair {
    starling: TestNode,
    prosody: Prosody,
    _pki: Pki,
    _netns: NetNs,
}

fn start() -> Pair {
    require_private_network();
    starling_tests::peers::require_prosody();
    let zone = Zone::new()
        .host(&format!("node1.{STARLING}"), 1)
        .xmpp_server(STARLING, &format!("node1.{STARLING}"), S2S_PORT, 10, 1)
        .host(PROSODY, 4)
        .xmpp_server(PROSODY, PROSODY, S2S_PORT, 10, 1);
    let netns = NetNs::start(&zone);
    let pki = Pki::new(netns.dir(), "federation");
    let starling = certified(
        dns_server(&netns, STARLING, netns.addr(1), S2S_PORT),
        &pki,
        STARLING,
    )
    .start();
    let prosody = Prosody::start(
        &netns,
        &PeerSpec {
            domain: PROSODY,
            address: netns.addr(4),
            users: &[("pat", PW)],
            cert: pki.issue(PROSODY),
            ca_file: pki.ca_path(),
            modules: &[],
            muc: None,
            secure_auth: false,
            bidi: true,
        },
    );
    Pair {
        starling,
        prosody,
        _pki: pki,
        _netns: netns,
    }
}

/// Messages, subscriptions both ways (with the presence that follows) and
/// iqs both ways between `alice` (Starling) and `pat` (Prosody); `first`
/// says who speaks first, so whose server dials.
async fn exchange(alice: &mut Client, pat: &mut Client, starling_first: bool) {
    if starling_first {
        chat(alice, pat, "hello from starling").await;
        chat(pat, alice, "hello from prosody").await;
    } else {
        chat(pat, alice, "hello from prosody").await;
        chat(alice, pat, "hello from starling").await;
    }
    federated_befriend(alice, pat).await;
    let pat_jid = jid(pat);
    pat.send("<presence><status>away for a bit</status></presence>")
        .await
        .unwrap();
    expect_presence_long(alice, &pat_jid, None).await;
    let version = remote_iq(alice, PROSODY, "<query xmlns='jabber:iq:version'/>").await;
    assert!(version.children().any(|c| c.name() == "query"), "{version}");
    let ping = remote_iq(pat, STARLING, "<ping xmlns='urn:xmpp:ping'/>").await;
    assert_eq!(ping.attr("from"), Some(STARLING), "{ping}");
}

/// The streams Starling has open now, (out, in), once a dialback
/// verification's own connection is gone.
async fn streams(node: &TestNode, out: f64, inbound: f64) {
    let settled = async {
        loop {
            let now = (
                node.metric("starling_s2s_streams{direction=\"out\"}").await,
                node.metric("starling_s2s_streams{direction=\"in\"}").await,
            );
            if now == (out, inbound) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    if tokio::time::timeout(FEDERATION_WAIT, settled)
        .await
        .is_err()
    {
        panic!(
            "streams are not ({out}, {inbound}) out and in:\n{}",
            node.log()
        );
    }
}

#[tokio::test]
#[ignore = "needs root, iproute2, dnsmasq-base and prosody: run tests/run"]
async fn prosody_dials_and_starling_answers_on_the_same_stream() {
    let pair = start();
    let mut alice = online(&pair.starling, "alice", PW, "desk").await;
    let mut pat = pair.prosody.login("pat", PW, "desk").await;
    roster_get(&mut pat).await;
    available(&mut pat, "<presence/>").await;
    exchange(&mut alice, &mut pat, false).await;
    let node = &pair.starling;
    streams(node, 0.0, 1.0).await;
    assert_eq!(
        node.metric("starling_s2s_bidi_streams{direction=\"in\"}")
            .await,
        1.0,
        "{}",
        node.log()
    );
    let out = authentications(node, "out", "external").await
        + authentications(node, "out", "dialback").await;
    assert_eq!(
        out,
        0.0,
        "Starling opened a stream of its own:\n{}",
        node.log()
    );
    assert!(
        node.metric("starling_s2s_stanzas_total{direction=\"out\"}")
            .await
            >= 3.0
    );
}

#[tokio::test]
#[ignore = "needs root, iproute2, dnsmasq-base and prosody: run tests/run"]
async fn starling_dials_and_prosody_answers_on_the_same_stream() {
    let pair = start();
    let mut alice = online(&pair.starling, "alice", PW, "desk").await;
    let mut pat = pair.prosody.login("pat", PW, "desk").await;
    roster_get(&mut pat).await;
    available(&mut pat, "<presence/>").await;
    exchange(&mut alice, &mut pat, true).await;
    let node = &pair.starling;
    streams(node, 1.0, 0.0).await;
    assert_eq!(
        node.metric("starling_s2s_bidi_streams{direction=\"out\"}")
            .await,
        1.0,
        "{}",
        node.log()
    );
    let inbound = authentications(node, "in", "external").await
        + authentications(node, "in", "dialback").await;
    assert_eq!(
        inbound,
        0.0,
        "Prosody opened a stream of its own:\n{}",
        node.log()
    );
    assert!(
        node.metric("starling_s2s_stanzas_total{direction=\"in\"}")
            .await
            >= 3.0
    );
}
