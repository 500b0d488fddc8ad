//! What a server stream does with a stanza the peer sent, on whichever
//! stream it came: an incoming one, or an outgoing one the peer also sends
//! on (XEP-0288). RFC 6120 8.1.1.1 / 8.1.2.1: `from` must be a domain the
//! stream authenticated, `to` one we serve; then the stanza enters the
//! router. A failed check is a stream error that ends the stream.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use starling_core::jid::Jid;
use starling_core::xml::{Element, ns};

use super::streams::StreamStats;
use super::wire::WireError;
use crate::router;
use crate::server::Server;
use crate::stanza::Stanza;

/// A stream error to end the stream with.
pub(super) struct Refusal {
    pub condition: &'static str,
    pub text: String,
}

pub(super) fn refuse<T>(condition: &'static str, text: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal {
        condition,
        text: text.into(),
    })
}

impl From<WireError> for Refusal {
    fn from(error: WireError) -> Refusal {
        match error {
            WireError::Stream(error) => Refusal {
                condition: error.condition(),
                text: error.to_string(),
            },
            WireError::Timeout(_) => Refusal {
                condition: "connection-timeout",
                text: "Nothing received for too long".into(),
            },
            other => Refusal {
                condition: "undefined-condition",
                text: other.to_string(),
            },
        }
    }
}

impl From<std::io::Error> for Refusal {
    fn from(error: std::io::Error) -> Refusal {
        WireError::from(error).into()
    }
}

/// Checks `element` from a peer authenticated for the domains `authenticated`
/// says yes to, waits for the stream's rate, counts it on `stream`, then
/// routes it.
pub(super) async fn receive(
    server: &Server,
    authenticated: impl Fn(&str) -> bool,
    rate: &mut RateWindow,
    stream: &StreamStats,
    mut element: Element,
) -> Result<(), Refusal> {
    let (Some(from), Some(to)) = (element.attr("from"), element.attr("to")) else {
        return refuse(
            "improper-addressing",
            "Stanzas between servers need from and to",
        );
    };
    let Ok(from) = Jid::new(from) else {
        return refuse("invalid-from", format!("{from:?} is not a JID"));
    };
    if !authenticated(&from.domain().as_str().to_ascii_lowercase()) {
        return refuse(
            "invalid-from",
            format!("This stream is not authenticated for {}", from.domain()),
        );
    }
    let Ok(to) = Jid::new(to) else {
        return refuse("improper-addressing", format!("{to:?} is not a JID"));
    };
    if !server.serves_domain(to.domain().as_str()) {
        return refuse(
            "host-unknown",
            format!("{} is not served here", to.domain()),
        );
    }
    rate.wait().await;
    server
        .s2s
        .metrics
        .stanzas_in
        .fetch_add(1, Ordering::Relaxed);
    stream.received(from.domain().as_str());
    element.rename_ns(ns::SERVER, ns::CLIENT);
    match Stanza::parse(element) {
        Ok(stanza) => {
            router::route(server, stanza).await;
        }
        Err((element, error)) => {
            let reply = crate::stanza::error_reply(&element, &error.to_stanza_error());
            if let Ok(reply) = Stanza::from_server(reply) {
                router::route(server, reply).await;
            }
        }
    }
    Ok(())
}

/// `[s2s] stanzas_per_sec`: a peer that sends faster is read more slowly.
pub(super) struct RateWindow {
    per_sec: u32,
    started: Instant,
    seen: u32,
}

impl RateWindow {
    pub(super) fn new(per_sec: u32) -> RateWindow {
        RateWindow {
            per_sec,
            started: Instant::now(),
            seen: 0,
        }
    }

    async fn wait(&mut self) {
        if self.per_sec == 0 {
            return;
        }
        if self.started.elapsed() >= Duration::from_secs(1) {
            self.started = Instant::now();
            self.seen = 0;
        }
        self.seen += 1;
        if self.seen > self.per_sec {
            tokio::time::sleep_until((self.started + Duration::from_secs(1)).into()).await;
            self.started = Instant::now();
            self.seen = 1;
        }
    }
}
