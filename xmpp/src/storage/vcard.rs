//! XEP-0054 vCards: one serialised `<vCard/>` per account, with the
//! XEP-0153 hash of its photo kept beside it so presence can carry the hash
//! without parsing the vCard.

use sqlx::Row;

use super::{StorageError, Store, now_ms};

/// A stored vCard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVcard {
    /// The `<vCard xmlns='vcard-temp'/>` element, serialised.
    pub xml: String,
    /// SHA-1 (lower-case hex) of the photo, empty when there is none.
    pub photo_hash: String,
}

impl Store {
    /// Replaces `username`'s vCard. An unknown user is
    /// [`StorageError::UnknownUser`].
    pub async fn set_vcard(
        &self,
        username: &str,
        xml: &str,
        photo_hash: &str,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO vcards (username, vcard, photo_hash, updated_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (username) DO UPDATE SET \
             vcard = excluded.vcard, photo_hash = excluded.photo_hash, updated_ms = excluded.updated_ms",
        )
        .bind(username)
        .bind(xml)
        .bind(photo_hash)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(|e| StorageError::from_owned_write(e, username))?;
        Ok(())
    }

    /// `username`'s vCard, if they ever set one.
    pub async fn get_vcard(&self, username: &str) -> Result<Option<StoredVcard>, StorageError> {
        let statement = sqlx::query("SELECT vcard, photo_hash FROM vcards WHERE username = $1");
        self.fetch_row(statement.bind(username), |row| {
            Ok(StoredVcard {
                xml: row.try_get(0)?,
                photo_hash: row.try_get(1)?,
            })
        })
        .await
    }

    /// The XEP-0153 photo hash alone (`None`: no vCard at all), read for
    /// every available presence a client sends without one.
    pub async fn get_vcard_photo_hash(
        &self,
        username: &str,
    ) -> Result<Option<String>, StorageError> {
        let hash = sqlx::query_scalar("SELECT photo_hash FROM vcards WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        Ok(hash)
    }

    /// Removes `username`'s vCard (account deletion).
    pub async fn delete_vcard(&self, username: &str) -> Result<(), StorageError> {
        self.delete_where("vcards", "username", username).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{backend_test, new_user};
    use super::*;

    backend_test! {
        #[tokio::test]
        async fn set_replace_read_and_delete(db) {
            let store = db.store().await;
            store.create_user(&new_user("alice")).await.unwrap();
            assert_eq!(store.get_vcard("alice").await.unwrap(), None);
            assert_eq!(store.get_vcard_photo_hash("alice").await.unwrap(), None);

            let first = "<vCard xmlns=\"vcard-temp\"><FN>Alice &amp; ü</FN></vCard>";
            store.set_vcard("alice", first, "").await.unwrap();
            let second = "<vCard xmlns=\"vcard-temp\"><FN>Alice</FN></vCard>";
            store.set_vcard("alice", second, "abc123").await.unwrap();
            let stored = store.get_vcard("alice").await.unwrap().unwrap();
            assert_eq!(stored.xml, second);
            assert_eq!(stored.photo_hash, "abc123");
            assert_eq!(
                store
                    .get_vcard_photo_hash("alice")
                    .await
                    .unwrap()
                    .as_deref(),
                Some("abc123")
            );

            store.delete_vcard("alice").await.unwrap();
            assert_eq!(store.get_vcard("alice").await.unwrap(), None);

            let error = store.set_vcard("ghost", first, "").await.unwrap_err();
            assert!(
                matches!(&error, StorageError::UnknownUser(u) if u == "ghost"),
                "{error}"
            );
        }
    }

    backend_test! {
        #[tokio::test]
        async fn deleting_the_account_removes_the_vcard(db) {
            let store = db.store().await;
            store.create_user(&new_user("alice")).await.unwrap();
            store.set_vcard("alice", "<vCard/>", "").await.unwrap();
            store.delete_user("alice", "example.com").await.unwrap();
            store.create_user(&new_user("alice")).await.unwrap();
            assert_eq!(store.get_vcard("alice").await.unwrap(), None);
        }
    }
}
