//! Incoming server-to-server streams: negotiation (STARTTLS, then SASL
//! EXTERNAL for a peer whose certificate is valid for its domain, or
//! XEP-0220 dialback, verified beside the stream by `verify.rs`), answers
//! to dialback verifications, and the check of every stanza before it
//! enters the router (`check.rs`). A peer that asks for a bidirectional
//! stream (XEP-0288) also gets this member's stanzas for the domains it
//! authenticated on it (`bidi.rs`).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine;
use starling_core::xml::{Element, ns};
use tokio::net::TcpStream;

use super::bidi::{self, Carried, Work};
use super::check::{self, RateWindow, Refusal, refuse};
use super::connect::{self, Method};
use super::dialback;
use super::metrics::Direction;
use super::outbound::Pair;
use super::streams::Registered;
use super::verify::{Verdict, Verifications};
use super::wire::{Wire, WireError};
use crate::server::Server;
use crate::stream::{self, StreamEvent};

pub(super) async fn run(server: Arc<Server>, tcp: TcpStream, peer: SocketAddr) {
    let s2s = &server.s2s;
    s2s.metrics.streams_in.fetch_add(1, Ordering::Relaxed);
    let mut stream = Incoming {
        wire: Wire::new(tcp, super::limits(&server)),
        server: server.clone(),
        local: String::new(),
        authenticated: HashSet::new(),
        pairs: Vec::new(),
        stream_id: String::new(),
        rate: RateWindow::new(s2s.config.stanzas_per_sec),
        bidi: false,
        carried: Carried::default(),
        verifications: Verifications::default(),
        registered: None,
    };
    match stream.serve().await {
        Ok(()) => stream.wire.close().await,
        Err(Refusal { condition, text }) => {
            tracing::info!(%peer, condition, %text, "incoming server stream refused");
            s2s.metrics.stream_errors_in.fetch_add(1, Ordering::Relaxed);
            stream.wire.fail(condition, &text).await;
        }
    }
    if !stream.carried.is_empty() {
        s2s.metrics.bidi_in.fetch_sub(1, Ordering::Relaxed);
    }
    let Incoming {
        carried,
        registered,
        ..
    } = stream;
    drop(registered);
    carried.release(&server).await;
    s2s.metrics.streams_in.fetch_sub(1, Ordering::Relaxed);
}

struct Incoming {
    wire: Wire,
    server: Arc<Server>,
    /// Our domain, from the peer's stream header.
    local: String,
    /// Domains this stream may send from (one per dialback or SASL success).
    authenticated: HashSet<String>,
    /// (our domain, the peer's) for each authentication, for XEP-0288.
    pairs: Vec<Pair>,
    stream_id: String,
    rate: RateWindow,
    /// The peer asked for a bidirectional stream (XEP-0288).
    bidi: bool,
    /// The links this stream sends for, when bidirectional.
    carried: Carried,
    verifications: Verifications,
    /// In the node's table of streams once authenticated.
    registered: Option<Registered>,
}

/// What ends one stream (until a restart) of the connection.
enum Next {
    Restart,
    Done,
}

/// What the stream's loop waits for.
enum Event {
    Read(Result<StreamEvent, WireError>),
    Carry(Work),
    Verified(Verdict),
    Shutdown,
}

impl Incoming {
    async fn serve(&mut self) -> Result<(), Refusal> {
        let mut sasl_done = false;
        loop {
            let peer_domain = self.open(sasl_done).await?;
            match self.read(peer_domain.as_deref()).await? {
                Next::Restart => sasl_done = !self.authenticated.is_empty(),
                Next::Done => return Ok(()),
            }
        }
    }

    fn timeout(&self) -> Duration {
        let negotiation = Duration::from_secs(self.server.limits().negotiation_timeout_secs);
        if self.authenticated.is_empty() && !self.verifications.is_empty() {
            // The peer waits for our verdict and may say nothing meanwhile.
            negotiation + self.server.s2s.connect_timeout()
        } else if self.authenticated.is_empty() {
            negotiation
        } else {
            self.server.s2s.idle_timeout()
        }
    }

