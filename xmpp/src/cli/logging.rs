//! `tracing` set-up: human-readable or JSON lines, level from `RUST_LOG`,
//! else from `[log] level` (which SIGHUP applies again).

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// The installed filter, swapped by [`set_level`].
static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// openraft reports every failed RPC to a dead member at error level; the
/// failure detector already says it once, clearly.
const QUIET: &str = "openraft::replication=off";

/// Whether `RUST_LOG` decides the level (then `[log] level` is ignored).
pub(super) fn env_decides() -> bool {
    std::env::var_os(EnvFilter::DEFAULT_ENV).is_some()
}

/// Installs the global subscriber; `default_level` applies when `RUST_LOG`
/// is unset or unreadable.
pub(super) fn init(format: LogFormat, default_level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{default_level},{QUIET}")));
    let (filter, handle) = reload::Layer::new(filter);
    let output = match format {
        LogFormat::Human => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
    };
    // A second init (tests running the CLI twice) keeps the first subscriber.
    if tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .try_init()
        .is_ok()
    {
        let _ = FILTER.set(handle);
    }
}

/// Applies `[log] level` unless `RUST_LOG` is set; an unreadable filter is
/// an error naming the key, and the level in force stays.
pub(super) fn set_level(level: &str) -> Result<(), String> {
    let filter = EnvFilter::try_new(format!("{level},{QUIET}"))
        .map_err(|error| format!("config key `log.level`: {level:?} is not a filter: {error}"))?;
    if env_decides() {
        return Ok(());
    }
    if let Some(handle) = FILTER.get() {
        handle
            .reload(filter)
            .map_err(|error| format!("the log filter cannot be replaced: {error}"))?;
    }
    Ok(())
}
