//! Which server each connection of a run goes to, when a run spreads over the nodes of a
//! cluster (`--server a,b,c`).
//!
//! Users are dealt out round-robin by their index in the run, so every node gets the same
//! share whatever the worker split. A chat pair either stays on one node (the same-node
//! baseline) or puts its receiver on the next node (every message crosses nodes); pair `k`
//! is anchored on node `k mod n` either way, so both layouts load the nodes alike.

use std::fmt;
use std::net::{AddrParseError, SocketAddr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The servers of a run, in the order given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<SocketAddr>", into = "Vec<SocketAddr>")]
pub struct Servers(Vec<SocketAddr>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServersError {
    #[error("no server address given")]
    Empty,
    #[error("{entry:?} is not a server address (IP:PORT): {source}")]
    BadAddress {
        entry: String,
        #[source]
        source: AddrParseError,
    },
}

impl Servers {
    pub fn new(addresses: Vec<SocketAddr>) -> Result<Servers, ServersError> {
        if addresses.is_empty() {
            return Err(ServersError::Empty);
        }
        Ok(Servers(addresses))
    }

    pub fn single(address: SocketAddr) -> Servers {
        Servers(vec![address])
    }

    /// How many servers; never 0.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a run has at least one server. (Here for the `len` convention.)
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn addresses(&self) -> &[SocketAddr] {
        &self.0
    }

    /// The address of server `index`, counted modulo the number of servers.
    pub fn address(&self, index: usize) -> SocketAddr {
        self.0[index % self.0.len()]
    }

    /// The server of the user with this index in the run (0 for the first user): round-robin.
    pub fn for_user(&self, index: u64) -> usize {
        self.wrap(index)
    }

    /// The servers of chat pair `pair` (numbered across the run): `(sender, receiver)`.
    /// With `cross`, the receiver is on the next server, so every message crosses nodes
    /// (with one server, both are on it anyway).
    pub fn for_pair(&self, pair: u64, cross: bool) -> (usize, usize) {
        let sender = self.wrap(pair);
        let receiver = if cross {
            self.wrap(pair.wrapping_add(1))
        } else {
            sender
        };
        (sender, receiver)
    }

    fn wrap(&self, index: u64) -> usize {
        // The length is a small usize; the remainder is below it, so both conversions hold.
        let len = self.0.len() as u64;
        (index % len) as usize
    }
}

impl FromStr for Servers {
    type Err = ServersError;

    /// `IP:PORT[,IP:PORT...]`; spaces around entries are allowed, empty entries are not.
    fn from_str(text: &str) -> Result<Servers, ServersError> {
        if text.trim().is_empty() {
            return Err(ServersError::Empty);
        }
        let addresses = text
            .split(',')
            .map(|entry| {
                entry
                    .trim()
                    .parse()
                    .map_err(|source| ServersError::BadAddress {
                        entry: entry.to_owned(),
                        source,
                    })
            })
            .collect::<Result<Vec<SocketAddr>, ServersError>>()?;
        Servers::new(addresses)
    }
}

impl TryFrom<Vec<SocketAddr>> for Servers {
    type Error = ServersError;

    fn try_from(addresses: Vec<SocketAddr>) -> Result<Servers, ServersError> {
        Servers::new(addresses)
    }
}

impl From<Servers> for Vec<SocketAddr> {
    fn from(servers: Servers) -> Vec<SocketAddr> {
        servers.0
    }
}

impl fmt::Display for Servers {
    /// The same form `from_str` reads, so a report names the servers as they were given.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, address) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{address}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Servers {
        "127.0.0.1:5222, 127.0.0.1:5223,127.0.0.1:5224"
            .parse()
            .unwrap()
    }

    #[test]
    fn parses_a_list_and_prints_it_back() {
        let servers = three();
        assert_eq!(servers.len(), 3);
        assert_eq!(servers.address(1), "127.0.0.1:5223".parse().unwrap());
        assert_eq!(
            servers.to_string(),
            "127.0.0.1:5222,127.0.0.1:5223,127.0.0.1:5224"
        );
        let one: Servers = "[::1]:5222".parse().unwrap();
        assert_eq!(one, Servers::single("[::1]:5222".parse().unwrap()));
        assert_eq!(one.to_string(), "[::1]:5222");
    }

    #[test]
    fn rejects_empty_lists_entries_and_names() {
        assert_eq!("".parse::<Servers>(), Err(ServersError::Empty));
        assert_eq!(" ".parse::<Servers>(), Err(ServersError::Empty));
        let empty_entry = "127.0.0.1:5222,".parse::<Servers>().unwrap_err();
        assert!(matches!(empty_entry, ServersError::BadAddress { entry, .. } if entry.is_empty()));
        let name = "localhost:5222".parse::<Servers>().unwrap_err();
        assert!(name.to_string().contains("localhost:5222"));
        assert_eq!(Servers::new(Vec::new()), Err(ServersError::Empty));
    }

    #[test]
    fn users_go_round_robin() {
        let servers = three();
        let assigned: Vec<usize> = (0..7).map(|user| servers.for_user(user)).collect();
        assert_eq!(assigned, vec![0, 1, 2, 0, 1, 2, 0]);
        let single = Servers::single("127.0.0.1:5222".parse().unwrap());
        assert!((0..5).all(|user| single.for_user(user) == 0));
    }

    #[test]
    fn cross_pairs_put_the_receiver_on_the_next_server() {
        let servers = three();
        let cross: Vec<(usize, usize)> = (0..4).map(|pair| servers.for_pair(pair, true)).collect();
        assert_eq!(cross, vec![(0, 1), (1, 2), (2, 0), (0, 1)]);
        let same: Vec<(usize, usize)> = (0..4).map(|pair| servers.for_pair(pair, false)).collect();
        assert_eq!(same, vec![(0, 0), (1, 1), (2, 2), (0, 0)]);
        let two: Servers = "127.0.0.1:1,127.0.0.1:2".parse().unwrap();
        assert_eq!(two.for_pair(1, true), (1, 0));
        let single = Servers::single("127.0.0.1:5222".parse().unwrap());
        assert_eq!(single.for_pair(9, true), (0, 0));
    }

    #[test]
    fn serde_keeps_the_list_and_refuses_an_empty_one() {
        let servers = three();
        let json = serde_json::to_string(&servers).unwrap();
        assert_eq!(
            json,
            r#"["127.0.0.1:5222","127.0.0.1:5223","127.0.0.1:5224"]"#
        );
        assert_eq!(serde_json::from_str::<Servers>(&json).unwrap(), servers);
        assert!(serde_json::from_str::<Servers>("[]").is_err());
    }
}
