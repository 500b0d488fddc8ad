//! A TCP relay that adds a fixed one-way latency, like a link between data
//! centres: each chunk read is written to the other side `delay` later, in
//! order. Cluster tests put one in front of each member's peer port.
//!
//! A relay can also be a gate: while its [`Gate`] is shut, every connection
//! it accepts is closed at once, as across a partition (cluster tests start
//! members cut off from each other this way, then heal); and
//! [`Gate::cut`] closes every connection the gate's relays carry, as a
//! link flap does, while [`Gate::hold`] keeps the connections but delivers
//! nothing until [`Gate::release`], as a congested or stalled path does.
//!
//! It runs on its own thread and runtime, so it serves sync and async
//! tests alike, and stops when dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// A listening relay; dropping it stops it and its connections.
pub struct LatencyRelay {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Whether gated relays pass connections; shared by every relay made with it.
#[derive(Debug, Clone)]
pub struct Gate {
    open: Arc<AtomicBool>,
    /// Bumped by [`Gate::cut`]; each relayed connection ends when it changes.
    cuts: Arc<watch::Sender<u64>>,
    /// While true, what the relays read waits (in order) to be written.
    held: Arc<watch::Sender<bool>>,
}

impl Gate {
    /// A gate that starts shut.
    pub fn shut() -> Gate {
        Gate {
            open: Arc::new(AtomicBool::new(false)),
            cuts: Arc::new(watch::channel(0).0),
            held: Arc::new(watch::channel(false).0),
        }
    }

    /// Holds what every connection of the gate's relays carries, both ways,
    /// from now until [`Gate::release`]; the connections stay open.
    pub fn hold(&self) {
        self.held.send_replace(true);
    }

    pub fn release(&self) {
        self.held.send_replace(false);
    }

    pub fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    /// Closes every connection the gate's relays carry now (both sides see
    /// the connection end); new ones pass if the gate is open.
    pub fn cut(&self) {
        self.cuts.send_modify(|cuts| *cuts += 1);
    }

    fn is_open(&self) -> bool {
        self.open.load(Ordering::SeqCst)
    }
}

impl LatencyRelay {
    /// Relays connections to `listen` on to `target`, `delay` late each way.
    pub fn start(listen: SocketAddr, target: SocketAddr, delay: Duration) -> LatencyRelay {
        let open = Gate::shut();
        open.open();
        LatencyRelay::gated(listen, target, delay, open)
    }

    /// Like [`LatencyRelay::start`], but connections accepted while `gate`
    /// is shut are closed at once.
    pub fn gated(
        listen: SocketAddr,
        target: SocketAddr,
        delay: Duration,
        gate: Gate,
    ) -> LatencyRelay {
        let (stop, stopped) = oneshot::channel();
        let (bound, is_bound) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the relay");
            runtime.block_on(async move {
                let listener = TcpListener::bind(listen).await;
                let listener = match listener {
                    Ok(listener) => {
                        let _ = bound.send(Ok(()));
                        listener
                    }
                    Err(error) => {
                        let _ = bound.send(Err(error));
                        return;
                    }
                };
                tokio::select! {
                    () = accept_loop(listener, target, delay, gate) => {}
                    _ = stopped => {}
                }
            });
        });
        is_bound
            .recv()
            .expect("the relay thread reports")
            .unwrap_or_else(|error| panic!("cannot listen on {listen}: {error}"));
        LatencyRelay {
            addr: listen,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for LatencyRelay {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, delay: Duration, gate: Gate) {
    while let Ok((client, _)) = listener.accept().await {
        if !gate.is_open() {
            drop(client);
            continue;
        }
        let mut cuts = gate.cuts.subscribe();
        let held = gate.held.subscribe();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(target).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            // A cut drops both pumps, so both connections close.
            tokio::select! {
                _ = async {
                    tokio::join!(
                        pump(client_read, server_write, delay, held.clone()),
                        pump(server_read, client_write, delay, held)
                    )
                } => {}
                _ = cuts.changed() => {}
            }
        });
    }
}

/// Copies one direction, each chunk `delay` after it was read and not
/// while `held`.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
    mut held: watch::Receiver<bool>,
) {
    let (chunks, mut due) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async move {
        let mut buffer = vec![0u8; 64 * 1024];
        while let Ok(read) = from.read(&mut buffer).await {
            if read == 0
                || chunks
                    .send((Instant::now() + delay, buffer[..read].to_vec()))
                    .is_err()
            {
                break;
            }
        }
    };
    let writer = async move {
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if held.wait_for(|held| !*held).await.is_err() {
                break;
            }
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
