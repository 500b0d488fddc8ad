//! The initiating side of a server-to-server stream: find the remote
//! domain's servers, connect, negotiate TLS, then either authenticate
//! (SASL EXTERNAL when offered, else dialback) or, for a peer's dialback
//! request, ask its authoritative server to verify a key.

use base64::Engine;
use starling_core::xml::{Element, ns};
use tokio::net::TcpStream;

use super::S2s;
use super::dialback;
use super::resolve::Target;
use super::wire::{Wire, WireError};
use crate::stanza::Condition;
use crate::stream::{self, Limits, StreamEvent, StreamHeader};

/// What the stream is opened for.
pub(super) enum Purpose<'a> {
    /// An outgoing stream that carries stanzas.
    Authenticate,
    /// XEP-0220 2.1.2: ask the authoritative server whether `key` is one it
    /// made for a stream `id` opened to us.
    Verify { id: &'a str, key: &'a str },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    External,
    Dialback,
}

pub(super) enum Established {
    Authenticated {
        wire: Box<Wire>,
        method: Method,
        /// XEP-0288: the peer sends its stanzas to us on this stream too.
        bidi: bool,
    },
    Verified(bool),
}

/// Why no stream could be set up; the stanzas waiting bounce with its
/// condition.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub(super) struct ConnectError {
    pub condition: Condition,
    pub reason: String,
}

impl ConnectError {
    fn not_found(reason: String) -> ConnectError {
        ConnectError {
            condition: Condition::RemoteServerNotFound,
            reason,
        }
    }
}

