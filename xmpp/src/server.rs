//! The node's shared state and its start-up: the one `Server` every task
//! holds an `Arc` of.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use starling_core::cache::CacheRegistry;
use starling_core::cluster::Cluster;
use starling_core::config::{Config, LimitsConfig};
use starling_core::jid::Jid;
use starling_core::shutdown::Shutdown;
use tokio_rustls::TlsAcceptor;

use crate::c2s::limits::IpLimits;
use crate::metrics::Metrics;
use crate::modules::{ModuleConfigError, Modules};
use crate::pubsub::PubSub;
use crate::roster::service::Rosters;
use crate::router::locks::DeliveryLocks;
use crate::session::SessionManager;
use crate::storage::Store;
use crate::users::UserDirectory;

pub struct Server {
    /// The config the node started with. What SIGHUP reloads is read from
    /// its own field instead (`limits()`, the TLS certificate).
    pub config: Config,
    /// `[limits]` in force: reloaded on SIGHUP.
    limits: ArcSwap<LimitsConfig>,
    /// The XMPP domain, prepared.
    pub domain: String,
    /// The domain as a JID, the `from` of everything the server itself says.
    pub domain_jid: Jid,
    pub store: Store,
    pub users: UserDirectory,
    pub rosters: Rosters,
    pub sessions: SessionManager,
    pub cluster: Arc<dyn Cluster>,
    /// The feature modules, their routes and hooks.
    pub modules: Arc<Modules>,
    /// XEP-0060 on `pubsub.<domain>`; the CometD bridge uses it too.
    pub pubsub: Arc<PubSub>,
    /// Federation: outgoing streams, keys and TLS for other servers.
    pub s2s: crate::s2s::S2s,
    pub metrics: Metrics,
    pub caches: CacheRegistry,
    pub tls: TlsAcceptor,
    /// The certificate `tls` serves, swapped in place on SIGHUP.
    pub tls_certificate: Arc<crate::tls::ReloadableCertificate>,
    pub ip_limits: IpLimits,
    /// Client connections allowed at once (`[c2s] max_connections`,
    /// resolved): one permit per TCP, direct TLS, WebSocket or BOSH client.
    pub connection_permits: Arc<tokio::sync::Semaphore>,
    /// The connections of WebSocket and BOSH clients (the c2s listeners
    /// track their own), so that shutdown waits for them as well.
    pub web_connections: tokio_util::task::TaskTracker,
    pub delivery_locks: DeliveryLocks,
    /// Senders whose stanzas a dying link handed back (`router::handback`).
    pub handback: crate::router::handback::HandbackGate,
    pub shutdown: Shutdown,
    pub started: Instant,
    /// Itself, for tasks that outlive the call that spawns them.
    this: std::sync::Weak<Server>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid domain {0:?}")]
    Domain(String),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("storage: {0}")]
    Storage(#[from] crate::storage::StorageError),
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("{0}")]
    Modules(#[from] ModuleConfigError),
    #[error("federation: {0}")]
    S2s(String),
}

impl Server {
    /// Opens the store (running migrations), prepares TLS and the caches.
    pub async fn new(
        config: Config,
        cluster: Arc<dyn Cluster>,
        shutdown: Shutdown,
    ) -> Result<Arc<Server>, StartError> {
        let domain_jid = Jid::new(&config.server.domain)
            .map_err(|_| StartError::Domain(config.server.domain.clone()))?;
        let domain = domain_jid.domain().to_string();
        let modules = Arc::new(Modules::from_config(&config)?);
        std::fs::create_dir_all(&config.server.data_dir).map_err(|source| StartError::DataDir {
            path: config.server.data_dir.clone(),
            source,
        })?;
        let store = open_store(&config).await?;
        let (tls, tls_certificate) = crate::tls::reloadable_acceptor(&config)?;
        let s2s = crate::s2s::S2s::new(&config, tls_certificate.clone())
            .map_err(|error| StartError::S2s(format!("{error:#}")))?;
        let caches = CacheRegistry::default();
        modules.register_caches(&caches);
        let users = UserDirectory::new(
            store.clone(),
            cluster.clone(),
            modules.clone(),
            domain.clone(),
            config.caches.user_entries,
            &caches,
        );
        let rosters = Rosters::new(
            store.clone(),
            cluster.clone(),
            config.caches.roster_entries,
            &caches,
        );
        let ip_limits = IpLimits::new(&config.limits);
        let (pubsub_store, pubsub_domain) = (store.clone(), domain.clone());
        Ok(Arc::new_cyclic(|this| Server {
            this: this.clone(),
            domain,
            domain_jid,
            store,
            users,
            rosters,
            sessions: SessionManager::default(),
            pubsub: Arc::new(PubSub::new(
                this.clone(),
                pubsub_store,
                cluster.clone(),
                &pubsub_domain,
            )),
            cluster,
            s2s,
            modules,
            metrics: Metrics::default(),
            caches,
            tls,
            tls_certificate,
            ip_limits,
            connection_permits: Arc::new(tokio::sync::Semaphore::new(
                crate::c2s::listener::connection_cap(config.c2s.max_connections),
            )),
            web_connections: tokio_util::task::TaskTracker::new(),
            delivery_locks: DeliveryLocks::default(),
            handback: Default::default(),
            shutdown,
            started: Instant::now(),
            limits: ArcSwap::from_pointee(config.limits.clone()),
            config,
        }))
    }

    /// The `[limits]` in force (SIGHUP may have changed them since start).
    pub fn limits(&self) -> Arc<LimitsConfig> {
        self.limits.load_full()
    }

    /// Puts new `[limits]` in force: per-IP limits at once, the others for
    /// connections opened from now on.
    pub fn set_limits(&self, limits: LimitsConfig) {
        self.ip_limits.reconfigure(&limits);
        self.limits.store(Arc::new(limits));
    }

    /// A strong handle, for spawned tasks (`None` only during teardown).
    pub fn this(&self) -> Option<Arc<Server>> {
        self.this.upgrade()
    }

    /// Whether this server answers for `domain`: its own, or a module's
    /// host (`pubsub.<domain>`, `conference.<domain>`).
    pub fn serves_domain(&self, domain: &str) -> bool {
        domain.eq_ignore_ascii_case(&self.domain) || self.modules.host(domain).is_some()
    }

    /// True when `jid` is an account of this server's domain.
    pub fn is_local_user(&self, jid: &Jid) -> bool {
        jid.node().is_some() && jid.domain().as_str() == self.domain
    }
}

/// Opens the configured store; a relative SQLite path lives in the data dir.
pub async fn open_store(config: &Config) -> Result<Store, crate::storage::StorageError> {
    let url = match config.sqlite_path() {
        Some(path) => format!("sqlite://{}", path.display()),
        None => config.storage.url.clone(),
    };
    Store::connect(&url, config.storage.pool_size).await
}
