//! slixmpp and its own plugins (xep_0054, xep_0153, xep_0049, xep_0012)
//! against a three-node cluster: the script
//! `tests/interop/slixmpp_account_data.py` sets a vCard and avatar, stores
//! private XML and asks for last activity with its users on different
//! nodes, and exits 0 when its scenario passed.

use std::time::Duration;

use starling_tests::TestCluster;
use starling_tests::interop::{cluster_args, run_script};
use starling_tests::tools::require_slixmpp;

/// Bound for the script; it bounds itself well below this.
const SCRIPT_LIMIT: Duration = Duration::from_secs(90);

#[test]
#[ignore = "needs slixmpp: run tests/run"]
fn slixmpp_account_data_across_nodes() {
    require_slixmpp();
    // The scripts' convention: every password is the name followed by `-pw`.
    let cluster = TestCluster::builder(3)
        .user("alice", "alice-pw")
        .user("bob", "bob-pw")
        .start();
    let args = cluster_args(&cluster);
    run_script(
        "slixmpp_account_data.py",
        &args,
        cluster.dir(),
        SCRIPT_LIMIT,
    );
}
