//! The campaign's clients: every session chats with its partner (sessions
//! `2k` and `2k+1`, users `u(2k+1)` and `u(2k+2)`, roster contacts of each
//! other), numbering its messages, and stays logged in through every fault.
//!
//! Each session enables resumable stream management (XEP-0198) and asks for
//! an ack after each message when none is outstanding, so it knows which of
//! its messages the server accepted. When its connection fails (an error, or
//! an ack request unanswered for [`ACK_TIMEOUT`]) it resumes on another
//! node, and failing that logs in again (same resource); either way it
//! resends what the server had not acknowledged, as XEP-0198 says.
//!
//! Every message is recorded: when it was sent, when the server acked it,
//! how many times and when it arrived, or whether it bounced. The campaign
//! reads the records to count losses, duplicates and reordering.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use starling_core::xml::{Element, ns};
use tokio::sync::watch;
use tokio::time::{Instant, sleep, timeout};

use crate::client::{Client, LoginOptions, SM, TlsMode};
use crate::load::hold::answer_ping;

/// An ack request unanswered this long: the connection is dead.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(8);
/// For one connection attempt (connect, authenticate, resume or bind).
const ATTEMPT: Duration = Duration::from_secs(8);
/// The resource every session binds.
pub const RESOURCE: &str = "flt";

/// One directed stream of messages: what its sender sent and its
/// recipient received.
#[derive(Debug, Default)]
pub struct Stream {
    pub sent_at: Vec<Instant>,
    pub acked_at: Vec<Option<Instant>>,
    pub bounced: Vec<bool>,
    /// Arrivals of each message.
    pub received: Vec<u32>,
    pub first_received_at: Vec<Option<Instant>>,
    /// The send time of the newest message received (for recovery times).
    pub latest_sent_received: Option<Instant>,
    highest: Option<u64>,
    /// Arrivals of a message after a later one, and repeats, with their times.
    pub reordered_at: Vec<Instant>,
    pub duplicate_at: Vec<Instant>,
}

impl Stream {
    fn sent(&mut self, now: Instant) -> u64 {
        self.sent_at.push(now);
        self.acked_at.push(None);
        self.bounced.push(false);
        self.received.push(0);
        self.first_received_at.push(None);
        (self.sent_at.len() - 1) as u64
    }

    fn arrived(&mut self, seq: u64, now: Instant) {
        let Some(count) = self.received.get_mut(seq as usize) else {
            return;
        };
        *count += 1;
        if *count > 1 {
            self.duplicate_at.push(now);
            return;
        }
        self.first_received_at[seq as usize] = Some(now);
        let sent = self.sent_at[seq as usize];
        if self.latest_sent_received.is_none_or(|latest| sent > latest) {
            self.latest_sent_received = Some(sent);
        }
        match self.highest {
            Some(highest) if seq < highest => self.reordered_at.push(now),
            _ => self.highest = Some(seq),
        }
    }
}

/// What every session shares with the campaign.
pub struct Shared {
    /// By sending session.
    pub streams: Vec<Mutex<Stream>>,
    /// Whether each session is logged in now.
    pub connected: Vec<AtomicBool>,
    /// What each session last heard of its partner's presence: 0 nothing,
    /// 1 available, 2 unavailable.
    pub partner_presence: Vec<AtomicU8>,
    /// Each session's recent connections and its partner's presences, for
    /// tracing a session that ends up seeing its partner wrong.
    pub history: Vec<Mutex<VecDeque<(Instant, Event)>>>,
    pub resumed: AtomicU64,
    pub relogins: AtomicU64,
    pub connection_failures: AtomicU64,
}

/// What a session's history records.
#[derive(Debug, Clone, Copy)]
pub enum Event {
    /// Resumed on this node (0-based).
    Resumed(usize),
    /// Logged in (first, or again after a failed resumption) on this node.
    LoggedIn(usize),
    /// The connection failed (error or unanswered ack request).
    Failed,
    /// The partner's presence: available or not.
    Partner(bool),
}

/// Events kept per session: the latest ones tell how it got where it is.
const HISTORY: usize = 32;

impl Shared {
    fn record(&self, index: usize, event: Event) {
        let mut history = self.history[index].lock().expect("history lock");
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back((Instant::now(), event));
    }

    /// A session's history, one event a line, times in seconds from `start`.
    pub fn history_text(&self, index: usize, start: Instant) -> String {
        let history = self.history[index].lock().expect("history lock");
        history
            .iter()
            .map(|(at, event)| {
                let what = match event {
                    Event::Resumed(node) => format!("resumed on node{}", node + 1),
                    Event::LoggedIn(node) => format!("logged in on node{}", node + 1),
                    Event::Failed => "connection failed".to_owned(),
                    Event::Partner(true) => "partner available".to_owned(),
                    Event::Partner(false) => "partner unavailable".to_owned(),
                };
                format!(
                    "  {:8.3} s  {what}\n",
                    at.saturating_duration_since(start).as_secs_f64()
                )
            })
            .collect()
    }
}

