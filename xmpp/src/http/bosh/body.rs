//! The `<body/>` wrapper of XEP-0124 and its XEP-0206 attributes: what a
//! client's request asks for, and the answers this node sends.

use starling_core::xml::{Element, escape, ns};

use crate::stream::Limits;
use crate::stream::framing::{self, FrameError};

pub(super) const HTTPBIND: &str = "http://jabber.org/protocol/httpbind";
pub(super) const XBOSH: &str = "urn:xmpp:xbosh";

/// What a request is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    /// No `sid`: a new session (XEP-0124 7.1).
    Create {
        to: String,
        lang: Option<String>,
        wait: Option<u64>,
        hold: Option<u32>,
    },
    /// `xmpp:restart='true'` (XEP-0206 5): a new stream after SASL.
    Restart,
    /// `type='terminate'`: the client ends the session (XEP-0124 12).
    Terminate,
    Payload,
}

#[derive(Debug)]
pub(super) struct Request {
    pub(super) rid: u64,
    pub(super) sid: Option<String>,
    pub(super) kind: Kind,
    /// The children, as bytes of a client stream.
    pub(super) payload: Vec<u8>,
}

/// Why a body is refused (answered with a terminate body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum BodyError {
    /// Not a well-formed `<body/>` of the right namespace, or no `rid`.
    BadRequest(String),
    Frame(FrameError),
}

pub(super) fn parse(bytes: &[u8], limits: Limits) -> Result<Request, BodyError> {
    let body = framing::parse_body(bytes, limits).map_err(BodyError::Frame)?;
    if !body.is("body", HTTPBIND) {
        return Err(BodyError::BadRequest(format!(
            "<{}/> in {:?} is not a BOSH <body/>",
            body.name(),
            body.ns()
        )));
    }
    let rid = body
        .attr("rid")
        .and_then(|rid| rid.parse::<u64>().ok())
        .ok_or_else(|| BodyError::BadRequest("rid is missing or not a number".into()))?;
    let sid = body.attr("sid").map(str::to_owned);
    let restart = body
        .attrs()
        .any(|(key, value)| key.ends_with(":restart") && value == "true");
    let number = |name: &str| body.attr(name).and_then(|value| value.parse().ok());
    let kind = if sid.is_none() {
        Kind::Create {
            to: body.attr("to").unwrap_or_default().to_owned(),
            lang: body.attr("xml:lang").map(str::to_owned),
            wait: number("wait"),
            hold: number("hold").map(|hold: u64| hold.min(u64::from(u32::MAX)) as u32),
        }
    } else if body.attr("type") == Some("terminate") {
        Kind::Terminate
    } else if restart {
        Kind::Restart
    } else {
        Kind::Payload
    };
    let mut payload = Vec::new();
    for child in body.children() {
        child.write_to(&mut payload, ns::CLIENT);
    }
    Ok(Request {
        rid,
        sid,
        kind,
        payload,
    })
}

/// A client stream header for `to`, what the session reads at a (re)start.
pub(super) fn stream_header(to: &str, lang: Option<&str>) -> Vec<u8> {
    let lang = lang
        .map(|lang| format!(" xml:lang='{}'", escape(lang)))
        .unwrap_or_default();
    format!(
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
         to='{}' version='1.0'{lang}>",
        escape(to)
    )
    .into_bytes()
}

/// `<body>` around `children` with `attributes` (already escaped).
pub(super) fn answer(attributes: &[(&str, String)], children: &[Vec<u8>]) -> String {
    let mut out = format!("<body xmlns='{HTTPBIND}'");
    for (name, value) in attributes {
        out.push_str(&format!(" {name}='{value}'"));
    }
    if children.is_empty() {
        out.push_str("/>");
        return out;
    }
    out.push('>');
    for child in children {
        out.push_str(&String::from_utf8_lossy(child));
    }
    out.push_str("</body>");
    out
}

/// `<body type='terminate'/>`, with a condition when the session failed.
pub(super) fn terminate(condition: Option<&str>, children: &[Vec<u8>]) -> String {
    let mut attributes = vec![("type", "terminate".to_owned())];
    if let Some(condition) = condition {
        attributes.push(("condition", condition.to_owned()));
    }
    answer(&attributes, children)
}

/// `<body type='terminate' condition='see-other-uri'><uri>…</uri></body>`:
/// start the session at that BOSH endpoint instead (XEP-0124).
pub(super) fn see_other_uri(uri: &str) -> String {
    let child = format!("<uri>{}</uri>", escape(uri)).into_bytes();
    terminate(Some("see-other-uri"), &[child])
}

/// Whether a frame the session wrote is a stream error.
pub(super) fn is_stream_error(element: &Element) -> bool {
    element.is("error", ns::STREAM)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_stanza_size: 10_000,
            max_depth: 16,
        }
    }

    #[test]
    fn creation_restart_terminate_and_payload() {
        let create = parse(
            b"<body xmlns='http://jabber.org/protocol/httpbind' rid='10' to='example.com' \
              wait='30' hold='1' xml:lang='en' xmlns:xmpp='urn:xmpp:xbosh' xmpp:version='1.0'/>",
            limits(),
        )
        .unwrap();
        assert_eq!(create.rid, 10);
        assert_eq!(
            create.kind,
            Kind::Create {
                to: "example.com".into(),
                lang: Some("en".into()),
                wait: Some(30),
                hold: Some(1)
            }
        );
        let restart = parse(
            b"<body xmlns='http://jabber.org/protocol/httpbind' rid='11' sid='s' \
              xmlns:xmpp='urn:xmpp:xbosh' xmpp:restart='true'/>",
            limits(),
        )
        .unwrap();
        assert_eq!(restart.kind, Kind::Restart);
        let payload = parse(
            b"<body xmlns='http://jabber.org/protocol/httpbind' rid='12' sid='s'>\
              <message xmlns='jabber:client' to='a@b'><body>hi</body></message></body>",
            limits(),
        )
        .unwrap();
        assert_eq!(payload.kind, Kind::Payload);
        assert_eq!(
            String::from_utf8(payload.payload).unwrap(),
            "<message to=\"a@b\"><body>hi</body></message>"
        );
        let end = parse(
            b"<body xmlns='http://jabber.org/protocol/httpbind' rid='13' sid='s' type='terminate'/>",
            limits(),
        )
        .unwrap();
        assert_eq!(end.kind, Kind::Terminate);
    }

    #[test]
    fn bad_bodies() {
        assert!(matches!(
            parse(
                b"<body xmlns='http://jabber.org/protocol/httpbind'/>",
                limits()
            ),
            Err(BodyError::BadRequest(_))
        ));
        assert!(matches!(
            parse(b"<iq rid='1'/>", limits()),
            Err(BodyError::BadRequest(_))
        ));
        assert!(matches!(
            parse(b"<body", limits()),
            Err(BodyError::Frame(_))
        ));
    }
}
