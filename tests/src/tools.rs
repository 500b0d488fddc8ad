//! The external tools some tests drive, and the check each of those tests
//! makes first.
//!
//! A test that needs a tool is declared `#[ignore = "needs TOOL: run tests/run"]`,
//! so a plain `cargo test` reports it as ignored with the reason instead of
//! failing or passing without testing. `tests/run` installs the tools and
//! runs every test with `--include-ignored`; there a missing tool fails the
//! test, with what to install, through the `require_*` functions below.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The interpreter python3-slixmpp installs into (the `python3` on PATH may
/// be another).
pub const PYTHON: &str = "/usr/bin/python3";

/// The interpreter of the virtual environment tests/run makes with the
/// slixmpp of `tests/interop/requirements.txt` from PyPI, for the plugins
/// Debian's older slixmpp lacks (xep_0402).
pub fn pypi_python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/.venv/bin/python")
}

/// Fails the test with what to do when the PyPI slixmpp is missing.
pub fn require_pypi_slixmpp() {
    let python = pypi_python();
    assert!(
        imports(&python, "slixmpp.plugins.xep_0402"),
        "{} cannot import slixmpp's xep_0402: make the virtual environment with \
         `python3 -m venv tests/interop/.venv` and `tests/interop/.venv/bin/pip install \
         -r tests/interop/requirements.txt` (tests/run does)",
        python.display()
    );
}

/// Whether `python` can import `module`.
fn imports(python: &Path, module: &str) -> bool {
    Command::new(python)
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The oldest Node.js the browser and Bayeux test runners work with.
const NODE_MAJOR: u32 = 20;

/// Fails the test with what to install when slixmpp is missing.
pub fn require_slixmpp() {
    assert!(
        imports(Path::new(PYTHON), "slixmpp"),
        "{PYTHON} cannot import slixmpp: install the Debian package python3-slixmpp \
         (tests/run does)"
    );
}

/// Fails the test unless `program` is on PATH, naming the package to install.
pub fn require_program(program: &str, package: &str) {
    assert!(
        on_path(program).is_some(),
        "{program} is not on PATH: install the Debian package {package} (tests/run does)"
    );
}

/// Where `program` is on PATH, if it is.
pub fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Node.js's version as (major, minor), if `node` runs.
pub fn node_version() -> Option<(u32, u32)> {
    let output = Command::new("node").arg("--version").output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut parts = text.trim().trim_start_matches('v').split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Fails the test unless Node.js 20+ runs and `npm ci` has installed
/// `packages` into `dir/node_modules`.
pub fn require_node_packages(dir: &Path, packages: &[&str]) {
    match node_version() {
        None => {
            panic!("node is not installed: install the Debian packages nodejs npm (tests/run does)")
        }
        Some((major, minor)) => assert!(
            major >= NODE_MAJOR,
            "node {major}.{minor} is too old: the test runners need {NODE_MAJOR} or later"
        ),
    }
    for package in packages {
        assert!(
            dir.join("node_modules").join(package).is_dir(),
            "the npm package {package} is not installed: run `npm ci` in {} (tests/run does)",
            dir.display()
        );
    }
}

/// Whether this process may add and remove nftables tables (root and `nft`),
/// and if not, why.
pub fn firewall_available() -> Result<(), String> {
    if on_path("nft").is_none() {
        return Err("nft is not on PATH: install the Debian package nftables".into());
    }
    // One name per probe: tests of one process probe side by side, and
    // one must not delete the table another just added.
    static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let probe = format!(
        "starling_probe_{}_{}",
        std::process::id(),
        PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let run = |args: &[&str]| {
        Command::new("nft")
            .args(args)
            .output()
            .map_err(|error| format!("nft: {error}"))
            .and_then(|output| {
                if output.status.success() {
                    Ok(())
                } else {
                    Err(format!(
                        "nft {}: {} (root is needed)",
                        args.join(" "),
                        String::from_utf8_lossy(&output.stderr).trim()
                    ))
                }
            })
    };
    run(&["add", "table", "inet", &probe])?;
    run(&["delete", "table", "inet", &probe])
}

/// Fails the test unless nftables can be used here.
pub fn require_firewall() {
    if let Err(why) = firewall_available() {
        panic!("no firewall to cut the network with: {why}; run tests/run as root");
    }
}
