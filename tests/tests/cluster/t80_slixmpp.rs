//! slixmpp, a client written by others, against the cluster: the script
//! `tests/interop/slixmpp_cluster.py` puts its users on different nodes
//! (subscriptions, presence, chat, offline delivery on a third node) and
//! exits 0 when its scenario passed.

use std::time::Duration;

use starling_tests::TestCluster;
use starling_tests::interop::run_script;
use starling_tests::tools::require_slixmpp;

use crate::support::*;

/// Bound for the script; it bounds itself well below this.
const SCRIPT_LIMIT: Duration = Duration::from_secs(90);

#[test]
#[ignore = "needs slixmpp: run tests/run"]
fn slixmpp_clients_on_different_nodes() {
    require_slixmpp();
    // The scripts' convention: every password is the name followed by `-pw`.
    let cluster = TestCluster::builder(NODES)
        .user("alice", "alice-pw")
        .user("bob", "bob-pw")
        .start();
    let ports: Vec<String> = (1..=NODES)
        .map(|n| node(&cluster, n).c2s.port().to_string())
        .collect();
    let args = [
        "--host".into(),
        "127.0.0.1".into(),
        "--port".into(),
        ports[0].clone(),
        "--ports".into(),
        ports.join(","),
        "--domain".into(),
        node(&cluster, 1).domain.clone(),
    ];
    run_script("slixmpp_cluster.py", &args, cluster.dir(), SCRIPT_LIMIT);
}
