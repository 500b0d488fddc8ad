//! The wire format between members: length-delimited frames, each a
//! postcard-encoded [`Frame`].
//!
//! ```text
//!   +----------------+---------------------------+
//!   | length: u32 BE | postcard(Frame), `length` |
//!   +----------------+---------------------------+
//! ```
//!
//! `Frame` only ever grows at the end (postcard encodes the variant index),
//! and [`PROTOCOL_VERSION`] changes whenever an existing variant changes, so
//! the handshake can refuse a peer it would misunderstand.
//!
//! The few lines of framing are kept here rather than taken from
//! tokio-util's `LengthDelimitedCodec` (the same wire layout): the
//! handshake reads exactly one frame from the bare socket before handing it
//! to TLS, which a buffered codec would read past, so the plain reader
//! would stay beside the codec and the code would grow, not shrink.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use starling_core::cluster::{PubSubEvent, StanzaKind};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Version of [`Frame`] and of the handshake (2: envelopes are acknowledged
/// with [`Frame::Received`]; 3: a kick says why; 4: pub/sub interest and
/// events; 5: interest changes are numbered and acknowledged; 6: late
/// pub/sub notifications, `PubSubEventKind::Notification`; 7: links are TLS
/// by default and the secret's proof covers the TLS exporter value; 8:
/// session handover for XEP-0198 resumption on another member, and a
/// member's status carries its client stanza count; 9: envelopes are
/// numbered per pair of incarnations, `Received` says up to which number,
/// what a dead link left unacknowledged is sent again on the next one, and a
/// node's hello carries its web URL, for see-other-uri).
pub const PROTOCOL_VERSION: u32 = 9;

/// Frames larger than this are refused (a stanza is at most 256 KiB by
/// default; a directory snapshot is sent in chunks well below this).
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Who a node is, as it says in its hello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub node_id: u64,
    pub name: String,
    /// Changes at every start of the node (its start time in ms).
    pub incarnation: u64,
    pub cluster_addr: String,
    pub c2s_addr: String,
    pub http_addr: String,
    /// The base URL web clients reach the node at (see-other-uri).
    pub web_url: String,
    pub max_connections: u32,
}

/// One session in a directory message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireSession {
    pub jid: String,
    pub priority: i8,
    pub available: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireChange {
    Bound(WireSession),
    Presence(WireSession),
    Unbound(String),
}

/// The owner's sessions, replicated to every member (see `replication`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DirectoryMessage {
    /// All of the sender's sessions as of `seq`; `last` marks the final
    /// chunk of a snapshot.
    Snapshot {
        incarnation: u64,
        seq: u64,
        sessions: Vec<WireSession>,
        first: bool,
        last: bool,
    },
    /// Changes after `seq - 1`, in order.
    Delta {
        incarnation: u64,
        seq: u64,
        changes: Vec<WireChange>,
    },
    /// The receiver lost track (a gap in `seq`): please send a snapshot.
    ResyncRequest,
}

/// A routed stanza: the header the router needs, the XML untouched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEnvelope {
    pub from: String,
    pub to: String,
    pub kind: WireKind,
    pub xml: Bytes,
    pub hops: u8,
    /// Its number in the sender's pair with the receiver (set by the pair
    /// when sent; see `transport::pair`).
    pub seq: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireKind {
    Message,
    Presence,
    Iq,
}

impl From<StanzaKind> for WireKind {
    fn from(kind: StanzaKind) -> Self {
        match kind {
            StanzaKind::Message => WireKind::Message,
            StanzaKind::Presence => WireKind::Presence,
            StanzaKind::Iq => WireKind::Iq,
        }
    }
}

impl From<WireKind> for StanzaKind {
    fn from(kind: WireKind) -> Self {
        match kind {
            WireKind::Message => StanzaKind::Message,
            WireKind::Presence => StanzaKind::Presence,
            WireKind::Iq => StanzaKind::Iq,
        }
    }
}

/// Everything that crosses a peer link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// First frame in each direction.
    Hello {
        magic: [u8; 8],
        protocol_version: u32,
        info: PeerInfo,
        nonce: [u8; 32],
    },
    /// Second frame in each direction: proof of the shared secret.
    Auth {
        proof: [u8; 32],
    },
    /// Why the sender is closing the link (version mismatch, bad secret,
    /// duplicate link, shutdown).
    Goodbye {
        reason: String,
    },
    Heartbeat,
    Envelope(WireEnvelope),
    Directory(DirectoryMessage),
    /// An openraft RPC and its reply, matched by `id`.
    RaftRequest {
        id: u64,
        payload: Vec<u8>,
    },
    RaftReply {
        id: u64,
        payload: Vec<u8>,
    },
    /// A node asks to be added to the membership (forwarded to the leader).
    Join {
        info: PeerInfo,
    },
    /// A node leaves cleanly: remove it now, do not wait for the failure detector.
    Leave,
    /// Close the session of this full JID: it logged in again elsewhere,
    /// or (`admin`) an administrator ended it.
    Kick {
        jid: String,
        admin: bool,
    },
    /// Evict `key` from cache `cache`, then acknowledge `id`.
    Invalidate {
        id: u64,
        cache: String,
        key: String,
    },
    InvalidateAck {
        id: u64,
    },
    /// Offline messages were stored for this bare JID.
    OfflineStored {
        user: String,
    },
    /// The sender's view of the membership, sent every heartbeat period:
    /// lets members notice that their views disagree.
    Status(MemberStatus),
    /// The sender delivered the peer's envelopes up to this number; the peer
    /// forgets those and keeps the rest for the next link (see
    /// `transport::pair`).
    Received {
        up_to: u64,
    },
    /// The sender's set of pub/sub nodes with local watchers (see
    /// `replication::interest`).
    Interest(InterestMessage),
    /// A pub/sub event for the receiver's subscribers and watchers.
    PubSub(PubSubEvent),
    /// The receiver applied the sender's interest messages up to `seq`
    /// (see `replication::interest_acks`).
    InterestAck {
        seq: u64,
    },
    /// A client resumes on the sender a session the receiver holds: hand it
    /// over. The payload is the server's, carried untouched.
    HandoverRequest {
        id: u64,
        request: Bytes,
    },
    /// The answer to [`Frame::HandoverRequest`] `id`: the session's state,
    /// or why it cannot be resumed.
    HandoverReply {
        id: u64,
        reply: Bytes,
    },
}

