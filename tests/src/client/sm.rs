//! XEP-0198 stream management in the test client: enable, acknowledge
//! (on its own or as the test says), and resume a session on a new
//! connection, possibly to another node.
//!
//! The client counts every stanza it reads once enabled, whether or not a
//! test has taken it yet: "handled" means "read from the socket".
//! Answering `<r/>` writes from the read path, so a client with
//! stream management is not cancel-safe in `recv`: the load driver uses it
//! only in `hold`, which cancels `recv` just before closing the stream.

use std::net::SocketAddr;

use starling_core::xml::{Element, ns};

use super::{Client, LoginOptions, TlsMode, unexpected};
use crate::error::{ClientError, condition_of};

pub const SM: &str = "urn:xmpp:sm:3";

/// What the server said to `<enable/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmEnabled {
    /// The resumption id, when the session is resumable.
    pub id: Option<String>,
    pub max: Option<u32>,
}

#[derive(Debug, Clone)]
pub(super) struct SmClient {
    /// Stanzas read since `<enable/>` (or since the resumed session's h).
    handled: u32,
    /// Answer the server's `<r/>` at once.
    auto_ack: bool,
}

impl Client {
    /// Sends `<enable/>` (with `resume='true'` if asked) and waits for
    /// `<enabled/>`; `<failed/>` is [`ClientError::SmFailed`].
    pub async fn enable_sm(&mut self, resume: bool) -> Result<SmEnabled, ClientError> {
        const STEP: &str = "enable stream management";
        let mut enable = Element::new("enable", SM);
        if resume {
            enable.set_attr("resume", "true");
        }
        self.send_element(&enable).await?;
        // Counting starts with the first stanza after <enable/> (a second
        // <enable/>, which fails, changes nothing).
        let first = self.sm.is_none();
        if first {
            self.sm = Some(SmClient {
                handled: 0,
                auto_ack: true,
            });
        }
        let answer = self
            .expect_in(
                STEP,
                |e| e.is("enabled", SM) || e.is("failed", SM),
                self.timeout,
            )
            .await?;
        if answer.is("failed", SM) {
            if first {
                self.sm = None;
            }
            return Err(failed(STEP, &answer));
        }
        Ok(SmEnabled {
            id: answer.attr("id").map(str::to_owned),
            max: answer.attr("max").and_then(|max| max.parse().ok()),
        })
    }

    /// Stanzas read since stream management was enabled (our `h`).
    pub fn sm_handled(&self) -> Option<u32> {
        self.sm.as_ref().map(|sm| sm.handled)
    }

    /// Whether the client answers the server's `<r/>` by itself (the
    /// default); without, `<r/>` elements are kept for `expect`.
    pub fn set_auto_ack(&mut self, on: bool) {
        if let Some(sm) = &mut self.sm {
            sm.auto_ack = on;
        }
    }

    /// Sends `<a h/>` with what the client has read.
    pub async fn send_ack(&mut self) -> Result<(), ClientError> {
        let h = self.sm_handled().unwrap_or(0);
        self.send(&format!("<a xmlns='{SM}' h='{h}'/>")).await
    }

    /// Sends `<r/>` and returns the `h` of the server's `<a/>`.
    pub async fn request_ack(&mut self) -> Result<u32, ClientError> {
        self.send_ack_request().await?;
        self.expect_ack(self.timeout).await
    }

    /// Sends `<r/>` without waiting for the answer (see
    /// [`Client::expect_ack`]): a client that pipelines its requests.
    pub async fn send_ack_request(&mut self) -> Result<(), ClientError> {
        self.send(&format!("<r xmlns='{SM}'/>")).await
    }

    /// Waits up to `timeout` for the server's next `<a/>`; returns its `h`.
    pub async fn expect_ack(&mut self, timeout: std::time::Duration) -> Result<u32, ClientError> {
        const STEP: &str = "ack request";
        let answer = self.expect_in(STEP, |e| e.is("a", SM), timeout).await?;
        answer
            .attr("h")
            .and_then(|h| h.parse().ok())
            .ok_or_else(|| unexpected(STEP, "<a h='...'/>", &answer))
    }

