//! Test fixtures: a throw-away SQLite file per test, or a throw-away schema
//! in the PostgreSQL database `STARLING_TEST_POSTGRES_URL` names; every
//! storage test declared with [`backend_test!`] runs against both backends.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
/// PostgreSQL schema by [`on_postgres`] once the test body returns.
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

/// Declares a storage test once for both backends: `mod NAME` with a test
/// `sqlite` and a test `postgres`, each running the body with `db` a fresh
/// database of its backend. The PostgreSQL one needs a server, so a plain
/// `cargo test` lists it as ignored with the reason; `tests/run` sets
/// [`POSTGRES_URL_VAR`] and runs it.
macro_rules! backend_test {
    ($(#[$attr:meta])* async fn $name:ident($db:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $(#[$attr])*
            async fn sqlite() {
                $crate::storage::testing::on_sqlite(|$db| async move $body).await;
            }

            $(#[$attr])*
            #[ignore = "needs PostgreSQL (STARLING_TEST_POSTGRES_URL): run tests/run"]
            async fn postgres() {
                $crate::storage::testing::on_postgres(|$db| async move $body).await;
            }
        }
    };
}
pub(crate) use backend_test;

/// Runs `test` on a fresh SQLite database.
pub(crate) async fn on_sqlite<F, Fut>(test: F)
where
    F: FnOnce(Arc<TestDb>) -> Fut,
    Fut: Future<Output = ()>,
{
    sqlx::any::install_default_drivers();
    test(Arc::new(TestDb::sqlite())).await;
}

/// Runs `test` on a fresh schema of the database [`POSTGRES_URL_VAR`] names,
/// and fails when it names none.
pub(crate) async fn on_postgres<F, Fut>(test: F)
where
    F: FnOnce(Arc<TestDb>) -> Fut,
    Fut: Future<Output = ()>,
{
    sqlx::any::install_default_drivers();
    let base = std::env::var(POSTGRES_URL_VAR)
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "{POSTGRES_URL_VAR} is not set: point it at a PostgreSQL database the tests may \
                 use, e.g. postgres://starling:starling@127.0.0.1:5432/starling_test \
                 (tests/run creates that one)"
            )
        });
    let db = Arc::new(TestDb::postgres(&base).await);
    test(db.clone()).await;
    db.drop_schema().await;
}

pub(crate) fn new_user(name: &str) -> NewUser {
    NewUser {
        username: name.to_owned(),
        scram_sha1: format!("sha1:{name}"),
        scram_sha256: format!("sha256:{name}"),
        admin: false,
    }
}
