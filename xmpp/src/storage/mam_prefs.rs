//! XEP-0313 archiving preferences: which chats an account's archive keeps.

use sqlx::Row;

use super::{StorageError, Store};

/// An account's preferences as stored; the module gives them meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredArchivePrefs {
    /// `always`, `never` or `roster`.
    pub default_mode: String,
    /// Bare JIDs whose chats are always archived.
    pub always: Vec<String>,
    /// Bare JIDs whose chats are never archived.
    pub never: Vec<String>,
}

/// JIDs cannot hold a line break, so one per line is unambiguous.
fn join(jids: &[String]) -> String {
    jids.join("\n")
}

fn split(text: &str) -> Vec<String> {
    text.lines()
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Store {
    /// The preferences `owner` set; `None` when they never set any.
    pub async fn archive_prefs(
        &self,
        owner: &str,
    ) -> Result<Option<StoredArchivePrefs>, StorageError> {
        let row = sqlx::query(
            "SELECT default_mode, always_jids, never_jids FROM mam_prefs WHERE owner = $1",
        )
        .bind(owner)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let always: String = row.try_get(1)?;
        let never: String = row.try_get(2)?;
        Ok(Some(StoredArchivePrefs {
            default_mode: row.try_get(0)?,
            always: split(&always),
            never: split(&never),
        }))
    }

    /// Replaces `owner`'s preferences.
    pub async fn set_archive_prefs(
        &self,
        owner: &str,
        prefs: &StoredArchivePrefs,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO mam_prefs (owner, default_mode, always_jids, never_jids) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (owner) DO UPDATE SET default_mode = excluded.default_mode, \
             always_jids = excluded.always_jids, never_jids = excluded.never_jids",
        )
        .bind(owner)
        .bind(&prefs.default_mode)
        .bind(join(&prefs.always))
        .bind(join(&prefs.never))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets `owner`'s preferences (the account is deleted).
    pub async fn delete_archive_prefs(&self, owner: &str) -> Result<(), StorageError> {
        self.delete_where("mam_prefs", "owner", owner).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::backend_test;
    use super::*;

    backend_test! {
        #[tokio::test]
        async fn prefs_are_kept_replaced_and_deleted(db) {
            let store = db.store().await;
            assert_eq!(store.archive_prefs("alice").await.unwrap(), None);
            let first = StoredArchivePrefs {
                default_mode: "roster".into(),
                always: vec!["bob@x".into(), "carol@x".into()],
                never: vec!["spam@y".into()],
            };
            store.set_archive_prefs("alice", &first).await.unwrap();
            assert_eq!(store.archive_prefs("alice").await.unwrap(), Some(first));
            let second = StoredArchivePrefs {
                default_mode: "never".into(),
                always: vec![],
                never: vec![],
            };
            store.set_archive_prefs("alice", &second).await.unwrap();
            assert_eq!(store.archive_prefs("alice").await.unwrap(), Some(second));
            assert_eq!(store.archive_prefs("bob").await.unwrap(), None);
            store.delete_archive_prefs("alice").await.unwrap();
            assert_eq!(store.archive_prefs("alice").await.unwrap(), None);
        }
    }
}
