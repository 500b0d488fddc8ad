//! slixmpp's own XEP-0045 plugin as an independent client: the script
//! `tests/interop/slixmpp_muc.py` creates and configures a room, joins
//! with limited history, sends groupchat and a private message, kicks and
//! bans, and exits 0 when its scenario passed.

use std::time::Duration;

use starling_tests::TestNode;
use starling_tests::interop::run_script;
use starling_tests::tools::require_slixmpp;

/// Bound for the script; it bounds itself well below this.
const SCRIPT_LIMIT: Duration = Duration::from_secs(90);

#[test]
#[ignore = "needs slixmpp: run tests/run"]
fn slixmpp_muc_join_config_history_private_kick_ban() {
    require_slixmpp();
    // The scripts' convention: every password is the name followed by `-pw`.
    let mut builder = TestNode::builder();
    for user in ["alice", "bob", "carol"] {
        builder = builder.user(user, &format!("{user}-pw"));
    }
    let node = builder.start();
    let args = [
        "--host".into(),
        "127.0.0.1".into(),
        "--port".into(),
        node.c2s.port().to_string(),
        "--domain".into(),
        node.domain.clone(),
    ];
    run_script("slixmpp_muc.py", &args, node.dir(), SCRIPT_LIMIT);
}
