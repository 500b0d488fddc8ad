//! slixmpp's XEP-0198 plugin against a three-node cluster: the script
//! `tests/interop/slixmpp_sm.py` enables resumption, cuts its connection
//! without closing the stream, resumes on the same node and then on
//! another one, and exits 0 when every message sent while it was away
//! arrived once, in order.

use std::time::Duration;

use starling_tests::TestCluster;
use starling_tests::interop::{cluster_args, run_script};
use starling_tests::tools::require_slixmpp;

/// Bound for the script; it bounds itself well below this.
const SCRIPT_LIMIT: Duration = Duration::from_secs(90);

#[test]
#[ignore = "needs slixmpp: run tests/run"]
fn slixmpp_resumes_on_the_same_node_and_on_another() {
    require_slixmpp();
    // The scripts' convention: every password is the name followed by `-pw`.
    let cluster = TestCluster::builder(3)
        .user("sam", "sam-pw")
        .user("pat", "pat-pw")
        .start();
    let args = cluster_args(&cluster);
    run_script("slixmpp_sm.py", &args, cluster.dir(), SCRIPT_LIMIT);
}
