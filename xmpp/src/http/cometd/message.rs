//! Bayeux 1.0 messages: a request body becomes a list of messages, each
//! checked on its own, and replies are built here so every answer has the
//! same shape (`channel`, `id`, `clientId`, `successful`, `error`).
//!
//! Nothing here touches clients or channels; a message that cannot be
//! understood becomes a [`Rejected`] that still names its channel and id so
//! the client can match the error reply to its request.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

pub(crate) const HANDSHAKE: &str = "/meta/handshake";
pub(crate) const CONNECT: &str = "/meta/connect";
pub(crate) const SUBSCRIBE: &str = "/meta/subscribe";
pub(crate) const UNSUBSCRIBE: &str = "/meta/unsubscribe";
pub(crate) const DISCONNECT: &str = "/meta/disconnect";

/// The transports this server speaks, as named in `supportedConnectionTypes`.
pub(crate) const LONG_POLLING: &str = "long-polling";
pub(crate) const WEBSOCKET: &str = "websocket";

/// What a message asks for, from its channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Handshake,
    Connect,
    Subscribe,
    Unsubscribe,
    Disconnect,
    /// A `/meta/...` channel Bayeux does not define.
    UnknownMeta,
    /// A `/service/...` channel: private request/response, never broadcast.
    Service,
    /// Any other channel: a publish.
    Publish,
}

/// One incoming message that has a valid channel.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub(crate) channel: String,
    pub(crate) kind: Kind,
    /// Echoed back unchanged (clients send strings, some send numbers).
    pub(crate) id: Option<Value>,
    pub(crate) client_id: Option<String>,
    /// A publish's `data` as the client wrote it: subscribers get these
    /// bytes, not a re-serialisation that would reorder keys or respell
    /// numbers.
    data: Option<Box<RawValue>>,
    pub(crate) fields: Map<String, Value>,
}

/// A message that could not be read: the error reply to send for it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rejected {
    pub(crate) channel: Option<String>,
    pub(crate) id: Option<Value>,
    pub(crate) error: BayeuxError,
}

/// A Bayeux error string `code:args:text`, e.g. `402::Unknown client`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BayeuxError {
    pub(crate) code: u16,
    pub(crate) arg: String,
    pub(crate) text: String,
}

impl BayeuxError {
    pub(crate) fn new(code: u16, text: impl Into<String>) -> BayeuxError {
        BayeuxError {
            code,
            arg: String::new(),
            text: text.into(),
        }
    }

    pub(crate) fn with_arg(code: u16, arg: impl Into<String>, text: impl Into<String>) -> Self {
        BayeuxError {
            code,
            arg: arg.into(),
            text: text.into(),
        }
    }

    pub(crate) fn unknown_client() -> BayeuxError {
        BayeuxError::new(402, "Unknown client")
    }
}

impl std::fmt::Display for BayeuxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.code, self.arg, self.text)
    }
}

/// A body that is not JSON, or JSON that is neither a message nor a batch.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("malformed JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("expected a message object or an array of them")]
    NotMessages,
}

/// Splits a request body (one message or a batch) into checked messages,
/// in order. An empty batch is valid: faye sends `[]` as a WebSocket ping.
pub(crate) fn parse_body(body: &[u8]) -> Result<Vec<Result<Message, Rejected>>, BodyError> {
    let body: &RawValue = serde_json::from_slice(body)?;
    let raws: Vec<&RawValue> = match body.get().as_bytes().first() {
        Some(b'[') => serde_json::from_str(body.get())?,
        Some(b'{') => vec![body],
        _ => return Err(BodyError::NotMessages),
    };
    Ok(raws.into_iter().map(Message::parse).collect())
}

/// The `data` of a message, unparsed.
#[derive(Deserialize)]
struct RawData<'a> {
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

