//! slixmpp and its own XEP-0060 plugin against a three-node cluster: the
//! script `tests/interop/slixmpp_pubsub.py` creates, configures, publishes,
//! subscribes, retrieves, unsubscribes, retracts and deletes with its users
//! on different nodes, and exits 0 when its scenario passed.

use std::time::Duration;

use starling_tests::TestCluster;
use starling_tests::interop::{cluster_args, run_script};
use starling_tests::tools::require_slixmpp;

/// Bound for the script; it bounds itself well below this.
const SCRIPT_LIMIT: Duration = Duration::from_secs(90);

#[test]
#[ignore = "needs slixmpp: run tests/run"]
fn slixmpp_pubsub_across_nodes() {
    require_slixmpp();
    // The scripts' convention: every password is the name followed by `-pw`.
    let cluster = TestCluster::builder(3)
        .user("alice", "alice-pw")
        .user("bob", "bob-pw")
        .user("carol", "carol-pw")
        .start();
    let args = cluster_args(&cluster);
    run_script("slixmpp_pubsub.py", &args, cluster.dir(), SCRIPT_LIMIT);
}
