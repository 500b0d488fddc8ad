//! The link handshake: both sides say who they are and which protocol they
//! speak, then prove they know the cluster secret. On a TLS link it runs
//! inside the TLS session, after the TLS handshake.
//!
//! ```text
//!   dialer                                acceptor
//!     Hello{version, info, nonce_d}  ───▶
//!                                    ◀───  Hello{version, info, nonce_a}
//!     Auth{HMAC(secret, "dial"|nonce_d|nonce_a|exporter)}   ───▶
//!                                    ◀───  Auth{HMAC(secret, "accept"|nonce_d|nonce_a|exporter)}
//! ```
//!
//! Fresh nonces on both sides make a proof useless for any other link, and
//! the role label keeps one side's proof from being reflected back. The
//! TLS exporter value (RFC 5705, with the RFC 9266 label) is the same at
//! both ends of one TLS session and differs on any other, so a relay that
//! terminates TLS towards each side cannot pass a proof through. The
//! secret itself never crosses the wire.

use hmac::{Hmac, KeyInit, Mac};
use rand::RngExt;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncWrite};

use super::frame::{Frame, FrameError, MAGIC, PROTOCOL_VERSION, PeerInfo, read_frame, write_frame};
use super::tls::SessionBinding;

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("the peer closed the link during the handshake")]
    Closed,
    #[error("the peer is not a Starling cluster node")]
    NotStarling,
    #[error(
        "protocol version mismatch: this node speaks version {ours}, the peer speaks version {theirs}"
    )]
    Version { ours: u32, theirs: u32 },
    #[error("the peer did not prove the cluster secret")]
    BadSecret,
    #[error("the peer refused the link: {0}")]
    Refused(String),
    #[error("unexpected frame during the handshake")]
    Unexpected,
    #[error("the peer claims this node's own id {0}")]
    SelfLink(u64),
    #[error("the peer {name:?} is refused: {reason}")]
    Certificate { name: String, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Dialer,
    Acceptor,
}

impl Role {
    fn label(self) -> &'static [u8] {
        match self {
            Role::Dialer => b"starling-cluster-v2 dial",
            Role::Acceptor => b"starling-cluster-v2 accept",
        }
    }
}

/// What `role` sends to prove the secret: HMAC-SHA-256 keyed with the
/// secret over the role label, both nonces and the exporter value
/// (length-prefixed; empty on a clear-text link).
pub fn proof(
    secret: &[u8],
    role: Role,
    dialer_nonce: &[u8; 32],
    acceptor_nonce: &[u8; 32],
    exporter: &[u8],
) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(role.label());
    mac.update(dialer_nonce);
    mac.update(acceptor_nonce);
    mac.update(&(exporter.len() as u32).to_be_bytes());
    mac.update(exporter);
    mac.finalize().into_bytes().into()
}

