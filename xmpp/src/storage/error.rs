//! The storage layer's error type: every failed read or write comes back to the
//! caller as a [`StorageError`], with the driver's cause kept as its source.

use std::path::PathBuf;

use sqlx::migrate::MigrateError;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The URL names no backend this store speaks.
    #[error("unsupported storage URL {url:?}: expected sqlite://PATH or postgres://...")]
    UnsupportedUrl { url: String },

    /// The SQLite URL could not be read as a file path.
    #[error("invalid SQLite URL {url:?}: {source}")]
    InvalidUrl {
        url: String,
        #[source]
        source: sqlx::Error,
    },

    /// The folder that should hold the SQLite file could not be created.
    #[error("cannot create the folder {} for the database: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Opening the database (or preparing a fresh connection) failed.
    /// `url` never contains a password.
    #[error("cannot open the database {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },

    /// Applying or checking the embedded schema migrations failed.
    #[error("migration {migration} on {url} failed: {source}")]
    Migrate {
        url: String,
        /// The migration's file name without `.sql`, or "schema history" when
        /// the failure was in sqlx's bookkeeping rather than in one migration.
        migration: String,
        #[source]
        source: MigrateError,
    },

    /// `create_user` or `insert_users` met a username that is already taken
    /// (or, for `insert_users`, one that appears twice in the batch).
    #[error("user {0:?} already exists")]
    UserExists(String),

    /// A write referred to a user that does not exist.
    #[error("no such user {0:?}")]
    UnknownUser(String),

    /// A stored value could not be decoded (the row was written by something
    /// other than this module, or the column was edited by hand).
    #[error("corrupt stored {what} for {key:?}")]
    Corrupt { what: &'static str, key: String },

    /// Any other database failure.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl StorageError {
    /// Maps a unique-key violation on a user insert to [`StorageError::UserExists`].
    pub(super) fn from_user_insert(err: sqlx::Error, username: &str) -> Self {
        if is_unique_violation(&err) {
            StorageError::UserExists(username.to_owned())
        } else {
            StorageError::Database(err)
        }
    }

    /// Maps a foreign-key violation on a per-user write to
    /// [`StorageError::UnknownUser`].
    pub(super) fn from_owned_write(err: sqlx::Error, username: &str) -> Self {
        if is_foreign_key_violation(&err) {
            StorageError::UnknownUser(username.to_owned())
        } else {
            StorageError::Database(err)
        }
    }
}

pub(super) fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|db| db.is_unique_violation())
}

pub(super) fn is_foreign_key_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|db| db.is_foreign_key_violation())
}
