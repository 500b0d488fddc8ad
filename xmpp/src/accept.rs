//! The accept loop every TCP listener of the node runs (clients, direct
//! TLS clients, other servers): what they share is here, what differs is a
//! [`Service`].
//!
//! - Accept errors back off instead of spinning: out of file descriptors
//!   (EMFILE, ENFILE) or buffers, the wait doubles from 10 ms to 1 s until
//!   an accept succeeds; errors of one aborted connection do not wait.
//! - Each source address is held to the per-IP connection rate
//!   (`[limits]`, shared by all listeners).
//! - A cap of connections open at once: each connection's task holds a
//!   permit of the service's semaphore; without one it is refused.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::server::Server;

pub type Connection = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What a listener does with the connections the loop lets in.
pub trait Service: Send + 'static {
    /// For logs: "c2s", "s2s".
    fn name(&self) -> &'static str;
    /// Runs one connection to its end.
    fn serve(&self, socket: TcpStream, peer: SocketAddr) -> Connection;
    /// Over the per-IP rate: what to tell the peer. Written only if it
    /// fits the empty send buffer right now: a flood must not cost a task
    /// or a wait each.
    fn rate_refusal(&self) -> Option<Vec<u8>>;
    /// Over the cap: what to tell the peer, sent in a task bounded to 2 s.
    fn full_refusal(&self) -> Option<Vec<u8>>;
    /// Counts a connection let in (`true`) or refused.
    fn count(&self, admitted: bool);
}

/// Accepts until shutdown, then waits for the connections to end.
pub async fn run(
    listener: TcpListener,
    server: Arc<Server>,
    permits: Arc<Semaphore>,
    service: impl Service,
) {
    let tracker = tokio_util::task::TaskTracker::new();
    let mut backoff = Backoff::default();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = server.shutdown.cancelled() => break,
        };
        let (socket, peer) = match accepted {
            Ok(accepted) => {
                backoff.reset();
                accepted
            }
            Err(error) => {
                if let Some(wait) = backoff.after(&error) {
                    tracing::warn!(listener = service.name(), %error, ?wait, "accept failed");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = server.shutdown.cancelled() => break,
                    }
                }
                continue;
            }
        };
        if !server
            .ip_limits
            .allow_connection(peer.ip(), Instant::now().into_std())
        {
            service.count(false);
            tracing::debug!(listener = service.name(), %peer, "connection rate limit reached");
            if let Some(refusal) = service.rate_refusal() {
                let _ = socket.try_write(&refusal);
            }
            continue;
        }
        let _ = socket.set_nodelay(true);
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                service.count(true);
                let connection = service.serve(socket, peer);
                tracker.spawn(async move {
                    connection.await;
                    drop(permit);
                });
            }
            Err(_) => {
                service.count(false);
                tracing::info!(
                    listener = service.name(),
                    %peer,
                    "connection refused: the cap of open connections is reached"
                );
                if let Some(refusal) = service.full_refusal() {
                    tracker.spawn(refuse(socket, refusal));
                }
            }
        }
    }
    tracker.close();
    tracker.wait().await;
}

/// Sends a refusal within a short bound, then closes our side and reads
/// what the peer still sends (its stream header) until it closes too:
/// closing with unread input would reset the connection, and a reset can
/// make the peer lose the refusal before it reads it.
async fn refuse(mut socket: TcpStream, refusal: Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let goodbye = async {
        socket.write_all(&refusal).await?;
        socket.shutdown().await?;
        let mut sink = [0u8; 1024];
        while socket.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    };
    let _bounded = tokio::time::timeout(Duration::from_secs(2), goodbye).await;
}

/// How long to wait after a failed accept.
#[derive(Default)]
struct Backoff {
    wait: Option<Duration>,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MOST: Duration = Duration::from_secs(1);

    /// `None`: the error was one connection's, accept again at once.
    fn after(&mut self, error: &std::io::Error) -> Option<Duration> {
        if !exhausted(error) {
            return None;
        }
        let wait = self
            .wait
            .map_or(Self::FIRST, |wait| (wait * 2).min(Self::MOST));
        self.wait = Some(wait);
        Some(wait)
    }

    fn reset(&mut self) {
        self.wait = None;
    }
}

/// Errors that accepting again right away would only repeat: out of file
/// descriptors or memory, or anything unexpected.
fn exhausted(error: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    !matches!(
        error.kind(),
        ErrorKind::ConnectionAborted
            | ErrorKind::ConnectionReset
            | ErrorKind::Interrupted
            | ErrorKind::WouldBlock
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_files_backs_off_up_to_a_second_and_resets() {
        let emfile = std::io::Error::from_raw_os_error(24);
        let mut backoff = Backoff::default();
        let waits: Vec<Duration> = (0..10).filter_map(|_| backoff.after(&emfile)).collect();
        assert_eq!(waits[0], Duration::from_millis(10));
        assert_eq!(waits[1], Duration::from_millis(20));
        assert_eq!(*waits.last().unwrap(), Duration::from_secs(1));
        backoff.reset();
        assert_eq!(backoff.after(&emfile), Some(Duration::from_millis(10)));
        let aborted = std::io::Error::from(std::io::ErrorKind::ConnectionAborted);
        assert_eq!(backoff.after(&aborted), None);
    }
}
