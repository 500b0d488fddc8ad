//! `starling check`: what `serve` would refuse to start with, found
//! without starting: the configuration (already loaded and validated by
//! the caller), the configured TLS certificate, and the store.

use anyhow::Context;
use starling_core::config::Config;

use crate::server::open_store;
use crate::storage::Backend;

/// Checks what the loaded `config` (read from `source`) points at and says
/// so; the first problem is the error.
pub(super) async fn run(config: &Config, source: &str) -> anyhow::Result<()> {
    tracing_subscriber::EnvFilter::try_new(&config.log.level).map_err(|error| {
        anyhow::anyhow!(
            "config key `log.level`: {:?} is not a filter: {error}",
            config.log.level
        )
    })?;
    if !config.tls.cert.as_os_str().is_empty() {
        crate::tls::acceptor(config).context("the [tls] certificate")?;
    }
    // Connecting as `serve` does also applies the migrations this version
    // brings (and creates a SQLite file that does not exist yet).
    let store = open_store(config).await.context("the store")?;
    let backend = match store.backend() {
        Backend::Sqlite => "SQLite",
        Backend::Postgres => "PostgreSQL",
    };
    store.close().await;
    let tls = if config.tls.cert.as_os_str().is_empty() {
        "self-signed, generated at first start"
    } else {
        "certificate and key load"
    };
    println!(
        "{source}: ok (domain {}; {backend} store reachable; TLS: {tls}; cluster {})",
        config.server.domain,
        if config.cluster.enabled { "on" } else { "off" }
    );
    Ok(())
}
