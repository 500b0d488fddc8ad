//! Dialback verifications of an incoming stream (XEP-0220 2.1.1), run
//! beside the stream: while an authoritative server takes its time, the
//! stream keeps reading (other db:result, db:verify, stanzas of domains
//! already authenticated). At most [`Verifications::MAX`] run at once per
//! stream; a further db:result waits until one ends. They end with the
//! stream.

use std::sync::Arc;

use tokio::task::JoinSet;

use super::connect;
use crate::server::Server;

/// The authoritative server's answer for a key `originating` sent us.
pub(super) struct Verdict {
    pub receiving: String,
    pub originating: String,
    pub valid: bool,
}

#[derive(Default)]
pub(super) struct Verifications {
    running: JoinSet<Verdict>,
}

impl Verifications {
    pub(super) const MAX: usize = 8;

    pub(super) fn is_full(&self) -> bool {
        self.running.len() >= Self::MAX
    }

    pub(super) fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Asks `originating`'s authoritative server about `key`, within
    /// `connect_timeout_secs`; a failure or a timeout is `invalid`.
    pub(super) fn start(
        &mut self,
        server: Arc<Server>,
        receiving: String,
        originating: String,
        stream_id: String,
        key: String,
    ) {
        self.running.spawn(async move {
            let s2s = &server.s2s;
            let verified = tokio::time::timeout(
                s2s.connect_timeout(),
                connect::verify_key(
                    s2s,
                    super::limits(&server),
                    &receiving,
                    &originating,
                    &stream_id,
                    &key,
                ),
            )
            .await;
            let valid = match verified {
                Ok(Ok(valid)) => valid,
                Ok(Err(error)) => {
                    tracing::info!(%originating, %error, "dialback verification failed");
                    false
                }
                Err(_) => {
                    tracing::info!(%originating, "dialback verification timed out");
                    false
                }
            };
            Verdict {
                receiving,
                originating,
                valid,
            }
        });
    }

    /// The next verification to end; pending while none runs. Cancel-safe.
    pub(super) async fn next(&mut self) -> Verdict {
        loop {
            match self.running.join_next().await {
                Some(Ok(verdict)) => return verdict,
                // A verification that panicked answers nothing; the peer's
                // negotiation timeout ends its wait.
                Some(Err(error)) => tracing::warn!(%error, "a dialback verification failed"),
                None => std::future::pending().await,
            }
        }
    }
}
