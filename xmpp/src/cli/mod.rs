//! The `starling` command line: `serve` (the default), `user ...`,
//! `cluster ...`, `check`, `generate-config`.

mod check;
mod cluster_up;
mod config_path;
mod logging;
mod password;
mod pinned_tls;
pub mod provision;
mod reload;
mod serve;
mod status;
mod transfer;
mod user;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use starling_core::config::{Config, DEFAULT_CONFIG_TOML};

pub use self::logging::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "starling",
    version,
    about = "Starling, a clustered XMPP server"
)]
pub struct Cli {
    /// TOML configuration file; without it /etc/starling/starling.toml when
    /// that exists, else the embedded defaults (domain localhost, SQLite
    /// under ./data, c2s on 127.0.0.1:5222).
    #[arg(long, global = true, value_name = "FILE", env = "STARLING_CONFIG")]
    pub config: Option<PathBuf>,

    /// Log format; the level comes from RUST_LOG, else `[log] level`.
    #[arg(long, global = true, value_enum, default_value = "human")]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (what `starling` with no command does).
    Serve,
    /// Manage accounts in the configured store (a running node sees changes).
    User {
        #[command(subcommand)]
        command: user::UserCommand,
    },
    /// Run or inspect a cluster.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Validate the configuration and connect to its store, then exit
    /// (non-zero, naming the problem, when either fails).
    Check,
    /// Print the default configuration, with comments.
    GenerateConfig,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Run N nodes on this machine (ports 5222+i-1, 5280+i-1, 7700+i) with
    /// one shared store, until Ctrl-C.
    Up(cluster_up::UpArgs),
    /// Print the member table from any node's HTTP API (`/api/cluster`).
    Status(status::StatusArgs),
}

impl Cli {
    /// The config file in use: `--config` (or `STARLING_CONFIG`), else the
    /// system one when it exists; `None`: the embedded defaults.
    pub fn config_file(&self) -> Option<PathBuf> {
        config_file(self.config.as_deref())
    }

    /// Loads the config file in use, or the embedded defaults; either way
    /// with the environment's overrides (`STARLING_CLUSTER_SECRET` ...).
    /// The `[modules]` sections are checked here too, so every command
    /// refuses a config the server would refuse.
    pub fn load_config(&self) -> anyhow::Result<Config> {
        load_config(self.config.as_deref())
    }
}

fn config_file(flag: Option<&std::path::Path>) -> Option<PathBuf> {
    config_path::choose(flag, config_path::SYSTEM_CONFIG)
}

/// [`Cli::load_config`] for a `--config` value (SIGHUP reads it again).
fn load_config(flag: Option<&std::path::Path>) -> anyhow::Result<Config> {
    let config = match config_file(flag) {
        Some(path) => Config::load(&path)?,
        None => {
            let mut config = Config::defaults();
            config.apply_env_overrides(|name| std::env::var(name).ok());
            config.validate()?;
            config
        }
    };
    crate::modules::Modules::from_config(&config)?;
    Ok(config)
}

/// Runs the command line; the binary's `main` only builds the runtime.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Some(Command::GenerateConfig) => {
            print!("{DEFAULT_CONFIG_TOML}");
            Ok(())
        }
        Some(Command::Cluster {
            command: ClusterCommand::Up(args),
        }) => {
            logging::init(cli.log_format, "info");
            cluster_up::run(args).await
        }
        Some(Command::Cluster {
            command: ClusterCommand::Status(args),
        }) => {
            logging::init(cli.log_format, "warn");
            let config = match &cli.config {
                Some(_) => Some(cli.load_config().context("configuration")?),
                None => None,
            };
            status::run(args, config.as_ref()).await
        }
        Some(Command::Check) => {
            logging::init(cli.log_format, "warn");
            let source = match cli.config_file() {
                Some(path) => path.display().to_string(),
                None => "the embedded defaults".to_owned(),
            };
            let config = cli
                .load_config()
                .with_context(|| format!("configuration {source}"))?;
            check::run(&config, &source).await
        }
        Some(Command::User { command }) => {
            logging::init(cli.log_format, "warn");
            let config = cli.load_config().context("configuration")?;
            user::run(&config, command).await
        }
        Some(Command::Serve) | None => {
            logging::init(cli.log_format, "info");
            let config = cli.load_config().context("configuration")?;
            logging::set_level(&config.log.level).map_err(anyhow::Error::msg)?;
            let flag = cli.config.clone();
            serve::run(config, Box::new(move || load_config(flag.as_deref()))).await
        }
    }
}
