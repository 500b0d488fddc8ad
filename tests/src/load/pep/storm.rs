//! The measured phase of a login storm, in a worker: users log in at a fixed rate (open
//! loop), fetch their roster, send presence whose capabilities want both nodes, answer
//! whoever asks what those capabilities are, and count the last-item notifications that
//! arrive. A session is settled once it has both items of every contact whose presence it
//! gets, or when nothing new came for `quiet_s`, or `wait_s` after its presence; the
//! worker is ready when every session is settled, and holds them until the parent says
//! go (after it sampled the servers' CPU and memory).

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use starling_core::xml::{Element, ns};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};

use super::caps::ClientCaps;
use super::items::{NODES, Node, notification};
use crate::client::Client;
use crate::error::ClientError;
use crate::load::hold::{HoldStats, answer_ping, stopped};
use crate::load::login::{collect_logins, login_user, spawn_on_schedule};
use crate::load::worker::{Gate, ReadyInfo, WorkerError};
use crate::load::{Connection, ErrorCounts, Users, WorkerReport, count_error, merge_errors};
use crate::stats::Histogram;

/// One worker's share of the storm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StormJob {
    pub connection: Connection,
    pub users: Users,
    /// Index in the run of this worker's first user, for spreading users over servers.
    pub first_index: u64,
    /// Logins per second for this worker.
    pub rate: f64,
    /// Longest wait for notifications after a session's presence, seconds.
    pub wait_s: f64,
    /// A session that got nothing new for this long has all it will get, seconds.
    pub quiet_s: f64,
}

/// What the sessions of a worker (or of the run) were sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StormStats {
    /// Sessions that got as far as their presence.
    pub sessions: u64,
    /// Roster contacts whose presence those sessions receive (subscription to or both).
    pub contacts: u64,
    /// Two items per such contact.
    pub expected: u64,
    /// Distinct contact items received (the session's own items are counted apart).
    pub received: u64,
    /// Notifications of the session's own items.
    pub own: u64,
    /// The same contact item more than once.
    pub duplicates: u64,
    /// Sessions that got every expected item.
    pub complete: u64,
    /// Sessions with contacts that got none of their items.
    pub empty: u64,
    /// Fewest and most contact items one session got.
    pub min_received: Option<u64>,
    pub max_received: u64,
    /// disco#info questions answered (a server asks when it does not know the hash).
    pub disco_questions: u64,
    /// Presence stanzas from contacts already online.
    pub presences: u64,
    /// Scheduled login to the last expected item, for complete sessions, microseconds.
    pub to_complete: Histogram,
    /// Scheduled login to the last item that came before the session settled, for every
    /// session that got any.
    pub to_last: Histogram,
    pub errors: ErrorCounts,
}

impl StormStats {
    pub fn merge(&mut self, other: &StormStats) {
        self.sessions += other.sessions;
        self.contacts += other.contacts;
        self.expected += other.expected;
        self.received += other.received;
        self.own += other.own;
        self.duplicates += other.duplicates;
        self.complete += other.complete;
        self.empty += other.empty;
        self.min_received = match (self.min_received, other.min_received) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max_received = self.max_received.max(other.max_received);
        self.disco_questions += other.disco_questions;
        self.presences += other.presences;
        self.to_complete.merge(&other.to_complete);
        self.to_last.merge(&other.to_last);
        merge_errors(&mut self.errors, &other.errors);
    }

    fn add(&mut self, session: &Session) {
        let received = session.received();
        let mut one = StormStats {
            sessions: 1,
            contacts: session.contacts,
            expected: session.expected(),
            received,
            own: session.own,
            duplicates: session.duplicates,
            complete: u64::from(session.completed_at.is_some()),
            empty: u64::from(session.contacts > 0 && received == 0),
            min_received: Some(received),
            max_received: received,
            disco_questions: session.disco_questions,
            presences: session.presences,
            ..StormStats::default()
        };
        if let Some(at) = session.completed_at {
            one.to_complete
                .record_duration(at.saturating_duration_since(session.scheduled));
        }
        if let Some(at) = session.last_at_settle {
            one.to_last
                .record_duration(at.saturating_duration_since(session.scheduled));
        }
        self.merge(&one);
    }
}

/// One session's view of the storm.
struct Session {
    scheduled: Instant,
    own_jid: String,
    contacts: u64,
    /// Hashes of (publisher, node) of the contact items seen.
    seen: HashSet<u64>,
    own: u64,
    duplicates: u64,
    disco_questions: u64,
    presences: u64,
    last_item_at: Option<Instant>,
    completed_at: Option<Instant>,
    last_at_settle: Option<Instant>,
}

impl Session {
    fn new(scheduled: Instant, own_jid: String) -> Session {
        Session {
            scheduled,
            own_jid,
            contacts: 0,
            seen: HashSet::new(),
            own: 0,
            duplicates: 0,
            disco_questions: 0,
            presences: 0,
            last_item_at: None,
            completed_at: None,
            last_at_settle: None,
        }
    }

    fn expected(&self) -> u64 {
        self.contacts * NODES.len() as u64
    }