    /// Reads the peer's header, answers it and offers the features.
    async fn open(&mut self, sasl_done: bool) -> Result<Option<String>, Refusal> {
        let header = match self.wire.next(self.timeout()).await? {
            StreamEvent::Header(header) => header,
            _ => return refuse("not-well-formed", "Expected a stream header"),
        };
        if header.ns != ns::SERVER {
            return refuse("invalid-namespace", "Server streams use jabber:server");
        }
        let local = header.to.clone().unwrap_or_default();
        if !self.server.serves_domain(&local) {
            return refuse("host-unknown", format!("{local:?} is not served here"));
        }
        let peer_domain = header.from.clone().filter(|from| !from.is_empty());
        if let Some(peer) = &peer_domain {
            if self.server.s2s.blocked(peer) {
                return refuse(
                    "policy-violation",
                    format!("{peer} may not federate with this server"),
                );
            }
        }
        self.local = local.to_ascii_lowercase();
        self.stream_id = crate::c2s::new_stream_id();
        self.wire
            .write(&stream::server_stream_header(
                &local,
                peer_domain.as_deref().unwrap_or(""),
                Some(&self.stream_id),
            ))
            .await
            .map_err(WireError::from)?;
        let features = self.features(peer_domain.as_deref(), sasl_done);
        self.wire.send(&features).await.map_err(WireError::from)?;
        Ok(peer_domain)
    }

    fn features(&self, peer_domain: Option<&str>, sasl_done: bool) -> Element {
        let config = &self.server.s2s.config;
        let mut features = Element::new("features", ns::STREAM);
        if sasl_done {
            return features;
        }
        if !self.wire.is_tls() {
            let mut starttls = Element::new("starttls", ns::TLS);
            if config.require_tls {
                starttls.push_child(Element::new("required", ns::TLS));
            }
            features.push_child(starttls);
            if config.require_tls {
                return features;
            }
        }
        if peer_domain.is_some_and(|peer| self.certificate_valid_for(peer)) {
            features.push_child(
                Element::new("mechanisms", ns::SASL)
                    .with_child(Element::new("mechanism", ns::SASL).with_text("EXTERNAL")),
            );
        }
        if !config.require_valid_certificates {
            features.push_child(
                Element::new("dialback", dialback::NS_FEATURE)
                    .with_child(Element::new("errors", dialback::NS_FEATURE)),
            );
        }
        if self.bidi_allowed() {
            features.push_child(Element::new("bidi", bidi::NS_FEATURE));
        }
        features
    }

    /// XEP-0288 is offered where the stream is as secure as federation
    /// must be here.
    fn bidi_allowed(&self) -> bool {
        let config = &self.server.s2s.config;
        config.bidi && (self.wire.is_tls() || !config.require_tls)
    }

    fn certificate_valid_for(&self, domain: &str) -> bool {
        self.wire.is_tls()
            && self
                .server
                .s2s
                .trust
                .valid_for(self.wire.peer_certificates(), domain)
    }

