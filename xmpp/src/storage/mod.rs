//! Persistent storage for users and their SCRAM credentials, rosters (RFC 6121)
//! and their versions, offline messages (XEP-0160), pub/sub nodes,
//! subscriptions and items (XEP-0060), account data (XEP-0054 vCards, XEP-0049
//! private XML, XEP-0012 last logout), block lists (XEP-0191), PEP nodes and
//! items (XEP-0163), message archives (XEP-0313) and persistent group chat
//! rooms (XEP-0045), over sqlx's `Any` driver
//! so that one set of
//! queries serves both SQLite (the embedded default) and PostgreSQL.
//!
//! [`Store`] owns the connection pool and the schema: [`Store::connect`] opens the
//! database named by a URL and applies the embedded migrations (`migrations/sqlite`
//! or `migrations/postgres`, which differ only where the SQL dialects must, and
//! in SQLite's archive staging table, 0010, which PostgreSQL has no use for). Each
//! aggregate has its own module of `Store` methods: `users`, `roster`,
//! `offline`, `pubsub`, `vcard`, `private`, `last`, `blocking`, `pep`, `mam`,
//! `muc`.
//! Queries are written once with `$1`-style placeholders (only the generated
//! bulk INSERTs use `?` on SQLite, see `bulk`) and use only
//! the value types `Any` carries (i64, bool, String, bytes); times are unix
//! milliseconds. Flags are read back through `CAST(.. AS INTEGER)` because a
//! SQLite integer and a PostgreSQL boolean decode to different `Any` kinds.
//!
//! This module knows nothing of XMPP semantics: it stores what it is given
//! (credentials are opaque strings, roster items plain fields) and never drops a
//! write: every failure is returned as a [`StorageError`].

mod blocking;
mod bulk;
mod error;
mod last;
mod mam;
mod mam_prefs;
mod muc;
mod offline;
mod pep;
mod private;
mod pubsub;
mod roster;
mod timing;
mod users;
mod vcard;

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::AnyPoolOptions;
use sqlx::any::AnyRow;
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Any, ConnectOptions, Connection, Executor, SqlSafeStr, Transaction};
use sqlx::{AnyConnection, AnyPool, Row};

pub use error::StorageError;
pub use last::LastLogout;
pub use mam::{ArchiveEnds, ArchiveQuery, ArchivedMessage, NewArchived, Page};
pub use mam_prefs::StoredArchivePrefs;
pub use muc::StoredRoom;
pub use offline::{OfflineMessage, OfflineStore};
pub use pep::{LastPepItem, PepItem};
pub use private::PrivateWrite;
pub use pubsub::{StoredItem, StoredNode, StoredSubscription};
pub use roster::StoredRosterItem;
pub use timing::{BUCKETS_US, StoreOp, StoreTimings};
pub use users::{NewUser, UserRecord, UserSummary};
pub use vcard::StoredVcard;

/// How long a SQLite connection waits for another writer before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Pragmas every pooled SQLite connection gets. `journal_size_limit` truncates
/// the WAL after a checkpoint so one bulk load does not leave a WAL file the
/// size of the database behind. `cache_size` is per connection: SQLite's
/// default (2 MiB) times the pool is memory that duplicates the kernel's
/// page cache of the same file, so each connection keeps 512 KiB.
/// `wal_autocheckpoint` lets the WAL grow to 8,192 pages (32 MiB) before a
/// commit copies it back into the database: a checkpoint copies each page
/// once however many frames the WAL holds of it, and a steady stream of
/// archived messages rewrites the same index leaves, so a longer WAL means
/// fewer page copies and fewer fsyncs per message (the checkpoint's fsyncs
/// were a fifth of the archive's cost at 1,000 pages, SQLite's default).
const SQLITE_CONNECTION_PRAGMAS: &str = "PRAGMA busy_timeout = 5000; \
     PRAGMA synchronous = NORMAL; \
     PRAGMA foreign_keys = ON; \
     PRAGMA journal_size_limit = 67108864; \
     PRAGMA wal_autocheckpoint = 8192; \
     PRAGMA cache_size = -512;";

/// One embedded migration: file stem and SQL. Listed by hand (the compile-time
/// `migrate!` macro needs sqlx's `macros` feature); the checksums are computed
/// the same way, so `_sqlx_migrations` rows are identical to what it would write.
struct EmbeddedMigration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

/// One dialect's migrations, its SQL from its own folder.
macro_rules! migrations_of {
    ($dialect:literal, $($version:literal $name:literal),+) => {
        &[$(EmbeddedMigration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../../migrations/", $dialect, "/", $name, ".sql")),
        }),+]
    };
}