impl Message {
    pub(crate) fn parse(raw: &RawValue) -> Result<Message, Rejected> {
        let mut fields = match serde_json::from_str::<Value>(raw.get()) {
            Ok(Value::Object(fields)) => fields,
            Ok(_) => return Err(rejected(None, None, "message is not a JSON object")),
            // The body was read as JSON already; a parser limit such as the
            // nesting depth may still refuse a message.
            Err(error) => return Err(rejected(None, None, &format!("malformed message: {error}"))),
        };
        let id = fields.remove("id");
        let channel = match fields.remove("channel") {
            Some(Value::String(channel)) => channel,
            Some(_) => return Err(rejected(None, id, "channel is not a string")),
            None => return Err(rejected(None, id, "message has no channel")),
        };
        if let Err(reason) = check_channel(&channel) {
            let error = BayeuxError::with_arg(400, &channel, reason);
            return Err(Rejected {
                channel: Some(channel),
                id,
                error,
            });
        }
        let client_id = match fields.remove("clientId") {
            None | Some(Value::Null) => None,
            Some(Value::String(client_id)) => Some(client_id),
            Some(_) => return Err(rejected(Some(channel), id, "clientId is not a string")),
        };
        let kind = kind_of(&channel);
        let data = match kind {
            Kind::Publish if fields.remove("data").is_some() => {
                match serde_json::from_str::<RawData<'_>>(raw.get()) {
                    Ok(RawData { data }) => data.map(RawValue::to_owned),
                    // Only a `data` key given twice gets here.
                    Err(error) => {
                        return Err(rejected(Some(channel), id, &format!("data: {error}")));
                    }
                }
            }
            _ => None,
        };
        Ok(Message {
            channel,
            kind,
            id,
            client_id,
            data,
            fields,
        })
    }

    pub(crate) fn ext(&self) -> Option<&Map<String, Value>> {
        self.fields.get("ext").and_then(Value::as_object)
    }

    /// A publish's `data`, byte for byte as the client sent it.
    pub(crate) fn data(&self) -> Option<&RawValue> {
        self.data.as_deref()
    }

    /// The channels of a subscribe or unsubscribe: `subscription` is one
    /// channel or an array of them.
    pub(crate) fn subscriptions(&self) -> Result<Vec<String>, BayeuxError> {
        let channels = match self.fields.get("subscription") {
            Some(Value::String(channel)) => vec![channel.clone()],
            Some(Value::Array(channels)) if !channels.is_empty() => channels
                .iter()
                .map(|channel| channel.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| BayeuxError::new(400, "subscription must name channels"))?,
            _ => return Err(BayeuxError::new(400, "subscription missing")),
        };
        for channel in &channels {
            check_channel(channel).map_err(|reason| BayeuxError::with_arg(400, channel, reason))?;
        }
        Ok(channels)
    }

    /// How long the client wants this connect held (`advice.timeout`, ms).
    pub(crate) fn advice_timeout(&self) -> Option<u64> {
        self.fields
            .get("advice")?
            .get("timeout")?
            .as_f64()
            .filter(|timeout| *timeout >= 0.0)
            .map(|timeout| timeout as u64)
    }

    /// The ack extension's batch on a connect (`ext.ack`).
    pub(crate) fn ack_batch(&self) -> Option<u64> {
        self.ext()?.get("ack")?.as_u64()
    }

    /// Whether a handshake asks for the ack extension (`ext.ack: true`).
    pub(crate) fn wants_acks(&self) -> bool {
        self.ext()
            .and_then(|ext| ext.get("ack"))
            .is_some_and(|ack| ack.as_bool() == Some(true))
    }

    /// A reply on this message's channel with its id (and the client's id
    /// when given).
    pub(crate) fn reply(&self, client_id: Option<&str>, successful: bool) -> Map<String, Value> {
        reply(Some(&self.channel), self.id.as_ref(), client_id, successful)
    }

    pub(crate) fn error_reply(&self, error: &BayeuxError) -> Map<String, Value> {
        let mut reply = self.reply(self.client_id.as_deref(), false);
        reply.insert("error".into(), error.to_string().into());
        if let Some(subscription) = self.fields.get("subscription") {
            reply.insert("subscription".into(), subscription.clone());
        }
        reply
    }
}

impl Rejected {
    pub(crate) fn reply(&self) -> Map<String, Value> {
        let mut reply = reply(self.channel.as_deref(), self.id.as_ref(), None, false);
        reply.insert("error".into(), self.error.to_string().into());
        reply
    }
}

fn rejected(channel: Option<String>, id: Option<Value>, text: &str) -> Rejected {
    Rejected {
        channel,
        id,
        error: BayeuxError::new(400, text),
    }
}

