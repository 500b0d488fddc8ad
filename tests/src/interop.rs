//! Running other programs from the tests: the scripts in `tests/interop/`
//! (slixmpp, a client others wrote) and the Node.js test runners, each with
//! its output in a log file and a bound on its run time. Whether they are
//! installed is [`crate::tools`]' job.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use crate::TestCluster;
use crate::tools::PYTHON;
use std::time::{Duration, Instant};

/// `tests/interop/<name>`.
pub fn script_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("interop")
        .join(name)
}

/// `python3 tests/interop/<name>`, writing no `__pycache__` into the source tree.
pub fn python_script(name: &str) -> Command {
    python_script_in(Path::new(PYTHON), name)
}

/// `tests/interop/<name>` run by the interpreter `python`.
pub fn python_script_in(python: &Path, name: &str) -> Command {
    let mut command = Command::new(python);
    command
        .arg(script_path(name))
        .env("PYTHONDONTWRITEBYTECODE", "1");
    command
}

/// Runs `command` in a process group of its own with its output in `log`;
/// after `limit` the whole group is killed and the status is `None`.
pub fn run_logged(
    mut command: Command,
    log: &Path,
    limit: Duration,
) -> (Option<ExitStatus>, String) {
    let file = File::create(log).expect("log file");
    let started = Instant::now();
    let mut child: Child = command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log file"))
        .stderr(file)
        .spawn()
        .unwrap_or_else(|error| panic!("starting {command:?}: {error}"));
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the child") {
            break Some(status);
        }
        if started.elapsed() > limit {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, std::fs::read_to_string(log).unwrap_or_default())
}

/// Runs `python3 tests/interop/<name> ARGS` with its log in `log_dir` and
/// fails the test, with the script's output, unless it exits 0 within `limit`.
pub fn run_script(name: &str, args: &[String], log_dir: &Path, limit: Duration) -> String {
    run_script_in(Path::new(PYTHON), name, args, log_dir, limit)
}

/// [`run_script`] with another interpreter, e.g. [`crate::tools::pypi_python`].
pub fn run_script_in(
    python: &Path,
    name: &str,
    args: &[String],
    log_dir: &Path,
    limit: Duration,
) -> String {
    let mut command = python_script_in(python, name);
    command.args(args);
    let started = Instant::now();
    let (status, output) = run_logged(command, &log_dir.join(format!("{name}.log")), limit);
    match status {
        Some(status) if status.success() => {
            println!("{name} passed in {:?}:\n{output}", started.elapsed());
            output
        }
        Some(status) => panic!("{name} failed ({status}):\n{output}"),
        None => panic!("{name} was killed after {limit:?}:\n{output}"),
    }
}

/// The scripts' arguments for a cluster: the first node's c2s port, every
/// node's, and the domain (`--host --port --ports --domain`).
pub fn cluster_args(cluster: &TestCluster) -> Vec<String> {
    let ports: Vec<String> = cluster
        .nodes
        .iter()
        .map(|node| node.c2s.port().to_string())
        .collect();
    vec![
        "--host".into(),
        "127.0.0.1".into(),
        "--port".into(),
        ports[0].clone(),
        "--ports".into(),
        ports.join(","),
        "--domain".into(),
        cluster.node(0).domain.clone(),
    ]
}
