//! A short run of the load driver's `muc` mode on a three-node cluster: two
//! rooms of three occupants spread over the nodes, one room per driver
//! process, every message reaching every occupant of its room (a run with
//! losses reports them).

use std::process::Command;

use starling_tests::TestCluster;

use crate::support::NODES;

#[test]
fn load_driver_muc_delivers_every_message_to_every_occupant() {
    let mut builder = TestCluster::builder(NODES);
    for index in 1..=6 {
        builder = builder.user(&format!("mucload{index}"), &format!("mucpw{index}"));
    }
    let cluster = builder.start();
    let servers = (0..NODES)
        .map(|index| cluster.node(index).c2s.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let output = Command::new(env!("CARGO_BIN_EXE_starling-load"))
        .args(["--json", "muc", "--workers", "2", "--server", &servers])
        .args(["--domain", &cluster.node(0).domain])
        .args(["--users", "mucload", "--password-prefix", "mucpw", "--tls"])
        .args(["--rooms", "2", "--occupants", "3", "--rate", "6"])
        .args(["--duration", "2", "--drain", "10"])
        .output()
        .expect("running starling-load");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "starling-load muc failed:\n{stderr}\nnode 1 log:\n{}",
        cluster.node(0).log()
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
    let muc = &report["muc"];
    let figure = |key: &str| {
        muc[key]
            .as_u64()
            .unwrap_or_else(|| panic!("no {key} in {muc}"))
    };
    assert_eq!(report["workers"], 2, "{report}");
    assert_eq!(figure("joined"), 6, "{muc}");
    assert!(figure("sent") > 0, "{muc}");
    assert_eq!(figure("expected"), figure("sent") * 3, "{muc}");
    assert_eq!(figure("delivered"), figure("expected"), "{muc}");
    assert_eq!((figure("lost"), figure("duplicates")), (0, 0), "{muc}");
    assert_eq!(muc["errors"], serde_json::json!({}), "{muc}");
}
