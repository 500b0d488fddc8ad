//! A Bayeux 1.0 (CometD) client over WebSocket, as small as a load run needs: handshake,
//! subscribe, the `/meta/connect` loop and events, on one socket per client.
//!
//! Every frame the server sends is a JSON array of messages; [`parse_frame`] turns one into
//! [`Incoming`] messages. Reading is cancel-safe, so a subscriber can wait for events and
//! for the end of the run at once.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::transport::connect_tcp;

/// Buffers per socket: frames are small, and the library's 128 KiB default read buffer
/// would make 10,000 clients cost over a gigabyte in the driver.
const READ_BUFFER: usize = 4 * 1024;
const WRITE_BUFFER: usize = 4 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BayeuxError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{step}: WebSocket: {source}")]
    WebSocket {
        step: &'static str,
        #[source]
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    #[error("{step}: no answer within {waited:?}")]
    Timeout {
        step: &'static str,
        waited: Duration,
    },
    #[error("{step}: refused: {reply}")]
    Refused { step: &'static str, reply: String },
    #[error("{step}: the server closed the WebSocket")]
    Closed { step: &'static str },
    #[error("{step}: unreadable frame: {text}")]
    Frame { step: &'static str, text: String },
}

impl BayeuxError {
    /// A short, countable name for reports, like [`crate::ClientError::kind`].
    pub fn kind(&self) -> String {
        match self {
            BayeuxError::Connect { source, .. } => format!("connect:{:?}", source.kind()),
            BayeuxError::WebSocket { step, .. } => format!("websocket:{step}"),
            BayeuxError::Timeout { step, .. } => format!("timeout:{step}"),
            BayeuxError::Refused { step, .. } => format!("refused:{step}"),
            BayeuxError::Closed { step } => format!("closed:{step}"),
            BayeuxError::Frame { step, .. } => format!("frame:{step}"),
        }
    }
}

/// One message from the server, as far as a load run cares.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A reply on a `/meta/...` channel.
    Meta(MetaReply),
    /// A message on any other channel: an event.
    Event { channel: String, data: Value },
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetaReply {
    pub channel: String,
    pub successful: bool,
    pub client_id: Option<String>,
    pub error: Option<String>,
    /// `advice.reconnect`, when given.
    pub reconnect: Option<String>,
}

#[derive(Deserialize)]
struct WireMessage {
    channel: String,
    #[serde(default)]
    successful: Option<bool>,
    #[serde(default, rename = "clientId")]
    client_id: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    advice: Option<WireAdvice>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Deserialize)]
struct WireAdvice {
    #[serde(default)]
    reconnect: Option<String>,
}

/// The messages of one frame: a JSON array of messages, or a single message.
pub fn parse_frame(text: &str) -> Result<Vec<Incoming>, String> {
    let value: Value = serde_json::from_str(text).map_err(|error| error.to_string())?;
    let messages = match value {
        Value::Array(messages) => messages,
        single @ Value::Object(_) => vec![single],
        _ => return Err("neither a message nor an array of messages".to_owned()),
    };
    messages
        .into_iter()
        .map(|message| {
            let wire: WireMessage =
                serde_json::from_value(message).map_err(|error| error.to_string())?;
            Ok(if wire.channel.starts_with("/meta/") {
                Incoming::Meta(MetaReply {
                    channel: wire.channel,
                    successful: wire.successful.unwrap_or(false),
                    client_id: wire.client_id,
                    error: wire.error,
                    reconnect: wire.advice.and_then(|advice| advice.reconnect),
                })
            } else {
                Incoming::Event {
                    channel: wire.channel,
                    data: wire.data.unwrap_or(Value::Null),
                }
            })
        })
        .collect()
}

/// One Bayeux client on its own WebSocket.
pub struct BayeuxClient {
    socket: WebSocketStream<TcpStream>,
    client_id: String,
    next_id: u64,
    /// Messages read but not yet taken, oldest first.
    pending: VecDeque<Incoming>,
}

impl BayeuxClient {
    /// Opens a WebSocket to `ws://addr/cometd` (from `source` when given) and handshakes.
    pub async fn handshake(
        addr: SocketAddr,
        source: Option<IpAddr>,
        timeout: Duration,
    ) -> Result<BayeuxClient, BayeuxError> {
        let step = "handshake";
        let tcp = within(step, timeout, connect_tcp(addr, source))
            .await?
            .map_err(|source| BayeuxError::Connect { addr, source })?;
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(WRITE_BUFFER);
        let url = format!("ws://{addr}/cometd");
        let upgrade = tokio_tungstenite::client_async_with_config(url, tcp, Some(config));
        let (socket, _response) =
            within(step, timeout, upgrade)
                .await?
                .map_err(|source| BayeuxError::WebSocket {
                    step,
                    source: Box::new(source),
                })?;
        let mut client = BayeuxClient {
            socket,
            client_id: String::new(),
            next_id: 0,
            pending: VecDeque::new(),
        };
        let id = client.next_id();
        client
            .send(&json!([{
                "channel": "/meta/handshake",
                "version": "1.0",
                "minimumVersion": "1.0",
                "supportedConnectionTypes": ["websocket"],
                "id": id,
            }]))
            .await?;
        let reply = client.expect_meta(step, "/meta/handshake", timeout).await?;
        client.client_id = reply.client_id.ok_or_else(|| BayeuxError::Refused {
            step,
            reply: "no clientId in the handshake reply".to_owned(),
        })?;
        Ok(client)
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Subscribes to `channel` and starts the connect loop (the first `/meta/connect` goes in
    /// the same frame); returns once the subscription is confirmed.
    pub async fn subscribe(&mut self, channel: &str, timeout: Duration) -> Result<(), BayeuxError> {
        let subscribe_id = self.next_id();
        let connect = self.connect_message();
        self.send(&json!([
            {
                "channel": "/meta/subscribe",
                "clientId": self.client_id,
                "subscription": channel,
                "id": subscribe_id,
            },
            connect,
        ]))
        .await?;
        self.expect_meta("subscribe", "/meta/subscribe", timeout)
            .await
            .map(drop)
    }

    /// Sends the next `/meta/connect` (after the server answered the previous one).
    pub async fn connect(&mut self) -> Result<(), BayeuxError> {
        let connect = self.connect_message();
        self.send(&json!([connect])).await
    }

    /// Says goodbye; the server closes the socket.
    pub async fn disconnect(mut self, timeout: Duration) -> Result<(), BayeuxError> {
        let id = self.next_id();
        let goodbye =
            json!([{"channel": "/meta/disconnect", "clientId": self.client_id, "id": id}]);
        self.send(&goodbye).await?;
        self.expect_meta("disconnect", "/meta/disconnect", timeout)
            .await
            .map(drop)
    }

    /// The next message, with no time limit; cancel-safe.
    pub async fn recv(&mut self) -> Result<Incoming, BayeuxError> {
        loop {
            if let Some(message) = self.pending.pop_front() {
                return Ok(message);
            }
            self.read_frame("recv").await?;
        }
    }

    fn next_id(&mut self) -> String {
        self.next_id += 1;
        self.next_id.to_string()
    }

    fn connect_message(&mut self) -> Value {
        let id = self.next_id();
        json!({
            "channel": "/meta/connect",
            "clientId": self.client_id,
            "connectionType": "websocket",
            "id": id,
        })
    }

    async fn send(&mut self, messages: &Value) -> Result<(), BayeuxError> {
        self.socket
            .send(Frame::Text(messages.to_string().into()))
            .await
            .map_err(|source| BayeuxError::WebSocket {
                step: "send",
                source: Box::new(source),
            })
    }

    /// Waits for the reply on `channel`, keeping other messages for [`BayeuxClient::recv`];
    /// an unsuccessful reply is an error.
    async fn expect_meta(
        &mut self,
        step: &'static str,
        channel: &str,
        timeout: Duration,
    ) -> Result<MetaReply, BayeuxError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut checked = 0;
        loop {
            let found = self.pending.iter().skip(checked).position(
                |message| matches!(message, Incoming::Meta(reply) if reply.channel == channel),
            );
            if let Some(index) = found
                && let Some(Incoming::Meta(reply)) = self.pending.remove(checked + index)
            {
                if !reply.successful {
                    return Err(BayeuxError::Refused {
                        step,
                        reply: format!("{reply:?}"),
                    });
                }
                return Ok(reply);
            }
            checked = self.pending.len();
            tokio::time::timeout_at(deadline, self.read_frame(step))
                .await
                .map_err(|_| BayeuxError::Timeout {
                    step,
                    waited: timeout,
                })??;
        }
    }

    /// Reads one data frame into `pending` (control frames are answered by the library).
    async fn read_frame(&mut self, step: &'static str) -> Result<(), BayeuxError> {
        loop {
            let frame = match self.socket.next().await {
                Some(Ok(frame)) => frame,
                Some(Err(source)) => {
                    return Err(BayeuxError::WebSocket {
                        step,
                        source: Box::new(source),
                    });
                }
                None => return Err(BayeuxError::Closed { step }),
            };
            let text = match &frame {
                Frame::Text(text) => text.as_str(),
                Frame::Binary(bytes) => {
                    std::str::from_utf8(bytes).map_err(|_| BayeuxError::Frame {
                        step,
                        text: "binary frame that is not UTF-8".to_owned(),
                    })?
                }
                Frame::Close(_) => return Err(BayeuxError::Closed { step }),
                Frame::Ping(_) | Frame::Pong(_) | Frame::Frame(_) => continue,
            };
            let messages = parse_frame(text).map_err(|error| BayeuxError::Frame {
                step,
                text: format!("{error}: {}", truncate(text, 200)),
            })?;
            self.pending.extend(messages);
            return Ok(());
        }
    }
}

async fn within<T>(
    step: &'static str,
    timeout: Duration,
    future: impl Future<Output = T>,
) -> Result<T, BayeuxError> {
    tokio::time::timeout(timeout, future)
        .await
        .map_err(|_| BayeuxError::Timeout {
            step,
            waited: timeout,
        })
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_into_meta_replies_and_events() {
        let frame = r#"[
            {"channel":"/meta/connect","successful":true,"clientId":"c1",
             "advice":{"reconnect":"retry","interval":0,"timeout":30000}},
            {"channel":"/pubsub/news","data":{"seq":3},"ext":{"xmpp":{"node":"news","id":"i1"}}}
        ]"#;
        let messages = parse_frame(frame).unwrap();
        assert_eq!(
            messages[0],
            Incoming::Meta(MetaReply {
                channel: "/meta/connect".to_owned(),
                successful: true,
                client_id: Some("c1".to_owned()),
                error: None,
                reconnect: Some("retry".to_owned()),
            })
        );
        let Incoming::Event { channel, data } = &messages[1] else {
            panic!("not an event: {:?}", messages[1])
        };
        assert_eq!(channel, "/pubsub/news");
        assert_eq!(data["seq"], 3);
    }

    #[test]
    fn a_single_message_and_a_refusal_are_read_too() {
        let refused = r#"{"channel":"/meta/subscribe","successful":false,"error":"403::x"}"#;
        let messages = parse_frame(refused).unwrap();
        let Incoming::Meta(reply) = &messages[0] else {
            panic!("not a meta reply")
        };
        assert!(!reply.successful);
        assert_eq!(reply.error.as_deref(), Some("403::x"));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse_frame("[").is_err());
        assert!(parse_frame("42").is_err());
        assert!(parse_frame(r#"[{"data":1}]"#).is_err(), "no channel");
    }
}
