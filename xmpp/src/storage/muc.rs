//! XEP-0045 persistent rooms: configuration (opaque JSON), subject and
//! affiliations (opaque names), written whole at each change.

use super::{StorageError, Store};

/// A stored room as the group chat module wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRoom {
    pub room: String,
    pub config: String,
    pub subject: String,
    pub subject_by: String,
    /// (bare JID, affiliation name), ordered by JID.
    pub affiliations: Vec<(String, String)>,
    /// (bare JID, reserved nick), for JIDs among the affiliations.
    pub nicks: Vec<(String, String)>,
}

impl Store {
    /// Creates or replaces a room with its affiliations, in one transaction.
    pub async fn muc_save_room(&self, room: &StoredRoom, now_ms: i64) -> Result<(), StorageError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO muc_rooms (room, config, subject, subject_by, updated_ms) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (room) DO UPDATE SET config = excluded.config, \
             subject = excluded.subject, subject_by = excluded.subject_by, \
             updated_ms = excluded.updated_ms",
        )
        .bind(&room.room)
        .bind(&room.config)
        .bind(&room.subject)
        .bind(&room.subject_by)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM muc_affiliations WHERE room = $1")
            .bind(&room.room)
            .execute(&mut *tx)
            .await?;
        for (jid, affiliation) in &room.affiliations {
            let nick = room
                .nicks
                .iter()
                .find(|(holder, _)| holder == jid)
                .map_or("", |(_, nick)| nick.as_str());
            sqlx::query(
                "INSERT INTO muc_affiliations (room, jid, affiliation, nick) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&room.room)
            .bind(jid)
            .bind(affiliation)
            .bind(nick)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn muc_load_room(&self, room: &str) -> Result<Option<StoredRoom>, StorageError> {
        let row: Option<(String, String, String)> =
            sqlx::query_as("SELECT config, subject, subject_by FROM muc_rooms WHERE room = $1")
                .bind(room)
                .fetch_optional(&self.pool)
                .await?;
        let Some((config, subject, subject_by)) = row else {
            return Ok(None);
        };
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT jid, affiliation, nick FROM muc_affiliations WHERE room = $1 ORDER BY jid",
        )
        .bind(room)
        .fetch_all(&self.pool)
        .await?;
        let nicks = rows
            .iter()
            .filter(|(_, _, nick)| !nick.is_empty())
            .map(|(jid, _, nick)| (jid.clone(), nick.clone()))
            .collect();
        let affiliations = rows
            .into_iter()
            .map(|(jid, affiliation, _)| (jid, affiliation))
            .collect();
        Ok(Some(StoredRoom {
            room: room.to_owned(),
            config,
            subject,
            subject_by,
            affiliations,
            nicks,
        }))
    }

    /// Every stored room with its configuration, ordered by name.
    pub async fn muc_rooms(&self) -> Result<Vec<(String, String)>, StorageError> {
        let rows = sqlx::query_as("SELECT room, config FROM muc_rooms ORDER BY room")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows)
    }

    /// Removes a room and its affiliations.
    pub async fn muc_delete_room(&self, room: &str) -> Result<(), StorageError> {
        self.delete_where("muc_rooms", "room", room).await?;
        Ok(())
    }

    /// Removes a deleted account's affiliations in every room.
    pub async fn muc_delete_user(&self, jid: &str) -> Result<(), StorageError> {
        self.delete_where("muc_affiliations", "jid", jid).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::backend_test;
    use super::*;

    fn room(name: &str, affiliations: &[(&str, &str)]) -> StoredRoom {
        StoredRoom {
            room: name.to_owned(),
            config: "{\"persistent\":true}".to_owned(),
            subject: "tea".to_owned(),
            subject_by: "boss".to_owned(),
            affiliations: affiliations
                .iter()
                .map(|(j, a)| ((*j).to_owned(), (*a).to_owned()))
                .collect(),
            nicks: affiliations
                .first()
                .map(|(j, _)| vec![((*j).to_owned(), "boss".to_owned())])
                .unwrap_or_default(),
        }
    }

    backend_test! {
        #[tokio::test]
        async fn rooms_are_saved_whole_listed_and_removed(db) {
            let store = db.store().await;
            let first = room("a@conference.localhost", &[("x@localhost", "owner"), ("y@localhost", "outcast")]);
            store.muc_save_room(&first, 1).await.unwrap();
            assert_eq!(store.muc_load_room("a@conference.localhost").await.unwrap(), Some(first));
            let second = room("a@conference.localhost", &[("x@localhost", "owner")]);
            store.muc_save_room(&second, 2).await.unwrap();
            assert_eq!(store.muc_load_room("a@conference.localhost").await.unwrap(), Some(second));
            assert_eq!(store.muc_rooms().await.unwrap().len(), 1);
            store.muc_delete_user("x@localhost").await.unwrap();
            let left = store.muc_load_room("a@conference.localhost").await.unwrap().unwrap();
            assert!(left.affiliations.is_empty());
            store.muc_delete_room("a@conference.localhost").await.unwrap();
            assert_eq!(store.muc_load_room("a@conference.localhost").await.unwrap(), None);
            assert!(store.muc_rooms().await.unwrap().is_empty());
        }
    }
}
