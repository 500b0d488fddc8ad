//! The server-to-server streams open on this node, for operators: the
//! admin API lists them (`GET /api/s2s`), `/metrics` sums them per remote
//! domain. A stream is registered once it is authenticated (an outgoing
//! one when it is up, an incoming one at its first authenticated domain)
//! and leaves the table when it ends.
//!
//! Per-domain counters are kept for at most [`MAX_TRACKED_DOMAINS`]
//! remote domains, the first ones seen since the node started; streams
//! with any further domain count under the domain label `other`, so a
//! server federating with many domains keeps a bounded number of series.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::Serialize;

use super::connect::Method;
use super::metrics::Direction;
use crate::http::prometheus::Families;

/// Remote domains with counters of their own; the rest are `other`.
pub const MAX_TRACKED_DOMAINS: usize = 100;

/// The label of the domains past [`MAX_TRACKED_DOMAINS`].
pub const OTHER_DOMAINS: &str = "other";

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One remote domain's figures (or those of every domain past the cap).
#[derive(Debug, Default)]
pub struct DomainCounters {
    pub stanzas_in: AtomicU64,
    pub stanzas_out: AtomicU64,
    /// Streams open now that authenticated this domain.
    pub streams_in: AtomicU64,
    pub streams_out: AtomicU64,
}

/// One stream's figures.
#[derive(Debug)]
pub(super) struct StreamStats {
    id: u64,
    direction: Direction,
    tls: bool,
    bidi: AtomicBool,
    /// Unix milliseconds when it was registered.
    since_ms: i64,
    /// (our domain, the peer's, how it authenticated, its counters).
    remotes: Mutex<Vec<Remote>>,
    stanzas_in: AtomicU64,
    stanzas_out: AtomicU64,
    unconfirmed: AtomicU64,
}

#[derive(Debug)]
struct Remote {
    local: String,
    remote: String,
    method: Method,
    counters: Arc<DomainCounters>,
}

impl StreamStats {
    pub(super) fn set_bidi(&self) {
        self.bidi.store(true, Ordering::Relaxed);
    }

    /// A stanza from `domain` (as the peer sent it) was accepted.
    pub(super) fn received(&self, domain: &str) {
        self.stanzas_in.fetch_add(1, Ordering::Relaxed);
        let remotes = lock(&self.remotes);
        let found = remotes
            .iter()
            .find(|remote| remote.remote.eq_ignore_ascii_case(domain))
            .or_else(|| remotes.first());
        if let Some(remote) = found {
            remote.counters.stanzas_in.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `count` stanzas were written for `counters`' domain.
    pub(super) fn sent(&self, counters: &DomainCounters, count: u64) {
        self.stanzas_out.fetch_add(count, Ordering::Relaxed);
        counters.stanzas_out.fetch_add(count, Ordering::Relaxed);
    }

    pub(super) fn unconfirmed_add(&self, count: u64) {
        self.unconfirmed.fetch_add(count, Ordering::Relaxed);
    }

    pub(super) fn unconfirmed_sub(&self, count: u64) {
        self.unconfirmed.fetch_sub(count, Ordering::Relaxed);
    }

    fn row(&self, node: &str) -> StreamRow {
        let remotes = lock(&self.remotes);
        let pairs: Vec<PairRow> = remotes
            .iter()
            .map(|remote| PairRow {
                local: remote.local.clone(),
                remote: remote.remote.clone(),
                authentication: method_name(remote.method),
            })
            .collect();
        let first = pairs.first();
        StreamRow {
            id: self.id,
            node: node.to_owned(),
            direction: match self.direction {
                Direction::In => "in",
                Direction::Out => "out",
            },
            local: first.map(|pair| pair.local.clone()).unwrap_or_default(),
            remote: first.map(|pair| pair.remote.clone()).unwrap_or_default(),
            authentication: first.map_or("", |pair| pair.authentication),
            pairs,
            tls: self.tls,
            bidi: self.bidi.load(Ordering::Relaxed),
            since_ms: self.since_ms,
            stanzas_in: self.stanzas_in.load(Ordering::Relaxed),
            stanzas_out: self.stanzas_out.load(Ordering::Relaxed),
            unconfirmed: self.unconfirmed.load(Ordering::Relaxed),
        }
    }
}

fn method_name(method: Method) -> &'static str {
    match method {
        Method::External => "external",
        Method::Dialback => "dialback",
    }
}

/// A stream in the table; leaves it when dropped.
pub(super) struct Registered {
    streams: Arc<Streams>,
    stats: Arc<StreamStats>,
}

impl Registered {
    pub(super) fn stats(&self) -> &Arc<StreamStats> {
        &self.stats
    }

