//! The fault campaign's short form: three members in network namespaces
//! sharing PostgreSQL, 600 sessions chatting in pairs, and every fault of
//! [`starling_tests::faults`] once (kill -9 and restart, SIGSTOP, a full
//! partition, a one-way partition, half-open client links, loss and
//! latency, the store unreachable), each followed by its recovery.
//!
//! It fails on any message the server acknowledged and never delivered
//! (or delivered only half a minute late: held until a new login fetched
//! it), and on any ghost in a member's session directory 5 s after recovery; it
//! prints every figure (recovery times, duplicates, reordering, presence).
//!
//! Needs root, iproute2 (`ip`, `tc`), nftables and PostgreSQL
//! (`STARLING_TEST_POSTGRES_URL`): ignored by a plain `cargo test`, run by
//! tests/run as root, where a missing need fails it with what to install.

use starling_tests::faults;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, iproute2, nftables and PostgreSQL: run tests/run as root"]
async fn every_fault_once_under_load_loses_nothing_and_leaves_no_ghost() {
    let url = std::env::var("STARLING_TEST_POSTGRES_URL").ok();
    if let Err(why) = faults::available(url.as_deref()) {
        panic!("cannot run the fault campaign: {why}; run tests/run as root");
    }
    let mut config = faults::short_form(url.expect("checked"));
    if let Ok(sessions) = std::env::var("STARLING_FAULTS_SESSIONS") {
        config.sessions = sessions
            .parse()
            .expect("STARLING_FAULTS_SESSIONS: a number");
    }
    // For a closer look at one fault: STARLING_FAULTS_ONLY=partition,kill
    // (the assertion that every fault ran then fails), and the members' logs.
    if let Ok(only) = std::env::var("STARLING_FAULTS_ONLY") {
        config.only = only.split(',').map(str::to_owned).collect();
    }
    config.logs = std::env::var_os("STARLING_FAULTS_LOGS").map(Into::into);
    let report = faults::run(config)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    eprintln!("{}", report.table());
    assert_eq!(report.faults.len(), faults::FAULTS.len(), "every fault ran");
    for fault in &report.faults {
        assert_eq!(
            fault.lost,
            0,
            "{}: {} messages acked by the server and never delivered\n{}",
            fault.fault,
            fault.lost,
            report.table()
        );
        assert_eq!(
            fault.late,
            0,
            "{}: {} messages acked by the server and delivered more than {:?} late (held \
             until a new login fetched them)\n{}",
            fault.fault,
            fault.late,
            faults::LATE,
            report.table()
        );
        assert!(
            fault.ghosts <= 0,
            "{}: {} ghost sessions 5 s after recovery\n{}",
            fault.fault,
            fault.ghosts,
            report.table()
        );
    }
    assert_eq!(report.lost, 0, "messages lost\n{}", report.table());
    assert!(report.received > 0, "nothing was delivered");
}
