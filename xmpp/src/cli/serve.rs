//! `starling serve`: start a node and run it until SIGINT/SIGTERM (SIGHUP
//! reloads what can change while it runs: `reload.rs`).
//!
//! Once clients are accepted it sends READY=1 to systemd's `NOTIFY_SOCKET`
//! (packaging/starling.service is `Type=notify`).
//!
//! Shutdown order: client sessions end first (their unavailable presence and
//! directory removals still reach the other members), then the node leaves
//! the cluster, then the store closes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sd_notify::NotifyState;
use starling_core::cluster::{Cluster, LocalOnly};
use starling_core::config::Config;
use starling_core::shutdown::Shutdown;
use tokio::net::TcpListener;

use crate::c2s::listener;
use crate::server::Server;
use crate::session::CloseReason;

/// How long sessions get to say goodbye at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn run(config: Config, reload: super::reload::ConfigLoader) -> anyhow::Result<()> {
    raise_open_file_limit();
    // Before anything is bound: a SIGTERM that arrives between READY=1 and
    // the wait below would otherwise meet the default action and kill the
    // node without its orderly shutdown.
    let stop_signals = StopSignals::install()?;
    let cap = listener::connection_cap(config.c2s.max_connections);
    let sessions = Shutdown::new();
    let links = Shutdown::new();
    let module = cluster_module(&config, &links)?;
    let cluster: Arc<dyn Cluster> = match &module {
        Some(module) => module.handle(),
        None => Arc::new(LocalOnly::with_identity(single_node_identity(&config))),
    };
    let c2s_bind = config.c2s.bind;
    let server = Server::new(config, cluster, sessions.clone())
        .await
        .context("starting the server")?;
    if let Some(module) = &module {
        module.start(&server).await?;
    }
    server.modules.started(&server);
    // Every other listener before the client port: a node that cannot
    // serve its admin side stops before it takes anyone, and whoever finds
    // the client port open (a health check, the tests) finds the others
    // open too (the kernel completes connections from the moment of the
    // bind).
    let http = start_http(&server).await?;
    let direct_tls = match server.config.c2s.direct_tls_addr() {
        Some(bind) => Some(
            TcpListener::bind(bind)
                .await
                .with_context(|| format!("cannot listen for direct TLS clients on {bind}"))?,
        ),
        None => None,
    };
    let s2s =
        match server.config.s2s.bind_addr() {
            Some(bind) => Some(TcpListener::bind(bind).await.with_context(|| {
                format!("cannot listen for other servers on {bind} ([s2s] bind)")
            })?),
            None => None,
        };
    let c2s = TcpListener::bind(c2s_bind)
        .await
        .with_context(|| format!("cannot listen for clients on {c2s_bind}"))?;
    tracing::info!(
        domain = %server.domain,
        c2s = %c2s.local_addr().unwrap_or(c2s_bind),
        max_connections = cap,
        cluster = module.is_some(),
        "Starling is ready"
    );
    let permits = server.connection_permits.clone();
    let mut accept_loops = vec![tokio::spawn(listener::run(
        c2s,
        server.clone(),
        permits.clone(),
        None,
    ))];
    if let Some(direct_tls) = direct_tls {
        let acceptor = crate::tls::direct_tls_acceptor(&server.tls);
        tracing::info!(direct_tls = %direct_tls.local_addr().map_or_else(|_| String::new(), |a| a.to_string()), "direct TLS listener ready");
        accept_loops.push(tokio::spawn(listener::run(
            direct_tls,
            server.clone(),
            permits,
            Some(acceptor),
        )));
    }
    if let Some(s2s) = s2s {
        tracing::info!(s2s = %s2s.local_addr().map_or_else(|_| String::new(), |a| a.to_string()), "federation listener ready");
        accept_loops.push(tokio::spawn(crate::s2s::listener::run(s2s, server.clone())));
    }
    let accept_loop = futures_util::future::join_all(accept_loops);
    notify_service_manager(NotifyState::Ready);
    super::reload::watch(server.clone(), reload, sessions.clone());
    stop_signals.received().await;
    tracing::info!("shutting down");
    notify_service_manager(NotifyState::Stopping);
    // Modules act while sessions are open (group chat moves its rooms or
    // tells their occupants of the shutdown).
    server.modules.stopping(&server).await;
    sessions.cancel();
    server.sessions.close_all(CloseReason::Shutdown);
    server.web_connections.close();
    let drained = async {
        accept_loop.await;
        server.web_connections.wait().await;
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, drained).await.is_err() {
        tracing::warn!("some sessions did not close in time");
    }
    // Modules write what they hold back (the archive's batch) while the
    // store is open.
    server.modules.stopped(&server).await;
    if let Some(module) = &module {
        module.leave().await;
    }
    http.cancel();
    links.cancel();
    server.store.close().await;
    Ok(())
}

