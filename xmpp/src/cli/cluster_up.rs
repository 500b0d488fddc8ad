//! `starling cluster up --nodes N`: a local cluster for demos and tests.
//!
//! Node i listens for clients on 5222+i-1, for HTTP on 5280+i-1 and for
//! peers on 7700+i, keeps its data in `<dir>/node<i>`, and all nodes share
//! one SQLite store in `<dir>`. The command writes each node's config,
//! starts the nodes, prefixes their logs with the node name, restarts a
//! node that exits unexpectedly, and stops them all on Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: u16,
    /// Folder for the configs, the shared store and each node's data.
    #[arg(long, default_value = "data/cluster")]
    pub dir: PathBuf,
    /// XMPP domain the cluster serves.
    #[arg(long, default_value = "localhost")]
    pub domain: String,
    /// First client port (node i: this + i - 1).
    #[arg(long, default_value_t = 5222, hide = true)]
    pub c2s_base: u16,
    /// First HTTP port (node i: this + i - 1).
    #[arg(long, default_value_t = 5280, hide = true)]
    pub http_base: u16,
    /// First direct TLS port, XEP-0368 (node i: this + i - 1); apart from
    /// the client and HTTP ranges so no node's port is another's.
    #[arg(long, default_value_t = 6222, hide = true)]
    pub direct_tls_base: u16,
    /// First federation port (node i: this + i - 1); apart from every
    /// other range, including the usual 5269.
    #[arg(long, default_value_t = 6269, hide = true)]
    pub s2s_base: u16,
    /// Cluster port base (node i: this + i).
    #[arg(long, default_value_t = 7700, hide = true)]
    pub cluster_base: u16,
    /// Do not restart nodes that exit.
    #[arg(long)]
    pub no_restart: bool,
    /// Clear-text peer links (`[cluster] insecure_plaintext = true`), to
    /// measure what TLS costs.
    #[arg(long, hide = true)]
    pub insecure_plaintext_links: bool,
}

struct NodePlan {
    name: String,
    config: PathBuf,
    c2s: u16,
    http: u16,
}

pub(super) async fn run(args: &UpArgs) -> anyhow::Result<()> {
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let dir = std::fs::canonicalize(&args.dir)?;
    let secret = cluster_secret(&dir)?;
    let plans = write_configs(args, &dir, &secret)?;
    let binary = std::env::current_exe().context("locating the starling binary")?;
    println!(
        "Starting a {}-node Starling cluster for {} in {}",
        args.nodes,
        args.domain,
        dir.display()
    );
    for plan in &plans {
        println!(
            "  {:<6} clients 127.0.0.1:{}  admin http://127.0.0.1:{}/admin",
            plan.name, plan.c2s, plan.http
        );
    }
    println!(
        "Accounts (shared by all nodes): {} user add --config {} NAME PASSWORD [--admin]",
        binary.display(),
        plans[0].config.display()
    );
    println!("Stop with Ctrl-C.");
    let mut children: Vec<Option<Child>> = Vec::new();
    for plan in &plans {
        children.push(Some(spawn(&binary, plan)?));
    }
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("watching SIGTERM")?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            _ = ticker.tick() => {}
        }
        for (index, slot) in children.iter_mut().enumerate() {
            let Some(child) = slot else { continue };
            if let Ok(Some(status)) = child.try_wait() {
                let plan = &plans[index];
                eprintln!("[{}] exited ({status})", plan.name);
                *slot = None;
                if !args.no_restart {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    eprintln!("[{}] restarting", plan.name);
                    *slot = Some(spawn(&binary, plan)?);
                }
            }
        }
    }
    println!("Stopping the cluster...");
    for child in children.iter_mut().flatten() {
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
    }
    for child in children.iter_mut().flatten() {
        if tokio::time::timeout(Duration::from_secs(15), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
    Ok(())
}

/// The shared secret, generated once and kept beside the configs.
fn cluster_secret(dir: &Path) -> anyhow::Result<String> {
    use rand::RngExt;
    let path = dir.join("secret");
    if let Ok(secret) = std::fs::read_to_string(&path) {
        if !secret.trim().is_empty() {
            return Ok(secret.trim().to_owned());
        }
    }
    let bytes: [u8; 24] = rand::rng().random();
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
    Ok(secret)
}

fn write_configs(args: &UpArgs, dir: &Path, secret: &str) -> anyhow::Result<Vec<NodePlan>> {
    let cluster_port = |i: u16| args.cluster_base + i;
    let mut plans = Vec::new();
    for i in 1..=args.nodes {
        let name = format!("node{i}");
        let c2s = args.c2s_base + i - 1;
        let http = args.http_base + i - 1;
        let direct_tls = args.direct_tls_base + i - 1;
        let s2s = args.s2s_base + i - 1;
        let seeds: Vec<String> = (1..=args.nodes)
            .filter(|j| *j != i)
            .map(|j| format!("\"127.0.0.1:{}\"", cluster_port(j)))
            .collect();
        let store = dir.join("starling.db");
        let text = format!(
            "# Written by `starling cluster up`; edits are overwritten at the next run.\n\
             [server]\ndomain = {domain:?}\ndata_dir = {data:?}\n\n\
             [c2s]\nbind = \"127.0.0.1:{c2s}\"\n\
             direct_tls_bind = \"127.0.0.1:{direct_tls}\"\n\n\
             [s2s]\nbind = \"127.0.0.1:{s2s}\"\n\n\
             [http]\nbind = \"127.0.0.1:{http}\"\n\n\
             [storage]\nurl = {url:?}\n\n\
             [cluster]\nenabled = true\nnode_name = {name:?}\nbind = \"127.0.0.1:{port}\"\n\
             seeds = [{seeds}]\nsecret = {secret:?}\ninsecure_plaintext = {plaintext}\n",
            domain = args.domain,
            data = name,
            url = format!("sqlite://{}", store.display()),
            port = cluster_port(i),
            seeds = seeds.join(", "),
            plaintext = args.insecure_plaintext_links,
        );
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
        // Fail now, with the key named, rather than in every child.
        starling_core::config::Config::load(&config)?;
        plans.push(NodePlan {
            name,
            config,
            c2s,
            http,
        });
    }
    Ok(plans)
}

fn spawn(binary: &Path, plan: &NodePlan) -> anyhow::Result<Child> {
    let mut child = Command::new(binary)
        .arg("serve")
        .arg("--config")
        .arg(&plan.config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", plan.name))?;
    for output in [
        child.stdout.take().map(Output::Out),
        child.stderr.take().map(Output::Err),
    ]
    .into_iter()
    .flatten()
    {
        tokio::spawn(prefix_lines(plan.name.clone(), output));
    }
    Ok(child)
}

enum Output {
    Out(tokio::process::ChildStdout),
    Err(tokio::process::ChildStderr),
}

async fn prefix_lines(name: String, output: Output) {
    let mut lines = match output {
        Output::Out(out) => {
            Box::pin(BufReader::new(out)) as std::pin::Pin<Box<dyn tokio::io::AsyncBufRead + Send>>
        }
        Output::Err(err) => Box::pin(BufReader::new(err)),
    }
    .lines();
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("[{name}] {line}");
    }
}