/// How the sessions run.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    pub servers: Vec<SocketAddr>,
    pub domain: String,
    pub sessions: usize,
    /// Each session sends one message this often.
    pub interval: Duration,
    /// Logins per second at the start.
    pub login_rate: f64,
}

/// The running sessions.
pub struct Driver {
    pub shared: Arc<Shared>,
    sending: watch::Sender<bool>,
    end: watch::Sender<bool>,
    tasks: tokio::task::JoinSet<()>,
}

impl Driver {
    /// Starts every session (logins spread at the login rate).
    pub fn start(config: DriverConfig) -> Driver {
        let n = config.sessions;
        let shared = Arc::new(Shared {
            streams: (0..n).map(|_| Mutex::new(Stream::default())).collect(),
            connected: (0..n).map(|_| AtomicBool::new(false)).collect(),
            partner_presence: (0..n).map(|_| AtomicU8::new(0)).collect(),
            history: (0..n).map(|_| Mutex::new(VecDeque::new())).collect(),
            resumed: AtomicU64::new(0),
            relogins: AtomicU64::new(0),
            connection_failures: AtomicU64::new(0),
        });
        let (sending, sending_rx) = watch::channel(false);
        let (end, end_rx) = watch::channel(false);
        let config = Arc::new(config);
        let mut tasks = tokio::task::JoinSet::new();
        let start = Instant::now();
        for index in 0..n {
            let session = Session {
                index,
                config: config.clone(),
                shared: shared.clone(),
                sending: sending_rx.clone(),
                end: end_rx.clone(),
                node: index % config.servers.len(),
                previd: None,
                unacked: VecDeque::new(),
                server_h: 0,
            };
            let at = start + Duration::from_secs_f64(index as f64 / config.login_rate.max(1.0));
            tasks.spawn(async move {
                tokio::time::sleep_until(at).await;
                session.run().await;
            });
        }
        Driver {
            shared,
            sending,
            end,
            tasks,
        }
    }

    pub fn connected(&self) -> usize {
        self.shared
            .connected
            .iter()
            .filter(|c| c.load(Ordering::Relaxed))
            .count()
    }

    /// Sessions whose partner's last presence was available.
    pub fn presence_right(&self) -> usize {
        self.shared
            .partner_presence
            .iter()
            .filter(|p| p.load(Ordering::Relaxed) == 1)
            .count()
    }

    /// Sessions (by index) whose partner's last presence was not
    /// available, with what it was.
    pub fn presence_wrong(&self) -> Vec<(usize, &'static str)> {
        self.shared
            .partner_presence
            .iter()
            .enumerate()
            .filter_map(|(index, p)| match p.load(Ordering::Relaxed) {
                1 => None,
                0 => Some((index, "nothing")),
                _ => Some((index, "unavailable")),
            })
            .collect()
    }

    pub fn start_sending(&self) {
        self.sending.send_replace(true);
    }

    pub fn stop_sending(&self) {
        self.sending.send_replace(false);
    }

    /// Streams whose recipient has received a message sent at or after `since`.
    pub fn streams_delivering_since(&self, since: Instant) -> usize {
        self.shared
            .streams
            .iter()
            .filter(|s| {
                s.lock()
                    .expect("stream lock")
                    .latest_sent_received
                    .is_some_and(|t| t >= since)
            })
            .count()
    }

    /// Messages acked by the server and not (yet) received, and not bounced.
    pub fn acked_missing(&self) -> usize {
        self.shared
            .streams
            .iter()
            .map(|s| {
                let s = s.lock().expect("stream lock");
                (0..s.sent_at.len())
                    .filter(|&i| s.acked_at[i].is_some() && s.received[i] == 0 && !s.bounced[i])
                    .count()
            })
            .sum()
    }

    /// Ends every session (closing its stream) and waits for them.
    pub async fn finish(mut self) -> Arc<Shared> {
        self.end.send_replace(true);
        while self.tasks.join_next().await.is_some() {}
        self.shared
    }
}

struct Session {
    index: usize,
    config: Arc<DriverConfig>,
    shared: Arc<Shared>,
    sending: watch::Receiver<bool>,
    end: watch::Receiver<bool>,
    /// The node of the current (or last) connection.
    node: usize,
    /// The resumption id of the session, while it may be resumed.
    previd: Option<String>,
    /// Stanzas sent since the server's last ack: messages by number, and
    /// presence.
    unacked: VecDeque<Option<u64>>,
    /// The server's `h`: our stanzas it has handled.
    server_h: u32,
}

