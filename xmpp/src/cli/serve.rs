//! `starling serve`: start a node and run it until SIGINT/SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use starling_core::cluster::{Cluster, LocalOnly};
use starling_core::config::Config;
use starling_core::shutdown::Shutdown;
use tokio::net::TcpListener;

use crate::c2s::listener;
use crate::server::Server;

/// How long sessions get to say goodbye at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn run(config: Config) -> anyhow::Result<()> {
    raise_open_file_limit();
    let cap = listener::connection_cap(config.c2s.max_connections);
    let shutdown = Shutdown::new();
    let cluster: Arc<dyn Cluster> = Arc::new(LocalOnly);
    let c2s_bind = config.c2s.bind;
    let server = Server::new(config, cluster, shutdown.clone())
        .await
        .context("starting the server")?;
    let c2s = TcpListener::bind(c2s_bind)
        .await
        .with_context(|| format!("cannot listen for clients on {c2s_bind}"))?;
    tracing::info!(
        domain = %server.domain,
        c2s = %c2s.local_addr().unwrap_or(c2s_bind),
        max_connections = cap,
        "Starling is ready"
    );
    let accept_loop = tokio::spawn(listener::run(c2s, server.clone(), cap));
    wait_for_signal().await;
    tracing::info!("shutting down");
    shutdown.cancel();
    if tokio::time::timeout(DRAIN_TIMEOUT, accept_loop)
        .await
        .is_err()
    {
        tracing::warn!("some sessions did not close in time");
    }
    server.store.close().await;
    Ok(())
}

/// One node serves as many clients as it may open files: raise the soft
/// limit to the hard limit and say what that allows.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(open_files = limit, "open-file limit raised"),
        Err(error) => tracing::warn!(%error, "cannot raise the open-file limit"),
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot watch SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
