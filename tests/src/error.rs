//! Errors of the test client: each says which step failed and what arrived instead, so a
//! failing test or a load run's error table explains itself.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use starling_core::jid::JidError;
use starling_core::xml::{Element, ns};

use crate::sasl::{Mechanism, SaslError};
use crate::xml_reader::XmlError;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("{step}: I/O error: {source}")]
    Io {
        step: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("TLS setup: {0}")]
    TlsConfig(#[source] rustls::Error),
    #[error("TLS handshake: {0}")]
    TlsHandshake(#[source] io::Error),
    #[error("{step}: unreadable XML from the server: {source}")]
    Xml {
        step: &'static str,
        #[source]
        source: XmlError,
    },
    #[error("{step}: nothing matching after {waited:?}; received instead: {received}")]
    Timeout {
        step: &'static str,
        waited: Duration,
        received: String,
    },
    #[error("{step}: the server closed the stream; received before: {received}")]
    Closed {
        step: &'static str,
        received: String,
    },
    #[error("{step}: stream error <{condition}/>{}", text_suffix(.text))]
    StreamError {
        step: &'static str,
        condition: String,
        text: Option<String>,
    },
    /// `<see-other-host/>` (RFC 6120 4.9.3.19): the server names another
    /// host (`host:port`) to connect to instead.
    #[error("{step}: the server sends us to {host} (see-other-host)")]
    SeeOtherHost { step: &'static str, host: String },
    #[error("{step}: expected {expected}, got {got}")]
    Unexpected {
        step: &'static str,
        expected: &'static str,
        got: String,
    },
    #[error("{step}: the server does not offer {feature}; features: {features}")]
    MissingFeature {
        step: &'static str,
        feature: String,
        features: String,
    },
    #[error("SASL {mechanism} failed: <{condition}/>{}", text_suffix(.text))]
    SaslFailure {
        mechanism: Mechanism,
        condition: String,
        text: Option<String>,
    },
    #[error("SASL {mechanism}: {source}")]
    Sasl {
        mechanism: Mechanism,
        #[source]
        source: SaslError,
    },
    #[error("{step}: iq error <{condition}/> (type {error_type}): {stanza}")]
    IqError {
        step: &'static str,
        condition: String,
        error_type: String,
        stanza: String,
    },
    /// XEP-0198 `<failed/>` in answer to `<enable/>` or `<resume/>`.
    #[error("{step}: stream management failed: <{condition}/> (h {h:?})")]
    SmFailed {
        step: &'static str,
        condition: String,
        h: Option<u32>,
    },
    #[error("{step}: bad JID {jid:?}: {source}")]
    Jid {
        step: &'static str,
        jid: String,
        #[source]
        source: JidError,
    },
}

fn text_suffix(text: &Option<String>) -> String {
    match text {
        Some(text) => format!(" ({text})"),
        None => String::new(),
    }
}

impl ClientError {
    /// A short, stable label for counting errors by kind in load runs, e.g. `connect`,
    /// `timeout:bind`, `sasl:not-authorized`, `stream-error:conflict`.
    pub fn kind(&self) -> String {
        match self {
            ClientError::Connect { source, .. } => format!("connect:{:?}", source.kind()),
            ClientError::Io { step, .. } => format!("io:{step}"),
            ClientError::TlsConfig(_) => "tls-config".to_owned(),
            ClientError::TlsHandshake(_) => "tls-handshake".to_owned(),
            ClientError::Xml { step, .. } => format!("xml:{step}"),
            ClientError::Timeout { step, .. } => format!("timeout:{step}"),
            ClientError::Closed { step, .. } => format!("closed:{step}"),
            ClientError::StreamError { condition, .. } => format!("stream-error:{condition}"),
            ClientError::SeeOtherHost { .. } => "stream-error:see-other-host".to_owned(),
            ClientError::Unexpected { step, .. } => format!("unexpected:{step}"),
            ClientError::MissingFeature { feature, .. } => format!("missing-feature:{feature}"),
            ClientError::SaslFailure { condition, .. } => format!("sasl:{condition}"),
            ClientError::Sasl { .. } => "sasl:client".to_owned(),
            ClientError::IqError {
                step, condition, ..
            } => format!("iq-error:{step}:{condition}"),
            ClientError::Jid { step, .. } => format!("bad-jid:{step}"),
            ClientError::SmFailed { condition, .. } => format!("sm:{condition}"),
        }
    }

    /// Builds the error for a `<stream:error/>` element.
    pub fn from_stream_error(step: &'static str, error: &Element) -> Self {
        if let Some(other) = error.child("see-other-host", ns::STREAM_ERRORS) {
            return ClientError::SeeOtherHost {
                step,
                host: other.text().trim().to_owned(),
            };
        }
        ClientError::StreamError {
            step,
            condition: condition_of(error, ns::STREAM_ERRORS).unwrap_or_default(),
            text: error
                .child("text", ns::STREAM_ERRORS)
                .map(|text| text.text()),
        }
    }
}

/// The defined condition of an error element: its first child in `namespace` other than
/// `<text/>`.
pub fn condition_of(error: &Element, namespace: &str) -> Option<String> {
    error
        .children()
        .find(|child| child.ns() == namespace && child.name() != "text")
        .map(|child| child.name().to_owned())
}

/// Renders elements for an error message, cut short so one bad run cannot flood a log.
pub fn summarize<'a>(elements: impl IntoIterator<Item = &'a Element>) -> String {
    const LIMIT: usize = 2000;
    let mut out = String::new();
    for element in elements {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&element.to_string());
        if out.len() > LIMIT {
            let mut cut = LIMIT;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push_str("...");
            return out;
        }
    }
    if out.is_empty() {
        out.push_str("nothing");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_errors_name_their_condition_and_text() {
        let error = Element::new("error", ns::STREAM)
            .with_child(Element::new("host-unknown", ns::STREAM_ERRORS))
            .with_child(Element::new("text", ns::STREAM_ERRORS).with_text("no such host"));
        let client_error = ClientError::from_stream_error("stream open", &error);
        assert_eq!(client_error.kind(), "stream-error:host-unknown");
        assert_eq!(
            client_error.to_string(),
            "stream open: stream error <host-unknown/> (no such host)"
        );
    }

    #[test]
    fn summaries_are_bounded() {
        let big = Element::new("message", ns::CLIENT).with_text("x".repeat(5000));
        let summary = summarize([&big]);
        assert!(summary.len() < 2100);
        assert!(summary.ends_with("..."));
        assert_eq!(summarize([]), "nothing");
    }
}
