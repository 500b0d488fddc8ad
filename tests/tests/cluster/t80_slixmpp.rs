//! slixmpp, a client written by others, against the cluster: the script
//! `tests/interop/slixmpp_cluster.py` puts its users on different nodes
//! (subscriptions, presence, chat, offline delivery on a third node), and
//! `slixmpp_blocking.py` blocks across nodes (XEP-0191), `slixmpp_devices.py`
//! uses carbons and the archive (XEP-0280, XEP-0313); each exits 0 when
//! its scenario passed.

use std::time::Duration;

use starling_tests::TestCluster;
use starling_tests::interop::{cluster_args, run_script_in};
use starling_tests::tools::{PYTHON, pypi_python, require_pypi_slixmpp, require_slixmpp};

use crate::support::*;

/// Bound for the script; it bounds itself well below this.
const SCRIPT_LIMIT: Duration = Duration::from_secs(90);

#[test]
#[ignore = "needs slixmpp: run tests/run"]
fn slixmpp_clients_on_different_nodes() {
    run_on_cluster("slixmpp_cluster.py");
}

/// slixmpp's PEP, avatar and capabilities plugins with the publisher and the
/// contact on different nodes (`tests/interop/slixmpp_pep.py`).
#[test]
#[ignore = "needs slixmpp: run tests/run"]
fn slixmpp_pep_avatars_across_nodes() {
    run_on_cluster("slixmpp_pep.py");
}

/// slixmpp's xep_0191 plugin: block on one node, the push and the bounce on
/// another, unblock (`tests/interop/slixmpp_blocking.py`).
#[test]
#[ignore = "needs slixmpp: run tests/run"]
fn slixmpp_blocking_across_nodes() {
    run_on_cluster("slixmpp_blocking.py");
}

/// slixmpp's xep_0280 and xep_0313 plugins: carbons to a device on a third
/// node, then the archive paged both ways (`tests/interop/slixmpp_devices.py`).
#[test]
#[ignore = "needs slixmpp: run tests/run"]
fn slixmpp_carbons_and_archive_across_nodes() {
    run_on_cluster("slixmpp_devices.py");
}

/// PyPI slixmpp's xep_0402 plugin: a bookmark published on one node is
/// notified on another, read on a third, also as XEP-0048 from private
/// storage, and retracted (`tests/interop/slixmpp_bookmarks.py`).
#[test]
#[ignore = "needs the PyPI slixmpp: run tests/run"]
fn slixmpp_pep_bookmarks_across_nodes() {
    require_pypi_slixmpp();
    run_on_cluster_with(&pypi_python(), "slixmpp_bookmarks.py");
}

/// Runs `tests/interop/<script>` against a new cluster with alice and bob.
fn run_on_cluster(script: &str) {
    require_slixmpp();
    run_on_cluster_with(std::path::Path::new(PYTHON), script);
}

fn run_on_cluster_with(python: &std::path::Path, script: &str) {
    // The scripts' convention: every password is the name followed by `-pw`.
    let cluster = TestCluster::builder(NODES)
        .user("alice", "alice-pw")
        .user("bob", "bob-pw")
        .start();
    let args = cluster_args(&cluster);
    run_script_in(python, script, &args, cluster.dir(), SCRIPT_LIMIT);
}
