//! The `starling` command line as an operator uses it, on the real binary:
//! `starling check`, the config file named by `STARLING_CONFIG`, secrets
//! from the environment instead of the file, and passwords for `user add`
//! and `user passwd` from stdin instead of the command line; SIGHUP
//! reloading a running node (`reload.rs`).

mod reload;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use starling_tests::{ClientError, LoginOptions, TestNode, starling_binary};

/// The variables this suite sets; cleared for every command so the
/// environment the tests run in does not leak in.
const VARIABLES: [&str; 3] = [
    "STARLING_CONFIG",
    "STARLING_CLUSTER_SECRET",
    "STARLING_STORAGE_URL",
];

/// `starling ARGS` with only `env` of our variables set, and `stdin`.
fn starling(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut command = Command::new(starling_binary());
    command.args(args);
    for variable in VARIABLES {
        command.env_remove(variable);
    }
    command.envs(env.iter().copied());
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running starling");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("writing stdin");
    child.wait_with_output().expect("starling's output")
}

fn text(output: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A config file `name` in `dir` with `toml`, its data kept in `dir`.
fn config(dir: &Path, name: &str, toml: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("[server]\ndata_dir = \"data\"\n{toml}")).unwrap();
    path
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

#[test]
fn check_accepts_a_good_config_and_names_what_is_wrong_in_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let good = config(dir.path(), "good.toml", "");
    let output = starling(&["check", "--config", path_str(&good)], &[], "");
    assert!(output.status.success(), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(path_str(&good)) && stdout.contains("ok"),
        "{}",
        text(&output)
    );

    for (toml, named) in [
        ("[c2s]\nbindd = \"127.0.0.1:5222\"\n", "bindd"),
        ("[cluster]\nenabled = true\n", "cluster.secret"),
        ("[storage]\nurl = \"mysql://db/x\"\n", "storage.url"),
        (
            "[tls]\ncert = \"missing.pem\"\nkey = \"missing.key\"\n",
            "missing.pem",
        ),
    ] {
        let bad = config(dir.path(), "bad.toml", toml);
        let output = starling(&["check", "--config", path_str(&bad)], &[], "");
        assert!(!output.status.success(), "{toml}: {}", text(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(named), "{toml}: {}", text(&output));
    }

    let missing = dir.path().join("nowhere.toml");
    let output = starling(&["check", "--config", path_str(&missing)], &[], "");
    assert!(!output.status.success(), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("nowhere.toml"),
        "{}",
        text(&output)
    );
}

#[test]
fn check_names_an_unreachable_store_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    // Port 1 on the loopback: refused at once.
    let file = config(
        dir.path(),
        "starling.toml",
        "[storage]\nurl = \"postgres://starling:hunter2@127.0.0.1:1/starling\"\n",
    );
    let output = starling(&["check", "--config", path_str(&file)], &[], "");
    assert!(!output.status.success(), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("store") && stderr.contains("127.0.0.1:1"),
        "{}",
        text(&output)
    );
    assert!(!stderr.contains("hunter2"), "{}", text(&output));
}

#[test]
fn starling_config_names_the_file_when_no_flag_does() {
    let dir = tempfile::tempdir().unwrap();
    let file = config(dir.path(), "env.toml", "[server]\n");
    let output = starling(&["check"], &[("STARLING_CONFIG", path_str(&file))], "");
    // A second [server] table: the file was read (and refused).
    assert!(!output.status.success(), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("env.toml"),
        "{}",
        text(&output)
    );

    let file = config(dir.path(), "env.toml", "");
    let output = starling(&["check"], &[("STARLING_CONFIG", path_str(&file))], "");
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("env.toml"),
        "{}",
        text(&output)
    );
}

#[test]
fn secrets_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = config(
        dir.path(),
        "cluster.toml",
        "[cluster]\nenabled = true\nnode_name = \"n1\"\n",
    );
    let args = ["check", "--config", path_str(&cluster)];
    let output = starling(&args, &[], "");
    assert!(!output.status.success(), "no secret: {}", text(&output));
    let output = starling(&args, &[("STARLING_CLUSTER_SECRET", "a long secret")], "");
    assert!(output.status.success(), "{}", text(&output));

    // The file's store is data/starling.db; the environment's another file.
    let file = config(dir.path(), "store.toml", "");
    let elsewhere = dir.path().join("elsewhere.db");
    let url = format!("sqlite://{}", elsewhere.display());
    let env = [("STARLING_STORAGE_URL", url.as_str())];
    let add = ["user", "add", "--config", path_str(&file), "eve", "eve-pw"];
    let output = starling(&add, &env, "");
    assert!(output.status.success(), "{}", text(&output));
    assert!(elsewhere.is_file(), "no store at {}", elsewhere.display());
    let list = ["user", "list", "--config", path_str(&file)];
    let listed = |env: &[(&str, &str)]| {
        let output = starling(&list, env, "");
        assert!(output.status.success(), "{}", text(&output));
        String::from_utf8_lossy(&output.stdout).contains("eve@localhost")
    };
    assert!(listed(&env), "eve in the store the environment names");
    assert!(!listed(&[]), "eve not in the file's store");
}

async fn login(node: &TestNode, user: &str, password: &str) -> Result<(), ClientError> {
    let options = LoginOptions::new(&node.domain, user, password);
    let client = starling_tests::Client::login(node.c2s, &options).await?;
    client.close().await
}

#[tokio::test]
async fn user_add_and_passwd_read_the_password_from_stdin() {
    let node = TestNode::builder().start();
    let config = path_str(&node.config).to_owned();
    let run = |args: &[&str], stdin: &str| {
        let mut all = args.to_vec();
        all.extend(["--config", &config]);
        starling(&all, &[], stdin)
    };

    // Spaces are part of a password; the line ending is not.
    let output = run(&["user", "add", "carol"], "  carol pw  \n");
    assert!(output.status.success(), "{}", text(&output));
    login(&node, "carol", "  carol pw  ").await.unwrap();

    let output = run(&["user", "passwd", "carol"], "new secret\r\n");
    assert!(output.status.success(), "{}", text(&output));
    login(&node, "carol", "new secret").await.unwrap();
    match login(&node, "carol", "  carol pw  ").await {
        Err(ClientError::SaslFailure { condition, .. }) => assert_eq!(condition, "not-authorized"),
        other => panic!("the old password still works: {other:?}"),
    }

    for args in [&["user", "add", "dave"][..], &["user", "passwd", "carol"]] {
        let output = run(args, "\n");
        assert!(!output.status.success(), "{args:?}: {}", text(&output));
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("must not be empty"),
            "{args:?}: {}",
            text(&output)
        );
    }
}
