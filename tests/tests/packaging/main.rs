//! What `packaging/` ships, run for real: the systemd unit's `ExecStart`
//! line (read from the file) with the example config, and the readiness
//! notification `Type=notify` waits for.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use starling_tests::{Client, free_port, starling_binary};

/// How long a node may take to start on a loaded machine.
const START_LIMIT: Duration = Duration::from_secs(30);

fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("packaging")
}

/// A started `starling`, killed when dropped (a failing test leaves none).
struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    fn spawn(mut command: Command, log: PathBuf) -> Process {
        let file = std::fs::File::create(&log).expect("log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|error| panic!("starting {command:?}: {error}"));
        Process { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn terminate(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to end by itself, at most `limit`.
    fn exit_status(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The unit's `ExecStart=` line, split into words (it has no quoting).
fn exec_start(unit: &str) -> Vec<String> {
    let mut lines = unit
        .lines()
        .filter_map(|line| line.strip_prefix("ExecStart="));
    let line = lines.next().expect("the unit has an ExecStart= line");
    assert!(lines.next().is_none(), "one ExecStart= line");
    line.split_whitespace().map(str::to_owned).collect()
}

/// `text` with `from` replaced by `to`, which must be there.
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} is not in:\n{text}");
    text.replace(from, to)
}

/// packaging/starling.toml with its data in `dir` and free local ports;
/// returns the file and the client address.
fn example_config(dir: &Path) -> (PathBuf, std::net::SocketAddr) {
    let example = std::fs::read_to_string(packaging().join("starling.toml")).unwrap();
    let c2s: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let text = replaced(
        &example,
        "data_dir = \"/var/lib/starling\"",
        &format!("data_dir = {:?}", dir.join("data")),
    );
    let text = replaced(
        &text,
        "bind = \"0.0.0.0:5222\"",
        &format!("bind = \"{c2s}\""),
    );
    let text = replaced(
        &text,
        "direct_tls_bind = \"0.0.0.0:5223\"",
        &format!("direct_tls_bind = \"127.0.0.1:{}\"", free_port()),
    );
    let text = replaced(
        &text,
        "bind = \"0.0.0.0:5269\"",
        &format!("bind = \"127.0.0.1:{}\"", free_port()),
    );
    let text = replaced(
        &text,
        "bind = \"127.0.0.1:5280\"",
        &format!("bind = \"127.0.0.1:{}\"", free_port()),
    );
    let file = dir.join("starling.toml");
    std::fs::write(&file, text).unwrap();
    (file, c2s)
}

/// Waits until the stream on `c2s` offers STARTTLS (the node answers as a server).
async fn answers(c2s: std::net::SocketAddr, domain: &str, process: &mut Process) {
    let deadline = Instant::now() + START_LIMIT;
    loop {
        if let Ok(client) = Client::connect(c2s, domain).await {
            assert!(
                client
                    .features()
                    .has_child("starttls", starling_core::xml::ns::TLS),
                "no STARTTLS offered"
            );
            client.close().await.unwrap();
            return;
        }
        if let Ok(Some(status)) = process.child.try_wait() {
            panic!("starling exited with {status}:\n{}", process.log());
        }
        assert!(
            Instant::now() < deadline,
            "no answer on {c2s}:\n{}",
            process.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_units_exec_start_line_runs_a_node_with_the_example_config() {
    let unit = std::fs::read_to_string(packaging().join("starling.service")).unwrap();
    assert!(
        unit.contains("\nType=notify\n"),
        "the unit waits for READY=1"
    );
    let words = exec_start(&unit);
    assert!(
        words[0].ends_with("/starling"),
        "ExecStart runs starling: {words:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let (config, c2s) = example_config(dir.path());
    // The same words, with this build's binary and the test's config.
    let mut args = words[1..].to_vec();
    let at = args
        .iter()
        .position(|word| word == "--config")
        .expect("ExecStart names the config with --config");
    args[at + 1] = config.to_str().unwrap().to_owned();
    let mut command = Command::new(starling_binary());
    command.args(&args).current_dir(dir.path());
    let mut node = Process::spawn(command, dir.path().join("node.log"));
    answers(c2s, "chat.example.com", &mut node).await;
}

#[tokio::test]
async fn ready_arrives_on_notify_socket_once_clients_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let (config, c2s) = example_config(dir.path());
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(START_LIMIT)).unwrap();
    let mut command = Command::new(starling_binary());
    command
        .args(["serve", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path);
    let mut node = Process::spawn(command, dir.path().join("node.log"));

    let mut buffer = [0u8; 512];
    let receive = |buffer: &mut [u8], node: &Process| {
        let length = socket
            .recv(buffer)
            .unwrap_or_else(|error| panic!("no notification ({error}):\n{}", node.log()));
        String::from_utf8_lossy(&buffer[..length]).into_owned()
    };
    let ready = receive(&mut buffer, &node);
    assert!(
        ready.lines().any(|line| line == "READY=1"),
        "{ready:?}:\n{}",
        node.log()
    );
    // Ready means accepting: the first attempt is answered.
    let client = Client::connect(c2s, "chat.example.com")
        .await
        .unwrap_or_else(|error| panic!("READY=1 sent, but {c2s}: {error}"));
    client.close().await.unwrap();

    node.terminate();
    let stopping = receive(&mut buffer, &node);
    assert!(
        stopping.lines().any(|line| line == "STOPPING=1"),
        "{stopping:?}:\n{}",
        node.log()
    );
    // SIGTERM is an orderly stop, not the default action's kill.
    let status = node.exit_status(START_LIMIT);
    assert!(
        status.is_some_and(|status| status.success()),
        "after SIGTERM: {status:?}:\n{}",
        node.log()
    );
}

/// The container's config and the compose cluster's three node configs
/// pass `starling check` once the environment supplies the secrets, as
/// Dockerfile and docker-compose.yml do (a SQLite file stands in for their
/// PostgreSQL here).
#[test]
fn the_container_configs_pass_check_with_secrets_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("check.db").display());
    let mut files = vec![packaging().join("docker.toml")];
    files.extend((1..=3).map(|n| packaging().join(format!("compose/node{n}.toml"))));
    for file in files {
        let output = Command::new(starling_binary())
            .args(["check", "--config"])
            .arg(&file)
            .env("STARLING_STORAGE_URL", &store)
            .env("STARLING_CLUSTER_SECRET", "a long random string")
            .env_remove("STARLING_CONFIG")
            .output()
            .expect("running starling check");
        assert!(
            output.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
