//! `tracing` set-up: human-readable or JSON lines, level from `RUST_LOG`.

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// Installs the global subscriber; `default_level` applies when `RUST_LOG`
/// is unset or unreadable.
pub(super) fn init(format: LogFormat, default_level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // openraft reports every failed RPC to a dead member at error
        // level; the failure detector already says it once, clearly.
        EnvFilter::new(format!("{default_level},openraft::replication=off"))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests running the CLI twice) keeps the first subscriber.
    let _already_set = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