/// The migrations of both dialects: the same versions and names.
macro_rules! embedded_migrations {
    ($($version:literal $name:literal),+ $(,)?) => {
        const SQLITE_MIGRATIONS: &[EmbeddedMigration] =
            migrations_of!("sqlite", $($version $name),+);
        const POSTGRES_MIGRATIONS: &[EmbeddedMigration] =
            migrations_of!("postgres", $($version $name),+);
    };
}

embedded_migrations! {
    1 "0001_initial",
    2 "0002_pubsub",
    3 "0003_account_data",
    4 "0004_blocking_rosterver",
    5 "0005_pep",
    6 "0006_mam",
    7 "0007_muc",
    8 "0008_mam_prefs",
    9 "0009_muc_nicks",
    10 "0010_mam_staged",
}

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn migrations(self) -> &'static [EmbeddedMigration] {
        match self {
            Backend::Sqlite => SQLITE_MIGRATIONS,
            Backend::Postgres => POSTGRES_MIGRATIONS,
        }
    }
}

/// The storage handle: a connection pool plus the backend it speaks to.
/// Cheap to clone; clones share the pool.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Latency of the calls on users' paths, for `/metrics`.
    timings: Arc<StoreTimings>,
    /// SQLite: the connection of its own archive batches are written on
    /// (see `mam`).
    archive: Arc<mam::ArchiveConnection>,
}

impl Store {
    /// `DELETE FROM table WHERE column = key`: what removing an account or a
    /// room takes from each table. `table` and `column` are this crate's
    /// own names, never input. Returns the rows removed.
    async fn delete_where(
        &self,
        table: &'static str,
        column: &'static str,
        key: &str,
    ) -> Result<u64, StorageError> {
        let sql = format!("DELETE FROM {table} WHERE {column} = $1");
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Opens the database at `url`, creating it when it is a SQLite file that does
    /// not exist yet, and applies the pending migrations.
    ///
    /// `url` is `sqlite://PATH` (PATH as given, normally absolute; missing parent
    /// folders are created) or `postgres://...` / `postgresql://...`. The pool
    /// holds at most `pool_size` connections (0 counts as 1). Errors name the URL
    /// with any password removed.
    pub async fn connect(url: &str, pool_size: u32) -> Result<Store, StorageError> {
        sqlx::any::install_default_drivers();
        let shown = redact_url(url);
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StorageError::UnsupportedUrl { url: shown });
        };
        let connect_err = |source| StorageError::Connect {
            url: shown.clone(),
            source,
        };

        let any_url = match backend {
            Backend::Sqlite => prepare_sqlite(url, &shown).await?,
            Backend::Postgres => {
                // One direct connection first: the pool retries a refused
                // connection until its acquire timeout (30 s); this fails at once.
                let conn = AnyConnection::connect(url).await.map_err(connect_err)?;
                conn.close().await.map_err(connect_err)?;
                url.to_owned()
            }
        };

        let mut options = AnyPoolOptions::new().max_connections(pool_size.max(1));
        if backend == Backend::Sqlite {
            options = options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(sqlx::raw_sql(SQLITE_CONNECTION_PRAGMAS))
                        .await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(&any_url).await.map_err(connect_err)?;

        let archive = Arc::new(mam::ArchiveConnection::new(
            (backend == Backend::Sqlite).then(|| any_url.clone()),
        ));
        let store = Store {
            pool,
            backend,
            timings: Arc::default(),
            archive,
        };
        store.migrate(&shown).await?;
        tracing::debug!(url = %shown, ?backend, "storage ready");
        Ok(store)
    }

    /// The backend this store talks to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Latency histograms of the store calls users wait for.
    pub fn timings(&self) -> &StoreTimings {
        &self.timings
    }

    /// Closes the pool, waiting for checked-out connections to come back.
    pub async fn close(&self) {
        self.archive.close().await;
        self.pool.close().await;
    }

    async fn migrate(&self, shown_url: &str) -> Result<(), StorageError> {
        let embedded = self.backend.migrations();
        let migrations = embedded
            .iter()
            .map(|m| {
                let description = m.name.split_once('_').map_or(m.name, |(_, d)| d);
                Migration::new(
                    m.version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    m.sql.into_sql_str(),
                    false,
                )
            })
            .collect();
        let migrator = Migrator::with_migrations(migrations);
        let wrap = |source: MigrateError| StorageError::Migrate {
            url: shown_url.to_owned(),
            migration: migration_name(embedded, &source),
            source,
        };
        let connect_err = |source: sqlx::Error| StorageError::Connect {
            url: shown_url.to_owned(),
            source,
        };

        match self.backend {
            // sqlx's SQLite migrator takes no lock, so nodes starting together on a
            // fresh shared file would both try to create the schema. Holding a write
            // transaction makes the others wait (busy_timeout) and then find the
            // migrations applied; sqlx nests its own transactions as savepoints.
            Backend::Sqlite => {
                let mut conn = self.pool.acquire().await.map_err(connect_err)?;
                let mut tx = conn
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(connect_err)?;
                migrator.run(&mut *tx).await.map_err(wrap)?;
                tx.commit().await.map_err(connect_err)?;
            }
            // PostgreSQL migrations take an advisory lock inside sqlx.
            Backend::Postgres => migrator.run(&self.pool).await.map_err(wrap)?,
        }
        Ok(())
    }

