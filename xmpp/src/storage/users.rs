//! User accounts: username, SCRAM credentials (opaque encoded strings made by
//! the SASL layer; clear passwords never reach the store), the admin flag.
//! Deleting a user also removes everything stored for or about them.

use std::collections::HashSet;

use sqlx::Arguments;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::bulk::BulkInsert;
use super::{StorageError, Store, flag, now_ms};

/// A user to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub username: String,
    /// Encoded SCRAM-SHA-1 stored key, server key, salt and iteration count.
    pub scram_sha1: String,
    /// Encoded SCRAM-SHA-256 credentials.
    pub scram_sha256: String,
    pub admin: bool,
}

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub username: String,
    pub scram_sha1: String,
    pub scram_sha256: String,
    pub admin: bool,
    pub created_at_ms: i64,
}

/// A user as listed on the admin page: no credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    pub username: String,
    pub admin: bool,
    pub created_at_ms: i64,
}

const INSERT_USER: &str = "INSERT INTO users \
     (username, scram_sha1, scram_sha256, admin, created_at_ms) VALUES ($1, $2, $3, $4, $5)";

/// Usernames looked up per statement when naming a conflicting user.
const LOOKUP_CHUNK: usize = 1_000;

impl Store {
    /// Creates one user. A taken username is [`StorageError::UserExists`].
    pub async fn create_user(&self, user: &NewUser) -> Result<(), StorageError> {
        let _timer = self.timings.start(super::StoreOp::WriteUser);
        sqlx::query(INSERT_USER)
            .bind(&user.username)
            .bind(&user.scram_sha1)
            .bind(&user.scram_sha256)
            .bind(user.admin)
            .bind(now_ms())
            .execute(&self.pool)
            .await
            .map_err(|e| StorageError::from_user_insert(e, &user.username))?;
        Ok(())
    }

    /// Creates many users in one transaction: all of them or none. A username
    /// that is taken, or that appears twice in `users`, fails the whole batch
    /// with [`StorageError::UserExists`] naming it.
    pub async fn insert_users(&self, users: &[NewUser]) -> Result<(), StorageError> {
        let mut seen = HashSet::with_capacity(users.len());
        if let Some(dup) = users.iter().find(|u| !seen.insert(u.username.as_str())) {
            return Err(StorageError::UserExists(dup.username.clone()));
        }
        if users.is_empty() {
            return Ok(());
        }

        let insert = BulkInsert::new(
            self.backend,
            "INSERT INTO users (username, scram_sha1, scram_sha256, admin, created_at_ms)",
            5,
        );
        let created_at = now_ms();
        let mut tx = self.begin_write().await?;
        let result = insert
            .run(&mut tx, users, |args, u| {
                args.add(u.username.as_str())?;
                args.add(u.scram_sha1.as_str())?;
                args.add(u.scram_sha256.as_str())?;
                args.add(u.admin)?;
                args.add(created_at)
            })
            .await;
        match result {
            Ok(_) => {
                tx.commit().await?;
                self.checkpoint_after_bulk().await;
                Ok(())
            }
            Err(err) if super::error::is_unique_violation(&err) => {
                tx.rollback().await?;
                // The driver's message does not say which row collided.
                match self.first_existing(users).await? {
                    Some(name) => Err(StorageError::UserExists(name)),
                    None => Err(StorageError::Database(err)),
                }
            }
            Err(err) => Err(err.into()),
        }
    }

