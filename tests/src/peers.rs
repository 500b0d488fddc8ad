//! Other XMPP servers as federation peers: Debian's Prosody and ejabberd,
//! each in its own temporary folder, run inside a test's network namespace
//! ([`crate::netns`]) so they find Starling, and Starling finds them,
//! through the test's DNS server. Accounts are made before the servers
//! answer; the test's own [`crate::Client`] logs in to their client port.
//!
//! ejabberd runs as a plain Erlang node without distribution (no node
//! name, `-start_epmd false`): no epmd is started, nothing is shared
//! between tests running at once, and stopping the node leaves nothing
//! behind. Its accounts are registered by an `-eval` after the start.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns::NetNs;
use crate::sasl::Mechanism;
use crate::{Client, LoginOptions, TlsMode};

/// Fails the test with what to install when Prosody is missing, or what to
/// remove when it would resolve names through libunbound (`lua-unbound`,
/// which Debian's prosody recommends): libunbound answers NXDOMAIN for
/// every `.test` name itself (a special-use domain) and never asks the
/// namespace's DNS server, so Prosody would reach no test domain and every
/// federation test would time out instead.
pub fn require_prosody() {
    crate::tools::require_program("prosody", "prosody");
    // Debian's prosody runs on Lua 5.4.
    let resolves_with_libunbound = Command::new("lua5.4")
        .args(["-e", "require 'lunbound'"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        !resolves_with_libunbound,
        "lua-unbound is installed, so Prosody resolves through libunbound, which refuses \
         every .test name without asking the test's DNS server: remove it \
         (apt-get remove lua-unbound; tests/run installs prosody without its recommends)"
    );
}

/// Debian's ejabberd wrapper, where its Erlang library folder is named.
const EJABBERDCTL: &str = "/usr/sbin/ejabberdctl";

/// Fails the test with what to install when ejabberd is missing.
pub fn require_ejabberd() {
    assert!(
        Path::new(EJABBERDCTL).is_file() && crate::tools::on_path("erl").is_some(),
        "ejabberd is not installed ({EJABBERDCTL} and erl): install the Debian package \
         ejabberd (tests/run does, with its system service stopped)"
    );
}

/// The federation port every peer listens on in the namespace (each has an
/// address of its own there, so the default port needs no SRV record).
pub const S2S_PORT: u16 = 5269;

/// What a peer server needs to start.
pub struct PeerSpec<'a> {
    pub domain: &'a str,
    /// Its address in the namespace.
    pub address: IpAddr,
    /// (username, password).
    pub users: &'a [(&'a str, &'a str)],
    /// Certificate and key for `domain` (PEM files).
    pub cert: (String, String),
    /// The CA that peers' certificates come from.
    pub ca_file: String,
    /// Prosody only: loads `mod_s2s_bidi` (XEP-0288 bidirectional server streams).
    pub bidi: bool,
    /// Prosody only: modules enabled besides the base set (e.g. `pep`).
    pub modules: &'a [&'a str],
    /// Prosody only: a `muc` component on this host (e.g.
    /// `conference.prosody.test`).
    pub muc: Option<&'a str>,
    /// Only certificate authentication between servers (Prosody:
    /// `s2s_secure_auth`; ejabberd: no dialback module).
    pub secure_auth: bool,
}

