//! A client stream that does not come off one socket: an adapter task
//! (BOSH, whose requests come and go) turns its transport's frames into the
//! bytes of an ordinary client stream and back, and the connection reads
//! and writes this pipe as it would a TCP socket. So negotiation and the
//! session loop are the same code for every transport.
//!
//! ```text
//!  adapter ──Bytes──> PipeEnd::read_available ──> StreamParser
//!  adapter <──Bytes── PipeEnd::write_all      <── the session
//! ```

use std::io;

use bytes::Bytes;

use crate::auth::ChannelBindings;

pub(crate) mod channel;

/// Chunks waiting in each direction; the adapter reads its transport only
/// when the session has room, so a flooding client is slowed, not buffered.
const CAPACITY: usize = 8;

/// The connection's end.
#[derive(Debug)]
pub(crate) struct PipeEnd {
    inbound: channel::Receiver<Bytes>,
    /// Taken from the channel by `readable` before `read_available` asked.
    waiting: Option<Bytes>,
    /// None once the connection shut its side.
    outbound: Option<channel::Sender<Bytes>>,
    /// The transport under the adapter is encrypted (HTTPS).
    secure: bool,
    /// What SCRAM -PLUS may bind to on that transport (empty: no -PLUS).
    bindings: ChannelBindings,
    closed: bool,
}

/// The adapter's end.
#[derive(Debug)]
pub(crate) struct AdapterEnd {
    pub(crate) inbound: channel::Sender<Bytes>,
    pub(crate) outbound: channel::Receiver<Bytes>,
}

pub(crate) fn pipe(secure: bool, bindings: ChannelBindings) -> (PipeEnd, AdapterEnd) {
    let (inbound_tx, inbound_rx) = channel::channel(CAPACITY);
    let (outbound_tx, outbound_rx) = channel::channel(CAPACITY);
    let end = PipeEnd {
        inbound: inbound_rx,
        waiting: None,
        outbound: Some(outbound_tx),
        secure,
        bindings,
        closed: false,
    };
    let adapter = AdapterEnd {
        inbound: inbound_tx,
        outbound: outbound_rx,
    };
    (end, adapter)
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the client's transport is gone")
}

impl PipeEnd {
    pub(super) fn is_secure(&self) -> bool {
        self.secure
    }

    pub(super) fn channel_bindings(&self) -> &ChannelBindings {
        &self.bindings
    }

    /// Waits until there is input (or the adapter is gone). Cancel-safe.
    pub(super) async fn readable(&mut self) -> io::Result<()> {
        if self.waiting.is_some() || self.closed {
            return Ok(());
        }
        match self.inbound.recv().await {
            Some(inbound) => self.waiting = Some(inbound),
            None => self.closed = true,
        }
        Ok(())
    }

    /// Hands everything available to `sink`; `Ok((n, closed))`.
    pub(super) fn read_available(
        &mut self,
        mut sink: impl FnMut(&[u8]),
    ) -> io::Result<(usize, bool)> {
        let mut total = 0;
        loop {
            let next = match self.waiting.take() {
                Some(bytes) => bytes,
                None if self.closed => return Ok((total, true)),
                None => match self.inbound.try_recv() {
                    Ok(bytes) => bytes,
                    Err(channel::TryRecvError::Empty) => return Ok((total, false)),
                    Err(channel::TryRecvError::Disconnected) => {
                        self.closed = true;
                        return Ok((total, true));
                    }
                },
            };
            total += next.len();
            sink(&next);
        }
    }

    pub(super) async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        let sender = self.outbound.as_ref().ok_or_else(closed)?;
        sender
            .send(Bytes::copy_from_slice(data))
            .await
            .map_err(|_| closed())
    }

    /// Closes our side: the adapter ends its transport once it has sent
    /// what is queued.
    pub(super) fn shutdown(&mut self) {
        self.outbound = None;
    }
}
