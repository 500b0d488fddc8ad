//! The configuration tree: one TOML file, every key with a default.
//!
//! Unknown keys are rejected (serde `deny_unknown_fields`), so a typo is an
//! error that names the key instead of a silently ignored setting. Relative
//! paths are resolved against the folder of the config file once, in
//! [`Config::load`], so the rest of the server only sees absolute paths.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod s2s;
pub use s2s::S2sConfig;

/// The embedded default configuration, printed by `starling generate-config`.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("default-config.toml");

/// Environment variables that replace a key of the file, so that secrets
/// need not be written into it: (variable, key, how to set it).
pub const ENV_OVERRIDES: [(&str, &str, fn(&mut Config, String)); 2] = [
    (
        "STARLING_CLUSTER_SECRET",
        "cluster.secret",
        |config, value| config.cluster.secret = value,
    ),
    ("STARLING_STORAGE_URL", "storage.url", |config, value| {
        config.storage.url = value
    }),
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub c2s: C2sConfig,
    pub tls: TlsConfig,
    pub http: HttpConfig,
    pub storage: StorageConfig,
    pub limits: LimitsConfig,
    pub offline: OfflineConfig,
    pub caches: CachesConfig,
    pub cometd: CometdConfig,
    pub bosh: BoshConfig,
    pub cluster: ClusterConfig,
    pub s2s: S2sConfig,
    pub log: LogConfig,
    /// `[modules.<name>]`: each feature module's settings. The server's
    /// module registry knows the names and each module's keys, and rejects
    /// what it does not know when the server starts.
    pub modules: std::collections::BTreeMap<String, toml::Table>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The XMPP domain this server (or cluster) serves.
    pub domain: String,
    /// Where the SQLite store and the generated certificate live.
    pub data_dir: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            domain: "localhost".into(),
            data_dir: PathBuf::from("./data"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct C2sConfig {
    pub bind: SocketAddr,
    /// 0: as many as the open-file limit allows.
    pub max_connections: u32,
    /// Allow SASL PLAIN and legacy auth on a stream without TLS (load tests).
    pub allow_plain_without_tls: bool,
    /// XEP-0077 in-band registration.
    pub registration: bool,
    /// XEP-0078 legacy authentication (Tsung's default scenarios use it).
    pub legacy_auth: bool,
    /// XEP-0368 direct TLS: clients start TLS at connect (ALPN `xmpp-client`);
    /// empty: no such listener.
    pub direct_tls_bind: String,
}

impl Default for C2sConfig {
    fn default() -> Self {
        C2sConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 5222)),
            max_connections: 0,
            allow_plain_without_tls: false,
            registration: false,
            legacy_auth: true,
            direct_tls_bind: "127.0.0.1:5223".into(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain; empty: a self-signed one in `data_dir`.
    pub cert: PathBuf,
    /// PEM private key; empty: generated with the certificate.
    pub key: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub bind: SocketAddr,
    /// Serve HTTPS with the `[tls]` certificate instead of plain HTTP.
    pub tls: bool,
    /// Serve `/metrics` without a login; false: no metrics at all (404).
    pub metrics: bool,
    /// Non-empty: serve `/metrics` on this address (plain HTTP) instead of
    /// on `bind`, e.g. an interface only the monitoring network reaches.
    pub metrics_bind: String,
    /// Web pages (origins such as `https://chat.example.com`) that may use
    /// the WebSocket and BOSH endpoints; `"*"`: any; empty: same origin only.
    pub allowed_origins: Vec<String>,
    /// This listener's URL as clients reach it (`https://xmpp.example.com`),
    /// for XEP-0156 discovery and for the see-other-uri redirects other
    /// members of a cluster send; empty: from the request's `Host` (and
    /// `http(s)://bind` for the redirects).
    pub public_url: String,
    /// Serve `/chat`, a page running Converse.js against this node's
    /// `/xmpp-websocket` (or `/http-bind`). Off by default: a server shows
    /// a web client only when its operator asks for one.
    pub chat_page: bool,
    /// The Converse.js `dist` folder `/chat` serves (`npm ci` in xmpp/web
    /// fills `xmpp/web/node_modules/converse.js/dist`; packages install it
    /// here). Checked only when `chat_page` is on.
    pub chat_assets: PathBuf,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 5280)),
            tls: false,
            metrics: true,
            metrics_bind: String::new(),
            allowed_origins: Vec::new(),
            public_url: String::new(),
            chat_page: false,
            chat_assets: PathBuf::from(DEFAULT_CHAT_ASSETS),
        }
    }
}

