//! `starling user ...`: account management on the configured store.

use anyhow::{Context, bail};
use clap::Subcommand;
use std::path::PathBuf;
use std::sync::Arc;

use starling_core::cache::CacheRegistry;
use starling_core::cluster::{Cluster, LocalOnly};
use starling_core::config::Config;
use starling_core::jid::NodePart;

use super::password::new_password;
use super::{provision, transfer};
use crate::server::open_store;
use crate::users::UserDirectory;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account. Without PASSWORD it is asked for (no echo), or
    /// read from the first line of stdin when that is not a terminal.
    Add {
        name: String,
        password: Option<String>,
        /// May log in to the admin pages and APIs.
        #[arg(long)]
        admin: bool,
    },
    /// Delete an account with its roster and offline messages.
    Del { name: String },
    /// Set a new password (asked for, or read from stdin, when not given).
    Passwd {
        name: String,
        password: Option<String>,
    },
    /// List accounts.
    List {
        /// Only names containing this text.
        #[arg(long)]
        search: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Create many accounts at once, as load tests expect: users PREFIX1..PREFIXN
    /// with passwords PASSWORD1..PASSWORDN, each with ROSTER_SIZE contacts
    /// (neighbours in that numbering), subscription both.
    Provision {
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        count: u64,
        #[arg(long)]
        password: String,
        #[arg(long, default_value_t = 0)]
        roster_size: u64,
        /// PBKDF2 iterations of the stored SCRAM credentials.
        #[arg(long, default_value_t = crate::auth::DEFAULT_ITERATIONS)]
        iterations: u32,
    },
    /// Add the accounts, rosters and offline messages of a XEP-0227 file
    /// (e.g. from `prosodyctl`, `ejabberdctl export_piefxis` or `user export`).
    /// Clear-text passwords in it are hashed, never stored.
    Import { file: PathBuf },
    /// Write every account (SCRAM credentials, no passwords), roster and
    /// offline message to a XEP-0227 file.
    Export { file: PathBuf },
}

/// Prepares a username as the server will (nodeprep), or says why it is not one.
fn username(name: &str) -> anyhow::Result<String> {
    if name.contains(['@', '/']) {
        bail!("{name:?}: give the username only, without @domain or /resource");
    }
    let node = NodePart::new(name).with_context(|| format!("{name:?} is not a valid username"))?;
    Ok(node.to_string())
}

pub(super) async fn run(config: &Config, command: &UserCommand) -> anyhow::Result<()> {
    let store = open_store(config).await.context("opening the store")?;
    let domain = config.server.domain.clone();
    // The command runs outside any cluster; running nodes re-read accounts
    // at login and trust cached existence answers for a minute at most.
    let cluster: Arc<dyn Cluster> = Arc::new(LocalOnly::default());
    let modules = Arc::new(crate::modules::Modules::from_config(config)?);
    let users = UserDirectory::new(
        store.clone(),
        cluster,
        modules,
        domain,
        16,
        &CacheRegistry::default(),
    );
    let result = match command {
        UserCommand::Add {
            name,
            password,
            admin,
        } => {
            let name = username(name)?;
            let account = format!("{name}@{}", config.server.domain);
            let password = new_password(password.as_deref(), &account)?;
            users.create(&name, &password, *admin).await?;
            let role = if *admin { "admin account" } else { "account" };
            println!("created {role} {name}@{}", config.server.domain);
            Ok(())
        }
        UserCommand::Del { name } => {
            let name = username(name)?;
            if !users.delete(&name).await? {
                bail!("no account {name}@{}", config.server.domain);
            }
            println!("deleted {name}@{}", config.server.domain);
            Ok(())
        }
        UserCommand::Passwd { name, password } => {
            let name = username(name)?;
            let account = format!("{name}@{}", config.server.domain);
            let password = new_password(password.as_deref(), &account)?;
            if !users.set_password(&name, &password).await? {
                bail!("no account {name}@{}", config.server.domain);
            }
            println!("password changed for {name}@{}", config.server.domain);
            Ok(())
        }
        UserCommand::List { search, limit } => {
            let list = store.list_users(search.as_deref(), *limit, 0).await?;
            let total = store.count_users(search.as_deref()).await?;
            for user in &list {
                let admin = if user.admin { "  (admin)" } else { "" };
                println!("{}@{}{admin}", user.username, config.server.domain);
            }
            println!("{} of {total} accounts", list.len());
            Ok(())
        }
        UserCommand::Provision {
            prefix,
            count,
            password,
            roster_size,
            iterations,
        } => {
            let plan = provision::Plan {
                prefix: prefix.clone(),
                count: *count,
                password_prefix: password.clone(),
                roster_size: *roster_size,
                iterations: *iterations,
                domain: config.server.domain.clone(),
            };
            let report = provision::run(&store, &plan).await?;
            println!("{report}");
            Ok(())
        }
        UserCommand::Import { file } => transfer::import(&store, &config.server.domain, file)
            .await
            .map(|report| println!("{report}")),
        UserCommand::Export { file } => transfer::export(&store, &config.server.domain, file)
            .await
            .map(|report| println!("{report}")),
    };
    store.close().await;
    result
}
