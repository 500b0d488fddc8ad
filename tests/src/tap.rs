//! A TCP relay that records what it forwards and can corrupt it: cluster
//! tests put one in front of each member's peer port to look at the bytes
//! on the links, replay them, or flip one.
//!
//! It runs on its own thread and runtime, so it serves sync and async
//! tests alike, and stops when dropped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// The bytes of one relayed connection, each way.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    /// From the connecting side (the dialer) to the target.
    pub to_target: Vec<u8>,
    /// From the target back to the dialer.
    pub from_target: Vec<u8>,
}

#[derive(Default)]
struct Shared {
    /// One entry per connection, in the order they were accepted.
    connections: Mutex<Vec<Arc<Mutex<Recorded>>>>,
    /// Armed: the next chunk towards the target gets one byte flipped.
    flip: AtomicBool,
}

/// A listening relay; dropping it stops it and its connections.
pub struct TapRelay {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TapRelay {
    /// Relays connections to `listen` on to `target`, recording both ways.
    pub fn start(listen: SocketAddr, target: SocketAddr) -> TapRelay {
        let shared = Arc::new(Shared::default());
        let (stop, stopped) = oneshot::channel();
        let (bound, is_bound) = std::sync::mpsc::channel();
        let relay = shared.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the relay");
            runtime.block_on(async move {
                let listener = match TcpListener::bind(listen).await {
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
                    () = accept_loop(listener, target, relay) => {}
                    _ = stopped => {}
                }
            });
        });
        is_bound
            .recv()
            .expect("the relay thread reports")
            .unwrap_or_else(|error| panic!("cannot listen on {listen}: {error}"));
        TapRelay {
            addr: listen,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// What every connection carried so far, oldest connection first.
    pub fn recorded(&self) -> Vec<Recorded> {
        let connections = self.shared.connections.lock().expect("relay state");
        connections
            .iter()
            .map(|recorded| recorded.lock().expect("relay state").clone())
            .collect()
    }

    /// Flips the last byte of the next chunk sent towards the target (in
    /// a TLS record: its authentication tag).
    pub fn flip_next_byte(&self) {
        self.shared.flip.store(true, Ordering::SeqCst);
    }

    /// Whether an armed flip is still waiting for a chunk.
    pub fn flip_pending(&self) -> bool {
        self.shared.flip.load(Ordering::SeqCst)
    }
}

impl Drop for TapRelay {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, shared: Arc<Shared>) {
    while let Ok((client, _)) = listener.accept().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(target).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let recorded = Arc::new(Mutex::new(Recorded::default()));
            shared
                .connections
                .lock()
                .expect("relay state")
                .push(recorded.clone());
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::join!(
                pump(client_read, server_write, &recorded, Some(&shared.flip)),
                pump(server_read, client_write, &recorded, None)
            );
        });
    }
}

/// Copies one direction, recording it; `flip` (towards the target only)
/// corrupts one chunk when armed.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    recorded: &Mutex<Recorded>,
    flip: Option<&AtomicBool>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let chunk = &mut buffer[..read];
        {
            let mut recorded = recorded.lock().expect("relay state");
            match flip {
                Some(_) => recorded.to_target.extend_from_slice(chunk),
                None => recorded.from_target.extend_from_slice(chunk),
            }
        }
        if flip.is_some_and(|armed| armed.swap(false, Ordering::SeqCst)) {
            chunk[read - 1] ^= 0x01;
        }
        if to.write_all(chunk).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