    /// First-level elements until a restart or the end of the stream;
    /// meanwhile stanzas of carried links go out and verdicts come in.
    async fn read(&mut self, peer_domain: Option<&str>) -> Result<Next, Refusal> {
        loop {
            let timeout = self.timeout();
            let event = tokio::select! {
                event = self.wire.next(timeout) => Event::Read(event),
                work = self.carried.next() => Event::Carry(work),
                verdict = self.verifications.next() => Event::Verified(verdict),
                () = self.server.shutdown.cancelled() => Event::Shutdown,
            };
            let element = match event {
                Event::Read(Ok(StreamEvent::Stanza(element))) => element,
                Event::Carry(work) => {
                    if self.carried.work(&mut self.wire, work).await.is_err() {
                        // Broken, or the peer confirmed nothing for too
                        // long: the carried links go to new streams.
                        return Ok(Next::Done);
                    }
                    continue;
                }
                Event::Verified(verdict) => {
                    self.verified(verdict).await?;
                    continue;
                }
                Event::Shutdown => {
                    self.carried.shutting_down();
                    return Ok(Next::Done);
                }
                Event::Read(Ok(StreamEvent::End) | Err(WireError::Closed)) => {
                    return Ok(Next::Done);
                }
                // A peer that drops the connection without closing TLS.
                Event::Read(Err(WireError::Io(error)))
                    if error.kind() == std::io::ErrorKind::UnexpectedEof =>
                {
                    return Ok(Next::Done);
                }
                Event::Read(Ok(StreamEvent::Header(_))) => {
                    return refuse("not-well-formed", "Unexpected header");
                }
                // An authenticated peer that says nothing for long is closed quietly.
                Event::Read(Err(WireError::Timeout(_))) if !self.authenticated.is_empty() => {
                    return Ok(Next::Done);
                }
                Event::Read(Err(error)) => return Err(error.into()),
            };
            match (element.ns(), element.name()) {
                (ns::TLS, "starttls") => {
                    self.start_tls().await?;
                    return Ok(Next::Restart);
                }
                (ns::SASL, "auth") => {
                    if self.sasl_external(&element, peer_domain).await? {
                        return Ok(Next::Restart);
                    }
                }
                (bidi::NS, "bidi") if self.bidi_allowed() => {
                    self.bidi = true;
                    for pair in self.pairs.clone() {
                        self.carry(pair);
                    }
                }
                (dialback::NS, "result") => self.dialback_result(&element).await?,
                (dialback::NS, "verify") => self.dialback_verify(&element).await?,
                (ns::SERVER, "message" | "presence" | "iq") => self.stanza(element).await?,
                (ns::STREAM, "error") => {
                    let condition = connect::stream_error_condition(&element);
                    tracing::info!(condition, "the peer ended its stream with an error");
                    return Ok(Next::Done);
                }
                _ => {
                    return refuse(
                        "unsupported-stanza-type",
                        format!("<{}/> is not understood here", element.name()),
                    );
                }
            }
        }
    }

    /// The stream is authenticated for `pair`: the peer may send from its
    /// domain, and, on a bidirectional stream, gets our stanzas for it.
    fn authenticated_for(&mut self, pair: Pair, method: Method) {
        self.server.s2s.metrics.authenticated(Direction::In, method);
        match &self.registered {
            Some(registered) => registered.add(&pair.local, &pair.remote, method),
            None => {
                self.registered = Some(self.server.s2s.streams.register(
                    Direction::In,
                    self.wire.is_tls(),
                    false,
                    &pair.local,
                    &pair.remote,
                    method,
                ));
            }
        }
        self.authenticated.insert(pair.remote.clone());
        if !self.pairs.contains(&pair) {
            self.pairs.push(pair.clone());
        }
        if self.bidi {
            self.carry(pair);
        }
    }