    /// Starts a transaction that will write. On SQLite it takes the write lock up
    /// front: a deferred transaction that reads first and then writes fails at
    /// once with SQLITE_BUSY, without waiting, when another connection wrote in
    /// between.
    async fn begin_write(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }
}

/// A statement on the `Any` driver with its values bound.
type AnyQuery<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>;

impl Store {
    /// Runs a query and reads every row it returns with `map`, in order.
    async fn fetch_rows<T>(
        &self,
        query: AnyQuery<'_>,
        map: impl FnMut(&AnyRow) -> Result<T, sqlx::Error>,
    ) -> Result<Vec<T>, StorageError> {
        let rows = query.fetch_all(&self.pool).await?;
        Ok(rows.iter().map(map).collect::<Result<_, sqlx::Error>>()?)
    }

    /// Runs a query and reads the row it returns, if any, with `map`.
    async fn fetch_row<T>(
        &self,
        query: AnyQuery<'_>,
        map: impl FnOnce(&AnyRow) -> Result<T, sqlx::Error>,
    ) -> Result<Option<T>, StorageError> {
        let row = query.fetch_optional(&self.pool).await?;
        Ok(row.as_ref().map(map).transpose()?)
    }

    /// Runs a statement on the pool (outside a transaction); the number of
    /// rows it changed.
    async fn run(&self, query: AnyQuery<'_>) -> Result<u64, StorageError> {
        Ok(query.execute(&self.pool).await?.rows_affected())
    }
}

/// The first column of a row.
fn first<T>(row: &AnyRow) -> Result<T, sqlx::Error>
where
    T: for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    row.try_get(0)
}

/// The first two columns of a row, as text.
fn pair(row: &AnyRow) -> Result<(String, String), sqlx::Error> {
    Ok((row.try_get(0)?, row.try_get(1)?))
}

/// Makes sure the SQLite file can be opened (folders created, file created on
/// first use) and in WAL mode; returns the URL the pool connects with.
async fn prepare_sqlite(url: &str, shown: &str) -> Result<String, StorageError> {
    let options =
        SqliteConnectOptions::from_str(url).map_err(|source| StorageError::InvalidUrl {
            url: shown.to_owned(),
            source,
        })?;
    if let Some(dir) = options
        .get_filename()
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|source| StorageError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
    }
    // The Any driver is configured by URL only; pragmas come in after_connect.
    let any_url = options.create_if_missing(true).to_url_lossy().to_string();
    set_wal(&any_url, shown).await?;
    Ok(any_url)
}

/// Switches the database file to WAL. The journal mode is a property of the
/// file, so this runs once here rather than on every pooled connection; the
/// switch needs an exclusive lock that busy_timeout does not wait for, hence
/// the retry while other processes have the file open.
async fn set_wal(any_url: &str, shown: &str) -> Result<(), StorageError> {
    let connect_err = |source| StorageError::Connect {
        url: shown.to_owned(),
        source,
    };
    let mut conn = AnyConnection::connect(any_url).await.map_err(connect_err)?;
    let deadline = tokio::time::Instant::now() + SQLITE_BUSY_TIMEOUT;
    let mode = loop {
        match sqlx::query_scalar::<_, String>("PRAGMA journal_mode = WAL")
            .fetch_one(&mut conn)
            .await
        {
            Ok(mode) => break mode,
            Err(err) if is_sqlite_busy(&err) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => return Err(connect_err(err)),
        }
    };
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(url = %shown, %mode, "SQLite database is not in WAL mode");
    }
    conn.close().await.map_err(connect_err)
}

fn is_sqlite_busy(err: &sqlx::Error) -> bool {
    // SQLITE_BUSY (5) and SQLITE_LOCKED (6), including their extended codes.
    err.as_database_error()
        .and_then(|db| db.code())
        .and_then(|code| code.parse::<i64>().ok())
        .is_some_and(|code| matches!(code & 0xff, 5 | 6))
}

