//! RFC 5802 `Hi()`: PBKDF2-HMAC with one output block, written against the raw SHA-1 and
//! SHA-256 compression functions.
//!
//! Every PBKDF2 round is two HMAC blocks of fixed layout (the previous `U` plus padding, then
//! the inner digest plus padding), so each round here is exactly two compression calls on
//! precomputed ipad/opad states. Going through the `Mac` API instead (the `pbkdf2` crate)
//! adds a buffered update and a generic finalisation per round: about 25% more time in
//! `Credentials::new`, the cost that bounds bulk user provisioning.

use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::credential::ScramHash;
use super::crypto;

const BLOCK: usize = 64;
const IPAD: u8 = 0x36;
const OPAD: u8 = 0x5c;

/// A Merkle–Damgård hash with 64-byte blocks and 32-bit big-endian state words.
trait Compress {
    type State: Copy + AsRef<[u32]> + AsMut<[u32]>;
    const INITIAL: Self::State;
    fn compress(state: &mut Self::State, block: &[u8; BLOCK]);
    fn digest(data: &[u8]) -> Vec<u8>;
}

struct Sha1Compress;
struct Sha256Compress;

impl Compress for Sha1Compress {
    type State = [u32; 5];
    const INITIAL: Self::State = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];

    fn compress(state: &mut Self::State, block: &[u8; BLOCK]) {
        sha1::block_api::compress(state, std::slice::from_ref(block));
    }

    fn digest(data: &[u8]) -> Vec<u8> {
        Sha1::digest(data).to_vec()
    }
}

impl Compress for Sha256Compress {
    type State = [u32; 8];
    const INITIAL: Self::State = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];

    fn compress(state: &mut Self::State, block: &[u8; BLOCK]) {
        sha2::block_api::compress256(state, std::slice::from_ref(block));
    }

    fn digest(data: &[u8]) -> Vec<u8> {
        Sha256::digest(data).to_vec()
    }
}

/// `Hi(password, salt, iterations)`; `iterations` of 0 count as 1.
pub(super) fn hi(alg: ScramHash, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    match alg {
        ScramHash::Sha1 => hi_with::<Sha1Compress>(alg, password, salt, iterations),
        ScramHash::Sha256 => hi_with::<Sha256Compress>(alg, password, salt, iterations),
    }
}

fn hi_with<C: Compress>(alg: ScramHash, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    let out_len = C::INITIAL.as_ref().len() * 4;
    // U1 = HMAC(password, salt || INT(1)): the salt has any length, so the general HMAC.
    let mut salt_block = Vec::with_capacity(salt.len() + 4);
    salt_block.extend_from_slice(salt);
    salt_block.extend_from_slice(&1u32.to_be_bytes());
    let first = crypto::hmac(alg, password, &salt_block);
    if iterations <= 1 {
        return first;
    }

    // The HMAC key: the password, hashed first when longer than a block, zero-padded.
    let mut key = [0u8; BLOCK];
    if password.len() > BLOCK {
        key[..out_len].copy_from_slice(&C::digest(password));
    } else {
        key[..password.len()].copy_from_slice(password);
    }
    let keyed = |pad: u8| {
        let mut block = key;
        block.iter_mut().for_each(|b| *b ^= pad);
        let mut state = C::INITIAL;
        C::compress(&mut state, &block);
        state
    };
    let (inner_start, outer_start) = (keyed(IPAD), keyed(OPAD));

    // The block always holds a digest (first U, then the inner hash, then the next U), the
    // 0x80 terminator and the bit length of a message that follows the key block.
    let mut block = [0u8; BLOCK];
    block[..out_len].copy_from_slice(&first);
    block[out_len] = 0x80;
    block[BLOCK - 8..].copy_from_slice(&(((BLOCK + out_len) * 8) as u64).to_be_bytes());

    let mut result = C::INITIAL;
    read_words(&first, result.as_mut());
    for _ in 1..iterations {
        let mut state = inner_start;
        C::compress(&mut state, &block);
        write_words(state.as_ref(), &mut block);
        state = outer_start;
        C::compress(&mut state, &block);
        write_words(state.as_ref(), &mut block);
        result
            .as_mut()
            .iter_mut()
            .zip(state.as_ref())
            .for_each(|(r, s)| *r ^= s);
    }
    let mut out = vec![0; out_len];
    write_words(result.as_ref(), &mut out);
    out
}

fn read_words(bytes: &[u8], words: &mut [u32]) {
    for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(4)) {
        *word = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
}

fn write_words(words: &[u32], out: &mut [u8]) {
    for (chunk, word) in out.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(alg: ScramHash, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0; alg.output_len()];
        match alg {
            ScramHash::Sha1 => pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out),
            ScramHash::Sha256 => {
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out)
            }
        }
        out
    }

    #[test]
    fn matches_the_pbkdf2_crate() {
        let long_password = [b'p'; 100];
        let passwords: [&[u8]; 6] = [b"", b"pencil", &[0xff; 64], &[1; 65], &long_password, b"x"];
        let salts: [&[u8]; 4] = [b"", b"salt", &[7; 16], &[9; 80]];
        for alg in [ScramHash::Sha1, ScramHash::Sha256] {
            for password in passwords {
                for salt in salts {
                    for iterations in [1, 2, 3, 17, 4096] {
                        assert_eq!(
                            hi(alg, password, salt, iterations),
                            reference(alg, password, salt, iterations),
                            "{alg:?} {password:?} {salt:?} {iterations}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn zero_iterations_is_one() {
        for alg in [ScramHash::Sha1, ScramHash::Sha256] {
            assert_eq!(hi(alg, b"p", b"s", 0), hi(alg, b"p", b"s", 1));
        }
    }
}
