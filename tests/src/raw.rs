//! A raw TCP connection for bad-input tests: write any bytes, read whatever comes back.
//!
//! Nothing here knows XMPP; tests feed it malformed or hostile input and look at the
//! server's answer (usually a stream error and a closed connection).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use crate::error::ClientError;
use crate::transport::connect_tcp;

/// What a read gathered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawRead {
    pub bytes: Vec<u8>,
    /// The server closed the connection (read returned end of file).
    pub closed: bool,
}

impl RawRead {
    /// The bytes as text (lossy), for assertions with `contains`.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

#[derive(Debug)]
pub struct RawConnection {
    stream: TcpStream,
    closed: bool,
}

/// Connects to `addr` without saying anything.
pub async fn connect_raw(addr: SocketAddr) -> Result<RawConnection, ClientError> {
    RawConnection::connect_from(addr, None).await
}

impl RawConnection {
    pub async fn connect_from(
        addr: SocketAddr,
        local: Option<IpAddr>,
    ) -> Result<RawConnection, ClientError> {
        let stream = connect_tcp(addr, local)
            .await
            .map_err(|source| ClientError::Connect { addr, source })?;
        Ok(RawConnection {
            stream,
            closed: false,
        })
    }

    /// Writes bytes as they are.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let io = |source| ClientError::Io {
            step: "raw write",
            source,
        };
        self.stream.write_all(bytes).await.map_err(io)?;
        self.stream.flush().await.map_err(io)
    }

    /// Reads what arrives until `quiet` passes without new bytes, the server closes, or
    /// `limit` is reached.
    pub async fn read_for(
        &mut self,
        quiet: Duration,
        limit: Duration,
    ) -> Result<RawRead, ClientError> {
        let end = Instant::now() + limit;
        let mut out = RawRead::default();
        while !self.closed {
            let deadline = (Instant::now() + quiet).min(end);
            match timeout_at(deadline, self.read_chunk(&mut out.bytes)).await {
                Ok(result) => result?,
                Err(_) => break,
            }
        }
        out.closed = self.closed;
        Ok(out)
    }

    /// Reads until the server closes the connection; a timeout is an error that carries
    /// what arrived.
    pub async fn read_until_close(&mut self, timeout: Duration) -> Result<RawRead, ClientError> {
        let deadline = Instant::now() + timeout;
        let mut out = RawRead::default();
        while !self.closed {
            match timeout_at(deadline, self.read_chunk(&mut out.bytes)).await {
                Ok(result) => result?,
                Err(_) => {
                    return Err(ClientError::Timeout {
                        step: "raw read until close",
                        waited: timeout,
                        received: String::from_utf8_lossy(&out.bytes).into_owned(),
                    });
                }
            }
        }
        out.closed = true;
        Ok(out)
    }

    async fn read_chunk(&mut self, into: &mut Vec<u8>) -> Result<(), ClientError> {
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk).await {
            Ok(0) => self.closed = true,
            Ok(read) => into.extend_from_slice(&chunk[..read]),
            // A reset after the server's last words is still the server closing.
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => self.closed = true,
            Err(source) => {
                return Err(ClientError::Io {
                    step: "raw read",
                    source,
                });
            }
        }
        Ok(())
    }

    /// Closes our side of the connection for writing.
    pub async fn shutdown(&mut self) -> Result<(), ClientError> {
        self.stream
            .shutdown()
            .await
            .map_err(|source| ClientError::Io {
                step: "raw shutdown",
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn reads_until_the_peer_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 5];
            socket.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"<bad>");
            socket.write_all(b"</stream:stream>").await.unwrap();
        });
        let mut raw = connect_raw(addr).await.unwrap();
        raw.write(b"<bad>").await.unwrap();
        let read = raw.read_until_close(Duration::from_secs(5)).await.unwrap();
        assert!(read.closed);
        assert_eq!(read.text(), "</stream:stream>");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn read_for_stops_when_quiet() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            socket.write_all(b"hello").await.unwrap();
            tokio::time::sleep(Duration::from_secs(2)).await;
        });
        let mut raw = connect_raw(addr).await.unwrap();
        let read = raw
            .read_for(Duration::from_millis(200), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(read.text(), "hello");
        assert!(!read.closed);
        server.abort();
    }
}
