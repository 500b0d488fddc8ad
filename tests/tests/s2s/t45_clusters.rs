//! Two clusters federating: a.test and b.test, two members each, users on
//! every member. Member i of a.test routes b.test to member i of b.test,
//! and member i of b.test routes a.test to the *other* member of a.test,
//! so every member holds one stream each way and every dialback key is
//! verified by a member other than the one that made it.

use starling_tests::pki::Pki;
use starling_tests::{Client, TestCluster, free_port};

use crate::support::*;
use crate::t60_prosody::{expect_presence_long, federated_befriend, remote_iq};

/// Two members of `domain` federating on `ports`, member i routing `peer`
/// to `routes[i]`; users `<prefix>1`, `<prefix>2`; with a certificate of
/// `pki` for `domain` and `pki` trusted for peers, if given.
fn cluster(
    domain: &str,
    prefix: &str,
    ports: &[u16],
    peer: &str,
    routes: &[u16],
    pki: Option<&Pki>,
) -> TestCluster {
    let mut builder = TestCluster::builder(2)
        .domain(domain)
        .user(&format!("{prefix}1"), PW)
        .user(&format!("{prefix}2"), PW);
    for index in 0..2 {
        builder = builder
            .set_on(
                index,
                "s2s",
                &format!("bind = \"127.0.0.1:{}\"", ports[index]),
            )
            .set_on(
                index,
                "s2s.routes",
                &format!("{peer:?} = \"127.0.0.1:{}\"", routes[index]),
            );
    }
    // Without XEP-0288 (t65 has it): every member authenticates a stream
    // of its own each way.
    builder = builder.set("s2s", "bidi = false");
    if let Some(pki) = pki {
        let (cert, key) = pki.issue(domain);
        builder = builder
            .set("tls", &format!("cert = {cert:?}"))
            .set("tls", &format!("key = {key:?}"))
            .set("s2s", &format!("ca_files = [{:?}]", pki.ca_path()));
    }
    builder.start()
}

/// Starts both clusters, logs in a1, a2, b1, b2 (user i on member i) and
/// runs everything between them; returns the clusters.
async fn federate(pki: Option<&Pki>) -> (TestCluster, TestCluster) {
    let a_ports = [free_port(), free_port()];
    let b_ports = [free_port(), free_port()];
    let a = cluster("a.test", "a", &a_ports, "b.test", &b_ports, pki);
    let b = cluster(
        "b.test",
        "b",
        &b_ports,
        "a.test",
        &[a_ports[1], a_ports[0]],
        pki,
    );
    let mut a_users: Vec<Client> = Vec::new();
    let mut b_users: Vec<Client> = Vec::new();
    for index in 0..2 {
        let n = index + 1;
        a_users.push(online(a.node(index), &format!("a{n}"), PW, "m").await);
        b_users.push(online(b.node(index), &format!("b{n}"), PW, "m").await);
    }
    // Every user of one cluster with every user of the other, both ways.
    for (i, a_user) in a_users.iter_mut().enumerate() {
        for (j, b_user) in b_users.iter_mut().enumerate() {
            chat(a_user, b_user, &format!("a{} to b{}", i + 1, j + 1)).await;
            chat(b_user, a_user, &format!("b{} to a{}", j + 1, i + 1)).await;
        }
    }
    // An iq to the other domain from every member.
    for user in a_users.iter_mut() {
        remote_iq(user, "b.test", "<ping xmlns='urn:xmpp:ping'/>").await;
    }
    for user in b_users.iter_mut() {
        remote_iq(user, "a.test", "<ping xmlns='urn:xmpp:ping'/>").await;
    }
    // Subscriptions across, between users on different member indexes,
    // then presence broadcast both ways.
    let (a_first, b_second) = (&mut a_users[0], &mut b_users[1]);
    federated_befriend(a_first, b_second).await;
    let a1 = jid(a_first);
    a_first
        .send("<presence type='unavailable'/>")
        .await
        .unwrap();
    expect_presence_long(b_second, &a1, Some("unavailable")).await;
    a_first.send("<presence/>").await.unwrap();
    expect_presence_long(b_second, &a1, None).await;
    let b2 = jid(b_second);
    b_second
        .send("<presence type='unavailable'/>")
        .await
        .unwrap();
    expect_presence_long(a_first, &b2, Some("unavailable")).await;
    (a, b)
}

/// Each member's (out, in) authentications with `method`, all four.
async fn each_member(clusters: [&TestCluster; 2], method: &str) -> Vec<(f64, f64)> {
    let mut counts = Vec::new();
    for cluster in clusters {
        for node in &cluster.nodes {
            counts.push((
                authentications(node, "out", method).await,
                authentications(node, "in", method).await,
            ));
        }
    }
    counts
}

#[tokio::test]
async fn two_clusters_without_valid_certificates_federate_with_dialback() {
    let (a, b) = federate(None).await;
    assert_eq!(
        each_member([&a, &b], "dialback").await,
        vec![(1.0, 1.0); 4],
        "{}",
        a.node(0).log()
    );
    assert_eq!(each_member([&a, &b], "external").await, vec![(0.0, 0.0); 4]);
}

#[tokio::test]
async fn two_clusters_with_certificates_of_a_trusted_ca_use_sasl_external() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "federation");
    let (a, b) = federate(Some(&pki)).await;
    assert_eq!(
        each_member([&a, &b], "external").await,
        vec![(1.0, 1.0); 4],
        "{}",
        a.node(0).log()
    );
    assert_eq!(each_member([&a, &b], "dialback").await, vec![(0.0, 0.0); 4]);
}
