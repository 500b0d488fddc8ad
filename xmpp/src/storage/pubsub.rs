//! XEP-0060 pub/sub state: nodes (configuration as opaque JSON), affiliations,
//! subscriptions and items. Any node of a cluster serves any request from
//! here, so nothing about a pub/sub node lives only in one process.
//!
//! Items keep publish order in their row id: a re-published item id replaces
//! the old row with a new one, and `max_items` trimming keeps the newest rows.

use sqlx::Row;

use super::{StorageError, Store};

/// A pub/sub node as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredNode {
    pub name: String,
    /// The configuration as the pub/sub module serialised it.
    pub config: String,
}

/// One subscription of a JID (bare or full) to a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSubscription {
    pub node: String,
    pub jid: String,
    pub subid: String,
    pub state: String,
    /// The pubsub#deliver option: false pauses notifications.
    pub deliver: bool,
}

/// One published item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredItem {
    pub item_id: String,
    pub publisher: String,
    /// The item's payload serialised, or empty for an item without one.
    pub payload: String,
    pub stamp_ms: i64,
}

fn subscription(row: &sqlx::any::AnyRow) -> Result<StoredSubscription, sqlx::Error> {
    Ok(StoredSubscription {
        node: row.try_get(0)?,
        jid: row.try_get(1)?,
        subid: row.try_get(2)?,
        state: row.try_get(3)?,
        deliver: super::flag(row, 4)?,
    })
}

fn item(row: &sqlx::any::AnyRow) -> Result<StoredItem, sqlx::Error> {
    Ok(StoredItem {
        item_id: row.try_get(0)?,
        publisher: row.try_get(1)?,
        payload: row.try_get(2)?,
        stamp_ms: row.try_get(3)?,
    })
}

