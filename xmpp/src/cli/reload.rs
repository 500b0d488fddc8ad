//! SIGHUP: the config file is read again and what can change on a running
//! node is applied: `[limits]` (per-IP limits at once, the others for new
//! connections), `[log] level` (unless `RUST_LOG` is set) and the TLS
//! certificate, read again from its files even when their paths did not
//! change (a renewed certificate). Every other change is named in the log as
//! waiting for a restart. A config that no longer loads changes nothing.

use std::sync::Arc;

use starling_core::config::Config;
use starling_core::shutdown::Shutdown;

use super::logging;
use crate::server::Server;

/// Reads the config file again, as at start (environment overrides and
/// module checks included).
pub(super) type ConfigLoader = Box<dyn Fn() -> anyhow::Result<Config> + Send + Sync>;

/// Keys a running node takes over: whole sections end with a dot.
const RELOADABLE: &[&str] = &["limits.", "log.level", "tls.cert", "tls.key"];

/// Watches SIGHUP until `stop` fires.
pub(super) fn watch(server: Arc<Server>, load: ConfigLoader, stop: Shutdown) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(stream) => stream,
        Err(error) => {
            tracing::warn!(%error, "cannot watch SIGHUP; the config is not reloadable");
            return;
        }
    };
    let mut in_force = server.config.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                received = hangups.recv() => {
                    if received.is_none() {
                        return;
                    }
                }
            }
            match load() {
                Ok(config) => apply(&server, &mut in_force, config),
                Err(error) => tracing::error!(
                    error = format!("{error:#}"),
                    "SIGHUP: the config does not load; nothing changed"
                ),
            }
        }
    });
}

/// Applies what can change from `new`; `in_force` becomes what now is.
fn apply(server: &Server, in_force: &mut Config, new: Config) {
    let changed = changed_keys(in_force, &new);
    match logging::set_level(&new.log.level) {
        Ok(()) if logging::env_decides() && new.log.level != in_force.log.level => {
            tracing::warn!("SIGHUP: RUST_LOG is set, so [log] level is not applied");
        }
        Ok(()) => in_force.log = new.log.clone(),
        Err(error) => tracing::error!(%error, "SIGHUP: the log level stays"),
    }
    server.set_limits(new.limits.clone());
    in_force.limits = new.limits.clone();
    match server.tls_certificate.reload(&new) {
        Ok(path) => {
            tracing::info!(cert = %path.display(), "SIGHUP: TLS certificate reloaded");
            in_force.tls = new.tls.clone();
        }
        Err(error) => tracing::error!(%error, "SIGHUP: the TLS certificate stays"),
    }
    let waiting: Vec<&String> = changed.iter().filter(|key| !is_reloadable(key)).collect();
    for key in &waiting {
        tracing::warn!(key = %key, "SIGHUP: changed in the config, takes effect after a restart");
    }
    let applied: Vec<&String> = changed.iter().filter(|key| is_reloadable(key)).collect();
    tracing::info!(
        applied = ?applied,
        needs_restart = waiting.len(),
        "SIGHUP: configuration reloaded"
    );
}

fn is_reloadable(key: &str) -> bool {
    RELOADABLE
        .iter()
        .any(|reloadable| match reloadable.strip_suffix('.') {
            Some(section) => key.starts_with(reloadable) || key == section,
            None => key == *reloadable,
        })
}

/// The dotted keys whose values differ (`c2s.bind`, `modules.mam.max_page`).
fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    let as_value =
        |config: &Config| toml::Value::try_from(config).unwrap_or(toml::Value::Boolean(false));
    let mut changed = Vec::new();
    diff("", &as_value(old), &as_value(new), &mut changed);
    changed
}

fn diff(prefix: &str, old: &toml::Value, new: &toml::Value, changed: &mut Vec<String>) {
    match (old, new) {
        (toml::Value::Table(old), toml::Value::Table(new)) => {
            let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
            for key in keys {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                match (old.get(key), new.get(key)) {
                    (Some(a), Some(b)) => diff(&path, a, b, changed),
                    _ => changed.push(path),
                }
            }
        }
        _ if old != new => changed.push(prefix.to_owned()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_named_by_dotted_key_and_sorted_by_what_reloads() {
        let old = Config::defaults();
        let mut new = old.clone();
        new.limits.max_stanza_size = 1000;
        new.c2s.bind = "127.0.0.1:6222".parse().unwrap();
        new.log.level = "debug".into();
        new.modules
            .entry("mam".into())
            .or_default()
            .insert("max_page".into(), toml::Value::Integer(10));
        let changed = changed_keys(&old, &new);
        assert_eq!(
            changed,
            [
                "c2s.bind",
                "limits.max_stanza_size",
                "log.level",
                "modules.mam"
            ]
        );
        let waiting: Vec<&String> = changed.iter().filter(|k| !is_reloadable(k)).collect();
        assert_eq!(waiting, ["c2s.bind", "modules.mam"]);
        assert!(changed_keys(&old, &old.clone()).is_empty());
    }
}
