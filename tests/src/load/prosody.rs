//! Bulk user provisioning for Prosody's internal store, for side-by-side benchmarks.
//!
//! `prosodyctl adduser` starts a Lua process per user and hashes with Prosody's default
//! iteration count; this writes the same account files directly, in parallel, with the
//! iteration count the benchmark asks for. Prosody's internal storage reads
//! `DATA/<host>/accounts/<user>.dat` on every login, so a running server sees new files.
//!
//! Each file holds the SCRAM credentials `mod_auth_internal_hashed` expects: hex
//! `stored_key` and `server_key`, a `salt` string (its bytes are the SCRAM salt) and
//! `iteration_count`. The hash (SHA-1 or SHA-256) must match the host's `password_hash`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::Users;
use crate::sasl::{ScramCredentials, ScramHash};

/// What to write.
#[derive(Debug, Clone)]
pub struct ProsodyUsers {
    /// Prosody's `data_path`.
    pub data_dir: PathBuf,
    pub domain: String,
    pub users: Users,
    pub hash: ScramHash,
    pub iterations: u32,
    pub threads: usize,
}

impl ProsodyUsers {
    /// Writes every account file; returns how many were written.
    pub fn write(&self) -> std::io::Result<u64> {
        let dir = self.data_dir.join(encode(&self.domain)).join("accounts");
        std::fs::create_dir_all(&dir)?;
        let threads = self.threads.max(1) as u64;
        let per_thread = self.users.count.div_ceil(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|thread| {
                    let start = thread * per_thread;
                    let count = per_thread.min(self.users.count.saturating_sub(start));
                    let slice = self.users.slice(start, count);
                    let dir = &dir;
                    scope.spawn(move || self.write_range(dir, &slice))
                })
                .collect();
            let mut written = 0;
            for handle in handles {
                written += handle
                    .join()
                    .map_err(|_| std::io::Error::other("a provisioning thread panicked"))??;
            }
            Ok(written)
        })
    }

    fn write_range(&self, dir: &Path, users: &Users) -> std::io::Result<u64> {
        for index in 0..users.count {
            let salt = random_uuid();
            let credentials = ScramCredentials::derive(
                self.hash,
                &users.password(index),
                salt.as_bytes(),
                self.iterations,
            );
            let file = dir.join(format!("{}.dat", encode(&users.username(index))));
            std::fs::write(file, account_file(&credentials, &salt, self.iterations))?;
        }
        Ok(users.count)
    }
}

/// The `.dat` file: a Lua chunk returning the account table.
pub fn account_file(credentials: &ScramCredentials, salt: &str, iterations: u32) -> String {
    format!(
        "return {{\n\t[\"iteration_count\"] = {iterations};\n\t[\"salt\"] = \"{salt}\";\n\t\
         [\"server_key\"] = \"{}\";\n\t[\"stored_key\"] = \"{}\";\n}};\n",
        hex(&credentials.server_key),
        hex(&credentials.stored_key)
    )
}

/// Prosody's datamanager encoding of host and user names: every character that is not
/// an ASCII letter or digit becomes `%xx` (lowercase hex of each byte).
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() {
            out.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{byte:02x}");
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// A random version-4 UUID string, the form Prosody itself uses for salts.
fn random_uuid() -> String {
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex(&bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_prosody_datamanager() {
        assert_eq!(encode("localhost"), "localhost");
        assert_eq!(encode("sha1.localhost"), "sha1%2elocalhost");
        assert_eq!(encode("a_b-c"), "a%5fb%2dc");
    }

    #[test]
    fn credentials_match_a_file_prosody_wrote() {
        // Written by `prosodyctl register alice localhost secret1` with
        // `password_hash = "SHA-256"`.
        let credentials = ScramCredentials::derive(
            ScramHash::Sha256,
            "secret1",
            b"cfb48339-a203-498d-8a99-be9f81a66f5a",
            10000,
        );
        assert_eq!(
            hex(&credentials.stored_key),
            "beabe83ef1c0da07a0f2a4507af0b00a165634fdfda16dbacdc5df09320bdada"
        );
        assert_eq!(
            hex(&credentials.server_key),
            "73163f2cd8fdbc810c71b946dc6b7ce7cd463ddbf1e3d6a48430078908f1cc0f"
        );
    }

    #[test]
    fn writes_one_file_per_user() {
        let dir = std::env::temp_dir().join(format!("starling-prosody-{}", std::process::id()));
        let job = ProsodyUsers {
            data_dir: dir.clone(),
            domain: "sha1.localhost".to_owned(),
            users: Users {
                prefix: "u".to_owned(),
                password_prefix: "p".to_owned(),
                first: 1,
                count: 5,
            },
            hash: ScramHash::Sha1,
            iterations: 16,
            threads: 2,
        };
        assert_eq!(job.write().unwrap(), 5);
        let file = dir.join("sha1%2elocalhost/accounts/u5.dat");
        let text = std::fs::read_to_string(file).unwrap();
        assert!(text.starts_with("return {"));
        assert!(text.contains("[\"iteration_count\"] = 16;"));
        assert_eq!(
            std::fs::read_dir(dir.join("sha1%2elocalhost/accounts"))
                .unwrap()
                .count(),
            5
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn uuids_have_the_v4_shape() {
        let uuid = random_uuid();
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4");
        assert_ne!(uuid, random_uuid());
    }
}
