//! `[s2s]`: server-to-server streams (federation, RFC 6120).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S2sConfig {
    /// Where other servers connect; empty: no federation listener (this
    /// node still opens outgoing streams).
    pub bind: String,
    /// Refuse streams, in and out, that do not negotiate TLS.
    pub require_tls: bool,
    /// Only SASL EXTERNAL with a certificate valid for the peer's domain;
    /// no dialback (XEP-0220).
    pub require_valid_certificates: bool,
    /// PEM CA certificates trusted for peers besides the system roots.
    pub ca_files: Vec<PathBuf>,
    /// Key for XEP-0185 dialback keys, the same on every member; empty:
    /// derived from `[cluster] secret` (a single node without one draws
    /// a random key at start).
    pub dialback_secret: String,
    /// Domains whose streams are refused and to which nothing is sent.
    pub blocked_domains: Vec<String>,
    /// Seconds without traffic after which a stream is closed.
    pub idle_timeout_secs: u64,
    /// Seconds an outgoing stream has to connect and authenticate before
    /// the stanzas waiting for it bounce with remote-server-timeout.
    pub connect_timeout_secs: u64,
    /// Stanzas waiting for one outgoing stream; more bounce at once.
    pub max_queued: usize,
    /// Stanzas per second read from one incoming stream (0: no limit);
    /// a faster peer is read more slowly.
    pub stanzas_per_sec: u32,
    /// XEP-0288 bidirectional streams: offer them to peers and ask for
    /// them, so one TCP connection carries both directions.
    pub bidi: bool,
    /// Incoming server streams open at once on this node; more are
    /// refused with the stream error `resource-constraint`.
    pub max_inbound_streams: usize,
    /// Static routes: remote domain -> "host:port", used instead of DNS.
    pub routes: BTreeMap<String, String>,
}

impl Default for S2sConfig {
    fn default() -> Self {
        S2sConfig {
            bind: "127.0.0.1:5269".into(),
            require_tls: true,
            require_valid_certificates: false,
            ca_files: Vec::new(),
            dialback_secret: String::new(),
            blocked_domains: Vec::new(),
            idle_timeout_secs: 600,
            connect_timeout_secs: 15,
            max_queued: 1000,
            stanzas_per_sec: 0,
            bidi: true,
            max_inbound_streams: 1000,
            routes: BTreeMap::new(),
        }
    }
}

impl S2sConfig {
    /// The listener address, or `None` when federation is not listened for.
    pub fn bind_addr(&self) -> Option<SocketAddr> {
        self.bind.parse().ok()
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: String| Err(ConfigError::Invalid { key, message });
        if !self.bind.is_empty() && self.bind.parse::<SocketAddr>().is_err() {
            return invalid(
                "s2s.bind",
                format!("{:?} is not an address like 127.0.0.1:5269", self.bind),
            );
        }
        for (key, value) in [
            ("s2s.idle_timeout_secs", self.idle_timeout_secs),
            ("s2s.connect_timeout_secs", self.connect_timeout_secs),
            ("s2s.max_queued", self.max_queued as u64),
            ("s2s.max_inbound_streams", self.max_inbound_streams as u64),
        ] {
            if value == 0 {
                return invalid(key, "must be greater than 0".into());
            }
        }
        if self.max_inbound_streams > 1_000_000 {
            return invalid("s2s.max_inbound_streams", "must be at most 1000000".into());
        }
        for (domain, target) in &self.routes {
            if jid::BareJid::new(domain).map_or(true, |jid| jid.node().is_some()) {
                return invalid("s2s.routes", format!("{domain:?} is not a domain"));
            }
            if !valid_host_port(target) {
                return invalid(
                    "s2s.routes",
                    format!("{domain:?} = {target:?}: expected \"host:port\""),
                );
            }
        }
        if let Some(bad) = self
            .blocked_domains
            .iter()
            .find(|domain| jid::BareJid::new(domain).map_or(true, |jid| jid.node().is_some()))
        {
            return invalid("s2s.blocked_domains", format!("{bad:?} is not a domain"));
        }
        Ok(())
    }
}

/// `host:port` with a port number and a non-empty host (a name or an address).
fn valid_host_port(target: &str) -> bool {
    if target.parse::<SocketAddr>().is_ok() {
        return true;
    }
    target
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    #[test]
    fn routes_and_bind_are_checked() {
        let config = Config::parse("[s2s.routes]\n\"example.org\" = \"10.0.0.5:5269\"\n").unwrap();
        assert!(config.validate().is_ok());
        let config = Config::parse("[s2s.routes]\n\"example.org\" = \"10.0.0.5\"\n").unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("s2s.routes"), "{error}");
        let config = Config::parse("[s2s]\nbind = \"nowhere\"\n").unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("s2s.bind"), "{error}");
        let config = Config::parse("[s2s]\nmax_inbound_streams = 0\n").unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("s2s.max_inbound_streams"), "{error}");
        let config = Config::parse("[s2s]\nbidi = false\n").unwrap();
        assert!(config.validate().is_ok());
        assert!(!config.s2s.bidi);
        assert!(Config::defaults().s2s.bidi);
        let config = Config::parse("[s2s]\nbind = \"\"\n").unwrap();
        assert!(config.validate().is_ok());
        assert!(config.s2s.bind_addr().is_none());
    }
}
