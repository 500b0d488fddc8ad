//! Test fixtures: a throw-away SQLite file per test, and, when
//! `STARLING_TEST_POSTGRES_URL` is set, a throw-away schema in that PostgreSQL
//! database, so every storage test runs against both backends.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::AnyConnection;
use sqlx::Connection;

use super::{NewUser, Store};

/// Names the PostgreSQL database the tests may use, e.g.
/// `postgres://starling:starling@127.0.0.1:5432/starling_test`.
pub(crate) const POSTGRES_URL_VAR: &str = "STARLING_TEST_POSTGRES_URL";

static NEXT: AtomicU64 = AtomicU64::new(0);

fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

/// A database for one test. The SQLite folder is removed on drop; the
/// PostgreSQL schema by [`for_each_backend`] once the test body returns.
pub(crate) struct TestDb {
    url: String,
    dir: Option<PathBuf>,
    pg: Option<(String, String)>,
}

impl TestDb {
    pub(crate) fn sqlite() -> TestDb {
        let dir = std::env::temp_dir().join(format!("starling-storage-{}", unique_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("starling.db").display());
        TestDb {
            url,
            dir: Some(dir),
            pg: None,
        }
    }

    async fn postgres(base: &str) -> TestDb {
        let schema = format!("t_{}", unique_suffix());
        let mut conn = AnyConnection::connect(base).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options[search_path]={schema}");
        TestDb {
            url,
            dir: None,
            pg: Some((base.to_owned(), schema)),
        }
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn is_sqlite(&self) -> bool {
        self.dir.is_some()
    }

    /// The SQLite test folder.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.as_deref().expect("a SQLite test database")
    }

    /// A URL for another SQLite file in the test folder.
    pub(crate) fn sqlite_url(&self, file: &str) -> String {
        format!("sqlite://{}", self.dir().join(file).display())
    }

    pub(crate) async fn store(&self) -> Store {
        Store::connect(&self.url, 4).await.unwrap()
    }

    async fn drop_schema(&self) {
        if let Some((base, schema)) = &self.pg {
            let mut conn = AnyConnection::connect(base).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&mut conn)
                .await
                .unwrap();
            conn.close().await.unwrap();
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ignored_cleanup_failure = std::fs::remove_dir_all(dir);
        }
    }
}

/// Runs `test` on a fresh SQLite database, then on a fresh PostgreSQL schema
/// when [`POSTGRES_URL_VAR`] is set (printing a note when it is not).
pub(crate) async fn for_each_backend<F, Fut>(test: F)
where
    F: Fn(std::sync::Arc<TestDb>) -> Fut,
    Fut: Future<Output = ()>,
{
    sqlx::any::install_default_drivers();
    test(std::sync::Arc::new(TestDb::sqlite())).await;
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(base) if !base.is_empty() => {
            let db = std::sync::Arc::new(TestDb::postgres(&base).await);
            test(db.clone()).await;
            db.drop_schema().await;
        }
        _ => eprintln!("note: {POSTGRES_URL_VAR} is not set; PostgreSQL run skipped"),
    }
}

pub(crate) fn new_user(name: &str) -> NewUser {
    NewUser {
        username: name.to_owned(),
        scram_sha1: format!("sha1:{name}"),
        scram_sha256: format!("sha256:{name}"),
        admin: false,
    }
}