    fn carry(&mut self, pair: Pair) {
        let Some(registered) = &self.registered else {
            // Only authenticated pairs are carried.
            return;
        };
        let first = self.carried.is_empty();
        if self.carried.adopt(&self.server, pair, registered.stats()) && first {
            self.server
                .s2s
                .metrics
                .bidi_in
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn start_tls(&mut self) -> Result<(), Refusal> {
        if self.wire.is_tls() {
            return refuse("policy-violation", "TLS is already active");
        }
        self.wire
            .send(&Element::new("proceed", ns::TLS))
            .await
            .map_err(WireError::from)?;
        let timeout = self.timeout();
        let handshake = self.wire.accept_tls(&self.server.s2s.acceptor);
        match tokio::time::timeout(timeout, handshake).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => refuse("undefined-condition", format!("TLS: {error}")),
            Err(_) => refuse("connection-timeout", "TLS handshake took too long"),
        }
    }

    /// XEP-0178: EXTERNAL with the certificate valid for the claimed domain.
    async fn sasl_external(
        &mut self,
        auth: &Element,
        peer_domain: Option<&str>,
    ) -> Result<bool, Refusal> {
        let text = auth.text();
        let text = text.trim();
        let claimed = if text.is_empty() || text == "=" {
            peer_domain.map(str::to_owned)
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
        };
        let accepted = auth.attr("mechanism") == Some("EXTERNAL")
            && claimed.as_deref().is_some_and(|domain| {
                Some(domain) == peer_domain && self.certificate_valid_for(domain)
            });
        if !accepted {
            let failure = Element::new("failure", ns::SASL)
                .with_child(Element::new("not-authorized", ns::SASL));
            self.wire.send(&failure).await.map_err(WireError::from)?;
            return Ok(false);
        }
        let domain = claimed.unwrap_or_default();
        self.wire
            .send(&Element::new("success", ns::SASL))
            .await
            .map_err(WireError::from)?;
        tracing::info!(peer = %domain, "incoming stream authenticated with SASL EXTERNAL");
        self.authenticated_for(
            Pair {
                local: self.local.clone(),
                remote: domain.to_ascii_lowercase(),
            },
            Method::External,
        );
        self.wire.restart();
        Ok(true)
    }

    /// XEP-0220 2.1.1: the peer asks to send from `from`; its authoritative
    /// server (reached by DNS, so the peer cannot fake it) verifies the key.
    async fn dialback_result(&mut self, request: &Element) -> Result<(), Refusal> {
        let s2s = &self.server.s2s;
        let (Some(from), Some(to)) = (request.attr("from"), request.attr("to")) else {
            return refuse("improper-addressing", "db:result needs from and to");
        };
        let (originating, receiving) = (from.to_ascii_lowercase(), to.to_owned());
        if !self.server.serves_domain(&receiving) {
            return refuse("host-unknown", format!("{receiving:?} is not served here"));
        }
        if s2s.blocked(&originating) {
            return refuse(
                "policy-violation",
                format!("{originating} may not federate with this server"),
            );
        }
        if s2s.config.require_valid_certificates {
            return refuse(
                "policy-violation",
                "Dialback is not accepted here; a certificate valid for your domain is required",
            );
        }
        if s2s.config.require_tls && !self.wire.is_tls() {
            return refuse("policy-violation", "TLS is required");
        }
        if self.verifications.is_full() {
            // Bounded per stream: this one waits for a free place.
            let verdict = self.verifications.next().await;
            self.verified(verdict).await?;
        }
        self.verifications.start(
            self.server.clone(),
            receiving,
            originating,
            self.stream_id.clone(),
            request.text(),
        );
        Ok(())
    }

    /// The authoritative server answered: tell the peer; a key that is not
    /// valid ends the stream.
    async fn verified(&mut self, verdict: Verdict) -> Result<(), Refusal> {
        let Verdict {
            receiving,
            originating,
            valid,
        } = verdict;
        self.wire
            .send(&dialback::result_answer(&receiving, &originating, valid))
            .await
            .map_err(WireError::from)?;
        if !valid {
            return refuse(
                "not-authorized",
                format!("The dialback key for {originating} is not valid"),
            );
        }
        tracing::info!(peer = %originating, "incoming stream authenticated with dialback");
        self.authenticated_for(
            Pair {
                local: receiving.to_ascii_lowercase(),
                remote: originating,
            },
            Method::Dialback,
        );
        Ok(())
    }

    /// XEP-0220 2.1.2: we are the authoritative server; was this key ours?
    async fn dialback_verify(&mut self, request: &Element) -> Result<(), Refusal> {
        let (Some(from), Some(to), Some(id)) =
            (request.attr("from"), request.attr("to"), request.attr("id"))
        else {
            return refuse("improper-addressing", "db:verify needs from, to and id");
        };
        if !self.server.serves_domain(to) {
            return refuse("host-unknown", format!("{to:?} is not served here"));
        }
        // Keys we made: receiving = the peer (`from`), originating = us (`to`).
        let valid = self.server.s2s.keys.verify(from, to, id, &request.text());
        self.wire
            .send(&dialback::verify_answer(to, from, id, valid))
            .await
            .map_err(WireError::from)?;
        Ok(())
    }

    /// RFC 6120 8.1.1.1 / 8.1.2.1: check the addressing, then route.
    async fn stanza(&mut self, element: Element) -> Result<(), Refusal> {
        if self.authenticated.is_empty() {
            return refuse("not-authorized", "Authenticate before sending stanzas");
        }
        let Some(registered) = &self.registered else {
            return refuse("not-authorized", "Authenticate before sending stanzas");
        };
        let authenticated = &self.authenticated;
        check::receive(
            &self.server,
            |domain| authenticated.contains(domain),
            &mut self.rate,
            registered.stats(),
            element,
        )
        .await
    }
}
