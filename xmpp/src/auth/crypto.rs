//! The SCRAM primitives of RFC 5802 section 2.2 (`H`, `HMAC`, `Hi`) over SHA-1 and SHA-256,
//! chosen at run time by [`ScramHash`]. Nothing here parses or encodes messages.

use std::borrow::Cow;

use hmac::{EagerHash, Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::credential::ScramHash;

/// `H(data)`.
pub(super) fn hash(alg: ScramHash, data: &[u8]) -> Vec<u8> {
    match alg {
        ScramHash::Sha1 => Sha1::digest(data).to_vec(),
        ScramHash::Sha256 => Sha256::digest(data).to_vec(),
    }
}

/// `HMAC(key, data)`.
pub(super) fn hmac(alg: ScramHash, key: &[u8], data: &[u8]) -> Vec<u8> {
    match alg {
        ScramHash::Sha1 => hmac_with::<Sha1>(key, data),
        ScramHash::Sha256 => hmac_with::<Sha256>(key, data),
    }
}

fn hmac_with<D: EagerHash>(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC hashes over-long keys and pads short ones, so no key length is refused.
    let mut mac = <Hmac<D> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// `Hi(password, salt, i)` (see [`super::hi`]).
pub(super) fn salted_password(
    alg: ScramHash,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> Vec<u8> {
    super::hi::hi(alg, password, salt, iterations)
}

/// `(StoredKey, ServerKey)` from a salted password.
pub(super) fn keys(alg: ScramHash, salted_password: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let client_key = hmac(alg, salted_password, b"Client Key");
    let stored_key = hash(alg, &client_key);
    let server_key = hmac(alg, salted_password, b"Server Key");
    (stored_key, server_key)
}

/// Equality that takes the same time wherever the inputs differ (lengths are not secret).
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// RFC 5802 `Normalize(password)`: SASLprep as a query string. A password SASLprep refuses
/// (unassigned code points such as most emoji, or prohibited characters) is used as it
/// stands rather than locked out: the same rule is applied when the credential is made and
/// when it is checked, so PLAIN and legacy logins always work, and SCRAM works with clients
/// that fall back the same way.
pub(super) fn normalize_password(password: &str) -> Cow<'_, str> {
    stringprep::saslprep(password).unwrap_or(Cow::Borrowed(password))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn pbkdf2_matches_rfc6070_vectors() {
        let out = salted_password(ScramHash::Sha1, b"password", b"salt", 4096);
        assert_eq!(hex(&out), "4b007901b765489abead49d926f721d065a429c1");
        let out = salted_password(ScramHash::Sha1, b"password", b"salt", 1);
        assert_eq!(hex(&out), "0c60c80f961f0e71f3a9b524af6012062fe037a6");
    }

    #[test]
    fn pbkdf2_sha256_known_vector() {
        let out = salted_password(ScramHash::Sha256, b"password", b"salt", 4096);
        assert_eq!(
            hex(&out),
            "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a"
        );
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let out = hmac(ScramHash::Sha256, b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex(&out),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn constant_time_eq_compares_content_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn normalize_maps_spaces_and_keeps_what_saslprep_refuses() {
        // U+00A0 NO-BREAK SPACE maps to a space; U+00AD SOFT HYPHEN maps to nothing.
        assert_eq!(normalize_password("a\u{00A0}b\u{00AD}c"), "a bc");
        // U+2163 ROMAN NUMERAL FOUR is NFKC-folded to "IV".
        assert_eq!(normalize_password("\u{2163}"), "IV");
        // An emoji is unassigned in Unicode 3.2: kept as typed.
        assert_eq!(normalize_password("key\u{1F511}"), "key\u{1F511}");
    }
}
