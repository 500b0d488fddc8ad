//! `starling user import FILE` and `starling user export FILE`: accounts,
//! rosters and offline messages as a XEP-0227 document (see `crate::piefxis`),
//! to move users between Starling stores or in from Prosody and ejabberd.
//!
//! Import is all or nothing for accounts: the file is read and checked whole,
//! and a name that already exists stops it before anything is written.
//! Clear-text passwords are hashed into SCRAM credentials on the way in, on
//! every core, and never stored.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use starling_core::jid::NodePart;

use crate::auth::{Credentials, ScramHash, StoredCredential};
use crate::piefxis::{self, Account, OfflineEntry, Secret};
use crate::storage::{NewUser, Store, StoredRosterItem};

/// Users per page read from the store on export, and per insert on import.
const PAGE: usize = 1_000;

pub(super) async fn import(store: &Store, domain: &str, file: &Path) -> anyhow::Result<String> {
    let started = Instant::now();
    let xml = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let hosts = piefxis::parse(&xml).with_context(|| format!("reading {}", file.display()))?;
    let mut accounts = Vec::new();
    for host in hosts {
        if host.jid != domain {
            bail!(
                "{} holds accounts of {}, but this server serves {domain} ([server] domain)",
                file.display(),
                host.jid
            );
        }
        accounts.extend(host.users);
    }
    for account in &accounts {
        check_name(&account.name)?;
        if matches!(account.secret, Secret::None) {
            bail!(
                "user {}: no password and no SCRAM credentials",
                account.name
            );
        }
        if store.get_user(&account.name).await?.is_some() {
            bail!("user {} already exists; nothing was imported", account.name);
        }
    }
    let users = new_users(&accounts)?;
    for chunk in users.chunks(PAGE) {
        store.insert_users(chunk).await.context("writing users")?;
    }
    let roster: Vec<(String, StoredRosterItem)> = accounts
        .iter()
        .flat_map(|a| a.roster.iter().map(|item| (a.name.clone(), item.clone())))
        .collect();
    for chunk in roster.chunks(100 * PAGE) {
        store
            .insert_roster_items(chunk)
            .await
            .context("writing rosters")?;
    }
    let mut messages = 0;
    for account in &accounts {
        for entry in &account.offline {
            store_message(store, &account.name, entry).await?;
            messages += 1;
        }
    }
    Ok(format!(
        "imported {} users, {} roster items and {messages} offline messages in {:.1} s",
        accounts.len(),
        roster.len(),
        started.elapsed().as_secs_f64()
    ))
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let node = NodePart::new(name).with_context(|| format!("{name:?} is not a valid username"))?;
    if node.as_str() != name {
        bail!("user {name:?} would be stored as {node:?}: fix the file");
    }
    Ok(())
}

/// The store's rows: credentials as given, or derived from the password on
/// every core (PBKDF2 is the whole cost of an import).
fn new_users(accounts: &[Account]) -> anyhow::Result<Vec<NewUser>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = accounts.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = accounts
            .chunks(per_thread)
            .map(|chunk| scope.spawn(move || chunk.iter().map(new_user).collect::<Vec<_>>()))
            .collect();
        let mut users = Vec::with_capacity(accounts.len());
        for worker in workers {
            let rows = worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            for row in rows {
                users.push(row?);
            }
        }
        Ok(users)
    })
}

fn new_user(account: &Account) -> anyhow::Result<NewUser> {
    let (sha1, sha256) = match &account.secret {
        Secret::Password(password) => {
            let credentials = Credentials::new(password);
            (credentials.sha1, credentials.sha256)
        }
        Secret::Scram(credentials) => {
            let find = |hash: ScramHash| credentials.iter().find(|c| c.hash == hash).cloned();
            match (find(ScramHash::Sha1), find(ScramHash::Sha256)) {
                (Some(sha1), Some(sha256)) => (sha1, sha256),
                _ => bail!(
                    "user {}: Starling needs both SCRAM-SHA-1 and SCRAM-SHA-256 credentials \
                     (or a password); the file has {}",
                    account.name,
                    credentials
                        .iter()
                        .map(|c| piefxis::mechanism(c.hash))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
        Secret::None => bail!("user {}: no credentials", account.name),
    };
    Ok(NewUser {
        username: account.name.clone(),
        scram_sha1: sha1.encode(),
        scram_sha256: sha256.encode(),
        admin: false,
    })
}

async fn store_message(store: &Store, username: &str, entry: &OfflineEntry) -> anyhow::Result<()> {
    let from = entry.stanza.attr("from").unwrap_or_default();
    let xml = String::from_utf8_lossy(&entry.stanza.to_bytes()).into_owned();
    // The quota is for live traffic; an import restores what was accepted.
    store
        .store_offline(username, from, &xml, entry.stamp_ms, u32::MAX)
        .await
        .with_context(|| format!("storing an offline message for {username}"))?;
    Ok(())
}

pub(super) async fn export(store: &Store, domain: &str, file: &Path) -> anyhow::Result<String> {
    let started = Instant::now();
    let out =
        std::fs::File::create(file).with_context(|| format!("creating {}", file.display()))?;
    let mut out = std::io::BufWriter::new(out);
    let (mut users, mut items, mut messages) = (0, 0, 0);
    out.write_all(piefxis::begin().as_bytes())?;
    out.write_all(piefxis::begin_host(domain).as_bytes())?;
    let mut offset = 0;
    loop {
        let page = store.list_users(None, PAGE as u32, offset).await?;
        if page.is_empty() {
            break;
        }
        offset += page.len() as u64;
        for summary in page {
            // Deleted since the page was read: nothing to export.
            let Some(record) = store.get_user(&summary.username).await? else {
                continue;
            };
            let credentials = [&record.scram_sha1, &record.scram_sha256]
                .into_iter()
                .map(|text| StoredCredential::decode(text))
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("user {}: stored credentials", record.username))?;
            let roster = store.get_roster(&record.username).await?;
            let offline = store
                .list_offline(&record.username)
                .await?
                .into_iter()
                .map(|m| {
                    Ok(OfflineEntry {
                        stanza: piefxis::offline_stanza(&m.xml)?,
                        stamp_ms: m.stamp_ms,
                    })
                })
                .collect::<Result<Vec<_>, piefxis::PiefxisError>>()
                .with_context(|| format!("user {}", record.username))?;
            let account = Account {
                name: record.username,
                secret: Secret::Scram(credentials),
                roster,
                offline,
            };
            users += 1;
            items += account.roster.iter().filter(|i| i.in_roster).count();
            messages += account.offline.len();
            out.write_all(piefxis::user_xml(&account).as_bytes())?;
        }
    }
    out.write_all(piefxis::end_host().as_bytes())?;
    out.write_all(piefxis::end().as_bytes())?;
    out.flush()
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(format!(
        "exported {users} users, {items} roster items and {messages} offline messages \
         to {} in {:.1} s",
        file.display(),
        started.elapsed().as_secs_f64()
    ))
}
