//! A three-node Starling cluster (starling.test) federating with Prosody
//! (prosody.test) in a private network whose DNS server lists every
//! member under `_xmpp-server._tcp.starling.test`. Users on every member
//! talk to a Prosody user: messages, presence subscriptions and broadcast,
//! iqs, both ways: with dialback (Starling's self-signed certificate), and
//! with certificates of one test CA on both sides (SASL EXTERNAL both
//! ways, Prosody's `s2s_secure_auth`). The admin API lists the streams
//! and `/metrics` counts them per remote domain.

use starling_tests::TestNode;
use starling_tests::http::HttpRequest;
use starling_tests::netns::{NetNs, Zone};
use starling_tests::peers::{PeerSpec, Prosody, S2S_PORT};
use starling_tests::pki::Pki;
use starling_tests::{Client, TestCluster};

use crate::support::*;

const STARLING: &str = "starling.test";

/// The zone: members 1-3 at addresses 1-3, `peer` at address 4.
pub(crate) fn zone(peer: &str) -> Zone {
    let mut zone = Zone::new();
    for index in 1..=3u8 {
        let host = format!("node{index}.{STARLING}");
        zone = zone
            .host(&host, index)
            .xmpp_server(STARLING, &host, S2S_PORT, 10, 1);
    }
    zone.host(peer, 4).xmpp_server(peer, peer, S2S_PORT, 10, 1)
}

/// Three members serving starling.test in `netns`, each federating on its
/// own address, port 5269, with a certificate of `pki` for starling.test
/// and `pki` trusted for peers (without one: the generated self-signed
/// certificate and the system roots only, so dialback both ways); users
/// c1, c2, c3.
pub(crate) fn cluster(netns: &NetNs, pki: Option<&Pki>) -> TestCluster {
    let addresses: Vec<_> = (1..=3).map(|index| netns.addr(index)).collect();
    let mut builder = TestCluster::builder(3)
        .domain(STARLING)
        .netns(netns, &addresses)
        .admin("admin", PW)
        .user("c1", PW)
        .user("c2", PW)
        .user("c3", PW);
    if let Some(pki) = pki {
        let (cert, key) = pki.issue(STARLING);
        builder = builder
            .set("tls", &format!("cert = {cert:?}"))
            .set("tls", &format!("key = {key:?}"))
            .set("s2s", &format!("ca_files = [{:?}]", pki.ca_path()));
    }
    for (index, address) in addresses.iter().enumerate() {
        builder = builder.set_on(index, "s2s", &format!("bind = \"{address}:{S2S_PORT}\""));
    }
    builder.start()
}

/// Logs c1, c2, c3 in, one on each member, available.
pub(crate) async fn members_online(cluster: &TestCluster) -> Vec<Client> {
    let mut members = Vec::new();
    for (index, user) in ["c1", "c2", "c3"].iter().enumerate() {
        members.push(online(cluster.node(index), user, PW, "m").await);
    }
    members
}