enum Ended {
    /// The campaign is over.
    Over,
    /// The connection failed; `handled` is our `h` on it.
    Failed { handled: u32 },
}

impl Session {
    fn partner(&self) -> usize {
        self.index ^ 1
    }

    fn options(&self) -> LoginOptions {
        let mut options = LoginOptions::new(
            &self.config.domain,
            &username(self.index),
            &format!("pw{}", self.index + 1),
        );
        options.resource = Some(RESOURCE.to_owned());
        options.tls = TlsMode::Off;
        options.timeout = ATTEMPT;
        options
    }

    fn over(&self) -> bool {
        *self.end.borrow()
    }

    async fn run(mut self) {
        let mut handled = 0;
        let mut first = true;
        loop {
            let Some(client) = self.connect(handled, first).await else {
                return;
            };
            first = false;
            self.shared.connected[self.index].store(true, Ordering::Relaxed);
            let ended = self.chat(client).await;
            self.shared.connected[self.index].store(false, Ordering::Relaxed);
            match ended {
                Ended::Over => return,
                Ended::Failed { handled: h } => {
                    handled = h;
                    self.shared
                        .connection_failures
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// A working connection: the session resumed on another node, or a new
    /// login; `None` once the campaign is over.
    async fn connect(&mut self, handled: u32, first: bool) -> Option<Client> {
        let servers = self.config.servers.len();
        if let Some(previd) = self.previd.clone() {
            for step in 1..=servers {
                if self.over() {
                    return None;
                }
                let node = (self.node + step) % servers;
                let options = self.options();
                let attempt = Client::resume(self.config.servers[node], &options, &previd, handled);
                if let Ok(Ok((mut client, h))) = timeout(ATTEMPT, attempt).await {
                    client.set_auto_ack(false);
                    self.node = node;
                    self.acked(h);
                    self.shared.resumed.fetch_add(1, Ordering::Relaxed);
                    self.shared.record(self.index, Event::Resumed(node));
                    if self.resend(&mut client).await.is_ok() {
                        return Some(client);
                    }
                }
            }
        }
        self.previd = None;
        let mut step = usize::from(!first);
        loop {
            if self.over() {
                return None;
            }
            let node = (self.node + step) % servers;
            step += 1;
            match timeout(ATTEMPT, self.login(node)).await {
                Ok(Ok(mut client)) => {
                    self.node = node;
                    self.shared.record(self.index, Event::LoggedIn(node));
                    if !first {
                        self.shared.relogins.fetch_add(1, Ordering::Relaxed);
                    }
                    // A new session: what the old one had not acked is sent again.
                    let pending: Vec<Option<u64>> = self.unacked.drain(..).collect();
                    self.server_h = 0;
                    self.unacked.push_back(None);
                    self.unacked
                        .extend(pending.into_iter().filter(Option::is_some));
                    if self.resend_messages(&mut client).await.is_ok() {
                        return Some(client);
                    }
                }
                _ => sleep(Duration::from_millis(500)).await,
            }
        }
    }

    /// Logs in, enables resumable stream management, sends presence.
    async fn login(&mut self, node: usize) -> Result<Client, crate::ClientError> {
        let mut client = Client::login(self.config.servers[node], &self.options()).await?;
        let enabled = client.enable_sm(true).await?;
        client.set_auto_ack(false);
        self.previd = enabled.id;
        client.send("<presence/>").await?;
        Ok(client)
    }

    /// After a resumption: everything unacked again (presence and messages).
    async fn resend(&mut self, client: &mut Client) -> Result<(), crate::ClientError> {
        if self.unacked.iter().any(Option::is_none) {
            client.send("<presence/>").await?;
        }
        self.resend_messages(client).await
    }

    /// The unacked messages again, in order, and an ack request.
    async fn resend_messages(&mut self, client: &mut Client) -> Result<(), crate::ClientError> {
        let to = self.partner_jid();
        let seqs: Vec<u64> = self.unacked.iter().filter_map(|s| *s).collect();
        // The count goes on from the server's h: what is resent is counted again.
        self.unacked.retain(Option::is_none);
        for seq in seqs {
            client.send(&message(&to, seq)).await?;
            self.unacked.push_back(Some(seq));
        }
        client.send(&format!("<r xmlns='{SM}'/>")).await
    }

    fn partner_jid(&self) -> String {
        format!(
            "{}@{}/{RESOURCE}",
            username(self.partner()),
            self.config.domain
        )
    }

    /// The server acknowledged our stanzas up to `h`.
    fn acked(&mut self, h: u32) {
        let count = h.wrapping_sub(self.server_h);
        if count as usize > self.unacked.len() {
            // An h beyond what was sent: ignore rather than misattribute.
            return;
        }
        let now = Instant::now();
        let mut stream = self.shared.streams[self.index].lock().expect("stream lock");
        for _ in 0..count {
            if let Some(Some(seq)) = self.unacked.pop_front() {
                let acked = &mut stream.acked_at[seq as usize];
                acked.get_or_insert(now);
            }
        }
        self.server_h = h;
    }

    /// Chats on `client` until the campaign ends or the connection fails.
    async fn chat(&mut self, mut client: Client) -> Ended {
        let to = self.partner_jid();
        let partner_jid = to.clone();
        let interval = self.config.interval;
        // Each session's sends are spread over the interval.
        let phase = interval.mul_f64((self.index as f64 * 0.618_033_988_749_895).fract());
        let mut next_send = Instant::now() + phase;
        let mut requested: Option<Instant> = Some(Instant::now());
        let mut sending = self.sending.clone();
        let mut end = self.end.clone();
        loop {
            let is_sending = *sending.borrow();
            let dead_at = requested.map(|at| at + ACK_TIMEOUT);
            tokio::select! {
                () = tokio::time::sleep_until(next_send), if is_sending => {
                    next_send += interval;
                    let seq = self.shared.streams[self.index].lock().expect("stream lock").sent(Instant::now());
                    self.unacked.push_back(Some(seq));
                    if client.send(&message(&to, seq)).await.is_err() {
                        return self.failed(client);
                    }
                    if requested.is_none() {
                        requested = Some(Instant::now());
                        if client.send(&format!("<r xmlns='{SM}'/>")).await.is_err() {
                            return self.failed(client);
                        }
                    }
                }
                () = tokio::time::sleep_until(dead_at.unwrap_or_else(Instant::now)), if dead_at.is_some() => {
                    return self.failed(client);
                }
                stanza = client.recv() => {
                    let Ok(stanza) = stanza else { return self.failed(client) };
                    if stanza.is("a", SM) {
                        if let Some(h) = stanza.attr("h").and_then(|h| h.parse().ok()) {
                            self.acked(h);
                        }
                        requested = None;
                        // Something still unacked (sent after the request): ask again.
                        if self.unacked.iter().any(Option::is_some) {
                            requested = Some(Instant::now());
                            if client.send(&format!("<r xmlns='{SM}'/>")).await.is_err() {
                                return self.failed(client);
                            }
                        }
                    } else if stanza.is("r", SM) {
                        if client.send_ack().await.is_err() {
                            return self.failed(client);
                        }
                    } else if stanza.is("message", ns::CLIENT) {
                        self.on_message(&stanza);
                    } else if stanza.is("presence", ns::CLIENT) {
                        if stanza.attr("from") == Some(partner_jid.as_str()) {
                            let state = match stanza.attr("type") {
                                None => 1,
                                Some("unavailable") => 2,
                                Some(_) => continue,
                            };
                            self.shared.partner_presence[self.index].store(state, Ordering::Relaxed);
                            self.shared.record(self.index, Event::Partner(state == 1));
                        }
                    } else if answer_ping(&mut client, &stanza).await.is_err() {
                        return self.failed(client);
                    }
                }
                _ = sending.changed() => {
                    next_send = next_send.max(Instant::now());
                }
                _ = end.changed() => {
                    let _ = timeout(Duration::from_secs(5), client.close()).await;
                    return Ended::Over;
                }
            }
        }
    }

    fn failed(&self, client: Client) -> Ended {
        self.shared.record(self.index, Event::Failed);
        let handled = client.sm_handled().unwrap_or(0);
        client.drop_connection();
        Ended::Failed { handled }
    }

    fn on_message(&self, stanza: &Element) {
        let Some(seq) = stanza.attr("id").and_then(|id| id.strip_prefix("flt-")) else {
            return;
        };
        let Ok(seq) = seq.parse::<u64>() else { return };
        if stanza.attr("type") == Some("error") {
            // Our own message, bounced.
            let mut stream = self.shared.streams[self.index].lock().expect("stream lock");
            if let Some(bounced) = stream.bounced.get_mut(seq as usize) {
                *bounced = true;
            }
            return;
        }
        let body = stanza
            .child("body", ns::CLIENT)
            .map(|b| b.text())
            .unwrap_or_default();
        if body != format!("flt {seq}") {
            return;
        }
        let mut stream = self.shared.streams[self.partner()]
            .lock()
            .expect("stream lock");
        stream.arrived(seq, Instant::now());
    }
}

fn message(to: &str, seq: u64) -> String {
    format!("<message to='{to}' type='chat' id='flt-{seq}'><body>flt {seq}</body></message>")
}

/// The user of session `index`.
pub fn username(index: usize) -> String {
    format!("u{}", index + 1)
}