    /// The stream authenticated (another) pair.
    pub(super) fn add(&self, local: &str, remote: &str, method: Method) {
        let mut remotes = lock(&self.stats.remotes);
        if remotes
            .iter()
            .any(|known| known.local == local && known.remote.eq_ignore_ascii_case(remote))
        {
            return;
        }
        let counters = self.streams.domain(remote);
        streams_gauge(&counters, self.stats.direction).fetch_add(1, Ordering::Relaxed);
        remotes.push(Remote {
            local: local.to_owned(),
            remote: remote.to_owned(),
            method,
            counters,
        });
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        lock(&self.streams.open).remove(&self.stats.id);
        for remote in lock(&self.stats.remotes).iter() {
            streams_gauge(&remote.counters, self.stats.direction).fetch_sub(1, Ordering::Relaxed);
        }
    }
}

fn streams_gauge(counters: &DomainCounters, direction: Direction) -> &AtomicU64 {
    match direction {
        Direction::In => &counters.streams_in,
        Direction::Out => &counters.streams_out,
    }
}

/// This node's open streams and the per-domain counters.
#[derive(Debug, Default)]
pub struct Streams {
    next: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<StreamStats>>>,
    domains: Mutex<HashMap<String, Arc<DomainCounters>>>,
    other: Arc<DomainCounters>,
}

impl Streams {
    /// Adds a stream authenticated for (`local`, `remote`) with `method`.
    pub(super) fn register(
        self: &Arc<Self>,
        direction: Direction,
        tls: bool,
        bidi: bool,
        local: &str,
        remote: &str,
        method: Method,
    ) -> Registered {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let stats = Arc::new(StreamStats {
            id,
            direction,
            tls,
            bidi: AtomicBool::new(bidi),
            since_ms: crate::util::time::now_ms(),
            remotes: Mutex::new(Vec::new()),
            stanzas_in: AtomicU64::new(0),
            stanzas_out: AtomicU64::new(0),
            unconfirmed: AtomicU64::new(0),
        });
        lock(&self.open).insert(id, stats.clone());
        let registered = Registered {
            streams: self.clone(),
            stats,
        };
        registered.add(local, remote, method);
        registered
    }

    /// The counters of `remote`: its own while fewer than
    /// [`MAX_TRACKED_DOMAINS`] have some, else the shared `other` ones.
    pub(super) fn domain(&self, remote: &str) -> Arc<DomainCounters> {
        let remote = remote.to_ascii_lowercase();
        let mut domains = lock(&self.domains);
        if let Some(counters) = domains.get(&remote) {
            return counters.clone();
        }
        if domains.len() >= MAX_TRACKED_DOMAINS || remote == OTHER_DOMAINS {
            return self.other.clone();
        }
        domains.entry(remote).or_default().clone()
    }

    /// Every open stream, oldest first.
    pub fn rows(&self, node: &str) -> Vec<StreamRow> {
        let open: Vec<Arc<StreamStats>> = lock(&self.open).values().cloned().collect();
        open.iter().map(|stats| stats.row(node)).collect()
    }

