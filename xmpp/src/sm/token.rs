//! The resumption id (`<enabled id=.../>`, `<resume previd=.../>`): the
//! member that created the session, so any member knows whom to ask, and
//! 128 random bits, so nobody can guess another user's session. The holder
//! checks the random part and that the resuming user is the session's.
//!
//! Wire form: base64url without padding of the node id (8 bytes, big
//! endian) followed by the key (16 bytes): 32 characters.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use starling_core::cluster::NodeId;

/// The secret part of a resumption id, the key of a member's registry.
pub type Key = [u8; 16];

/// A fresh key from the operating system's generator.
pub fn new_key() -> Key {
    use rand::RngExt;
    rand::rng().random()
}

pub fn encode(node: NodeId, key: &Key) -> String {
    let mut bytes = [0u8; 24];
    bytes[..8].copy_from_slice(&node.0.to_be_bytes());
    bytes[8..].copy_from_slice(key);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The member and key of an id; `None` for anything we did not make.
pub fn decode(id: &str) -> Option<(NodeId, Key)> {
    if id.len() != 32 {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(id).ok()?;
    let node: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    let key: Key = bytes.get(8..)?.try_into().ok()?;
    Some((NodeId(u64::from_be_bytes(node)), key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_strangers_are_refused() {
        let key = new_key();
        let id = encode(NodeId(0xdead_beef_0102_0304), &key);
        assert_eq!(id.len(), 32);
        assert_eq!(decode(&id), Some((NodeId(0xdead_beef_0102_0304), key)));
        assert_ne!(new_key(), key, "keys are random");
        assert_eq!(decode("short"), None);
        assert_eq!(decode(&format!("{}!", &id[..31])), None);
        assert_eq!(decode(""), None);
    }
}