impl Store {
    /// Creates a node owned by `owner` (a bare JID). False when a node of
    /// that name already exists.
    pub async fn create_pubsub_node(
        &self,
        name: &str,
        config: &str,
        owner: Option<&str>,
    ) -> Result<bool, StorageError> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO pubsub_nodes (name, config, created_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(config)
        .bind(super::now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if inserted && let Some(owner) = owner {
            sqlx::query(
                "INSERT INTO pubsub_affiliations (node, jid, affiliation) VALUES ($1, $2, 'owner')",
            )
            .bind(name)
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    pub async fn pubsub_node(&self, name: &str) -> Result<Option<StoredNode>, StorageError> {
        let statement = sqlx::query("SELECT name, config FROM pubsub_nodes WHERE name = $1");
        self.fetch_row(statement.bind(name), |row| {
            Ok(StoredNode {
                name: row.try_get(0)?,
                config: row.try_get(1)?,
            })
        })
        .await
    }

    /// All node names, sorted.
    pub async fn pubsub_nodes(&self) -> Result<Vec<String>, StorageError> {
        Ok(
            sqlx::query_scalar("SELECT name FROM pubsub_nodes ORDER BY name")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Replaces a node's configuration; false when there is no such node.
    pub async fn set_pubsub_config(&self, name: &str, config: &str) -> Result<bool, StorageError> {
        let statement = sqlx::query("UPDATE pubsub_nodes SET config = $2 WHERE name = $1")
            .bind(name)
            .bind(config);
        Ok(self.run(statement).await? == 1)
    }

    /// Deletes a node with its affiliations, subscriptions and items.
    pub async fn delete_pubsub_node(&self, name: &str) -> Result<bool, StorageError> {
        let statement = sqlx::query("DELETE FROM pubsub_nodes WHERE name = $1").bind(name);
        Ok(self.run(statement).await? == 1)
    }

    pub async fn pubsub_affiliation(
        &self,
        node: &str,
        jid: &str,
    ) -> Result<Option<String>, StorageError> {
        Ok(sqlx::query_scalar(
            "SELECT affiliation FROM pubsub_affiliations WHERE node = $1 AND jid = $2",
        )
        .bind(node)
        .bind(jid)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Sets (or with `None` removes) a JID's affiliation with a node.
    pub async fn set_pubsub_affiliation(
        &self,
        node: &str,
        jid: &str,
        affiliation: Option<&str>,
    ) -> Result<(), StorageError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM pubsub_affiliations WHERE node = $1 AND jid = $2")
            .bind(node)
            .bind(jid)
            .execute(&mut *tx)
            .await?;
        if let Some(affiliation) = affiliation {
            sqlx::query(
                "INSERT INTO pubsub_affiliations (node, jid, affiliation) VALUES ($1, $2, $3)",
            )
            .bind(node)
            .bind(jid)
            .bind(affiliation)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// `(jid, affiliation)` for every affiliated JID of a node.
    pub async fn pubsub_node_affiliations(
        &self,
        node: &str,
    ) -> Result<Vec<(String, String)>, StorageError> {
        let statement = sqlx::query(
            "SELECT jid, affiliation FROM pubsub_affiliations WHERE node = $1 ORDER BY jid",
        )
        .bind(node);
        self.fetch_rows(statement, super::pair).await
    }

    /// `(node, affiliation)` for every node a bare JID is affiliated with.
    pub async fn pubsub_user_affiliations(
        &self,
        jid: &str,
    ) -> Result<Vec<(String, String)>, StorageError> {
        let statement = sqlx::query(
            "SELECT node, affiliation FROM pubsub_affiliations WHERE jid = $1 ORDER BY node",
        )
        .bind(jid);
        self.fetch_rows(statement, super::pair).await
    }

    pub async fn pubsub_subscription(
        &self,
        node: &str,
        jid: &str,
    ) -> Result<Option<StoredSubscription>, StorageError> {
        let statement = sqlx::query(
            "SELECT node, jid, subid, state, CAST(deliver AS INTEGER) FROM pubsub_subscriptions WHERE node = $1 AND jid = $2",
        )
        .bind(node)
        .bind(jid);
        self.fetch_row(statement, subscription).await
    }

    /// Creates or replaces a subscription.
    pub async fn set_pubsub_subscription(
        &self,
        sub: &StoredSubscription,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO pubsub_subscriptions (node, jid, subid, state, deliver) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (node, jid) DO UPDATE \
             SET subid = excluded.subid, state = excluded.state, deliver = excluded.deliver",
        )
        .bind(&sub.node)
        .bind(&sub.jid)
        .bind(&sub.subid)
        .bind(&sub.state)
        .bind(sub.deliver)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes a subscription; false when there was none.
    pub async fn delete_pubsub_subscription(
        &self,
        node: &str,
        jid: &str,
    ) -> Result<bool, StorageError> {
        let statement =
            sqlx::query("DELETE FROM pubsub_subscriptions WHERE node = $1 AND jid = $2")
                .bind(node)
                .bind(jid);
        Ok(self.run(statement).await? == 1)
    }

    /// Every subscription to a node.
    pub async fn pubsub_node_subscriptions(
        &self,
        node: &str,
    ) -> Result<Vec<StoredSubscription>, StorageError> {
        let statement = sqlx::query(
            "SELECT node, jid, subid, state, CAST(deliver AS INTEGER) FROM pubsub_subscriptions WHERE node = $1 ORDER BY jid",
        )
        .bind(node);
        self.fetch_rows(statement, subscription).await
    }

    /// The subscriptions of a user: of the bare JID and of any of its full JIDs.
    pub async fn pubsub_user_subscriptions(
        &self,
        bare: &str,
    ) -> Result<Vec<StoredSubscription>, StorageError> {
        let statement = sqlx::query(
            "SELECT node, jid, subid, state, CAST(deliver AS INTEGER) FROM pubsub_subscriptions \
             WHERE jid = $1 OR (jid > $2 AND jid < $3) ORDER BY node, jid",
        )
        .bind(bare)
        // Full JIDs of `bare` sort between "bare/" and "bare0" ('0' follows '/').
        .bind(format!("{bare}/"))
        .bind(format!("{bare}0"));
        self.fetch_rows(statement, subscription).await
    }

    /// Stores an item, replacing one with the same id, then keeps only the
    /// newest `max_items` of the node (all when `None`).
    pub async fn publish_pubsub_item(
        &self,
        node: &str,
        item: &StoredItem,
        max_items: Option<u64>,
    ) -> Result<(), StorageError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM pubsub_items WHERE node = $1 AND item_id = $2")
            .bind(node)
            .bind(&item.item_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO pubsub_items (node, item_id, publisher, payload, stamp_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(node)
        .bind(&item.item_id)
        .bind(&item.publisher)
        .bind(&item.payload)
        .bind(item.stamp_ms)
        .execute(&mut *tx)
        .await?;
        if let Some(max) = max_items {
            sqlx::query(
                "DELETE FROM pubsub_items WHERE node = $1 AND id NOT IN \
                 (SELECT id FROM pubsub_items WHERE node = $1 ORDER BY id DESC LIMIT $2)",
            )
            .bind(node)
            .bind(i64::try_from(max).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Removes one item; false when the node has no item of that id.
    pub async fn retract_pubsub_item(
        &self,
        node: &str,
        item_id: &str,
    ) -> Result<bool, StorageError> {
        let statement = sqlx::query("DELETE FROM pubsub_items WHERE node = $1 AND item_id = $2")
            .bind(node)
            .bind(item_id);
        Ok(self.run(statement).await? == 1)
    }

    /// Removes all items of a node.
    pub async fn purge_pubsub_items(&self, node: &str) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM pubsub_items WHERE node = $1")
            .bind(node)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The newest `max` items of a node (all when `None`), oldest first.
    pub async fn pubsub_items(
        &self,
        node: &str,
        max: Option<u64>,
    ) -> Result<Vec<StoredItem>, StorageError> {
        let statement = sqlx::query(
            "SELECT item_id, publisher, payload, stamp_ms FROM pubsub_items \
             WHERE node = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(node)
        .bind(max.map_or(i64::MAX, |max| i64::try_from(max).unwrap_or(i64::MAX)));
        let mut items = self.fetch_rows(statement, item).await?;
        items.reverse();
        Ok(items)
    }

    /// One item by id.
    pub async fn pubsub_item(
        &self,
        node: &str,
        item_id: &str,
    ) -> Result<Option<StoredItem>, StorageError> {
        let statement = sqlx::query(
            "SELECT item_id, publisher, payload, stamp_ms FROM pubsub_items \
             WHERE node = $1 AND item_id = $2",
        )
        .bind(node)
        .bind(item_id);
        self.fetch_row(statement, item).await
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::backend_test;
    use super::*;

    fn stored(id: &str) -> StoredItem {
        StoredItem {
            item_id: id.to_owned(),
            publisher: "a@example.com".to_owned(),
            payload: format!("<p xmlns=\"urn:t\">{id}</p>"),
            stamp_ms: 1,
        }
    }

    backend_test! {
        #[tokio::test]
        async fn nodes_items_and_trimming(db) {
            let store = db.store().await;
            assert!(
                store
                    .create_pubsub_node("n", "{}", Some("a@example.com"))
                    .await
                    .unwrap()
            );
            assert!(!store.create_pubsub_node("n", "{}", None).await.unwrap());
            assert_eq!(
                store
                    .pubsub_affiliation("n", "a@example.com")
                    .await
                    .unwrap()
                    .as_deref(),
                Some("owner")
            );
            for id in ["1", "2", "3", "2"] {
                store
                    .publish_pubsub_item("n", &stored(id), Some(2))
                    .await
                    .unwrap();
            }
            let ids: Vec<String> = store
                .pubsub_items("n", None)
                .await
                .unwrap()
                .into_iter()
                .map(|item| item.item_id)
                .collect();
            assert_eq!(ids, ["3", "2"], "re-published 2 is the newest");
            let newest = store.pubsub_items("n", Some(1)).await.unwrap();
            assert_eq!(newest[0].item_id, "2");
            assert!(store.retract_pubsub_item("n", "3").await.unwrap());
            assert!(!store.retract_pubsub_item("n", "3").await.unwrap());
            store.purge_pubsub_items("n").await.unwrap();
            assert!(store.pubsub_items("n", None).await.unwrap().is_empty());
            assert!(store.delete_pubsub_node("n").await.unwrap());
            assert!(store.pubsub_node("n").await.unwrap().is_none());
        }
    }

    backend_test! {
        #[tokio::test]
        async fn subscriptions_of_a_user_include_full_jids_only_of_that_user(db) {
            let store = db.store().await;
            store.create_pubsub_node("n", "{}", None).await.unwrap();
            for jid in ["a@x", "a@x/r", "a@xy", "ab@x"] {
                store
                    .set_pubsub_subscription(&StoredSubscription {
                        node: "n".to_owned(),
                        jid: jid.to_owned(),
                        subid: "s".to_owned(),
                        state: "subscribed".to_owned(),
                        deliver: true,
                    })
                    .await
                    .unwrap();
            }
            let jids: Vec<String> = store
                .pubsub_user_subscriptions("a@x")
                .await
                .unwrap()
                .into_iter()
                .map(|sub| sub.jid)
                .collect();
            assert_eq!(jids, ["a@x", "a@x/r"]);
            store.delete_pubsub_node("n").await.unwrap();
            assert!(
                store
                    .pubsub_node_subscriptions("n")
                    .await
                    .unwrap()
                    .is_empty(),
                "cascade"
            );
        }
    }
}