/// Everything across the two servers, for each member's user and `peer`
/// (a user of the other server, online and available). `account_disco`:
/// whether the peer's server answers disco#info on an account to its
/// contacts (ejabberd 23.01 refuses it to anyone but the account's owner,
/// `not-allowed`: "Query to another users is forbidden").
pub(crate) async fn exchange(
    members: &mut [Client],
    peer: &mut Client,
    peer_domain: &str,
    account_disco: bool,
) {
    for (index, member) in members.iter_mut().enumerate() {
        let n = index + 1;
        chat(member, peer, &format!("hello from member {n}")).await;
        chat(peer, member, &format!("hello to member {n}")).await;
    }
    for member in members.iter_mut() {
        federated_befriend(member, peer).await;
    }
    // Presence broadcast from each member's user to the remote contact...
    let peer_jid = jid(peer);
    for (index, member) in members.iter_mut().enumerate() {
        let member_jid = jid(member);
        member.send("<presence type='unavailable'/>").await.unwrap();
        expect_presence_long(peer, &member_jid, Some("unavailable")).await;
        let status = format!("back on member {}", index + 1);
        member
            .send(&format!("<presence><status>{status}</status></presence>"))
            .await
            .unwrap();
        let seen = expect_presence_long(peer, &member_jid, None).await;
        assert!(has_status(&seen, &status), "{seen}");
    }
    // ...and from the remote contact to every member's user.
    peer.send("<presence type='unavailable'/>").await.unwrap();
    for member in members.iter_mut() {
        expect_presence_long(member, &peer_jid, Some("unavailable")).await;
    }
    peer.send("<presence><status>back</status></presence>")
        .await
        .unwrap();
    // Earlier available presences of the peer (answers to the probes sent
    // when each member came back) may still be unread: wait for this one.
    for member in members.iter_mut() {
        member
            .expect(
                |e| is_presence(e, &peer_jid, None) && has_status(e, "back"),
                FEDERATION_WAIT,
            )
            .await
            .unwrap_or_else(|error| panic!("{} did not see {peer_jid} back: {error}", jid(member)));
    }
    // Iqs both ways: software version of the other server, disco#info of
    // the other server and of an account there.
    for member in members.iter_mut() {
        let version = remote_iq(member, peer_domain, "<query xmlns='jabber:iq:version'/>").await;
        assert!(version.children().any(|c| c.name() == "query"), "{version}");
        let disco = remote_iq(
            member,
            peer_domain,
            "<query xmlns='http://jabber.org/protocol/disco#info'/>",
        )
        .await;
        assert!(disco.children().any(|c| c.name() == "query"), "{disco}");
        let disco = remote_iq_reply(
            member,
            &bare(peer),
            "<query xmlns='http://jabber.org/protocol/disco#info'/>",
        )
        .await;
        if account_disco {
            assert_eq!(disco.attr("type"), Some("result"), "{disco}");
            assert!(disco.children().any(|c| c.name() == "query"), "{disco}");
        } else {
            assert_eq!(
                error_of(&disco).map(|(_, condition)| condition).as_deref(),
                Some("not-allowed"),
                "{disco}"
            );
        }
    }
    let disco = remote_iq(
        peer,
        STARLING,
        "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    )
    .await;
    assert!(
        disco
            .children()
            .flat_map(|query| query.children())
            .any(|c| c.name() == "identity" && c.attr("category") == Some("server")),
        "{disco}"
    );
    let ping = remote_iq(peer, STARLING, "<ping xmlns='urn:xmpp:ping'/>").await;
    assert_eq!(ping.attr("from"), Some(STARLING), "{ping}");
    for member in members.iter_mut() {
        remote_iq(member, peer_domain, "<ping xmlns='urn:xmpp:ping'/>").await;
    }
    let disco = remote_iq(
        peer,
        &bare(&members[0]),
        "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    )
    .await;
    assert_eq!(disco.attr("type"), Some("result"), "{disco}");
}

/// An iq `get` to a remote entity; the result (a failure names the reply).
pub(crate) async fn remote_iq(client: &mut Client, to: &str, payload: &str) -> Element {
    let reply = remote_iq_reply(client, to, payload).await;
    assert_eq!(reply.attr("type"), Some("result"), "{reply}");
    reply
}

/// An iq `get` to a remote entity; its reply, result or error, from it.
pub(crate) async fn remote_iq_reply(client: &mut Client, to: &str, payload: &str) -> Element {
    remote_request(client, "get", to, payload).await
}

/// An iq of type `ty` to a remote entity; its reply, result or error, from it.
pub(crate) async fn remote_request(
    client: &mut Client,
    ty: &str,
    to: &str,
    payload: &str,
) -> Element {
    let id = client.next_id();
    client
        .send(&format!(
            "<iq type='{ty}' id='{id}' to='{to}'>{payload}</iq>"
        ))
        .await
        .unwrap();
    let reply = client
        .expect(
            |e| {
                e.name() == "iq"
                    && e.attr("id") == Some(id.as_str())
                    && matches!(e.attr("type"), Some("result" | "error"))
            },
            FEDERATION_WAIT,
        )
        .await
        .unwrap_or_else(|error| panic!("no reply from {to} to iq {id}: {error}"));
    assert_eq!(reply.attr("from"), Some(to), "{reply}");
    reply
}

pub(crate) use starling_core::xml::Element;

fn has_status(presence: &Element, text: &str) -> bool {
    presence
        .children()
        .any(|child| child.name() == "status" && child.text() == text)
}

pub(crate) async fn expect_presence_long(
    client: &mut Client,
    from: &str,
    ty: Option<&str>,
) -> Element {
    client
        .expect(|e| is_presence(e, from, ty), FEDERATION_WAIT)
        .await
        .unwrap_or_else(|error| {
            panic!(
                "no presence type {ty:?} from {from} for {}: {error}",
                jid(client)
            )
        })
}

/// A subscription each way between `a` and `b` (on different servers),
/// each approved by the contact; each then sees the other's presence.
pub(crate) async fn federated_befriend(a: &mut Client, b: &mut Client) {
    federated_subscribe(a, b).await;
    federated_subscribe(b, a).await;
}

async fn federated_subscribe(from: &mut Client, to: &mut Client) {
    let (from_bare, to_bare, to_full) = (bare(from), bare(to), jid(to));
    from.send(&format!("<presence to='{to_bare}' type='subscribe'/>"))
        .await
        .unwrap();
    expect_presence_long(to, &from_bare, Some("subscribe")).await;
    to.send(&format!("<presence to='{from_bare}' type='subscribed'/>"))
        .await
        .unwrap();
    expect_presence_long(from, &to_bare, Some("subscribed")).await;
    // RFC 6121 3.1.5: the contact's available resources' presence follows.
    expect_presence_long(from, &to_full, None).await;
}

/// prosody.test at address 4 with pat, a certificate of `pki` and `pki`
/// trusted for peers (`secure_auth`: certificates only); pat online and
/// available.
async fn prosody_with_pat(netns: &NetNs, pki: &Pki, secure_auth: bool) -> (Prosody, Client) {
    let prosody = Prosody::start(
        netns,
        &PeerSpec {
            domain: "prosody.test",
            address: netns.addr(4),
            users: &[("pat", PW)],
            cert: pki.issue("prosody.test"),
            ca_file: pki.ca_path(),
            modules: &[],
            muc: None,
            secure_auth,
            bidi: false,
        },
    );
    let mut pat = prosody.login("pat", PW, "desk").await;
    roster_get(&mut pat).await;
    available(&mut pat, "<presence/>").await;
    (prosody, pat)
}

/// Starling without a certificate of the test CA (its self-signed one,
/// the system roots only): dialback both ways.
#[tokio::test]
#[ignore = "needs root, iproute2, dnsmasq-base and prosody: run tests/run"]
async fn a_cluster_and_prosody_federate_both_ways_with_dialback() {
    require_private_network();
    starling_tests::peers::require_prosody();
    let netns = NetNs::start(&zone("prosody.test"));
    let pki = Pki::new(netns.dir(), "federation");
    let cluster = cluster(&netns, None);
    let (_prosody, mut pat) = prosody_with_pat(&netns, &pki, false).await;
    let mut members = members_online(&cluster).await;

    exchange(&mut members, &mut pat, "prosody.test", true).await;

    // Every member opened its own stream to Prosody; Prosody's reached one.
    let mut incoming = 0.0;
    for index in 0..3 {
        let node = cluster.node(index);
        assert_eq!(
            authentications(node, "out", "dialback").await,
            1.0,
            "member {}:\n{}",
            index + 1,
            node.log()
        );
        // Prosody answers the barriers (XEP-0199 pings) that confirm what
        // each member's stream wrote.
        let deadline = std::time::Instant::now() + FEDERATION_WAIT;
        while node.metric("starling_s2s_confirmed_total").await < 1.0 {
            assert!(
                std::time::Instant::now() < deadline,
                "member {}: Prosody confirmed nothing:\n{}",
                index + 1,
                node.log()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(authentications(node, "out", "external").await, 0.0);
        assert_eq!(authentications(node, "in", "external").await, 0.0);
        incoming += authentications(node, "in", "dialback").await;
    }
    assert!(incoming >= 1.0, "no stream from Prosody authenticated");
}

/// `GET /api/s2s` of `node`, as the admin.
async fn s2s_streams(node: &TestNode) -> serde_json::Value {
    let answer = HttpRequest::new(node.http, "GET", "/api/s2s")
        .basic("admin", PW)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()
}

/// Waits until `node` lists its outgoing stream to prosody.test with
/// everything it wrote confirmed, and returns that row.
async fn confirmed_stream_to_prosody(node: &TestNode) -> serde_json::Value {
    let deadline = std::time::Instant::now() + FEDERATION_WAIT;
    loop {
        let view = s2s_streams(node).await;
        let found = view["streams"].as_array().and_then(|streams| {
            streams
                .iter()
                .find(|stream| {
                    stream["direction"] == "out"
                        && stream["remote"] == "prosody.test"
                        && stream["stanzas_out"].as_u64() >= Some(1)
                        && stream["unconfirmed"] == 0
                })
                .cloned()
        });
        if let Some(stream) = found {
            return stream;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no confirmed stream to prosody.test listed: {view}\n{}",
            node.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Certificates of one test CA on both sides and `s2s_secure_auth` on
/// Prosody: SASL EXTERNAL both ways, dialback never. The admin API and
/// `/metrics` show the streams.
#[tokio::test]
#[ignore = "needs root, iproute2, dnsmasq-base and prosody: run tests/run"]
async fn a_cluster_and_prosody_authenticate_with_certificates_both_ways() {
    require_private_network();
    starling_tests::peers::require_prosody();
    let netns = NetNs::start(&zone("prosody.test"));
    let pki = Pki::new(netns.dir(), "federation");
    let cluster = cluster(&netns, Some(&pki));
    let (prosody, mut pat) = prosody_with_pat(&netns, &pki, true).await;
    let mut members = members_online(&cluster).await;

    exchange(&mut members, &mut pat, "prosody.test", true).await;

    let mut incoming = 0.0;
    for index in 0..3 {
        let node = cluster.node(index);
        assert_eq!(
            authentications(node, "out", "external").await,
            1.0,
            "member {}:\n{}",
            index + 1,
            node.log()
        );
        assert_eq!(authentications(node, "out", "dialback").await, 0.0);
        assert_eq!(authentications(node, "in", "dialback").await, 0.0);
        incoming += authentications(node, "in", "external").await;

        // The admin API lists the member's stream to Prosody.
        let stream = confirmed_stream_to_prosody(node).await;
        assert_eq!(stream["local"], STARLING, "{stream}");
        assert_eq!(stream["authentication"], "external", "{stream}");
        assert_eq!(stream["tls"], true, "{stream}");
        assert_eq!(stream["bidi"], false, "{stream}");
        assert!(stream["since_ms"].as_i64() > Some(0), "{stream}");
        assert_eq!(stream["node"], format!("node{}", index + 1), "{stream}");
        // /metrics counts the domain's stream and stanzas.
        let out = "{domain=\"prosody.test\",direction=\"out\"}";
        assert_eq!(
            node.metric(&format!("starling_s2s_domain_streams{out}"))
                .await,
            1.0
        );
        assert!(
            node.metric(&format!("starling_s2s_domain_stanzas_total{out}"))
                .await
                >= stream["stanzas_out"].as_u64().unwrap() as f64
        );
    }
    assert!(incoming >= 1.0, "no stream from Prosody authenticated");
    // Prosody's incoming streams: listed with the stanzas they brought.
    let mut listed_in = 0;
    let mut stanzas_in = 0.0;
    for index in 0..3 {
        let node = cluster.node(index);
        let view = s2s_streams(node).await;
        for stream in view["streams"].as_array().unwrap() {
            if stream["direction"] == "in" {
                assert_eq!(stream["remote"], "prosody.test", "{stream}");
                assert_eq!(stream["authentication"], "external", "{stream}");
                listed_in += 1;
            }
        }
        stanzas_in += node
            .metric("starling_s2s_domain_stanzas_total{domain=\"prosody.test\",direction=\"in\"}")
            .await;
    }
    assert!(listed_in >= 1, "no incoming stream listed");
    assert!(stanzas_in >= 1.0, "no stanza from prosody.test counted");
    let log = prosody.log();
    assert!(
        log.contains("Accepting SASL EXTERNAL identity from starling.test"),
        "{log}"
    );
    assert!(
        log.contains("SASL EXTERNAL with starling.test succeeded"),
        "{log}"
    );
}

/// A member killed (SIGKILL): its user's contact on Prosody hears the
/// user's session go offline, from one surviving member, as it would at a
/// logout; the user's contacts on the cluster hear it as before.
#[tokio::test]
#[ignore = "needs root, iproute2, dnsmasq-base and prosody: run tests/run"]
async fn a_prosody_contact_hears_a_killed_members_user_go_offline() {
    require_private_network();
    starling_tests::peers::require_prosody();
    let netns = NetNs::start(&zone("prosody.test"));
    let pki = Pki::new(netns.dir(), "federation");
    let mut cluster = cluster(&netns, Some(&pki));
    let (_prosody, mut pat) = prosody_with_pat(&netns, &pki, false).await;
    let mut members = members_online(&cluster).await;
    federated_befriend(&mut members[2], &mut pat).await;
    let c3 = jid(&members[2]);

    cluster.kill(2);
    let gone = expect_presence_long(&mut pat, &c3, Some("unavailable")).await;
    assert_eq!(
        gone.attr("to").map(|to| to.starts_with("pat@prosody.test")),
        Some(true),
        "{gone}"
    );
}