/// Starts the HTTP listener (and the separate metrics listener when
/// `[http] metrics_bind` is set); they stop when the returned handle fires.
async fn start_http(server: &Arc<Server>) -> anyhow::Result<Shutdown> {
    let stop = Shutdown::new();
    let config = &server.config.http;
    let state = crate::http::HttpState::new(server.clone());
    let tls = config.tls.then(|| server.tls.clone());
    let bind = config.bind;
    let http = TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen for HTTP on {bind}"))?;
    tracing::info!(http = %http.local_addr().unwrap_or(bind), tls = config.tls, "HTTP listener ready");
    spawn_http(http, crate::http::app(state.clone()), tls, stop.clone());
    if let Some(metrics_bind) = config.metrics_addr().filter(|_| config.metrics) {
        let metrics = TcpListener::bind(metrics_bind)
            .await
            .with_context(|| format!("cannot listen for metrics on {metrics_bind}"))?;
        spawn_http(metrics, crate::http::metrics_app(state), None, stop.clone());
    }
    Ok(stop)
}

fn spawn_http(
    listener: TcpListener,
    router: axum::Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: Shutdown,
) {
    tokio::spawn(async move {
        if let Err(error) = crate::http::serve(listener, router, tls, stop).await {
            tracing::error!(%error, "HTTP listener failed");
        }
    });
}

#[cfg(feature = "cluster")]
use self::cluster_module::ClusterModule;

#[cfg(feature = "cluster")]
mod cluster_module {
    use std::sync::Arc;

    use starling_cluster::ClusterNode;
    use starling_core::cluster::Cluster;
    use starling_core::config::Config;
    use starling_core::shutdown::Shutdown;

    use crate::router::cluster::ServerDelivery;
    use crate::server::Server;

    /// The cluster module, when `[cluster] enabled = true`.
    pub(super) struct ClusterModule(Arc<ClusterNode>);

    impl ClusterModule {
        pub(super) fn new(config: &Config, links: &Shutdown) -> ClusterModule {
            ClusterModule(ClusterNode::new(config, links.clone()))
        }

        pub(super) fn handle(&self) -> Arc<dyn Cluster> {
            self.0.clone()
        }

        pub(super) async fn start(&self, server: &Arc<Server>) -> anyhow::Result<()> {
            let delivery = Arc::new(ServerDelivery::new(server));
            Ok(self.0.start(delivery).await?)
        }

        pub(super) async fn leave(&self) {
            self.0.leave().await;
        }
    }
}

#[cfg(feature = "cluster")]
fn cluster_module(config: &Config, links: &Shutdown) -> anyhow::Result<Option<ClusterModule>> {
    Ok(config
        .cluster
        .enabled
        .then(|| ClusterModule::new(config, links)))
}

#[cfg(not(feature = "cluster"))]
fn cluster_module(config: &Config, _links: &Shutdown) -> anyhow::Result<Option<NoCluster>> {
    anyhow::ensure!(
        !config.cluster.enabled,
        "cluster.enabled = true, but this binary was built without the cluster module"
    );
    Ok(None)
}

#[cfg(not(feature = "cluster"))]
struct NoCluster;

#[cfg(not(feature = "cluster"))]
impl NoCluster {
    fn handle(&self) -> Arc<dyn Cluster> {
        Arc::new(LocalOnly::default())
    }

    async fn start(&self, _server: &Arc<Server>) -> anyhow::Result<()> {
        Ok(())
    }

    async fn leave(&self) {}
}

/// How a node without the cluster module describes itself on the admin side.
fn single_node_identity(config: &Config) -> starling_core::cluster::MemberRow {
    starling_core::cluster::MemberRow {
        id: 0,
        name: config.cluster.node_name.clone(),
        cluster_addr: String::new(),
        c2s_addr: config.c2s.bind.to_string(),
        http_addr: config.http.bind.to_string(),
        web_url: config.http.advertised_url(),
        max_connections: config.c2s.max_connections,
        incarnation: 0,
        // Joined the (one-member) cluster when it started.
        joined_at_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as i64),
        member: true,
        senior: true,
        state: starling_core::cluster::PeerState::Up,
        sessions: 0,
        client_stanzas: 0,
        link: None,
        view_agrees: true,
    }
}

/// Tells systemd (a `Type=notify` unit) that the node accepts clients, or
/// that it is stopping; does nothing when `NOTIFY_SOCKET` is unset.
fn notify_service_manager(state: NotifyState) {
    if let Err(error) = sd_notify::notify(false, &[state]) {
        tracing::warn!(%error, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

/// One node serves as many clients as it may open files: raise the soft
/// limit to the hard limit and say what that allows.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(open_files = limit, "open-file limit raised"),
        Err(error) => tracing::warn!(%error, "cannot raise the open-file limit"),
    }
}

/// SIGTERM (systemd, docker stop) and SIGINT (Ctrl-C), watched from
/// `install` on.
struct StopSignals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            terminate: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
            interrupt: signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
        })
    }

    async fn received(mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}