    /// Connects, authenticates, and resumes session `previd` saying that
    /// `h` stanzas were handled; returns the client and the server's `h`.
    /// The resent stanzas follow in the stream.
    pub async fn resume(
        addr: SocketAddr,
        options: &LoginOptions,
        previd: &str,
        h: u32,
    ) -> Result<(Client, u32), ClientError> {
        let client = Client::connect_from(addr, options.local_addr, &options.domain).await?;
        client.resume_on(options, previd, h).await
    }

    /// [`Client::resume`] over XMPP over WebSocket at `addr` (no STARTTLS:
    /// the WebSocket's TLS protects the stream).
    pub async fn resume_websocket(
        addr: SocketAddr,
        ws: &crate::websocket::WsOptions,
        options: &LoginOptions,
        previd: &str,
        h: u32,
    ) -> Result<(Client, u32), ClientError> {
        let client = Client::connect_websocket(addr, ws, &options.domain).await?;
        let options = LoginOptions {
            tls: TlsMode::Off,
            ..options.clone()
        };
        client.resume_on(&options, previd, h).await
    }

    /// Authenticates on this freshly opened stream and resumes `previd`.
    async fn resume_on(
        self,
        options: &LoginOptions,
        previd: &str,
        h: u32,
    ) -> Result<(Client, u32), ClientError> {
        const STEP: &str = "resume";
        let mut client = self;
        client.timeout = options.timeout;
        let offers_tls = client.features.has_child("starttls", ns::TLS);
        match options.tls {
            TlsMode::Required => client.starttls().await?,
            TlsMode::IfOffered if offers_tls => client.starttls().await?,
            TlsMode::IfOffered | TlsMode::Off => {}
        }
        client
            .authenticate(&options.username, &options.password, options.mechanism)
            .await?;
        if !client.features.has_child("sm", SM) {
            return Err(client.missing(STEP, "<sm xmlns='urn:xmpp:sm:3'/>"));
        }
        let resume = Element::new("resume", SM)
            .with_attr("previd", previd)
            .with_attr("h", h.to_string());
        client.send_element(&resume).await?;
        let answer = client
            .expect_in(
                STEP,
                |e| e.is("resumed", SM) || e.is("failed", SM),
                client.timeout,
            )
            .await?;
        if answer.is("failed", SM) {
            return Err(failed(STEP, &answer));
        }
        let server_h = answer
            .attr("h")
            .and_then(|h| h.parse().ok())
            .ok_or_else(|| unexpected(STEP, "<resumed h='...'/>", &answer))?;
        client.sm = Some(SmClient {
            handled: h,
            auto_ack: true,
        });
        // The session keeps its resource; the client knows it from its login.
        if let Some(resource) = &options.resource {
            let jid = format!("{}@{}/{resource}", options.username, options.domain);
            client.jid = starling_core::jid::FullJid::new(&jid).ok();
        }
        Ok((client, server_h))
    }

    /// Drops the connection without closing the stream, as a client that
    /// loses its network does (the server sees the TCP connection end).
    pub fn drop_connection(self) {
        drop(self);
    }

    /// Counts a stanza, or answers an `<r/>`: true when the element was
    /// consumed here.
    pub(super) async fn sm_read(&mut self, element: &Element) -> Result<bool, ClientError> {
        let Some(sm) = &mut self.sm else {
            return Ok(false);
        };
        if element.ns() == ns::CLIENT && matches!(element.name(), "message" | "presence" | "iq") {
            sm.handled = sm.handled.wrapping_add(1);
            return Ok(false);
        }
        if element.is("r", SM) && sm.auto_ack {
            let h = sm.handled;
            self.send(&format!("<a xmlns='{SM}' h='{h}'/>")).await?;
            return Ok(true);
        }
        Ok(false)
    }
}

fn failed(step: &'static str, answer: &Element) -> ClientError {
    ClientError::SmFailed {
        step,
        condition: condition_of(answer, ns::STANZAS).unwrap_or_default(),
        h: answer.attr("h").and_then(|h| h.parse().ok()),
    }
}
