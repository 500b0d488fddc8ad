//! Accounts: lookups through a bounded cache, password checks against the
//! stored SCRAM credentials, and account changes.
//!
//! Authentication always reads the store, so a password change or a deletion
//! (from another node or from `starling user`) takes effect at the next
//! login. Routing only asks whether an account exists; those answers are
//! cached for [`EXISTS_TTL`]. Password hashing (PBKDF2, about a millisecond
//! of CPU) runs on the blocking pool so logins never stall stanza tasks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use starling_core::cache::{CacheKind, CacheRegistry, Lru};
use starling_core::cluster::Cluster;

use crate::auth::{Credentials, ScramHash, StoredCredential, verify_password};
use crate::modules::Modules;
use crate::storage::{NewUser, StorageError, Store, UserRecord};

/// Name of the account cache (also in cluster invalidations).
pub const USER_CACHE: &str = "users";

/// How long a cached "this account exists" answer is trusted.
pub const EXISTS_TTL: Duration = Duration::from_secs(60);

/// An account change that did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("password hashing was interrupted: {0}")]
    Hashing(#[from] tokio::task::JoinError),
}

pub struct UserDirectory {
    store: Store,
    cluster: Arc<dyn Cluster>,
    /// Their `UserDeleted` hooks remove a deleted account's data.
    modules: Arc<Modules>,
    domain: String,
    /// Accounts known to exist, with when that was read.
    known: Arc<Lru<String, Instant>>,
}

impl UserDirectory {
    pub fn new(
        store: Store,
        cluster: Arc<dyn Cluster>,
        modules: Arc<Modules>,
        domain: String,
        entries: usize,
        registry: &CacheRegistry,
    ) -> UserDirectory {
        let known = Arc::new(Lru::new(USER_CACHE, CacheKind::Invalidated, entries));
        registry.register(known.clone());
        UserDirectory {
            store,
            cluster,
            modules,
            domain,
            known,
        }
    }

    /// The account record, read from the store.
    pub async fn get(&self, username: &str) -> Result<Option<UserRecord>, StorageError> {
        let record = self.store.get_user(username).await?;
        match &record {
            Some(_) => self.known.insert(username.to_owned(), Instant::now()),
            None => self.invalidate(username),
        }
        Ok(record)
    }

    /// Whether the account exists (cached for routing decisions).
    pub async fn exists(&self, username: &str) -> Result<bool, StorageError> {
        if let Some(read_at) = self.known.get(&username.to_owned()) {
            if read_at.elapsed() < EXISTS_TTL {
                return Ok(true);
            }
        }
        Ok(self.get(username).await?.is_some())
    }

    /// The stored SCRAM credential of one hash, if the account has a valid one.
    pub fn credential(record: &UserRecord, hash: ScramHash) -> Option<StoredCredential> {
        let encoded = match hash {
            ScramHash::Sha1 => &record.scram_sha1,
            ScramHash::Sha256 => &record.scram_sha256,
        };
        match StoredCredential::decode(encoded) {
            Ok(credential) => Some(credential),
            Err(error) => {
                tracing::error!(user = %record.username, %error, "stored credential is unreadable");
                None
            }
        }
    }

    /// Checks a clear-text password (SASL PLAIN, legacy auth) against the
    /// stored credential. Unknown users cost the same as wrong passwords.
    pub async fn check_password(
        &self,
        username: &str,
        password: &str,
    ) -> Result<bool, StorageError> {
        Ok(self.authenticate(username, password).await?.is_some())
    }

    /// The account, when `password` is its password (checked as
    /// [`UserDirectory::check_password`] does); `None` for a wrong password
    /// or an unknown user alike.
    pub async fn authenticate(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<UserRecord>, StorageError> {
        let record = self.get(username).await?;
        let credential = record
            .as_ref()
            .and_then(|record| Self::credential(record, ScramHash::Sha256));
        let password = password.to_owned();
        let verified = tokio::task::spawn_blocking(move || match credential {
            Some(credential) => verify_password(&credential, &password),
            None => {
                let _wasted = StoredCredential::derive(
                    ScramHash::Sha256,
                    &password,
                    b"timing-equaliser",
                    crate::auth::DEFAULT_ITERATIONS,
                );
                false
            }
        })
        .await
        .unwrap_or(false);
        Ok(record.filter(|_| verified))
    }

    /// Creates an account (credentials derived off the async threads).
    pub async fn create(
        &self,
        username: &str,
        password: &str,
        admin: bool,
    ) -> Result<(), AccountError> {
        let credentials = derive(password).await?;
        let user = NewUser {
            username: username.to_owned(),
            scram_sha1: credentials.sha1.encode(),
            scram_sha256: credentials.sha256.encode(),
            admin,
        };
        self.store.create_user(&user).await?;
        Ok(())
    }

    pub async fn set_password(&self, username: &str, password: &str) -> Result<bool, AccountError> {
        let credentials = derive(password).await?;
        let changed = self
            .store
            .set_password(
                username,
                &credentials.sha1.encode(),
                &credentials.sha256.encode(),
            )
            .await?;
        self.changed(username).await;
        Ok(changed)
    }

    /// Deletes the account, its roster and offline messages, and removes it
    /// from other users' rosters; then every module removes what it stored
    /// for the account. A module's failure is returned (the account is gone
    /// either way; deleting it again retries the modules' part).
    pub async fn delete(&self, username: &str) -> Result<bool, StorageError> {
        let deleted = self.store.delete_user(username, &self.domain).await?;
        self.changed(username).await;
        let user = starling_core::jid::BareJid::new(&format!("{username}@{}", self.domain))
            .map_err(|_| StorageError::UnknownUser(username.to_owned()))?;
        self.modules.user_deleted(&self.store, &user).await?;
        Ok(deleted)
    }

    /// After a change: forget the cached answer here and on every member.
    async fn changed(&self, username: &str) {
        self.invalidate(username);
        self.cluster
            .invalidate(USER_CACHE, username.to_owned())
            .await;
    }

    /// Forgets a cached answer after a change (here or on another node).
    pub fn invalidate(&self, username: &str) {
        self.known.remove(&username.to_owned());
    }
}

async fn derive(password: &str) -> Result<Credentials, tokio::task::JoinError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || Credentials::new(&password)).await
}
