//! XEP-0049 private XML storage: one element per account and namespace,
//! under a limit on what one account keeps in all namespaces together.

use super::{StorageError, Store};

/// The outcome of [`Store::set_private`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrivateWrite {
    Stored,
    /// The account would keep `total_bytes`, more than allowed; nothing was
    /// changed.
    OverLimit {
        total_bytes: u64,
    },
}

impl Store {
    /// Stores each `(namespace, serialised element)` of one request for
    /// `username`, replacing what each namespace held, all or nothing: if
    /// the account would then keep more than `max_total_bytes`, nothing
    /// changes. An unknown user is [`StorageError::UnknownUser`].
    pub async fn set_private(
        &self,
        username: &str,
        elements: &[(&str, &str)],
        max_total_bytes: u64,
    ) -> Result<PrivateWrite, StorageError> {
        let mut tx = self.begin_write().await?;
        for (namespace, element) in elements {
            let size = i64::try_from(element.len()).unwrap_or(i64::MAX);
            sqlx::query(
                "INSERT INTO private_xml (username, namespace, element, size_bytes) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (username, namespace) DO UPDATE SET \
                 element = excluded.element, size_bytes = excluded.size_bytes",
            )
            .bind(username)
            .bind(*namespace)
            .bind(*element)
            .bind(size)
            .execute(&mut *tx)
            .await
            .map_err(|e| StorageError::from_owned_write(e, username))?;
        }
        // Summed inside the transaction, so two concurrent writes of one
        // account cannot both pass the limit on SQLite (writers are
        // serialised). On PostgreSQL (read committed) each sees its own rows
        // and the committed others, so requests of one account at the same
        // instant can overshoot by what they add together.
        let total: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(size_bytes), 0) AS BIGINT) FROM private_xml WHERE username = $1",
        )
        .bind(username)
        .fetch_one(&mut *tx)
        .await?;
        let total_bytes = u64::try_from(total).unwrap_or(0);
        if total_bytes > max_total_bytes {
            tx.rollback().await?;
            return Ok(PrivateWrite::OverLimit { total_bytes });
        }
        tx.commit().await?;
        Ok(PrivateWrite::Stored)
    }

    /// The element `username` stored under `namespace`, serialised.
    pub async fn get_private(
        &self,
        username: &str,
        namespace: &str,
    ) -> Result<Option<String>, StorageError> {
        let element = sqlx::query_scalar(
            "SELECT element FROM private_xml WHERE username = $1 AND namespace = $2",
        )
        .bind(username)
        .bind(namespace)
        .fetch_optional(&self.pool)
        .await?;
        Ok(element)
    }

    /// Removes everything `username` stored (account deletion).
    pub async fn delete_private(&self, username: &str) -> Result<(), StorageError> {
        self.delete_where("private_xml", "username", username)
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
        async fn one_element_per_namespace_replaced_on_set(db) {
            let store = db.store().await;
            store.create_user(&new_user("alice")).await.unwrap();
            store.create_user(&new_user("bob")).await.unwrap();
            assert_eq!(store.get_private("alice", "urn:a").await.unwrap(), None);
            let written = store
                .set_private(
                    "alice",
                    &[("urn:a", "<a xmlns=\"urn:a\">1</a>"), ("urn:b", "<b/>")],
                    1000,
                )
                .await
                .unwrap();
            assert_eq!(written, PrivateWrite::Stored);
            store
                .set_private("alice", &[("urn:a", "<a xmlns=\"urn:a\">2</a>")], 1000)
                .await
                .unwrap();
            assert_eq!(
                store
                    .get_private("alice", "urn:a")
                    .await
                    .unwrap()
                    .as_deref(),
                Some("<a xmlns=\"urn:a\">2</a>")
            );
            assert_eq!(
                store
                    .get_private("alice", "urn:b")
                    .await
                    .unwrap()
                    .as_deref(),
                Some("<b/>")
            );
            assert_eq!(store.get_private("bob", "urn:a").await.unwrap(), None);

            store.delete_private("alice").await.unwrap();
            assert_eq!(store.get_private("alice", "urn:a").await.unwrap(), None);
            assert_eq!(store.get_private("alice", "urn:b").await.unwrap(), None);

            let error = store
                .set_private("ghost", &[("urn:a", "<a/>")], 1000)
                .await
                .unwrap_err();
            assert!(
                matches!(&error, StorageError::UnknownUser(u) if u == "ghost"),
                "{error}"
            );
        }
    }

    backend_test! {
        #[tokio::test]
        async fn over_the_limit_changes_nothing(db) {
            let store = db.store().await;
            store.create_user(&new_user("alice")).await.unwrap();
            let ten = "<a>123</a>";
            assert_eq!(ten.len(), 10);
            store
                .set_private("alice", &[("urn:a", ten)], 25)
                .await
                .unwrap();
            store
                .set_private("alice", &[("urn:b", ten)], 25)
                .await
                .unwrap();
            // A third namespace would make 30 bytes; replacing one is fine.
            let refused = store
                .set_private("alice", &[("urn:a", "<a>1</a>"), ("urn:c", ten)], 25)
                .await
                .unwrap();
            assert_eq!(refused, PrivateWrite::OverLimit { total_bytes: 28 });
            assert_eq!(
                store
                    .get_private("alice", "urn:a")
                    .await
                    .unwrap()
                    .as_deref(),
                Some(ten)
            );
            assert_eq!(store.get_private("alice", "urn:c").await.unwrap(), None);
            let replaced = store
                .set_private("alice", &[("urn:a", "<a>12345</a>")], 25)
                .await
                .unwrap();
            assert_eq!(replaced, PrivateWrite::Stored);
        }
    }
}
