//! Tsung, a load tool written by others, against a three-node cluster
//! through `tsung/run --strict`: a short run of each scenario that must end
//! without any Tsung error, unfinished session, lost offline message,
//! pub/sub error answer or missing notification.
//!
//! Needs the Debian package tsung: ignored by a plain `cargo test`, run by
//! `tests/run`. The runs take about a minute each, so they run one at a time.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use starling_tests::interop::run_logged;
use starling_tests::starling_binary;
use starling_tests::tools::require_program;

/// One Tsung run at a time: each starts its own cluster and Tsung VM.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Bound for one run, well above its arrival phase and drain.
const RUN_LIMIT: Duration = Duration::from_secs(600);

fn tsung_run(name: &str, scenario_args: &[&str]) {
    require_program("tsung", "tsung");
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let logs = tempfile::Builder::new()
        .prefix("starling-tsung-")
        .tempdir()
        .expect("a temporary folder");
    let mut command = Command::new(workspace.join("tsung/run"));
    command
        .arg("--starling")
        .arg(starling_binary())
        .args(["--targets", "starling:3", "--strict"])
        .args(scenario_args);
    let (status, output) = run_logged(command, &logs.path().join(format!("{name}.log")), RUN_LIMIT);
    match status {
        Some(status) if status.success() => {
            println!("{output}");
            // Progress while it ran, and Tsung's own report after.
            assert!(
                output.contains("users online"),
                "no progress line:\n{output}"
            );
            assert!(
                output.contains("Tsung's report (graphs in graph.html beside it)"),
                "no Tsung report:\n{output}"
            );
        }
        Some(status) => panic!("tsung/run {name} failed ({status}):\n{output}"),
        None => panic!("tsung/run {name} was killed after {RUN_LIMIT:?}:\n{output}"),
    }
}

/// About 240 Tsung users (login-chat) spread over the cluster; every
/// offline message must be stored.
#[test]
#[ignore = "needs tsung: run tests/run"]
fn tsung_login_chat_on_three_nodes() {
    tsung_run(
        "login-chat",
        &[
            "--scenario",
            "login-chat",
            "--rate",
            "20",
            "--duration",
            "12",
        ],
    );
}

/// About 40 pub/sub subscribers and 4 publishers; every notification due
/// must arrive.
#[test]
#[ignore = "needs tsung: run tests/run"]
fn tsung_pubsub_on_three_nodes() {
    tsung_run(
        "pubsub",
        &[
            "--scenario",
            "pubsub",
            "--rate",
            "10",
            "--duration",
            "6",
            "--topics",
            "4",
            "--hold",
            "4",
        ],
    );
}

/// About 60 Tsung users in 3 rooms, each sending 3 groupchat messages.
#[test]
#[ignore = "needs tsung: run tests/run"]
fn tsung_muc_on_three_nodes() {
    tsung_run(
        "muc",
        &[
            "--scenario",
            "muc",
            "--rate",
            "10",
            "--duration",
            "6",
            "--rooms",
            "3",
            "--messages",
            "3",
            "--interval",
            "2",
            "--hold",
            "2",
        ],
    );
}