/// Runs the handshake on a fresh connection (inside its TLS session, if
/// any, described by `binding`); returns the peer's hello info.
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    role: Role,
    ours: &PeerInfo,
    secret: &[u8],
    binding: &SessionBinding,
) -> Result<PeerInfo, HandshakeError> {
    let nonce: [u8; 32] = rand::rng().random();
    let hello = Frame::Hello {
        magic: MAGIC,
        protocol_version: PROTOCOL_VERSION,
        info: ours.clone(),
        nonce,
    };
    let mut buffer = Vec::new();
    // The dialer speaks first; the acceptor answers only a plausible hello.
    if role == Role::Dialer {
        write_frame(stream, &hello).await?;
    }
    let (peer, peer_nonce) = match read_frame(stream, &mut buffer).await? {
        Some(Frame::Hello {
            magic,
            protocol_version,
            info,
            nonce,
        }) => {
            if magic != MAGIC {
                return Err(HandshakeError::NotStarling);
            }
            if protocol_version != PROTOCOL_VERSION {
                let error = HandshakeError::Version {
                    ours: PROTOCOL_VERSION,
                    theirs: protocol_version,
                };
                let _ = write_frame(
                    stream,
                    &Frame::Goodbye {
                        reason: error.to_string(),
                    },
                )
                .await;
                return Err(error);
            }
            if info.node_id == ours.node_id {
                return Err(HandshakeError::SelfLink(info.node_id));
            }
            if let Some(certificate) = &binding.certificate {
                if let Err(reason) = certificate.check_name(&info.name) {
                    let error = HandshakeError::Certificate {
                        name: info.name,
                        reason,
                    };
                    let _ = write_frame(
                        stream,
                        &Frame::Goodbye {
                            reason: error.to_string(),
                        },
                    )
                    .await;
                    return Err(error);
                }
            }
            (info, nonce)
        }
        Some(Frame::Goodbye { reason }) => return Err(HandshakeError::Refused(reason)),
        Some(_) => return Err(HandshakeError::Unexpected),
        None => return Err(HandshakeError::Closed),
    };
    if role == Role::Acceptor {
        write_frame(stream, &hello).await?;
    }
    let (dialer_nonce, acceptor_nonce) = match role {
        Role::Dialer => (nonce, peer_nonce),
        Role::Acceptor => (peer_nonce, nonce),
    };
    let peer_role = match role {
        Role::Dialer => Role::Acceptor,
        Role::Acceptor => Role::Dialer,
    };
    let exporter = &binding.exporter;
    let ours_proof = proof(secret, role, &dialer_nonce, &acceptor_nonce, exporter);
    let expected = proof(secret, peer_role, &dialer_nonce, &acceptor_nonce, exporter);
    // The acceptor checks the dialer's proof before giving its own.
    if role == Role::Dialer {
        write_frame(stream, &Frame::Auth { proof: ours_proof }).await?;
    }
    match read_frame(stream, &mut buffer).await? {
        Some(Frame::Auth { proof }) if bool::from(proof.ct_eq(&expected)) => {}
        Some(Frame::Auth { .. }) => {
            let reason = "the cluster secret does not match".to_owned();
            let _ = write_frame(stream, &Frame::Goodbye { reason }).await;
            return Err(HandshakeError::BadSecret);
        }
        Some(Frame::Goodbye { reason }) => return Err(HandshakeError::Refused(reason)),
        Some(_) => return Err(HandshakeError::Unexpected),
        None => return Err(HandshakeError::Closed),
    }
    if role == Role::Acceptor {
        write_frame(stream, &Frame::Auth { proof: ours_proof }).await?;
    }
    Ok(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: u64) -> PeerInfo {
        PeerInfo {
            node_id: id,
            name: format!("node{id}"),
            incarnation: 1,
            cluster_addr: String::new(),
            c2s_addr: String::new(),
            http_addr: String::new(),
            web_url: String::new(),
            max_connections: 0,
        }
    }

    fn bound_to(exporter: &[u8]) -> SessionBinding {
        SessionBinding {
            exporter: exporter.to_vec(),
            certificate: None,
        }
    }

    async fn run(
        dialer_secret: &'static [u8],
        acceptor_secret: &'static [u8],
    ) -> (
        Result<PeerInfo, HandshakeError>,
        Result<PeerInfo, HandshakeError>,
    ) {
        run_bound(dialer_secret, b"", acceptor_secret, b"").await
    }

    /// Both ends of a handshake, each seeing its own session's exporter value.
    async fn run_bound(
        dialer_secret: &'static [u8],
        dialer_exporter: &'static [u8],
        acceptor_secret: &'static [u8],
        acceptor_exporter: &'static [u8],
    ) -> (
        Result<PeerInfo, HandshakeError>,
        Result<PeerInfo, HandshakeError>,
    ) {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let dialer = tokio::spawn(async move {
            let binding = bound_to(dialer_exporter);
            handshake(&mut a, Role::Dialer, &info(1), dialer_secret, &binding).await
        });
        let acceptor = tokio::spawn(async move {
            let binding = bound_to(acceptor_exporter);
            handshake(&mut b, Role::Acceptor, &info(2), acceptor_secret, &binding).await
        });
        (dialer.await.unwrap(), acceptor.await.unwrap())
    }

    #[test]
    fn proof_is_hmac_sha256_over_role_nonces_and_exporter() {
        // Pinned: another implementation of the protocol must agree.
        let hex =
            |bytes: [u8; 32]| -> String { bytes.iter().map(|b| format!("{b:02x}")).collect() };
        assert_eq!(
            hex(proof(b"s3cret", Role::Dialer, &[1; 32], &[2; 32], b"tls")),
            "bf3acccf9a725df849404d4c6a9ec64096cf3c8d53204ededf99b7a8956284c1"
        );
        assert_eq!(
            hex(proof(b"s3cret", Role::Acceptor, &[1; 32], &[2; 32], b"")),
            "14a618517c7d0de6dec6026f4d2dfa01e69a7e771b1d38c618e8eeb4aad0d8ca"
        );
    }

    #[test]
    fn proof_changes_with_every_input() {
        let base = proof(b"s", Role::Dialer, &[1; 32], &[2; 32], &[3; 32]);
        let others = [
            proof(b"t", Role::Dialer, &[1; 32], &[2; 32], &[3; 32]),
            proof(b"s", Role::Acceptor, &[1; 32], &[2; 32], &[3; 32]),
            proof(b"s", Role::Dialer, &[9; 32], &[2; 32], &[3; 32]),
            proof(b"s", Role::Dialer, &[1; 32], &[9; 32], &[3; 32]),
            proof(b"s", Role::Dialer, &[1; 32], &[2; 32], &[9; 32]),
            // The length prefix keeps an exporter from sliding into the nonces.
            proof(b"s", Role::Dialer, &[1; 32], &[2; 32], b""),
        ];
        for (index, other) in others.iter().enumerate() {
            assert_ne!(&base, other, "input {index} does not change the proof");
        }
    }

    #[tokio::test]
    async fn same_secret_over_one_session_links() {
        let (dialer, acceptor) = run_bound(b"s3cret", b"session-1", b"s3cret", b"session-1").await;
        assert_eq!(dialer.unwrap().node_id, 2);
        assert_eq!(acceptor.unwrap().node_id, 1);
    }

    /// What a relay terminating TLS towards each side achieves: the two
    /// ends see different exporter values, and the acceptor refuses.
    #[tokio::test]
    async fn a_proof_made_for_another_session_is_refused() {
        let (dialer, acceptor) = run_bound(b"s3cret", b"session-1", b"s3cret", b"session-2").await;
        assert!(
            matches!(acceptor, Err(HandshakeError::BadSecret)),
            "{acceptor:?}"
        );
        assert!(dialer.is_err());
    }

    #[tokio::test]
    async fn same_secret_links() {
        let (dialer, acceptor) = run(b"s3cret", b"s3cret").await;
        assert_eq!(dialer.unwrap().node_id, 2);
        assert_eq!(acceptor.unwrap().node_id, 1);
    }

    #[tokio::test]
    async fn wrong_secret_is_refused_on_both_sides() {
        let (dialer, acceptor) = run(b"wrong", b"s3cret").await;
        assert!(
            matches!(acceptor, Err(HandshakeError::BadSecret)),
            "{acceptor:?}"
        );
        assert!(dialer.is_err());
    }

    #[tokio::test]
    async fn version_mismatch_names_both_versions() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let acceptor = tokio::spawn(async move {
            handshake(&mut b, Role::Acceptor, &info(2), b"s", &bound_to(b"")).await
        });
        let old_hello = Frame::Hello {
            magic: MAGIC,
            protocol_version: 0,
            info: info(1),
            nonce: [0; 32],
        };
        write_frame(&mut a, &old_hello).await.unwrap();
        let error = acceptor.await.unwrap().unwrap_err().to_string();
        assert!(
            error.contains(&format!("version {PROTOCOL_VERSION}")) && error.contains("version 0"),
            "{error}"
        );
        let reply = read_frame(&mut a, &mut Vec::new()).await.unwrap();
        assert!(matches!(reply, Some(Frame::Goodbye { reason }) if reason.contains("version 0")));
    }
}