pub(crate) fn reply(
    channel: Option<&str>,
    id: Option<&Value>,
    client_id: Option<&str>,
    successful: bool,
) -> Map<String, Value> {
    let mut reply = Map::new();
    if let Some(channel) = channel {
        reply.insert("channel".into(), channel.into());
    }
    if let Some(id) = id {
        reply.insert("id".into(), id.clone());
    }
    if let Some(client_id) = client_id {
        reply.insert("clientId".into(), client_id.into());
    }
    reply.insert("successful".into(), successful.into());
    reply
}

/// The `advice` object: `reconnect` is "retry", "handshake" or "none".
pub(crate) fn advice(reconnect: &str, interval_ms: u64, timeout_ms: u64) -> Value {
    json!({"reconnect": reconnect, "interval": interval_ms, "timeout": timeout_ms})
}

fn kind_of(channel: &str) -> Kind {
    match channel {
        HANDSHAKE => Kind::Handshake,
        CONNECT => Kind::Connect,
        SUBSCRIBE => Kind::Subscribe,
        UNSUBSCRIBE => Kind::Unsubscribe,
        DISCONNECT => Kind::Disconnect,
        _ if channel.starts_with("/meta/") => Kind::UnknownMeta,
        _ if channel.starts_with("/service/") || channel == "/service" => Kind::Service,
        _ => Kind::Publish,
    }
}

/// Bayeux channel names: `/segment/segment...`, non-empty segments of
/// visible characters; `*` and `**` only as the last segment.
pub(crate) fn check_channel(channel: &str) -> Result<(), &'static str> {
    let Some(rest) = channel.strip_prefix('/') else {
        return Err("channel must start with '/'");
    };
    if channel.len() > 1024 {
        return Err("channel name too long");
    }
    let segments: Vec<&str> = rest.split('/').collect();
    for (index, segment) in segments.iter().enumerate() {
        if segment.is_empty() {
            return Err("empty channel segment");
        }
        if segment.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err("channel contains spaces or control characters");
        }
        let wildcard = *segment == "*" || *segment == "**";
        if segment.contains('*') && !(wildcard && index + 1 == segments.len()) {
            return Err("wildcards only as the whole last segment");
        }
    }
    Ok(())
}