    fn received(&self) -> u64 {
        self.seen.len() as u64
    }

    /// Counts a notification from `publisher` about `node`.
    fn item(&mut self, publisher: &str, node: Node) {
        if publisher == self.own_jid {
            self.own += 1;
            return;
        }
        let mut hasher = DefaultHasher::new();
        (publisher, node).hash(&mut hasher);
        if !self.seen.insert(hasher.finish()) {
            self.duplicates += 1;
            return;
        }
        let now = Instant::now();
        self.last_item_at = Some(now);
        if self.completed_at.is_none() && self.received() >= self.expected() {
            self.completed_at = Some(now);
        }
    }

    /// Handles whatever the server sent: items are counted, questions answered.
    async fn handle(
        &mut self,
        client: &mut Client,
        caps: &ClientCaps,
        stanza: &Element,
    ) -> Result<(), ClientError> {
        if let Some((publisher, node)) = notification(stanza) {
            self.item(publisher, node);
        } else if let Some(answer) = caps.answer(stanza) {
            self.disco_questions += 1;
            client.send_element(&answer).await?;
        } else if stanza.is("presence", ns::CLIENT) {
            self.presences += 1;
        } else {
            answer_ping(client, stanza).await?;
        }
        Ok(())
    }

    /// When waiting for more stops: `quiet` after the last item (or after the presence,
    /// before any), and never later than `wait` after the presence.
    fn settle_deadline(&self, presence_sent: Instant, wait: Duration, quiet: Duration) -> Instant {
        let quiet_end = self.last_item_at.unwrap_or(presence_sent) + quiet;
        quiet_end.min(presence_sent + wait)
    }
}

/// How one session ended, with what it saw.
enum Outcome {
    Held(Session),
    Dropped(Session, String),
    /// Logged in but failed before its presence (the roster get).
    Failed(String),
    NeverLoggedIn,
}

pub async fn run(job: StormJob, gate: &mut Gate) -> Result<WorkerReport, WorkerError> {
    let (report, mut outcomes) = mpsc::unbounded_channel();
    let (settled_tx, mut settled_rx) = mpsc::unbounded_channel::<()>();
    let (stop_tx, stop_rx) = watch::channel(false);
    let job = Arc::new(job);
    let caps = Arc::new(ClientCaps::wanting(&NODES));
    let start = Instant::now();
    let count = job.users.count;
    let logins = tokio::spawn(async move { collect_logins(&mut outcomes, count, start).await });
    let mut tasks = spawn_on_schedule(count, job.rate, start, |index, scheduled| {
        let job = job.clone();
        let caps = caps.clone();
        let report = report.clone();
        let settled = settled_tx.clone();
        let stop = stop_rx.clone();
        async move {
            let connection = &job.connection;
            let server = connection.servers.for_user(job.first_index + index);
            let (outcome, client) =
                login_user(connection, server, &job.users, index, scheduled).await;
            report.send(outcome).ok();
            drop(report);
            let Some(client) = client else {
                settled.send(()).ok();
                return Outcome::NeverLoggedIn;
            };
            storm_session(client, &job, &caps, scheduled, settled, stop).await
        }
    })
    .await;
    drop((report, settled_tx));
    let login = logins.await.unwrap_or_default();
    // Every session settled (or its task ended): the storm is over.
    for _ in 0..count {
        if settled_rx.recv().await.is_none() {
            break;
        }
    }
    gate.ready(ReadyInfo::of(&login)).await?;

    let hold_start = Instant::now();
    stop_tx.send_replace(true);
    let mut storm = StormStats::default();
    let mut hold = HoldStats::default();
    while let Some(result) = tasks.join_next().await {
        match result {
            Ok(Outcome::Held(session)) => {
                hold.held += 1;
                storm.add(&session);
            }
            Ok(Outcome::Dropped(session, kind)) => {
                hold.dropped += 1;
                count_error(&mut hold.errors, kind);
                storm.add(&session);
            }
            Ok(Outcome::Failed(kind)) => count_error(&mut storm.errors, kind),
            Ok(Outcome::NeverLoggedIn) => {}
            Err(error) => count_error(&mut storm.errors, format!("task:{error}")),
        }
    }
    hold.duration_s = hold_start.elapsed().as_secs_f64();
    Ok(WorkerReport {
        login,
        hold: Some(hold),
        pep_storm: Some(storm),
        ..WorkerReport::default()
    })
}