/// A running Prosody.
pub struct Prosody {
    pub domain: String,
    pub c2s: SocketAddr,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Prosody {
    /// Writes the configuration and the accounts, starts Prosody inside
    /// `netns` and waits until its client port answers.
    ///
    /// Federation: `mod_s2s` with `mod_dialback`, TLS required both ways
    /// (Prosody 0.12's default), peers' certificates checked against the
    /// test CA so certificate authentication (SASL EXTERNAL) works where
    /// the peer's certificate names its domain. `spec.modules` are
    /// enabled too (`pep`: Prosody's PEP), `spec.muc` adds a MUC
    /// component on that host, and with `spec.bidi` `mod_s2s_bidi` is
    /// loaded.
    pub fn start(netns: &NetNs, spec: &PeerSpec<'_>) -> Prosody {
        require_prosody();
        let dir = tempfile::Builder::new()
            .prefix("starling-prosody-")
            .tempdir()
            .expect("a temporary folder");
        let root = dir.path();
        let data = root.join("data");
        let accounts = data.join(prosody_encode(spec.domain)).join("accounts");
        std::fs::create_dir_all(&accounts).expect("Prosody's account folder");
        for (user, password) in spec.users {
            std::fs::write(
                accounts.join(format!("{}.dat", prosody_encode(user))),
                format!("return {{ [\"password\"] = {}; }};\n", lua_string(password)),
            )
            .expect("a Prosody account");
        }
        let c2s_port = crate::free_port();
        let (cert, key) = &spec.cert;
        let config = format!(
            r#"run_as_root = true
pidfile = {pidfile}
data_path = {data}
log = {{ {{ levels = {{ min = "debug" }}, to = "file", filename = {log} }} }}
interfaces = {{ "{address}" }}
c2s_ports = {{ {c2s_port} }}
s2s_ports = {{ {S2S_PORT} }}
authentication = "internal_plain"
storage = "internal"
modules_enabled = {{ "roster", "saslauth", "tls", "dialback", "disco", "ping", "version"{modules}{bidi} }}
s2s_require_encryption = true
s2s_secure_auth = {secure_auth}
ssl = {{ certificate = {cert}, key = {key}, cafile = {ca} }}

VirtualHost "{domain}"
{component}"#,
            pidfile = lua_path(&root.join("prosody.pid")),
            data = lua_path(&data),
            log = lua_path(&root.join("prosody.log")),
            address = spec.address,
            cert = lua_string(cert),
            key = lua_string(key),
            ca = lua_string(&spec.ca_file),
            secure_auth = spec.secure_auth,
            domain = spec.domain,
            bidi = if spec.bidi { ", \"s2s_bidi\"" } else { "" },
            modules = spec
                .modules
                .iter()
                .map(|module| format!(", {}", lua_string(module)))
                .collect::<String>(),
            component = spec
                .muc
                .map(|host| format!("\nComponent {} \"muc\"\n", lua_string(host)))
                .unwrap_or_default(),
        );
        let config_path = root.join("prosody.cfg.lua");
        std::fs::write(&config_path, config).expect("Prosody's configuration");
        let out = std::fs::File::create(root.join("prosody.out")).expect("Prosody's output");
        let child = netns
            .command("prosody")
            .arg("--config")
            .arg(&config_path)
            .arg("-F")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("Prosody's output"))
            .stderr(out)
            .spawn()
            .expect("starting prosody");
        let mut prosody = Prosody {
            domain: spec.domain.to_owned(),
            c2s: SocketAddr::new(spec.address, c2s_port),
            dir,
            child: Some(child),
        };
        let child = prosody.child.as_mut().expect("just started");
        wait_listening(prosody.c2s, "prosody", Some(child), || {
            read(&prosody.dir.path().join("prosody.out"))
        });
        prosody
    }

    /// Logs `user` in to Prosody's client port (STARTTLS, PLAIN, `resource`).
    pub async fn login(&self, user: &str, password: &str, resource: &str) -> Client {
        login(self.c2s, &self.domain, user, password, resource).await
    }

    /// Prosody's debug log so far.
    pub fn log(&self) -> String {
        read(&self.dir.path().join("prosody.log"))
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- prosody log ---\n{}", tail(&self.log(), 400));
        }
    }
}