/// The owner's pub/sub interest set, replicated to every member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
///
/// `seq` numbers the owner's changes (a snapshot carries the number of the
/// last change it contains); the receiver acknowledges it with
/// [`Frame::InterestAck`] once applied.
pub enum InterestMessage {
    /// All nodes the sender has watchers of.
    Snapshot { seq: u64, nodes: Vec<String> },
    /// One node gained its first or lost its last watcher.
    Changed {
        seq: u64,
        node: String,
        interested: bool,
    },
}

/// What a member believes about the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MemberStatus {
    pub initialized: bool,
    pub leader: Option<u64>,
    pub term: u64,
    pub members: Vec<u64>,
    /// Members it currently considers down.
    pub down: Vec<u64>,
    /// Stanzas its clients sent and received so far.
    pub client_stanzas: u64,
}

pub const MAGIC: [u8; 8] = *b"STARLING";

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("undecodable frame: {0}")]
    Decode(#[from] postcard::Error),
}

/// Appends one encoded frame (length prefix included) to `out`.
pub fn encode_into(frame: &Frame, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    let encoded = postcard::to_extend(frame, std::mem::take(out))?;
    *out = encoded;
    let length = out.len() - start - 4;
    if length > MAX_FRAME {
        out.truncate(start);
        return Err(FrameError::TooLarge(length));
    }
    out[start..start + 4].copy_from_slice(&(length as u32).to_be_bytes());
    Ok(())
}

pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frame: &Frame,
) -> Result<(), FrameError> {
    let mut out = Vec::with_capacity(64);
    encode_into(frame, &mut out)?;
    writer.write_all(&out).await?;
    writer.flush().await?;
    Ok(())
}

/// Reads one frame; `Ok(None)` on a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    buffer: &mut Vec<u8>,
) -> Result<Option<Frame>, FrameError> {
    let mut length = [0u8; 4];
    match reader.read_exact(&mut length).await {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error.into()),
    }
    let length = u32::from_be_bytes(length) as usize;
    if length > MAX_FRAME {
        return Err(FrameError::TooLarge(length));
    }
    buffer.clear();
    buffer.resize(length, 0);
    reader.read_exact(buffer).await?;
    let frame = postcard::from_bytes(buffer)?;
    // A large snapshot chunk must not pin its buffer for the link's lifetime.
    if buffer.capacity() > 64 * 1024 {
        *buffer = Vec::new();
    }
    Ok(Some(frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_through_a_byte_stream() {
        let frames = vec![
            Frame::Heartbeat,
            Frame::Envelope(WireEnvelope {
                from: "a@example.com/r".into(),
                to: "b@example.com/s".into(),
                kind: WireKind::Message,
                xml: Bytes::from_static(b"<message><body>hi</body></message>"),
                hops: 1,
                seq: 7,
            }),
            Frame::Directory(DirectoryMessage::Delta {
                incarnation: 7,
                seq: 3,
                changes: vec![WireChange::Unbound("a@example.com/r".into())],
            }),
            Frame::Interest(InterestMessage::Snapshot {
                seq: 4,
                nodes: vec!["news".into()],
            }),
            Frame::Interest(InterestMessage::Changed {
                seq: 5,
                node: "news".into(),
                interested: false,
            }),
            Frame::InterestAck { seq: 5 },
            Frame::HandoverRequest {
                id: 9,
                request: Bytes::from_static(b"{\"previd\":\"x\"}"),
            },
            Frame::HandoverReply {
                id: 9,
                reply: Bytes::from_static(b"{}"),
            },
            Frame::PubSub(PubSubEvent {
                node: "news".into(),
                kind: starling_core::cluster::PubSubEventKind::Published {
                    item_id: "i1".into(),
                    publisher: Some("a@example.com".into()),
                    payload: "<entry xmlns=\"urn:t\">x</entry>".into(),
                },
                notification: Bytes::from_static(b"<message from=\"pubsub.example.com\"/>"),
                recipients: vec!["b@example.com/s".into()],
            }),
        ];
        let mut wire = Vec::new();
        for frame in &frames {
            encode_into(frame, &mut wire).unwrap();
        }
        let mut reader = &wire[..];
        let mut buffer = Vec::new();
        for frame in &frames {
            assert_eq!(
                read_frame(&mut reader, &mut buffer).await.unwrap().as_ref(),
                Some(frame)
            );
        }
        assert!(
            read_frame(&mut reader, &mut buffer)
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn oversized_length_is_refused_before_reading() {
        let wire = ((MAX_FRAME + 1) as u32).to_be_bytes();
        let mut reader = &wire[..];
        let error = read_frame(&mut reader, &mut Vec::new()).await.unwrap_err();
        assert!(matches!(error, FrameError::TooLarge(_)));
    }
}