    /// The first of `users` (in input order) that exists in the store.
    async fn first_existing(&self, users: &[NewUser]) -> Result<Option<String>, StorageError> {
        for chunk in users.chunks(LOOKUP_CHUNK) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT username FROM users WHERE username IN ({})",
                placeholders.join(",")
            );
            let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
            for u in chunk {
                query = query.bind(u.username.as_str());
            }
            let found: HashSet<String> = query.fetch_all(&self.pool).await?.into_iter().collect();
            if let Some(u) = chunk.iter().find(|u| found.contains(&u.username)) {
                return Ok(Some(u.username.clone()));
            }
        }
        Ok(None)
    }

    /// The user named `username`, if any.
    pub async fn get_user(&self, username: &str) -> Result<Option<UserRecord>, StorageError> {
        let _timer = self.timings.start(super::StoreOp::GetUser);
        let statement = sqlx::query(
            "SELECT username, scram_sha1, scram_sha256, CAST(admin AS INTEGER), created_at_ms \
             FROM users WHERE username = $1",
        )
        .bind(username);
        self.fetch_row(statement, user_record).await
    }

    /// Deletes a user with their roster and offline messages, and removes
    /// `username@domain` from every other user's roster, in one transaction.
    /// Returns false (and changes nothing) when there is no such user.
    pub async fn delete_user(&self, username: &str, domain: &str) -> Result<bool, StorageError> {
        let _timer = self.timings.start(super::StoreOp::WriteUser);
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query("DELETE FROM users WHERE username = $1")
            .bind(username)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        // The foreign keys cascade too; these make the outcome independent of
        // whether the database enforces them.
        sqlx::query("DELETE FROM roster_items WHERE owner = $1")
            .bind(username)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM offline_messages WHERE username = $1")
            .bind(username)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM blocked_jids WHERE owner = $1")
            .bind(username)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM roster_versions WHERE owner = $1")
            .bind(username)
            .execute(&mut *tx)
            .await?;
        // The rosters the account leaves change: their versions go up, so
        // clients holding them cached are sent the new ones (RFC 6121 2.6).
        let contact = format!("{username}@{domain}");
        let owners: Vec<String> =
            sqlx::query_scalar("SELECT owner FROM roster_items WHERE contact = $1")
                .bind(contact.as_str())
                .fetch_all(&mut *tx)
                .await?;
        for owner in &owners {
            super::roster::raise_roster_version(&mut tx, owner).await?;
        }
        sqlx::query("DELETE FROM roster_items WHERE contact = $1")
            .bind(contact)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Replaces a user's SCRAM credentials. False when there is no such user.
    pub async fn set_password(
        &self,
        username: &str,
        scram_sha1: &str,
        scram_sha256: &str,
    ) -> Result<bool, StorageError> {
        let _timer = self.timings.start(super::StoreOp::WriteUser);
        let result =
            sqlx::query("UPDATE users SET scram_sha1 = $2, scram_sha256 = $3 WHERE username = $1")
                .bind(username)
                .bind(scram_sha1)
                .bind(scram_sha256)
                .execute(&self.pool)
                .await?;
        Ok(result.rows_affected() > 0)
    }

    /// Grants or revokes admin rights. False when there is no such user.
    pub async fn set_admin(&self, username: &str, admin: bool) -> Result<bool, StorageError> {
        let statement = sqlx::query("UPDATE users SET admin = $2 WHERE username = $1")
            .bind(username)
            .bind(admin);
        Ok(self.run(statement).await? > 0)
    }

    /// One page of users ordered by username. `search`, when given, keeps the
    /// usernames containing it, ignoring ASCII case.
    pub async fn list_users(
        &self,
        search: Option<&str>,
        limit: u32,
        offset: u64,
    ) -> Result<Vec<UserSummary>, StorageError> {
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let columns = "SELECT username, CAST(admin AS INTEGER), created_at_ms FROM users";
        let rows = match search {
            Some(search) => {
                let sql = format!(
                    "{columns} WHERE lower(username) LIKE $1 ESCAPE '\\' \
                     ORDER BY username LIMIT $2 OFFSET $3"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(like_pattern(search))
                    .bind(i64::from(limit))
                    .bind(offset)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                let sql = format!("{columns} ORDER BY username LIMIT $1 OFFSET $2");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(i64::from(limit))
                    .bind(offset)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter()
            .map(|row| {
                Ok(UserSummary {
                    username: row.try_get(0)?,
                    admin: flag(row, 1)?,
                    created_at_ms: row.try_get(2)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// How many users there are (matching `search` as in [`Store::list_users`]).
    pub async fn count_users(&self, search: Option<&str>) -> Result<i64, StorageError> {
        let count = match search {
            Some(search) => {
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM users WHERE lower(username) LIKE $1 ESCAPE '\\'",
                )
                .bind(like_pattern(search))
                .fetch_one(&self.pool)
                .await?
            }
            None => {
                sqlx::query_scalar("SELECT COUNT(*) FROM users")
                    .fetch_one(&self.pool)
                    .await?
            }
        };
        Ok(count)
    }
}

fn user_record(row: &AnyRow) -> Result<UserRecord, sqlx::Error> {
    Ok(UserRecord {
        username: row.try_get(0)?,
        scram_sha1: row.try_get(1)?,
        scram_sha256: row.try_get(2)?,
        admin: flag(row, 3)?,
        created_at_ms: row.try_get(4)?,
    })
}

/// A LIKE pattern matching values that contain `search` literally.
fn like_pattern(search: &str) -> String {
    let mut pattern = String::with_capacity(search.len() + 2);
    pattern.push('%');
    for c in search.to_ascii_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::super::StoredRosterItem;
    use super::super::testing::{backend_test, new_user};
    use super::*;

    fn contact(jid: &str) -> StoredRosterItem {
        StoredRosterItem::mutual(jid.to_owned())
    }

    backend_test! {
        #[tokio::test]
        async fn create_get_and_duplicate(db) {
            let store = db.store().await;
            let before = now_ms();
            let mut alice = new_user("alice");
            alice.admin = true;
            store.create_user(&alice).await.unwrap();
            let got = store.get_user("alice").await.unwrap().unwrap();
            assert_eq!(got.username, "alice");
            assert_eq!(got.scram_sha1, "sha1:alice");
            assert_eq!(got.scram_sha256, "sha256:alice");
            assert!(got.admin);
            assert!(got.created_at_ms >= before && got.created_at_ms <= now_ms());
            assert!(store.get_user("bob").await.unwrap().is_none());

            let err = store.create_user(&new_user("alice")).await.unwrap_err();
            assert!(
                matches!(&err, StorageError::UserExists(u) if u == "alice"),
                "{err}"
            );
        }
    }

    backend_test! {
        #[tokio::test]
        async fn set_password_and_admin(db) {
            let store = db.store().await;
            store.create_user(&new_user("alice")).await.unwrap();
            assert!(store.set_password("alice", "s1", "s256").await.unwrap());
            assert!(!store.set_password("nobody", "s1", "s256").await.unwrap());
            assert!(store.set_admin("alice", true).await.unwrap());
            assert!(!store.set_admin("nobody", true).await.unwrap());
            let got = store.get_user("alice").await.unwrap().unwrap();
            assert_eq!(
                (got.scram_sha1.as_str(), got.scram_sha256.as_str()),
                ("s1", "s256")
            );
            assert!(got.admin);
            assert!(store.set_admin("alice", false).await.unwrap());
            assert!(!store.get_user("alice").await.unwrap().unwrap().admin);
        }
    }

    backend_test! {
        #[tokio::test]
        async fn bulk_insert_and_duplicates(db) {
            let store = db.store().await;
            // More than one statement's worth (6,553 rows), with a short last chunk.
            let users: Vec<NewUser> = (1..=7_000).map(|i| new_user(&format!("p{i}"))).collect();
            store.insert_users(&users).await.unwrap();
            assert_eq!(store.count_users(None).await.unwrap(), 7_000);
            for name in ["p1", "p6553", "p6554", "p7000"] {
                let got = store.get_user(name).await.unwrap().unwrap();
                assert_eq!(got.scram_sha1, format!("sha1:{name}"));
                assert_eq!(got.scram_sha256, format!("sha256:{name}"));
                assert!(!got.admin);
            }

            // One existing user in a new batch: nothing of the batch is kept.
            let batch: Vec<NewUser> = ["q1", "q2", "p17", "q3"].map(new_user).into();
            let err = store.insert_users(&batch).await.unwrap_err();
            assert!(
                matches!(&err, StorageError::UserExists(u) if u == "p17"),
                "{err}"
            );
            assert!(store.get_user("q1").await.unwrap().is_none());
            assert_eq!(store.count_users(None).await.unwrap(), 7_000);

            // A name twice in the batch.
            let batch: Vec<NewUser> = ["r1", "r2", "r1"].map(new_user).into();
            let err = store.insert_users(&batch).await.unwrap_err();
            assert!(
                matches!(&err, StorageError::UserExists(u) if u == "r1"),
                "{err}"
            );
            assert!(store.get_user("r2").await.unwrap().is_none());

            store.insert_users(&[]).await.unwrap();
        }
    }

    backend_test! {
        #[tokio::test]
        async fn list_and_count_with_search(db) {
            let store = db.store().await;
            let names = ["carol", "alice", "bob", "al_x", "alfred", "100%"];
            let users: Vec<NewUser> = names.map(new_user).into();
            store.insert_users(&users).await.unwrap();
            store.set_admin("bob", true).await.unwrap();

            let all = store.list_users(None, 100, 0).await.unwrap();
            let listed: Vec<&str> = all.iter().map(|u| u.username.as_str()).collect();
            assert_eq!(listed, ["100%", "al_x", "alfred", "alice", "bob", "carol"]);
            assert!(all.iter().find(|u| u.username == "bob").unwrap().admin);
            assert!(!all.iter().find(|u| u.username == "carol").unwrap().admin);

            let page = store.list_users(None, 2, 2).await.unwrap();
            let listed: Vec<&str> = page.iter().map(|u| u.username.as_str()).collect();
            assert_eq!(listed, ["alfred", "alice"]);

            let found = store.list_users(Some("AL"), 10, 0).await.unwrap();
            let listed: Vec<&str> = found.iter().map(|u| u.username.as_str()).collect();
            assert_eq!(listed, ["al_x", "alfred", "alice"]);
            // `_` and `%` are literal, not wildcards.
            let found = store.list_users(Some("l_"), 10, 0).await.unwrap();
            assert_eq!(found.len(), 1);
            assert_eq!(store.count_users(Some("%")).await.unwrap(), 1);
            assert_eq!(store.count_users(Some("al")).await.unwrap(), 3);
            assert_eq!(store.count_users(Some("zz")).await.unwrap(), 0);
            assert_eq!(store.count_users(None).await.unwrap(), 6);
        }
    }

    backend_test! {
        #[tokio::test]
        async fn delete_cascades(db) {
            let store = db.store().await;
            let users: Vec<NewUser> = ["alice", "bob", "carol"].map(new_user).into();
            store.insert_users(&users).await.unwrap();
            store
                .put_roster_item("alice", &contact("bob@example.com"))
                .await
                .unwrap();
            store
                .put_roster_item("alice", &contact("carol@example.com"))
                .await
                .unwrap();
            store
                .put_roster_item("bob", &contact("alice@example.com"))
                .await
                .unwrap();
            store
                .put_roster_item("carol", &contact("alice@example.com"))
                .await
                .unwrap();
            // Same localpart on another server: not the deleted user.
            store
                .put_roster_item("carol", &contact("alice@elsewhere.org"))
                .await
                .unwrap();
            store
                .store_offline("alice", "bob@example.com/x", "<message/>", 1, 10)
                .await
                .unwrap();
            store
                .store_offline("bob", "alice@example.com/x", "<message/>", 1, 10)
                .await
                .unwrap();

            assert!(store.delete_user("alice", "example.com").await.unwrap());
            assert!(store.get_user("alice").await.unwrap().is_none());
            assert!(store.get_roster("alice").await.unwrap().is_empty());
            assert_eq!(store.count_offline("alice").await.unwrap(), 0);
            assert!(store.get_roster("bob").await.unwrap().is_empty());
            let carol: Vec<String> = store
                .get_roster("carol")
                .await
                .unwrap()
                .into_iter()
                .map(|i| i.contact)
                .collect();
            assert_eq!(carol, ["alice@elsewhere.org"]);
            assert_eq!(store.count_offline("bob").await.unwrap(), 1);

            assert!(!store.delete_user("alice", "example.com").await.unwrap());
            // A user created again under the old name starts empty.
            store.create_user(&new_user("alice")).await.unwrap();
            assert!(store.get_roster("alice").await.unwrap().is_empty());
        }
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("A_b%c\\"), "%a\\_b\\%c\\\\%");
    }
}