    pub(crate) fn expose(&self, out: &mut Families<'_>) -> std::fmt::Result {
        let mut domains: Vec<(String, Arc<DomainCounters>)> = lock(&self.domains)
            .iter()
            .map(|(domain, counters)| (domain.clone(), counters.clone()))
            .collect();
        domains.sort_by(|a, b| a.0.cmp(&b.0));
        domains.push((OTHER_DOMAINS.to_owned(), self.other.clone()));
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let samples = |pick: fn(&DomainCounters) -> (&AtomicU64, &AtomicU64)| {
            domains
                .iter()
                .flat_map(move |(domain, counters)| {
                    let (inbound, outbound) = pick(counters);
                    [
                        (
                            [("domain", domain.clone()), ("direction", "in".to_owned())],
                            load(inbound),
                        ),
                        (
                            [("domain", domain.clone()), ("direction", "out".to_owned())],
                            load(outbound),
                        ),
                    ]
                })
                .collect::<Vec<_>>()
        };
        out.counters(
            "starling_s2s_domain_stanzas_total",
            "Stanzas received from and sent to each remote domain (at most 100 domains; the rest under domain=\"other\").",
            samples(|counters| (&counters.stanzas_in, &counters.stanzas_out)),
        )?;
        out.gauges(
            "starling_s2s_domain_streams",
            "Server-to-server streams open now per remote domain (at most 100 domains; the rest under domain=\"other\").",
            samples(|counters| (&counters.streams_in, &counters.streams_out)),
        )
    }
}

/// One stream as the admin API shows it.
#[derive(Debug, Serialize)]
pub struct StreamRow {
    /// Unique on this node while it runs.
    pub id: u64,
    /// The member holding the stream.
    pub node: String,
    /// `in` (the peer connected) or `out` (we did).
    pub direction: &'static str,
    /// The first pair it authenticated: our domain, the peer's, and how.
    pub local: String,
    pub remote: String,
    /// `external` (SASL EXTERNAL, a certificate) or `dialback`.
    pub authentication: &'static str,
    /// Every pair it authenticated (an incoming stream may carry several).
    pub pairs: Vec<PairRow>,
    pub tls: bool,
    /// XEP-0288: it carries stanzas both ways.
    pub bidi: bool,
    /// Unix milliseconds when it was authenticated.
    pub since_ms: i64,
    pub stanzas_in: u64,
    pub stanzas_out: u64,
    /// Stanzas written on it and awaiting the peer's confirmation.
    pub unconfirmed: u64,
}

#[derive(Debug, Serialize)]
pub struct PairRow {
    pub local: String,
    pub remote: String,
    pub authentication: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_past_the_cap_count_as_other() {
        let streams = Streams::default();
        for n in 0..MAX_TRACKED_DOMAINS {
            let counters = streams.domain(&format!("d{n}.test"));
            counters.stanzas_in.fetch_add(1, Ordering::Relaxed);
        }
        let late = streams.domain("late.test");
        assert!(Arc::ptr_eq(&late, &streams.other));
        // A domain tracked before keeps its own counters.
        let early = streams.domain("D0.test");
        assert_eq!(early.stanzas_in.load(Ordering::Relaxed), 1);
        assert!(!Arc::ptr_eq(&early, &streams.other));
    }

    #[test]
    fn a_stream_leaves_the_table_and_the_gauges_when_dropped() {
        let streams = Arc::new(Streams::default());
        let registered = streams.register(
            Direction::Out,
            true,
            false,
            "a.test",
            "b.test",
            Method::Dialback,
        );
        let counters = streams.domain("b.test");
        assert_eq!(counters.streams_out.load(Ordering::Relaxed), 1);
        registered.stats().received("b.test");
        registered.stats().sent(&counters, 3);
        let rows = streams.rows("n1");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].remote, "b.test");
        assert_eq!(rows[0].authentication, "dialback");
        assert_eq!((rows[0].stanzas_in, rows[0].stanzas_out), (1, 3));
        assert_eq!(counters.stanzas_in.load(Ordering::Relaxed), 1);
        drop(registered);
        assert!(streams.rows("n1").is_empty());
        assert_eq!(counters.streams_out.load(Ordering::Relaxed), 0);
    }
}
