//! Which config file the commands read when none is given.

use std::path::{Path, PathBuf};

/// Where a packaged install keeps its configuration.
pub(super) const SYSTEM_CONFIG: &str = "/etc/starling/starling.toml";

/// `given` (from `--config` or `STARLING_CONFIG`) when set, else `system`
/// when that file exists; `None` means the embedded defaults.
pub(super) fn choose(given: Option<&Path>, system: impl AsRef<Path>) -> Option<PathBuf> {
    match given {
        Some(path) => Some(path.to_owned()),
        None => {
            let system = system.as_ref();
            system.is_file().then(|| system.to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_file_wins_then_the_system_file_then_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let system = dir.path().join("starling.toml");
        let given = Path::new("/somewhere/node.toml");
        assert_eq!(choose(None, &system), None, "no system file: defaults");
        std::fs::write(&system, "").unwrap();
        assert_eq!(choose(None, &system), Some(system.clone()));
        assert_eq!(choose(Some(given), &system), Some(given.to_owned()));
    }
}