/// A running ejabberd (one Erlang node, no distribution).
pub struct Ejabberd {
    pub domain: String,
    pub c2s: SocketAddr,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Ejabberd {
    /// Writes the configuration, starts ejabberd inside `netns`, registers
    /// the accounts and waits until its client port answers.
    ///
    /// Federation: `ejabberd_s2s_in` on port 5269, STARTTLS required both
    /// ways, peers' certificates checked against the test CA
    /// (`s2s_cafile`), so SASL EXTERNAL is used where the peer's
    /// certificate names its domain; `mod_s2s_dialback` otherwise, unless
    /// `secure_auth`.
    pub fn start(netns: &NetNs, spec: &PeerSpec<'_>) -> Ejabberd {
        require_ejabberd();
        let dir = tempfile::Builder::new()
            .prefix("starling-ejabberd-")
            .tempdir()
            .expect("a temporary folder");
        let root = dir.path();
        let spool = root.join("spool");
        std::fs::create_dir_all(&spool).expect("ejabberd's spool");
        // ejabberd reads certificate and key from one file.
        let (cert, key) = &spec.cert;
        let pem = root.join("ejabberd.pem");
        std::fs::write(&pem, read(Path::new(cert)) + &read(Path::new(key)))
            .expect("ejabberd's certificate file");
        let c2s_port = crate::free_port();
        let dialback = if spec.secure_auth {
            ""
        } else {
            "  mod_s2s_dialback: {}\n"
        };
        let config = format!(
            r#"hosts:
  - {domain:?}
loglevel: debug
hide_sensitive_log_data: false
certfiles:
  - {pem:?}
s2s_cafile: {ca:?}
s2s_use_starttls: required
listen:
  -
    port: {c2s_port}
    ip: "{address}"
    module: ejabberd_c2s
    starttls_required: true
  -
    port: {S2S_PORT}
    ip: "{address}"
    module: ejabberd_s2s_in
auth_method: internal
auth_password_format: plain
access_rules:
  c2s:
    allow: all
  s2s:
    allow: all
modules:
  mod_disco: {{}}
  mod_ping: {{}}
  mod_roster: {{}}
  mod_version: {{}}
{dialback}"#,
            domain = spec.domain,
            pem = pem.display().to_string(),
            ca = spec.ca_file,
            address = spec.address,
        );
        let config_path = root.join("ejabberd.yml");
        std::fs::write(&config_path, config).expect("ejabberd's configuration");
        // After the start (`-s ejabberd` returns once it runs): the
        // accounts, then the file the test waits for, with the outcomes.
        let ready = root.join("registered");
        let registrations: Vec<String> = spec
            .users
            .iter()
            .map(|(user, password)| {
                format!(
                    "ejabberd_auth:try_register({}, {}, {})",
                    erlang_binary(user),
                    erlang_binary(spec.domain),
                    erlang_binary(password)
                )
            })
            .collect();
        let eval = format!(
            "R = [{}], file:write_file({}, io_lib:format(\"~p\", [R]))",
            registrations.join(", "),
            erlang_string(&ready.display().to_string()),
        );
        let out = std::fs::File::create(root.join("ejabberd.out")).expect("ejabberd's output");
        let child = netns
            .command("erl")
            .args(["-noinput", "-start_epmd", "false", "-mnesia", "dir"])
            .arg(erlang_string(&spool.display().to_string()))
            .args(["-s", "ejabberd", "-eval", &eval])
            .current_dir(root)
            .env("EJABBERD_CONFIG_PATH", &config_path)
            .env("EJABBERD_LOG_PATH", root.join("ejabberd.log"))
            .env("ERL_LIBS", ejabberd_libs())
            .env("ERL_CRASH_DUMP_BYTES", "0")
            .env("HOME", root)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("ejabberd's output"))
            .stderr(out)
            .spawn()
            .expect("starting ejabberd");
        let mut ejabberd = Ejabberd {
            domain: spec.domain.to_owned(),
            c2s: SocketAddr::new(spec.address, c2s_port),
            dir,
            child: Some(child),
        };
        let output = |dir: &Path| {
            format!(
                "{}\n--- ejabberd.log ---\n{}",
                read(&dir.join("ejabberd.out")),
                tail(&read(&dir.join("ejabberd.log")), 100)
            )
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let outcomes = loop {
            let text = read(&ready);
            if !text.is_empty() {
                break text;
            }
            let child = ejabberd.child.as_mut().expect("just started");
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "ejabberd exited with {status}:\n{}",
                    output(ejabberd.dir.path())
                );
            }
            assert!(
                Instant::now() < deadline,
                "ejabberd did not start within 60 s:\n{}",
                output(ejabberd.dir.path())
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(
            outcomes.trim(),
            format!("[{}]", vec!["ok"; spec.users.len()].join(",")),
            "ejabberd did not register every account:\n{}",
            output(ejabberd.dir.path())
        );
        let child = ejabberd.child.as_mut().expect("just started");
        wait_listening(ejabberd.c2s, "ejabberd", Some(child), || {
            output(ejabberd.dir.path())
        });
        ejabberd
    }

    /// Logs `user` in to ejabberd's client port (STARTTLS, PLAIN, `resource`).
    pub async fn login(&self, user: &str, password: &str, resource: &str) -> Client {
        login(self.c2s, &self.domain, user, password, resource).await
    }

    /// ejabberd's log so far.
    pub fn log(&self) -> String {
        read(&self.dir.path().join("ejabberd.log"))
    }
}

impl Drop for Ejabberd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The VM exits at once; its port helpers (erl_child_setup,
            // inet_gethost) end when their pipes close, and the
            // namespace's end kills any that has not.
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- ejabberd output ---\n{}\n--- ejabberd log ---\n{}",
                read(&self.dir.path().join("ejabberd.out")),
                tail(&self.log(), 400)
            );
        }
    }
}

/// The folder of ejabberd's Erlang applications: what Debian's
/// `ejabberdctl` puts in `ERL_LIBS`.
fn ejabberd_libs() -> String {
    read(Path::new(EJABBERDCTL))
        .lines()
        .find_map(|line| line.trim().strip_prefix("ERL_LIBS="))
        .map(|value| value.trim_matches(['\'', '"']).to_owned())
        .unwrap_or_else(|| "/usr/lib/x86_64-linux-gnu".to_owned())
}

/// An Erlang string literal.
fn erlang_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// An Erlang binary literal of UTF-8 text.
fn erlang_binary(text: &str) -> String {
    format!("<<{}/utf8>>", erlang_string(text))
}

/// A client login to a peer's client port: STARTTLS (the test client
/// accepts any certificate), SASL PLAIN, a bound `resource`.
pub async fn login(
    c2s: SocketAddr,
    domain: &str,
    user: &str,
    password: &str,
    resource: &str,
) -> Client {
    let mut options = LoginOptions::new(domain, user, password);
    options.resource = Some(resource.to_owned());
    options.tls = TlsMode::Required;
    options.mechanism = Some(Mechanism::Plain);
    Client::login(c2s, &options)
        .await
        .unwrap_or_else(|error| panic!("{user}@{domain} cannot log in: {error}"))
}

/// Waits until `address` accepts connections (60 s at most), failing with
/// `output()` if the process exits first.
fn wait_listening(
    address: SocketAddr,
    what: &str,
    mut child: Option<&mut Child>,
    output: impl Fn() -> String,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Some(child) = child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{what} exited with {status}:\n{}", output());
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {address} within 60 s:\n{}",
            output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Prosody's datamanager file-name encoding.
fn prosody_encode(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_string()
            } else {
                format!("%{:02x}", c as u32)
            }
        })
        .collect()
}

fn lua_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn lua_path(path: &PathBuf) -> String {
    lua_string(&path.display().to_string())
}
