//! XEP-0012 last activity: when each account's last session in the cluster
//! ended, and the status text it left with.

use sqlx::Row;

use super::{StorageError, Store};

/// A recorded logout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastLogout {
    /// Unix milliseconds.
    pub at_ms: i64,
    /// The status text of the last unavailable presence, maybe empty.
    pub status: String,
}

impl Store {
    /// Records that `username` logged out at `at_ms`, replacing an earlier
    /// record. An unknown user (deleted while logged in) is
    /// [`StorageError::UnknownUser`].
    pub async fn set_last_logout(
        &self,
        username: &str,
        at_ms: i64,
        status: &str,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO last_activity (username, logout_ms, status) VALUES ($1, $2, $3) \
             ON CONFLICT (username) DO UPDATE SET \
             logout_ms = excluded.logout_ms, status = excluded.status",
        )
        .bind(username)
        .bind(at_ms)
        .bind(status)
        .execute(&self.pool)
        .await
        .map_err(|e| StorageError::from_owned_write(e, username))?;
        Ok(())
    }

    /// `username`'s last logout, if one was ever recorded.
    pub async fn get_last_logout(
        &self,
        username: &str,
    ) -> Result<Option<LastLogout>, StorageError> {
        let statement =
            sqlx::query("SELECT logout_ms, status FROM last_activity WHERE username = $1");
        self.fetch_row(statement.bind(username), |row| {
            Ok(LastLogout {
                at_ms: row.try_get(0)?,
                status: row.try_get(1)?,
            })
        })
        .await
    }

    /// Forgets `username`'s last logout (account deletion).
    pub async fn delete_last_logout(&self, username: &str) -> Result<(), StorageError> {
        self.delete_where("last_activity", "username", username)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{backend_test, new_user};
    use super::*;

    backend_test! {
        #[tokio::test]
        async fn the_latest_logout_replaces_the_earlier(db) {
            let store = db.store().await;
            store.create_user(&new_user("alice")).await.unwrap();
            assert_eq!(store.get_last_logout("alice").await.unwrap(), None);
            store
                .set_last_logout("alice", 1_000, "Gone fishing")
                .await
                .unwrap();
            store.set_last_logout("alice", 2_000, "").await.unwrap();
            let last = store.get_last_logout("alice").await.unwrap().unwrap();
            assert_eq!(
                last,
                LastLogout {
                    at_ms: 2_000,
                    status: String::new()
                }
            );
            store.delete_last_logout("alice").await.unwrap();
            assert_eq!(store.get_last_logout("alice").await.unwrap(), None);
            let error = store.set_last_logout("ghost", 1, "").await.unwrap_err();
            assert!(
                matches!(&error, StorageError::UnknownUser(u) if u == "ghost"),
                "{error}"
            );
        }
    }
}
