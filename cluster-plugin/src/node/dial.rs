//! The dial loop: keeps a link to every seed and every member, with a
//! backoff per address.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ClusterNode;

impl ClusterNode {
    /// Keeps a link to every seed and every member.
    pub(super) async fn dial_loop(self: Arc<Self>) {
        let mut backoff: HashMap<SocketAddr, (Instant, Duration)> = HashMap::new();
        let mut known: HashMap<SocketAddr, u64> = HashMap::new();
        let mut dialing: HashSet<SocketAddr> = HashSet::new();
        let (done_tx, mut done_rx) =
            tokio::sync::mpsc::unbounded_channel::<(SocketAddr, Option<u64>)>();
        let mut ticker = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                Some((addr, result)) = done_rx.recv() => {
                    dialing.remove(&addr);
                    let (_, delay) = backoff.entry(addr).or_insert((Instant::now(), Duration::from_millis(100)));
                    match result {
                        Some(node) => {
                            known.insert(addr, node);
                            *delay = Duration::from_millis(100);
                        }
                        None => *delay = (*delay * 2).min(Duration::from_secs(2)),
                    }
                    let delay = *delay;
                    backoff.insert(addr, (Instant::now() + delay, delay));
                    continue;
                }
                () = self.shutdown.cancelled() => return,
            }
            let mut targets: HashSet<SocketAddr> = self.seeds.iter().copied().collect();
            for member in self.view().members.values() {
                if let Ok(addr) = member.cluster_addr.parse() {
                    targets.insert(addr);
                }
            }
            let own: Option<SocketAddr> = self.me.cluster_addr.parse().ok();
            // A peer that dialed us first is linked already: dialing it too
            // would only replace a link in use (and whatever it carries).
            let linked: HashSet<String> = self
                .transport
                .links()
                .iter()
                .map(|link| link.peer.cluster_addr.clone())
                .collect();
            for addr in targets {
                if linked.contains(&addr.to_string()) {
                    continue;
                }
                if Some(addr) == own || addr == self.bind || dialing.contains(&addr) {
                    continue;
                }
                if known
                    .get(&addr)
                    .is_some_and(|node| *node == self.id.0 || self.transport.link(*node).is_some())
                {
                    continue;
                }
                if backoff
                    .get(&addr)
                    .is_some_and(|(next, _)| Instant::now() < *next)
                {
                    continue;
                }
                dialing.insert(addr);
                let node = self.clone();
                let done = done_tx.clone();
                tokio::spawn(async move {
                    let result = match node.transport.dial(addr).await {
                        Ok(peer) => Some(peer.node_id),
                        Err(crate::transport::DialError::Handshake(
                            crate::transport::handshake::HandshakeError::SelfLink(id),
                        )) => Some(id),
                        Err(error) => {
                            tracing::debug!(%addr, %error, "cannot reach cluster peer");
                            if matches!(
                                error,
                                crate::transport::DialError::Handshake(_)
                                    | crate::transport::DialError::Tls(_)
                            ) {
                                tracing::warn!(%addr, %error, "cluster peer refused");
                            }
                            None
                        }
                    };
                    let _ = done.send((addr, result));
                });
            }
        }
    }
}
