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
//!
//! With a roster size, each user also gets `DATA/<host>/roster/<user>.dat`: the same
//! contacts, subscription both, as `starling user provision --roster-size` gives the same
//! users (see [`roster_neighbours`]), so both servers hold the same social graph.

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
    /// Contacts per user (0: no roster files).
    pub roster_size: u64,
    pub threads: usize,
}

impl ProsodyUsers {
    /// Writes every account file; returns how many were written.
    pub fn write(&self) -> std::io::Result<u64> {
        let host = self.data_dir.join(encode(&self.domain));
        let dir = host.join("accounts");
        std::fs::create_dir_all(&dir)?;
        if self.roster_size > 0 {
            std::fs::create_dir_all(host.join("roster"))?;
        }
        let threads = self.threads.max(1) as u64;
        let per_thread = self.users.count.div_ceil(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|thread| {
                    let start = thread * per_thread;
                    let count = per_thread.min(self.users.count.saturating_sub(start));
                    let host = &host;
                    scope.spawn(move || self.write_range(host, start, count))
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

    /// Writes users `[start, start + count)` of the run.
    fn write_range(&self, host: &Path, start: u64, count: u64) -> std::io::Result<u64> {
        let users = self.users.slice(start, count);
        let dir = host.join("accounts");
        for index in 0..users.count {
            let salt = random_uuid();
            let credentials = ScramCredentials::derive(
                self.hash,
                &users.password(index),
                salt.as_bytes(),
                self.iterations,
            );
            let name = encode(&users.username(index));
            let file = dir.join(format!("{name}.dat"));
            std::fs::write(file, account_file(&credentials, &salt, self.iterations))?;
            if self.roster_size > 0 {
                let contacts = roster_neighbours(start + index, self.users.count, self.roster_size)
                    .into_iter()
                    .map(|contact| format!("{}@{}", self.users.username(contact), self.domain));
                let roster = host.join("roster").join(format!("{name}.dat"));
                std::fs::write(roster, roster_file(contacts))?;
            }
        }
        Ok(users.count)
    }
}

/// The contacts of user `index` (0-based) among `count` users: the `size / 2` neighbours
/// on each side, wrapping around, plus the opposite user when `size` is odd and `count`
/// even. Symmetric, so every "both" has its other half. The same relation as
/// `starling user provision` and tsung/piefxis.py, kept here so this crate stays
/// independent of the server's code.
pub fn roster_neighbours(index: u64, count: u64, size: u64) -> Vec<u64> {
    if count <= 1 || size == 0 {
        return Vec::new();
    }
    if size >= count - 1 {
        return (0..count).filter(|&other| other != index).collect();
    }
    let mut contacts = Vec::with_capacity(size as usize);
    for distance in 1..=size / 2 {
        contacts.push((index + distance) % count);
        contacts.push((index + count - distance) % count);
    }
    if size % 2 == 1 && count % 2 == 0 {
        contacts.push((index + count / 2) % count);
    }
    contacts
}

/// A roster `.dat` file (`mod_roster` with internal storage): the `false` key holds the
/// roster's version and pending requests, every other key is a contact's JID.
pub fn roster_file(contacts: impl IntoIterator<Item = String>) -> String {
    let mut out =
        String::from("return {\n\t[false] = { [\"version\"] = 1; [\"pending\"] = {}; };\n");
    for jid in contacts {
        let _ = writeln!(
            out,
            "\t[{}] = {{ [\"subscription\"] = \"both\"; [\"groups\"] = {{}}; }};",
            lua_string(&jid)
        );
    }
    out.push_str("};\n");
    out
}

/// A Lua string literal.
fn lua_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
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
            roster_size: 2,
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
        let roster = std::fs::read_to_string(dir.join("sha1%2elocalhost/roster/u5.dat")).unwrap();
        // u5 is the last of five: its neighbours wrap around to u1.
        assert!(roster.contains("[\"u1@sha1.localhost\"] = { [\"subscription\"] = \"both\";"));
        assert!(roster.contains("[\"u4@sha1.localhost\"]"));
        assert_eq!(roster.matches("subscription").count(), 2);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn neighbours_match_the_server_provisioning() {
        // The same cases as xmpp/src/cli/provision.rs and tsung/piefxis.py.
        assert_eq!(roster_neighbours(0, 100, 30).len(), 30);
        assert_eq!(roster_neighbours(0, 5, 10), vec![1, 2, 3, 4]);
        assert_eq!(roster_neighbours(0, 10, 3), vec![1, 9, 5]);
        assert_eq!(roster_neighbours(0, 1, 3), Vec::<u64>::new());
        for index in 0..50 {
            for contact in roster_neighbours(index, 50, 7) {
                assert!(roster_neighbours(contact, 50, 7).contains(&index));
            }
        }
    }

    #[test]
    fn roster_files_are_lua_tables() {
        let text = roster_file(["a@x".to_owned(), "q\"@x".to_owned()]);
        assert!(text.starts_with("return {\n\t[false] = { [\"version\"] = 1;"));
        assert!(text.contains("[\"q\\\"@x\"]"));
        assert!(text.ends_with("};\n"));
    }

    #[test]
    fn uuids_have_the_v4_shape() {
        let uuid = random_uuid();
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4");
        assert_ne!(uuid, random_uuid());
    }
}
