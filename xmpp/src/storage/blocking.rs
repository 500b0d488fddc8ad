//! XEP-0191 block lists: the JIDs each user blocks, one row per JID. The
//! JIDs are stored as given (prepared by the caller); matching a sender
//! against them is the blocking module's business.

use super::{StorageError, Store};

impl Store {
    /// The JIDs `owner` blocks, in byte order.
    pub async fn get_blocklist(&self, owner: &str) -> Result<Vec<String>, StorageError> {
        let jids = sqlx::query_scalar("SELECT jid FROM blocked_jids WHERE owner = $1 ORDER BY jid")
            .bind(owner)
            .fetch_all(&self.pool)
            .await?;
        Ok(jids)
    }

    /// Adds `jids` to `owner`'s block list, all or none; JIDs already on it
    /// are kept. An unknown owner is [`StorageError::UnknownUser`].
    pub async fn block_jids(&self, owner: &str, jids: &[String]) -> Result<(), StorageError> {
        let mut tx = self.begin_write().await?;
        for jid in jids {
            sqlx::query(
                "INSERT INTO blocked_jids (owner, jid) VALUES ($1, $2) \
                 ON CONFLICT (owner, jid) DO NOTHING",
            )
            .bind(owner)
            .bind(jid.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|error| StorageError::from_owned_write(error, owner))?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Removes `jids` from `owner`'s block list; JIDs not on it are ignored.
    pub async fn unblock_jids(&self, owner: &str, jids: &[String]) -> Result<(), StorageError> {
        let mut tx = self.begin_write().await?;
        for jid in jids {
            sqlx::query("DELETE FROM blocked_jids WHERE owner = $1 AND jid = $2")
                .bind(owner)
                .bind(jid.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Empties `owner`'s block list (unblock all, and account deletion).
    pub async fn clear_blocklist(&self, owner: &str) -> Result<(), StorageError> {
        self.delete_where("blocked_jids", "owner", owner).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{backend_test, new_user};
    use super::*;

    fn jids(list: &[&str]) -> Vec<String> {
        list.iter().map(|jid| (*jid).to_owned()).collect()
    }

    backend_test! {
        #[tokio::test]
        async fn block_unblock_and_clear(db) {
            let store = db.store().await;
            store.create_user(&new_user("alice")).await.unwrap();
            store.create_user(&new_user("bob")).await.unwrap();
            assert!(store.get_blocklist("alice").await.unwrap().is_empty());

            let blocked = jids(&["romeo@montague.net", "example.org", "a@b/c"]);
            store.block_jids("alice", &blocked).await.unwrap();
            // Blocking again is not an error and adds nothing twice.
            store
                .block_jids("alice", &jids(&["example.org"]))
                .await
                .unwrap();
            store.block_jids("bob", &jids(&["x@y"])).await.unwrap();
            assert_eq!(
                store.get_blocklist("alice").await.unwrap(),
                ["a@b/c", "example.org", "romeo@montague.net"]
            );

            store
                .unblock_jids("alice", &jids(&["example.org", "never@blocked"]))
                .await
                .unwrap();
            assert_eq!(
                store.get_blocklist("alice").await.unwrap(),
                ["a@b/c", "romeo@montague.net"]
            );

            store.clear_blocklist("alice").await.unwrap();
            assert!(store.get_blocklist("alice").await.unwrap().is_empty());
            assert_eq!(store.get_blocklist("bob").await.unwrap(), ["x@y"]);
        }
    }

    backend_test! {
        #[tokio::test]
        async fn an_unknown_owner_is_named(db) {
            let store = db.store().await;
            let error = store
                .block_jids("ghost", &jids(&["x@y"]))
                .await
                .unwrap_err();
            assert!(
                matches!(error, StorageError::UnknownUser(ref user) if user == "ghost"),
                "{error}"
            );
        }
    }

    backend_test! {
        #[tokio::test]
        async fn deleting_the_account_removes_its_list(db) {
            let store = db.store().await;
            store.create_user(&new_user("alice")).await.unwrap();
            store.block_jids("alice", &jids(&["x@y"])).await.unwrap();
            assert!(store.delete_user("alice", "example.com").await.unwrap());
            store.create_user(&new_user("alice")).await.unwrap();
            assert!(store.get_blocklist("alice").await.unwrap().is_empty());
        }
    }
}