/// Tries each server of `remote` in turn until one does what `purpose` asks.
pub(super) async fn connect(
    s2s: &S2s,
    limits: Limits,
    local: &str,
    remote: &str,
    purpose: Purpose<'_>,
) -> Result<Established, ConnectError> {
    let targets = s2s
        .resolver
        .targets(remote)
        .await
        .map_err(ConnectError::not_found)?;
    let mut last = format!("no server found for {remote}");
    for target in &targets {
        let addresses = match s2s.resolver.addresses(target).await {
            Ok(addresses) => addresses,
            Err(error) => {
                last = error;
                continue;
            }
        };
        for address in addresses {
            let tcp = match TcpStream::connect(address).await {
                Ok(tcp) => tcp,
                Err(error) => {
                    last = format!("{address}: {error}");
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let mut wire = Wire::new(tcp, limits);
            let mut session = Initiating {
                s2s,
                wire: &mut wire,
                local,
                remote,
            };
            match session.negotiate(target, &purpose).await {
                Ok(Negotiated::Verified(verdict)) => {
                    wire.close().await;
                    return Ok(Established::Verified(verdict));
                }
                Ok(Negotiated::Authenticated(method, bidi)) => {
                    return Ok(Established::Authenticated {
                        wire: Box::new(wire),
                        method,
                        bidi,
                    });
                }
                Err(error) => {
                    tracing::debug!(%remote, %address, %error, "outgoing stream failed");
                    last = format!("{address}: {error}");
                }
            }
        }
    }
    Err(ConnectError::not_found(last))
}

enum Negotiated {
    Authenticated(Method, bool),
    Verified(bool),
}

struct Initiating<'a> {
    s2s: &'a S2s,
    wire: &'a mut Wire,
    local: &'a str,
    remote: &'a str,
}

impl Initiating<'_> {
    async fn negotiate(
        &mut self,
        target: &Target,
        purpose: &Purpose<'_>,
    ) -> Result<Negotiated, String> {
        if target.direct_tls {
            self.wire
                .connect_tls(&self.s2s.direct_connector, self.remote)
                .await
                .map_err(|error| format!("direct TLS: {error}"))?;
        }
        loop {
            let (header, features) = self.open().await?;
            if !self.wire.is_tls() {
                if features.has_child("starttls", ns::TLS) {
                    self.start_tls().await?;
                    continue;
                }
                if self.s2s.config.require_tls {
                    self.wire.fail("policy-violation", "TLS is required").await;
                    return Err("the peer does not offer STARTTLS and TLS is required".into());
                }
            }
            if self.s2s.config.require_valid_certificates
                && !self
                    .s2s
                    .trust
                    .valid_for(self.wire.peer_certificates(), self.remote)
            {
                self.wire
                    .fail(
                        "policy-violation",
                        "Your certificate is not valid for your domain",
                    )
                    .await;
                return Err(format!("the certificate is not valid for {}", self.remote));
            }
            let Some(stream_id) = header.id else {
                return Err("the peer's stream header has no id".into());
            };
            return match purpose {
                Purpose::Verify { id, key } => self.verify(id, key).await.map(Negotiated::Verified),
                Purpose::Authenticate => {
                    let bidi = self.request_bidi(&features).await?;
                    self.authenticate(&features, &stream_id)
                        .await
                        .map(|method| Negotiated::Authenticated(method, bidi))
                }
            };
        }
    }

    /// Sends our header; reads the peer's and its features.
    async fn open(&mut self) -> Result<(StreamHeader, Element), String> {
        let timeout = self.read_timeout();
        self.wire
            .write(&stream::server_stream_header(self.local, self.remote, None))
            .await
            .map_err(|error| error.to_string())?;
        let header = match self.wire.next(timeout).await.map_err(describe)? {
            StreamEvent::Header(header) => header,
            _ => return Err("expected a stream header".into()),
        };
        if header.ns != ns::SERVER {
            self.wire
                .fail("invalid-namespace", "Expected jabber:server")
                .await;
            return Err(format!(
                "the peer speaks {:?}, not jabber:server",
                header.ns
            ));
        }
        if header.version.as_deref() != Some("1.0") {
            // Before RFC 3920 there were no features; dialback only.
            return Ok((header, Element::new("features", ns::STREAM)));
        }
        let features = self.wire.next_element(timeout).await.map_err(describe)?;
        if !features.is("features", ns::STREAM) {
            return Err(format!(
                "expected stream features, got <{}/>",
                features.name()
            ));
        }
        Ok((header, features))
    }

    async fn start_tls(&mut self) -> Result<(), String> {
        let timeout = self.read_timeout();
        self.send(&Element::new("starttls", ns::TLS)).await?;
        let answer = self.wire.next_element(timeout).await.map_err(describe)?;
        if !answer.is("proceed", ns::TLS) {
            return Err("the peer refused STARTTLS".into());
        }
        self.wire
            .connect_tls(&self.s2s.connector, self.remote)
            .await
            .map_err(|error| format!("TLS: {error}"))
    }

    /// XEP-0288: asks for a bidirectional stream when the peer offers one
    /// (before authenticating, as the XEP and Prosody do). There is no
    /// answer; the request holds once the stream is authenticated.
    async fn request_bidi(&mut self, features: &Element) -> Result<bool, String> {
        let secure_enough = self.wire.is_tls() || !self.s2s.config.require_tls;
        if !self.s2s.config.bidi
            || !secure_enough
            || !features.has_child("bidi", super::bidi::NS_FEATURE)
        {
            return Ok(false);
        }
        self.send(&Element::new("bidi", super::bidi::NS)).await?;
        Ok(true)
    }

    /// SASL EXTERNAL when offered (the peer found our certificate valid),
    /// else dialback when allowed.
    async fn authenticate(
        &mut self,
        features: &Element,
        stream_id: &str,
    ) -> Result<Method, String> {
        let timeout = self.read_timeout();
        if offers_external(features) {
            // XEP-0178: the authorization identity is our domain.
            let authzid = base64::engine::general_purpose::STANDARD.encode(self.local);
            let auth = Element::new("auth", ns::SASL)
                .with_attr("mechanism", "EXTERNAL")
                .with_text(authzid);
            self.send(&auth).await?;
            let answer = self.wire.next_element(timeout).await.map_err(describe)?;
            if answer.is("success", ns::SASL) {
                self.wire.restart();
                self.open().await?;
                return Ok(Method::External);
            }
            tracing::info!(remote = %self.remote, "the peer refused SASL EXTERNAL; trying dialback");
        }
        if self.s2s.config.require_valid_certificates {
            self.wire.close().await;
            return Err("the peer does not accept our certificate and dialback is off".into());
        }
        let key = self.s2s.keys.key(self.remote, self.local, stream_id);
        self.send(&dialback::result_request(self.local, self.remote, &key))
            .await?;
        let answer = self.dialback_answer("result").await?;
        if answer.attr("type") == Some("valid") {
            return Ok(Method::Dialback);
        }
        Err(format!(
            "{} did not accept our dialback key ({})",
            self.remote,
            answer.attr("type").unwrap_or("no verdict")
        ))
    }

    async fn verify(&mut self, id: &str, key: &str) -> Result<bool, String> {
        self.send(&dialback::verify_request(self.local, self.remote, id, key))
            .await?;
        let answer = self.dialback_answer("verify").await?;
        Ok(answer.attr("type") == Some("valid") && answer.attr("id") == Some(id))
    }

    /// Waits for the dialback element `name`; a stream error ends the wait.
    async fn dialback_answer(&mut self, name: &str) -> Result<Element, String> {
        let timeout = self.read_timeout();
        loop {
            let element = self.wire.next_element(timeout).await.map_err(describe)?;
            if element.is(name, dialback::NS) {
                return Ok(element);
            }
            if element.is("error", ns::STREAM) {
                return Err(format!(
                    "stream error: {}",
                    stream_error_condition(&element)
                ));
            }
        }
    }

    /// Longer than the whole attempt's bound (`connect_timeout_secs`, set
    /// by the caller), so a silent peer ends as a timeout of the attempt.
    fn read_timeout(&self) -> std::time::Duration {
        self.s2s.connect_timeout() + std::time::Duration::from_secs(5)
    }

    async fn send(&mut self, element: &Element) -> Result<(), String> {
        self.wire
            .send(element)
            .await
            .map_err(|error| error.to_string())
    }
}

fn offers_external(features: &Element) -> bool {
    features
        .child("mechanisms", ns::SASL)
        .is_some_and(|mechanisms| {
            mechanisms
                .children()
                .any(|mechanism| mechanism.text().trim() == "EXTERNAL")
        })
}

fn describe(error: WireError) -> String {
    error.to_string()
}

/// The condition of a `<stream:error/>`, for logs.
pub(super) fn stream_error_condition(error: &Element) -> String {
    error
        .children()
        .find(|child| child.ns() == ns::STREAM_ERRORS && child.name() != "text")
        .map_or_else(|| "unknown".to_owned(), |child| child.name().to_owned())
}

/// Whether the authoritative server says `key` is its own for the stream
/// `id` that `originating` opened to us (`receiving`).
pub(super) async fn verify_key(
    s2s: &S2s,
    limits: Limits,
    receiving: &str,
    originating: &str,
    id: &str,
    key: &str,
) -> Result<bool, ConnectError> {
    let purpose = Purpose::Verify { id, key };
    match connect(s2s, limits, receiving, originating, purpose).await? {
        Established::Verified(valid) => Ok(valid),
        Established::Authenticated { .. } => Ok(false),
    }
}