impl C2sConfig {
    /// The direct TLS address, if one is configured (and valid).
    pub fn direct_tls_addr(&self) -> Option<SocketAddr> {
        self.direct_tls_bind.parse().ok()
    }
}

/// Where packages install the Converse.js build.
pub const DEFAULT_CHAT_ASSETS: &str = "/usr/share/starling/converse";

/// The files of the Converse.js build the `/chat` page loads.
pub const CHAT_ASSET_FILES: [&str; 2] = ["converse.min.js", "converse.min.css"];

impl HttpConfig {
    /// The base URL clients reach this listener at, without a trailing
    /// slash: `public_url` when set, else `http(s)://bind`. Other members
    /// of a cluster send web clients here when they are full.
    pub fn advertised_url(&self) -> String {
        if self.public_url.is_empty() {
            let scheme = if self.tls { "https" } else { "http" };
            format!("{scheme}://{}", self.bind)
        } else {
            self.public_url.trim_end_matches('/').to_owned()
        }
    }

    /// The separate metrics address, if one is configured (and valid).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        if self.metrics_bind.is_empty() {
            None
        } else {
            self.metrics_bind.parse().ok()
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `sqlite://FILE` (relative: inside `data_dir`) or `postgres://...`.
    pub url: String,
    /// Connections in the pool.
    pub pool_size: u32,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            url: "sqlite://starling.db".into(),
            pool_size: 8,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter (`info`, `warn,starling_cluster=debug`); `RUST_LOG`
    /// wins when set. SIGHUP applies a change.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest stanza accepted, in bytes; bigger ones end the stream with
    /// `<policy-violation/>`.
    pub max_stanza_size: usize,
    /// Deepest element nesting accepted inside a stanza.
    pub max_depth: usize,
    /// Seconds without any input before an authenticated stream is closed.
    pub idle_timeout_secs: u64,
    /// Seconds a new connection has to authenticate and bind.
    pub negotiation_timeout_secs: u64,
    /// Seconds a single stanza may take to arrive (stops trickling clients).
    pub stanza_timeout_secs: u64,
    /// Failed authentications on one connection before it is closed.
    pub auth_failures_per_connection: u32,
    /// Failed authentications from one IP address within `auth_failure_window_secs`
    /// after which further attempts from it are refused until the window passes.
    pub auth_failures_per_ip: u32,
    pub auth_failure_window_secs: u64,
    /// New connections per second accepted from one IP address (0: no limit).
    pub connections_per_ip_per_sec: u32,
    /// Burst of new connections allowed from one IP before the rate applies.
    pub connection_burst_per_ip: u32,
    /// Stanzas queued for one session before it counts as a slow consumer.
    pub session_queue: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_stanza_size: 256 * 1024,
            max_depth: 64,
            idle_timeout_secs: 600,
            negotiation_timeout_secs: 30,
            stanza_timeout_secs: 60,
            auth_failures_per_connection: 3,
            auth_failures_per_ip: 20,
            auth_failure_window_secs: 60,
            connections_per_ip_per_sec: 200,
            connection_burst_per_ip: 2000,
            session_queue: 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OfflineConfig {
    /// Messages stored per user; further ones bounce with `<service-unavailable/>`.
    pub max_per_user: u32,
}

impl Default for OfflineConfig {
    fn default() -> Self {
        OfflineConfig { max_per_user: 1000 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CachesConfig {
    /// Rosters kept in memory (entries; one entry is one user's roster).
    pub roster_entries: usize,
    /// User records (credentials, flags) kept in memory.
    pub user_entries: usize,
}

impl Default for CachesConfig {
    fn default() -> Self {
        CachesConfig {
            roster_entries: 50_000,
            user_entries: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnonymousAccess {
    None,
    Subscribe,
    Publish,
}

/// XEP-0124/0206 BOSH at `/http-bind`: the bounds a client's session
/// creation request may ask for (it gets the smaller of its wish and these).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BoshConfig {
    /// Longest a request is held waiting for something to send.
    pub max_wait_secs: u64,
    /// Requests held at once (`hold`); the client may have one more in flight.
    pub max_hold: u32,
    /// A session with no request for this long ends, as a dropped socket does.
    pub inactivity_secs: u64,
    /// Shortest interval between empty polls (announced as `polling`).
    pub polling_secs: u64,
    /// Stanza bytes queued for a client between its requests; beyond, the
    /// session waits (and its own limits decide, as for a slow socket).
    pub max_queued_bytes: usize,
}

impl Default for BoshConfig {
    fn default() -> Self {
        BoshConfig {
            max_wait_secs: 60,
            max_hold: 1,
            inactivity_secs: 60,
            polling_secs: 2,
            max_queued_bytes: 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CometdConfig {
    /// What a Bayeux client without XMPP credentials may do.
    pub anonymous: AnonymousAccess,
    /// How long a `/meta/connect` is held when there is nothing to deliver.
    pub timeout_ms: u64,
    /// How long a client waits between two connects (advice `interval`).
    pub interval_ms: u64,
    /// A client that has not connected for this long is removed, with its
    /// subscriptions (advice `maxInterval`).
    pub max_interval_ms: u64,
    /// Messages queued for one client; a client that falls further behind
    /// is removed (it must handshake again) rather than losing messages silently.
    pub max_queue: usize,
    /// A WebSocket write the client has not taken in this long (it reads
    /// nothing: hung, or holding the socket on purpose) closes the socket;
    /// the client then has `max_interval_ms` to come back on a new one.
    pub write_timeout_ms: u64,
    /// Bayeux clients this node keeps at most; a handshake beyond it is
    /// refused with `503` (each idle client costs a few KB, more with a
    /// held connect). Handshakes also count against
    /// `[limits] connections_per_ip_per_sec` of their address.
    pub max_clients: usize,
    /// Bayeux clients from one IP address at most (at most `max_clients`).
    /// Behind a reverse proxy every client comes from the proxy's address.
    pub max_clients_per_ip: usize,
}

impl Default for CometdConfig {
    fn default() -> Self {
        CometdConfig {
            anonymous: AnonymousAccess::Subscribe,
            timeout_ms: 30_000,
            interval_ms: 0,
            max_interval_ms: 10_000,
            max_queue: 10_000,
            write_timeout_ms: 60_000,
            max_clients: 50_000,
            max_clients_per_ip: 10_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    pub enabled: bool,
    pub node_name: String,
    pub bind: SocketAddr,
    /// Other members' cluster addresses.
    pub seeds: Vec<SocketAddr>,
    /// Shared secret every member must prove; required when enabled.
    pub secret: String,
    /// Lookups of a JID missing from the session directory before the stanza
    /// is handled as for an offline user.
    pub lookup_attempts: u32,
    /// The window those attempts are spread over, in milliseconds.
    pub lookup_window_ms: u64,
    /// The address other members dial; empty: `bind` (set it when `bind`
    /// is a wildcard address such as 0.0.0.0).
    pub advertise: String,
    /// Heartbeats on every peer link, both ways, this often.
    pub heartbeat_ms: u64,
    /// A peer silent this long is suspect ...
    pub suspect_after_ms: u64,
    /// ... and this long is down: its sessions are dropped everywhere.
    pub down_after_ms: u64,
    /// How long a starting node looks for its seeds before it forms a
    /// cluster of its own.
    pub join_timeout_ms: u64,
    /// Frames queued for one peer before sends to it fail (backpressure
    /// instead of unbounded memory).
    pub send_queue: usize,
    /// Peer links in clear text instead of TLS 1.3: anyone on the path
    /// reads and can alter the traffic. Only for a trusted network or a
    /// measurement; logged as a warning and shown on the admin page.
    pub insecure_plaintext: bool,
    /// PEM CA certificate(s) that signed every member's certificate. Empty:
    /// each node makes a self-signed certificate at start and the shared
    /// secret, bound to each TLS session, is what authenticates a peer.
    pub tls_ca: PathBuf,
    /// PEM certificate chain of this node, signed by `tls_ca`, naming
    /// `node_name` (DNS subject alternative name); peers check that name.
    pub tls_cert: PathBuf,
    /// PEM private key of `tls_cert`.
    pub tls_key: PathBuf,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            enabled: false,
            node_name: "node1".into(),
            bind: SocketAddr::from(([127, 0, 0, 1], 7701)),
            seeds: Vec::new(),
            secret: String::new(),
            lookup_attempts: 5,
            lookup_window_ms: 500,
            advertise: String::new(),
            heartbeat_ms: 500,
            suspect_after_ms: 1500,
            down_after_ms: 3000,
            join_timeout_ms: 3000,
            send_queue: 65536,
            insecure_plaintext: false,
            tls_ca: PathBuf::new(),
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
        }
    }
}

impl Config {
    /// Reads, parses, resolves and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Config::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        config.apply_env_overrides(|name| std::env::var(name).ok());
        config.validate()?;
        Ok(config)
    }

    /// Sets each key of [`ENV_OVERRIDES`] whose variable `lookup` finds
    /// set and not empty.
    pub fn apply_env_overrides(&mut self, lookup: impl Fn(&str) -> Option<String>) {
        for (variable, _key, set) in ENV_OVERRIDES {
            if let Some(value) = lookup(variable).filter(|value| !value.is_empty()) {
                set(self, value);
            }
        }
    }

    /// The embedded defaults, with paths relative to the working directory.
    pub fn defaults() -> Config {
        let mut config = Config::default();
        config.resolve_paths(Path::new("."));
        config
    }

    /// Parses TOML text; the error message names the offending key and line.
    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|error| error.to_string().trim_end().to_owned())
    }

    fn resolve_paths(&mut self, base: &Path) {
        let absolute = |path: &Path| {
            if path.as_os_str().is_empty() || path.is_absolute() {
                path.to_owned()
            } else {
                base.join(path)
            }
        };
        self.server.data_dir = absolute(&self.server.data_dir);
        self.tls.cert = absolute(&self.tls.cert);
        self.tls.key = absolute(&self.tls.key);
        self.http.chat_assets = absolute(&self.http.chat_assets);
        self.cluster.tls_ca = absolute(&self.cluster.tls_ca);
        self.cluster.tls_cert = absolute(&self.cluster.tls_cert);
        self.cluster.tls_key = absolute(&self.cluster.tls_key);
        for ca in &mut self.s2s.ca_files {
            *ca = absolute(ca);
        }
    }

    /// Checks values that parse but make no sense together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Err(error) = jid::BareJid::new(&self.server.domain) {
            return Err(ConfigError::Invalid {
                key: "server.domain",
                message: format!(
                    "{:?} is not a valid XMPP domain: {error}",
                    self.server.domain
                ),
            });
        }
        if jid::BareJid::new(&self.server.domain).is_ok_and(|jid| jid.node().is_some()) {
            return Err(ConfigError::Invalid {
                key: "server.domain",
                message: "must be a bare domain, without '@'".into(),
            });
        }
        if self.tls.cert.as_os_str().is_empty() != self.tls.key.as_os_str().is_empty() {
            return Err(ConfigError::Invalid {
                key: "tls.cert",
                message: "tls.cert and tls.key must be set together".into(),
            });
        }
        self.validate_http()?;
        self.validate_cometd()?;
        self.s2s.validate()?;
        let url = &self.storage.url;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres:")
            || url.starts_with("postgresql:"))
        {
            return Err(ConfigError::Invalid {
                key: "storage.url",
                message: format!("{url:?}: expected sqlite://FILE or postgres://..."),
            });
        }
        if self.storage.pool_size == 0 {
            return Err(ConfigError::Invalid {
                key: "storage.pool_size",
                message: "must be at least 1".into(),
            });
        }
        let limits = &self.limits;
        for (key, value) in [
            ("limits.max_stanza_size", limits.max_stanza_size as u64),
            ("limits.max_depth", limits.max_depth as u64),
            ("limits.idle_timeout_secs", limits.idle_timeout_secs),
            (
                "limits.negotiation_timeout_secs",
                limits.negotiation_timeout_secs,
            ),
            ("limits.stanza_timeout_secs", limits.stanza_timeout_secs),
            (
                "limits.auth_failures_per_connection",
                limits.auth_failures_per_connection.into(),
            ),
            (
                "limits.auth_failure_window_secs",
                limits.auth_failure_window_secs,
            ),
            ("limits.session_queue", limits.session_queue as u64),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    message: "must be greater than 0".into(),
                });
            }
        }
        if limits.max_stanza_size < 4096 {
            return Err(ConfigError::Invalid {
                key: "limits.max_stanza_size",
                message: "must be at least 4096 bytes (RFC 6120 13.12)".into(),
            });
        }
        if self.cluster.enabled {
            if self.cluster.secret.is_empty() {
                return Err(ConfigError::Invalid {
                    key: "cluster.secret",
                    message: "required when cluster.enabled = true".into(),
                });
            }
            let cluster = &self.cluster;
            if cluster.heartbeat_ms == 0
                || cluster.suspect_after_ms <= cluster.heartbeat_ms
                || cluster.down_after_ms <= cluster.suspect_after_ms
            {
                return Err(ConfigError::Invalid {
                    key: "cluster.down_after_ms",
                    message: "need 0 < heartbeat_ms < suspect_after_ms < down_after_ms".into(),
                });
            }
            if cluster.send_queue == 0 {
                return Err(ConfigError::Invalid {
                    key: "cluster.send_queue",
                    message: "must be greater than 0".into(),
                });
            }
            if !cluster.advertise.is_empty() && cluster.advertise.parse::<SocketAddr>().is_err() {
                return Err(ConfigError::Invalid {
                    key: "cluster.advertise",
                    message: format!(
                        "{:?} is not an address like 10.0.0.5:7701",
                        cluster.advertise
                    ),
                });
            }
            if self.cluster.node_name.is_empty() {
                return Err(ConfigError::Invalid {
                    key: "cluster.node_name",
                    message: "must not be empty".into(),
                });
            }
            self.validate_cluster_tls()?;
        }
        Ok(())
    }

    /// The CA files come as a set, and exclude clear-text links; with a CA,
    /// certificates are checked against `node_name`, so it must be a DNS name.
    fn validate_cluster_tls(&self) -> Result<(), ConfigError> {
        let cluster = &self.cluster;
        let files = [
            ("cluster.tls_ca", &cluster.tls_ca),
            ("cluster.tls_cert", &cluster.tls_cert),
            ("cluster.tls_key", &cluster.tls_key),
        ];
        let given = files
            .iter()
            .filter(|(_, path)| !path.as_os_str().is_empty())
            .count();
        if given == 0 {
            return Ok(());
        }
        if let Some((key, _)) = files.iter().find(|(_, path)| path.as_os_str().is_empty()) {
            return Err(ConfigError::Invalid {
                key,
                message: "cluster.tls_ca, tls_cert and tls_key must be set together".into(),
            });
        }
        if cluster.insecure_plaintext {
            return Err(ConfigError::Invalid {
                key: "cluster.insecure_plaintext",
                message: "clear-text links cannot use the certificates of cluster.tls_ca".into(),
            });
        }
        if !is_dns_name(&cluster.node_name) {
            return Err(ConfigError::Invalid {
                key: "cluster.node_name",
                message: format!(
                    "{:?} must be a DNS name (letters, digits, '-', '.') when cluster.tls_ca is \
                     set: peers check it against this node's certificate",
                    cluster.node_name
                ),
            });
        }
        Ok(())
    }

    fn validate_cometd(&self) -> Result<(), ConfigError> {
        let cometd = &self.cometd;
        for (key, value) in [
            ("cometd.timeout_ms", cometd.timeout_ms),
            ("cometd.max_interval_ms", cometd.max_interval_ms),
            ("cometd.max_queue", cometd.max_queue as u64),
            ("cometd.write_timeout_ms", cometd.write_timeout_ms),
            ("cometd.max_clients", cometd.max_clients as u64),
            (
                "cometd.max_clients_per_ip",
                cometd.max_clients_per_ip as u64,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    message: "must be at least 1".into(),
                });
            }
        }
        if cometd.max_clients_per_ip > cometd.max_clients {
            return Err(ConfigError::Invalid {
                key: "cometd.max_clients_per_ip",
                message: format!(
                    "{} is more than cometd.max_clients ({})",
                    cometd.max_clients_per_ip, cometd.max_clients
                ),
            });
        }
        Ok(())
    }

    fn validate_http(&self) -> Result<(), ConfigError> {
        let http = &self.http;
        if let Some(problem) = public_url_problem(&http.public_url) {
            return Err(ConfigError::Invalid {
                key: "http.public_url",
                message: format!("{:?} {problem}", http.public_url),
            });
        }
        if http.chat_page {
            if let Some(missing) = CHAT_ASSET_FILES
                .iter()
                .find(|file| !http.chat_assets.join(file).is_file())
            {
                return Err(ConfigError::Invalid {
                    key: "http.chat_assets",
                    message: format!(
                        "{} has no {missing}: it must be the dist folder of the Converse.js \
                         build (npm ci in xmpp/web fills xmpp/web/node_modules/converse.js/dist), \
                         or turn http.chat_page off",
                        http.chat_assets.display()
                    ),
                });
            }
        }
        if let Some(bad) = http
            .allowed_origins
            .iter()
            .find(|origin| *origin != "*" && !origin.contains("://"))
        {
            return Err(ConfigError::Invalid {
                key: "http.allowed_origins",
                message: format!("{bad:?} is not \"*\" or an origin like https://chat.example.com"),
            });
        }
        if !self.c2s.direct_tls_bind.is_empty()
            && self.c2s.direct_tls_bind.parse::<SocketAddr>().is_err()
        {
            return Err(ConfigError::Invalid {
                key: "c2s.direct_tls_bind",
                message: format!(
                    "{:?} is not an address like 127.0.0.1:5223",
                    self.c2s.direct_tls_bind
                ),
            });
        }
        if http.metrics_bind.is_empty() {
            return Ok(());
        }
        let Ok(addr) = http.metrics_bind.parse::<SocketAddr>() else {
            return Err(ConfigError::Invalid {
                key: "http.metrics_bind",
                message: format!(
                    "{:?} is not an address like 127.0.0.1:9280",
                    http.metrics_bind
                ),
            });
        };
        if addr == http.bind || addr == self.c2s.bind {
            return Err(ConfigError::Invalid {
                key: "http.metrics_bind",
                message: format!("{addr} is already taken by http.bind or c2s.bind"),
            });
        }
        if !http.metrics {
            return Err(ConfigError::Invalid {
                key: "http.metrics_bind",
                message: "set together with http.metrics = false: metrics are off".into(),
            });
        }
        Ok(())
    }

    /// The SQLite file the storage URL points at, if it is a SQLite URL.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let rest = self.storage.url.strip_prefix("sqlite:")?;
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let file = rest.split('?').next().unwrap_or(rest);
        let file = Path::new(file);
        Some(if file.is_absolute() {
            file.to_owned()
        } else {
            self.server.data_dir.join(file)
        })
    }
}

