//! A minimal Bayeux long-polling client for tests that need exact timing
//! (act the moment a reply arrives) or many clients from one process: one
//! HTTP request per message batch, JSON in and out.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::{Value, json};
use starling_tests::http::HttpRequest;

/// Where the test's requests come from unless told otherwise.
pub(crate) const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Posts one batch to `/cometd` from the local address `source`; returns
/// the HTTP status and the replies.
pub(crate) async fn post_from(source: IpAddr, addr: SocketAddr, batch: Value) -> (u16, Vec<Value>) {
    let response = HttpRequest::new(addr, "POST", "/cometd")
        .from_ip(source)
        .json(&batch)
        .send()
        .await
        .unwrap_or_else(|error| panic!("POST http://{addr}/cometd: {error}"));
    let replies = match response.json() {
        Value::Array(replies) => replies,
        other => panic!("a Bayeux reply is a JSON array, got {other}"),
    };
    (response.status, replies)
}

/// The reply on `channel` in a batch of replies.
pub(crate) fn reply_on<'a>(replies: &'a [Value], channel: &str) -> &'a Value {
    replies
        .iter()
        .find(|reply| reply["channel"] == channel)
        .unwrap_or_else(|| panic!("no {channel} reply in {replies:?}"))
}

/// The handshake reply (successful or not), for a request from `source`.
pub(crate) async fn handshake_from(source: IpAddr, addr: SocketAddr) -> Value {
    let (_, replies) = post_from(
        source,
        addr,
        json!([{
            "channel": "/meta/handshake",
            "version": "1.0",
            "supportedConnectionTypes": ["long-polling"],
        }]),
    )
    .await;
    reply_on(&replies, "/meta/handshake").clone()
}

/// A client that completed its handshake.
pub(crate) struct Bayeux {
    addr: SocketAddr,
    source: IpAddr,
    pub(crate) id: String,
}

impl Bayeux {
    /// Handshakes with the node at `addr`, panicking when refused.
    pub(crate) async fn start(addr: SocketAddr) -> Bayeux {
        Bayeux::start_from(LOCALHOST, addr).await
    }

    /// [`Bayeux::start`] from the local address `source`.
    pub(crate) async fn start_from(source: IpAddr, addr: SocketAddr) -> Bayeux {
        let reply = handshake_from(source, addr).await;
        assert_eq!(reply["successful"], true, "handshake refused: {reply}");
        Bayeux {
            addr,
            source,
            id: reply["clientId"]
                .as_str()
                .expect("a clientId in the handshake reply")
                .to_owned(),
        }
    }

    async fn meta(&self, channel: &str, mut message: Value) -> Value {
        message["channel"] = channel.into();
        message["clientId"] = self.id.as_str().into();
        let (_, replies) = post_from(self.source, self.addr, json!([message])).await;
        reply_on(&replies, channel).clone()
    }

    /// Subscribes to `channel`; returns the reply.
    pub(crate) async fn subscribe(&self, channel: &str) -> Value {
        self.meta("/meta/subscribe", json!({"subscription": channel}))
            .await
    }

    /// One connect: the events it carried (its reply left out).
    pub(crate) async fn connect(&self) -> Vec<Value> {
        let (_, replies) = post_from(
            self.source,
            self.addr,
            json!([{
                "channel": "/meta/connect",
                "clientId": self.id,
                "connectionType": "long-polling",
            }]),
        )
        .await;
        let reply = reply_on(&replies, "/meta/connect");
        assert_eq!(reply["successful"], true, "connect failed: {reply}");
        replies
            .into_iter()
            .filter(|message| message["channel"] != "/meta/connect")
            .collect()
    }

    /// Connects until `enough` says the events so far suffice, or `patience` passes.
    pub(crate) async fn events_until(
        &self,
        patience: Duration,
        enough: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + patience;
        let mut events = Vec::new();
        while !enough(&events) && tokio::time::Instant::now() < deadline {
            events.extend(self.connect().await);
        }
        events
    }

    pub(crate) async fn disconnect(self) -> Value {
        self.meta("/meta/disconnect", json!({})).await
    }
}