/// Roster, presence, notifications until settled (then says so on `settled`), then holds
/// the session until `stop`.
async fn storm_session(
    mut client: Client,
    job: &StormJob,
    caps: &ClientCaps,
    scheduled: Instant,
    settled: mpsc::UnboundedSender<()>,
    mut stop: watch::Receiver<bool>,
) -> Outcome {
    let timeout = Duration::from_secs_f64(job.connection.timeout_s.max(0.001));
    let own_jid = client
        .jid()
        .map(|jid| jid.to_bare().to_string())
        .unwrap_or_default();
    let mut session = Session::new(scheduled, own_jid);
    let contacts = match roster_contacts(&mut client, timeout).await {
        Ok(contacts) => contacts,
        Err(error) => {
            settled.send(()).ok();
            return Outcome::Failed(format!("roster:{}", error.kind()));
        }
    };
    session.contacts = contacts;
    if let Err(error) = client.send_element(&caps.presence()).await {
        settled.send(()).ok();
        return Outcome::Dropped(session, error.kind());
    }
    let presence_sent = Instant::now();
    let wait = Duration::from_secs_f64(job.wait_s.max(0.0));
    let quiet = Duration::from_secs_f64(job.quiet_s.max(0.0));
    while session.completed_at.is_none() {
        let deadline = session.settle_deadline(presence_sent, wait, quiet);
        tokio::select! {
            stanza = client.recv() => {
                let handled = match stanza {
                    Ok(stanza) => session.handle(&mut client, caps, &stanza).await,
                    Err(error) => Err(error),
                };
                if let Err(error) = handled {
                    session.last_at_settle = session.last_item_at;
                    settled.send(()).ok();
                    return Outcome::Dropped(session, error.kind());
                }
            }
            () = sleep_until(deadline) => break,
        }
    }
    session.last_at_settle = session.last_item_at;
    settled.send(()).ok();
    drop(settled);
    loop {
        tokio::select! {
            stanza = client.recv() => {
                let handled = match stanza {
                    Ok(stanza) => session.handle(&mut client, caps, &stanza).await,
                    Err(error) => Err(error),
                };
                if let Err(error) = handled {
                    return Outcome::Dropped(session, error.kind());
                }
            }
            () = stopped(&mut stop) => break,
        }
    }
    // The storm is over; a slow close is not a dropped session.
    if let Err(error) = client.close().await {
        eprintln!("starling-load: close after pep-storm: {error}");
    }
    Outcome::Held(session)
}

/// Fetches the roster; returns how many contacts' presence (and PEP items) the user
/// receives: items with subscription `to` or `both`.
async fn roster_contacts(client: &mut Client, timeout: Duration) -> Result<u64, ClientError> {
    let get = Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_child(Element::new("query", ns::ROSTER));
    let result = client.iq(get, timeout).await?;
    Ok(result
        .child("query", ns::ROSTER)
        .map_or(0, count_subscribed))
}

fn count_subscribed(query: &Element) -> u64 {
    query
        .children()
        .filter(|item| item.is("item", ns::ROSTER))
        .filter(|item| matches!(item.attr("subscription"), Some("to" | "both")))
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(contacts: u64) -> Session {
        let mut session = Session::new(Instant::now(), "me@localhost".to_owned());
        session.contacts = contacts;
        session
    }

    #[test]
    fn counts_distinct_contact_items_and_completes_on_the_last() {
        let mut session = session(2);
        session.item("a@localhost", Node::Avatar);
        session.item("me@localhost", Node::Avatar);
        session.item("a@localhost", Node::Avatar);
        session.item("a@localhost", Node::DeviceList);
        session.item("b@localhost", Node::DeviceList);
        assert_eq!(
            (session.received(), session.own, session.duplicates),
            (3, 1, 1)
        );
        assert!(session.completed_at.is_none());
        session.item("b@localhost", Node::Avatar);
        assert!(session.completed_at.is_some());
        assert_eq!(session.expected(), 4);
    }

    #[test]
    fn settles_quietly_or_at_the_latest_after_the_wait() {
        let mut session = session(1);
        let sent = Instant::now();
        let (wait, quiet) = (Duration::from_secs(10), Duration::from_secs(2));
        assert_eq!(session.settle_deadline(sent, wait, quiet), sent + quiet);
        let late = sent + Duration::from_secs(9);
        session.last_item_at = Some(late);
        assert_eq!(session.settle_deadline(sent, wait, quiet), sent + wait);
    }

    #[test]
    fn stats_keep_the_extremes_and_the_empty_sessions() {
        let mut full = session(1);
        full.item("a@localhost", Node::Avatar);
        full.item("a@localhost", Node::DeviceList);
        full.last_at_settle = full.last_item_at;
        let empty = session(3);
        let mut stats = StormStats::default();
        stats.add(&full);
        stats.add(&empty);
        assert_eq!((stats.sessions, stats.contacts, stats.expected), (2, 4, 8));
        assert_eq!((stats.received, stats.complete, stats.empty), (2, 1, 1));
        assert_eq!((stats.min_received, stats.max_received), (Some(0), 2));
        assert_eq!((stats.to_complete.count(), stats.to_last.count()), (1, 1));
        let mut total = StormStats::default();
        total.merge(&stats);
        total.merge(&StormStats::default());
        assert_eq!(total.min_received, Some(0));
    }

    #[test]
    fn contacts_are_the_subscriptions_we_receive() {
        let item = |jid: &str, subscription: &str| {
            Element::new("item", ns::ROSTER)
                .with_attr("jid", jid)
                .with_attr("subscription", subscription)
        };
        let query = Element::new("query", ns::ROSTER)
            .with_child(item("a@x", "both"))
            .with_child(item("b@x", "to"))
            .with_child(item("c@x", "from"))
            .with_child(item("d@x", "none"));
        assert_eq!(count_subscribed(&query), 2);
    }
}