/// Names the migration a migrator error is about, for the error message.
fn migration_name(embedded: &[EmbeddedMigration], err: &MigrateError) -> String {
    let version = match err {
        MigrateError::ExecuteMigration(_, v)
        | MigrateError::VersionMissing(v)
        | MigrateError::VersionMismatch(v)
        | MigrateError::VersionNotPresent(v)
        | MigrateError::VersionTooOld(v, _)
        | MigrateError::VersionTooNew(v, _)
        | MigrateError::Dirty(v) => *v,
        _ => return "schema history".to_owned(),
    };
    embedded
        .iter()
        .find(|m| m.version == version)
        .map_or_else(|| format!("version {version}"), |m| m.name.to_owned())
}

/// `url` with the password (in the userinfo or a `password=` parameter) masked.
fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
                None => base.to_owned(),
            },
            None => base.to_owned(),
        },
        None => base.to_owned(),
    };
    if let Some(query) = query {
        let params: Vec<&str> = query
            .split('&')
            .map(|p| {
                if p.starts_with("password=") {
                    "password=***"
                } else {
                    p
                }
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

/// Now as unix milliseconds.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Reads a flag column selected as `CAST(col AS INTEGER)`.
fn flag(row: &sqlx::any::AnyRow, index: usize) -> Result<bool, sqlx::Error> {
    use sqlx::Row;
    Ok(row.try_get::<i64, _>(index)? != 0)
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::testing::{TestDb, backend_test};
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://app:s3cr@t@db.example:5432/xmpp?sslmode=require"),
            "postgres://app:***@db.example:5432/xmpp?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://db/xmpp?user=app&password=hunter2"),
            "postgres://db/xmpp?user=app&password=***"
        );
        assert_eq!(
            redact_url("postgres://app@db/xmpp"),
            "postgres://app@db/xmpp"
        );
        assert_eq!(
            redact_url("sqlite:///var/lib/x.db"),
            "sqlite:///var/lib/x.db"
        );
    }

    #[tokio::test]
    async fn rejects_unknown_scheme() {
        let err = Store::connect("mysql://root:pw@localhost/x", 1)
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::UnsupportedUrl { .. }), "{err}");
        assert!(!err.to_string().contains("pw"), "{err}");
    }

    #[tokio::test]
    async fn sqlite_creates_folders_and_uses_wal() {
        let db = TestDb::sqlite();
        let path = db.dir().join("a/b/starling.db");
        let store = Store::connect(&format!("sqlite://{}", path.display()), 2)
            .await
            .unwrap();
        assert!(path.exists());
        assert_eq!(store.backend(), Backend::Sqlite);
        let mut conn = store.pool.acquire().await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(sync, 1, "NORMAL");
        let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(busy, 5000);
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(fk, 1);
        let cache: i64 = sqlx::query_scalar("PRAGMA cache_size")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(cache, -512, "KiB per connection");
    }

    #[tokio::test]
    async fn reconnect_keeps_data_and_skips_applied_migrations() {
        let db = TestDb::sqlite();
        let url = db.sqlite_url("x.db");
        let store = Store::connect(&url, 1).await.unwrap();
        store
            .create_user(&super::testing::new_user("alice"))
            .await
            .unwrap();
        store.close().await;
        let store = Store::connect(&url, 1).await.unwrap();
        assert!(store.get_user("alice").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn concurrent_first_connects_on_one_file() {
        let db = TestDb::sqlite();
        let url = db.sqlite_url("race.db");
        let (a, b, c) = tokio::join!(
            Store::connect(&url, 1),
            Store::connect(&url, 1),
            Store::connect(&url, 1)
        );
        a.unwrap();
        b.unwrap();
        c.unwrap();
    }

    #[tokio::test]
    async fn bad_postgres_url_names_the_url_without_password() {
        let err = Store::connect("postgres://u:topsecret@127.0.0.1:1/none", 1)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("postgres://u:***@127.0.0.1:1/none"), "{text}");
        assert!(!text.contains("topsecret"), "{text}");
    }

    backend_test! {
        #[tokio::test]
        async fn modified_migration_is_reported_by_name(db) {
            let url = db.url().to_owned();
            let store = Store::connect(&url, 1).await.unwrap();
            sqlx::query("UPDATE _sqlx_migrations SET checksum = $1 WHERE version = 1")
                .bind(vec![0u8; 48])
                .execute(&store.pool)
                .await
                .unwrap();
            store.close().await;
            let err = Store::connect(&url, 1).await.unwrap_err();
            assert!(
                matches!(&err, StorageError::Migrate { migration, .. } if migration == "0001_initial"),
                "{err}"
            );
        }
    }
}