/// Whether `name` can be a DNS subject alternative name of a certificate.
fn is_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// What is wrong with an `[http] public_url`, if anything: the endpoint
/// paths are appended to it and other members send clients to it.
fn public_url_problem(url: &str) -> Option<&'static str> {
    if url.is_empty() {
        return None;
    }
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return Some("is not an http:// or https:// URL");
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Some("names no host");
    }
    if url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "\"'<>`{}|\\^".contains(c))
    {
        return Some("has characters a URL may not hold");
    }
    if url.contains(['?', '#']) {
        return Some("has a query or fragment (the endpoint paths are appended to it)");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_url_is_checked_and_advertised() {
        let mut config = Config::defaults();
        assert_eq!(config.http.advertised_url(), "http://127.0.0.1:5280");
        config.http.tls = true;
        assert_eq!(config.http.advertised_url(), "https://127.0.0.1:5280");
        for good in [
            "https://xmpp.example.com/",
            "http://10.0.0.2:5280",
            "https://a.example/xmpp",
        ] {
            config.http.public_url = good.into();
            assert!(config.validate().is_ok(), "{good}");
        }
        assert_eq!(config.http.advertised_url(), "https://a.example/xmpp");
        for bad in [
            "xmpp.example.com",
            "wss://xmpp.example.com",
            "https://",
            "https:///path",
            "https://a b.example",
            "https://a.example/\"x",
            "https://a.example/?q=1",
            "https://a.example/#top",
        ] {
            config.http.public_url = bad.into();
            match config.validate() {
                Err(ConfigError::Invalid { key, .. }) => {
                    assert_eq!(key, "http.public_url", "{bad}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn embedded_default_file_matches_the_defaults() {
        let mut parsed = Config::parse(DEFAULT_CONFIG_TOML).expect("default config parses");
        // Module sections are the modules' to check (the server's module
        // registry tests compare them with each module's defaults).
        parsed.modules.clear();
        let defaults = Config::default();
        assert_eq!(
            toml::to_string(&parsed).unwrap(),
            toml::to_string(&defaults).unwrap()
        );
    }

    #[test]
    fn chat_page_needs_the_converse_build() {
        let dir = std::env::temp_dir().join(format!("starling-chat-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut config = Config::defaults();
        config.http.chat_assets = dir.clone();
        // Off: the folder is not looked at.
        assert!(config.validate().is_ok());
        config.http.chat_page = true;
        match config.validate() {
            Err(ConfigError::Invalid { key, message }) => {
                assert_eq!(key, "http.chat_assets");
                assert!(message.contains("converse.min.js"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        for file in CHAT_ASSET_FILES {
            std::fs::write(dir.join(file), "").unwrap();
        }
        assert!(config.validate().is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unknown_key_is_named() {
        let error = Config::parse("[c2s]\nbindd = \"127.0.0.1:1\"\n").unwrap_err();
        assert!(error.contains("bindd"), "{error}");
    }

    #[test]
    fn bad_value_is_named() {
        let error = Config::parse("[c2s]\nbind = \"nowhere\"\n").unwrap_err();
        assert!(error.contains("bind"), "{error}");
        let error = Config::parse("[cometd]\nanonymous = \"everyone\"\n").unwrap_err();
        assert!(
            error.contains("anonymous") || error.contains("everyone"),
            "{error}"
        );
    }

    #[test]
    fn cluster_needs_a_secret() {
        let mut config = Config::defaults();
        config.cluster.enabled = true;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("cluster.secret"), "{error}");
    }

    #[test]
    fn cluster_tls_files_come_together_and_exclude_plaintext() {
        let mut config = Config::defaults();
        config.cluster.enabled = true;
        config.cluster.secret = "s".into();
        config.validate().unwrap();
        config.cluster.tls_ca = "ca.pem".into();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("cluster.tls_cert"), "{error}");
        config.cluster.tls_cert = "node1.pem".into();
        config.cluster.tls_key = "node1.key".into();
        config.validate().unwrap();
        config.cluster.insecure_plaintext = true;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("cluster.insecure_plaintext"), "{error}");
        config.cluster.insecure_plaintext = false;
        config.cluster.node_name = "node_1".into();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("cluster.node_name"), "{error}");
    }

    #[test]
    fn cluster_tls_paths_follow_the_config_file() {
        let dir = std::env::temp_dir().join(format!("starling-config-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("node.toml");
        std::fs::write(
            &file,
            "[cluster]\ntls_ca = \"pki/ca.pem\"\ntls_cert = \"pki/n.pem\"\ntls_key = \"/k.pem\"\n",
        )
        .unwrap();
        let config = Config::load(&file).unwrap();
        assert_eq!(config.cluster.tls_ca, dir.join("pki/ca.pem"));
        assert_eq!(config.cluster.tls_cert, dir.join("pki/n.pem"));
        assert_eq!(config.cluster.tls_key, PathBuf::from("/k.pem"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cometd_client_limits_are_checked_and_named() {
        let defaults = Config::defaults().cometd;
        assert_eq!(
            (defaults.max_clients, defaults.max_clients_per_ip),
            (50_000, 10_000)
        );
        for (toml, key) in [
            ("max_clients = 0", "cometd.max_clients"),
            ("max_clients_per_ip = 0", "cometd.max_clients_per_ip"),
            (
                "max_clients = 100\nmax_clients_per_ip = 101",
                "cometd.max_clients_per_ip",
            ),
        ] {
            let mut config = Config::parse(&format!("[cometd]\n{toml}\n")).unwrap();
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains(key), "{toml}: {error}");
            config.cometd.max_clients_per_ip = 1;
            config.cometd.max_clients = 1;
            config.validate().unwrap();
        }
        let error = Config::parse("[cometd]\nmax_clients = -1\n").unwrap_err();
        assert!(error.contains("max_clients"), "{error}");
    }

    #[test]
    fn metrics_bind_must_be_a_free_address() {
        let mut config = Config::defaults();
        config.http.metrics_bind = "localhost".into();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("http.metrics_bind"), "{error}");
        config.http.metrics_bind = config.http.bind.to_string();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("already taken"), "{error}");
        config.http.metrics_bind = "127.0.0.1:9280".into();
        config.validate().unwrap();
        assert_eq!(
            config.http.metrics_addr(),
            Some("127.0.0.1:9280".parse().unwrap())
        );
        config.http.metrics = false;
        assert!(
            config.validate().is_err(),
            "a metrics address with metrics off"
        );
    }

    #[test]
    fn environment_overrides_replace_secrets_and_validate() {
        let mut config = Config::parse("[cluster]\nenabled = true\nsecret = \"\"\n").unwrap();
        assert!(config.validate().is_err(), "no secret");
        config.apply_env_overrides(|name| match name {
            "STARLING_CLUSTER_SECRET" => Some("from the environment".into()),
            "STARLING_STORAGE_URL" => Some("postgres://db/starling".into()),
            _ => None,
        });
        assert_eq!(config.cluster.secret, "from the environment");
        assert_eq!(config.storage.url, "postgres://db/starling");
        config.validate().unwrap();

        // Unset or empty variables leave the file's values.
        let mut config = Config::parse("[storage]\nurl = \"sqlite://x.db\"\n").unwrap();
        config.apply_env_overrides(|name| (name == "STARLING_STORAGE_URL").then(String::new));
        assert_eq!(config.storage.url, "sqlite://x.db");
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let dir = std::env::temp_dir().join(format!("starling-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("node.toml");
        std::fs::write(&file, "[server]\ndata_dir = \"state\"\n").unwrap();
        let config = Config::load(&file).unwrap();
        assert_eq!(config.server.data_dir, dir.join("state"));
        assert_eq!(
            config.sqlite_path(),
            Some(dir.join("state").join("starling.db"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