pub(crate) fn is_wildcard(channel: &str) -> bool {
    channel.ends_with("/*") || channel.ends_with("/**")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(body: &str) -> Result<Message, Rejected> {
        let mut messages = parse_body(body.as_bytes()).expect("a body");
        assert_eq!(messages.len(), 1);
        messages.remove(0)
    }

    #[test]
    fn a_single_message_and_a_batch_parse_in_order() {
        let message = one(r#"{"channel":"/meta/handshake","version":"1.0","id":"1"}"#).unwrap();
        assert_eq!(message.kind, Kind::Handshake);
        assert_eq!(message.id, Some(json!("1")));
        let batch = parse_body(
            br#"[{"channel":"/meta/connect","clientId":"abc","id":2},
                 {"channel":"/pubsub/news","data":{"a":1}},
                 {"channel":"/service/echo"},
                 {"channel":"/meta/bogus"}]"#,
        )
        .unwrap();
        let kinds: Vec<Kind> = batch.into_iter().map(|m| m.unwrap().kind).collect();
        assert_eq!(
            kinds,
            [
                Kind::Connect,
                Kind::Publish,
                Kind::Service,
                Kind::UnknownMeta
            ]
        );
    }

    #[test]
    fn a_publish_keeps_its_data_as_written() {
        let data = r#"{"z": 1, "a": [1.0, 1e3, "\u00e9"], "big": 123456789012345678901234567890}"#;
        let message = one(&format!(
            r#"{{"channel":"/pubsub/x","id":"1","data":{data}}}"#
        ))
        .unwrap();
        assert_eq!(message.kind, Kind::Publish);
        assert_eq!(message.data().map(RawValue::get), Some(data));
        assert!(!message.fields.contains_key("data"), "kept once");
        let no_data = one(r#"{"channel":"/pubsub/x"}"#).unwrap();
        assert!(no_data.data().is_none());
        let rejected = one(r#"{"channel":"/pubsub/x","id":"2","data":1,"data":2}"#).unwrap_err();
        assert_eq!(rejected.id, Some(json!("2")));
        assert!(
            rejected.error.text.contains("duplicate"),
            "{:?}",
            rejected.error
        );
    }

    #[test]
    fn malformed_bodies_are_errors() {
        assert!(matches!(parse_body(b"{nope"), Err(BodyError::Json(_))));
        assert!(matches!(parse_body(b"42"), Err(BodyError::NotMessages)));
        assert!(parse_body(b"[]").unwrap().is_empty());
        assert!(matches!(parse_body(b""), Err(BodyError::Json(_))));
    }

    #[test]
    fn a_message_without_a_channel_is_rejected_with_its_id() {
        let rejected = one(r#"{"id":"7","data":1}"#).unwrap_err();
        assert_eq!(rejected.id, Some(json!("7")));
        let reply = Value::Object(rejected.reply());
        assert_eq!(reply["successful"], json!(false));
        assert_eq!(reply["id"], json!("7"));
        assert_eq!(reply["error"], json!("400::message has no channel"));
        let rejected = parse_body(b"[1]").unwrap().remove(0).unwrap_err();
        assert_eq!(rejected.error.code, 400);
        let rejected = one(r#"{"channel":7}"#).unwrap_err();
        assert!(rejected.error.text.contains("not a string"));
    }

    #[test]
    fn channel_names_are_checked() {
        for good in [
            "/a",
            "/pubsub/news",
            "/a/*",
            "/a/**",
            "/pubsub/node-1_x.y@z",
        ] {
            assert_eq!(check_channel(good), Ok(()), "{good}");
        }
        for bad in [
            "", "a", "/", "//", "/a//b", "/a/*/b", "/a*", "/a b", "/a/***",
        ] {
            assert!(check_channel(bad).is_err(), "{bad}");
        }
        let rejected = one(r#"{"channel":"nope","id":"3"}"#).unwrap_err();
        assert_eq!(rejected.channel.as_deref(), Some("nope"));
        assert_eq!(
            rejected.error.to_string(),
            "400:nope:channel must start with '/'"
        );
    }

    #[test]
    fn subscriptions_are_one_channel_or_a_list() {
        let message = one(r#"{"channel":"/meta/subscribe","subscription":"/a"}"#).unwrap();
        assert_eq!(message.subscriptions().unwrap(), ["/a"]);
        let message = one(r#"{"channel":"/meta/subscribe","subscription":["/a","/b"]}"#).unwrap();
        assert_eq!(message.subscriptions().unwrap(), ["/a", "/b"]);
        for bad in [
            r#"{"channel":"/meta/subscribe"}"#,
            r#"{"channel":"/meta/subscribe","subscription":[]}"#,
            r#"{"channel":"/meta/subscribe","subscription":[1]}"#,
            r#"{"channel":"/meta/subscribe","subscription":"x"}"#,
        ] {
            assert_eq!(
                one(bad).unwrap().subscriptions().unwrap_err().code,
                400,
                "{bad}"
            );
        }
    }

    #[test]
    fn connect_advice_and_ack_fields() {
        let message = one(
            r#"{"channel":"/meta/connect","clientId":"c","advice":{"timeout":0},"ext":{"ack":5}}"#,
        )
        .unwrap();
        assert_eq!(message.advice_timeout(), Some(0));
        assert_eq!(message.ack_batch(), Some(5));
        assert_eq!(message.client_id.as_deref(), Some("c"));
        let handshake = one(r#"{"channel":"/meta/handshake","ext":{"ack":true}}"#).unwrap();
        assert!(handshake.wants_acks());
        assert!(
            !one(r#"{"channel":"/meta/handshake"}"#)
                .unwrap()
                .wants_acks()
        );
    }

    #[test]
    fn error_strings_follow_the_bayeux_grammar() {
        assert_eq!(
            BayeuxError::unknown_client().to_string(),
            "402::Unknown client"
        );
        let error = BayeuxError::with_arg(403, "/pubsub/x", "forbidden");
        assert_eq!(error.to_string(), "403:/pubsub/x:forbidden");
        let message = one(r#"{"channel":"/meta/subscribe","id":"9","subscription":"/a"}"#).unwrap();
        let reply = Value::Object(message.error_reply(&error));
        assert_eq!(reply["subscription"], json!("/a"));
        assert_eq!(reply["channel"], json!("/meta/subscribe"));
        assert_eq!(reply["id"], json!("9"));
    }
}
