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
//! Needs root, iproute2 (`ip`, `tc`), nftables, iptables and PostgreSQL
//! (`STARLING_TEST_POSTGRES_URL`): ignored by a plain `cargo test`, run by
//! tests/run as root, where a missing need fails it with what to install.

use starling_tests::faults;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, iproute2, nftables, iptables and PostgreSQL: run tests/run as root"]
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

/// The latency of the `loss-latency` fault where the kernel has no netem:
/// a TCP handshake with a listener in a member's namespace takes at least
/// the delay, since the member's SYN-ACK waits in the netfilter queue.
#[test]
#[ignore = "needs root, iproute2, nftables and iptables: run tests/run as root"]
fn the_netfilter_queue_holds_what_a_member_sends_for_the_delay() {
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::os::fd::AsFd;
    use std::time::{Duration, Instant};

    if let Err(why) = faults::net::available().and_then(|()| faults::delay::available()) {
        panic!("cannot build the campaign's network: {why}; run tests/run as root");
    }
    let net = faults::net::Net::start(1).unwrap_or_else(|error| panic!("{error}"));
    let member = SocketAddr::new(net.addr(1), 22999);
    // A listener inside the member's namespace: a thread that entered it.
    let namespace = std::fs::File::open(format!("/run/netns/{}", net.namespace(1))).unwrap();
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    let acceptor = std::thread::spawn(move || {
        rustix::thread::move_into_link_name_space(
            namespace.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .expect("setns");
        let listener = TcpListener::bind(member).expect("bind in the member");
        bound_tx.send(()).unwrap();
        for _ in 0..2 {
            let _ = listener.accept().expect("accept");
        }
    });
    bound_rx.recv().unwrap();
    let handshake = || {
        let started = Instant::now();
        TcpStream::connect_timeout(&member, Duration::from_secs(5)).expect("connect");
        started.elapsed()
    };
    let plain = handshake();
    let delay = faults::delay::Delay::start(&[net.namespace(1)], Duration::from_millis(50))
        .unwrap_or_else(|error| panic!("{error}"));
    let delayed = handshake();
    let packets = delay.stop().unwrap_or_else(|error| panic!("{error}"));
    acceptor.join().unwrap();
    eprintln!("handshake {plain:?} plain, {delayed:?} delayed; {packets} packets held");
    assert!(packets >= 1, "the queue held the SYN-ACK");
    assert!(
        delayed >= Duration::from_millis(50),
        "the SYN-ACK waited 50 ms: {delayed:?}"
    );
}
