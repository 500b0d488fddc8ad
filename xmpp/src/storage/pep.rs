//! XEP-0163 personal eventing: each account's nodes and items, and the
//! XEP-0115 capabilities cache shared by a cluster's members.

use sqlx::Row;

use super::{StorageError, Store};

/// A stored PEP item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PepItem {
    pub item_id: String,
    /// The payload element, serialised.
    pub payload: String,
    pub stamp_ms: i64,
}

/// The newest item of one node of one owner, with the node's configuration
/// (what the last-item-on-login query returns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastPepItem {
    pub owner: String,
    pub node: String,
    pub config: String,
    pub item: PepItem,
}

fn pep_item(row: &sqlx::any::AnyRow, first: usize) -> Result<PepItem, sqlx::Error> {
    Ok(PepItem {
        item_id: row.try_get(first)?,
        payload: row.try_get(first + 1)?,
        stamp_ms: row.try_get(first + 2)?,
    })
}

/// `$first, $first+1, ...` for `count` values of an `IN (...)` list.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// A node's configuration (JSON), if the node exists.
    pub async fn pep_node(&self, owner: &str, node: &str) -> Result<Option<String>, StorageError> {
        let statement = sqlx::query("SELECT config FROM pep_nodes WHERE owner = $1 AND node = $2")
            .bind(owner)
            .bind(node);
        self.fetch_row(statement, super::first).await
    }

    /// The names of an owner's nodes.
    pub async fn pep_nodes(&self, owner: &str) -> Result<Vec<String>, StorageError> {
        let statement =
            sqlx::query("SELECT node FROM pep_nodes WHERE owner = $1 ORDER BY node").bind(owner);
        self.fetch_rows(statement, super::first).await
    }

    /// An owner's nodes with their configurations (JSON), by name.
    pub async fn pep_nodes_with_config(
        &self,
        owner: &str,
    ) -> Result<Vec<(String, String)>, StorageError> {
        let statement =
            sqlx::query("SELECT node, config FROM pep_nodes WHERE owner = $1 ORDER BY node");
        self.fetch_rows(statement.bind(owner), super::pair).await
    }

    /// Creates a node unless the owner has one of that name or already has
    /// `max_nodes`; true when it was created.
    pub async fn create_pep_node(
        &self,
        owner: &str,
        node: &str,
        config: &str,
        now_ms: i64,
        max_nodes: u32,
    ) -> Result<bool, StorageError> {
        let statement = sqlx::query(
            "INSERT INTO pep_nodes (owner, node, config, created_at_ms) \
             SELECT $1, $2, $3, $4 \
             WHERE (SELECT COUNT(*) FROM pep_nodes WHERE owner = $1) < $5 \
             ON CONFLICT DO NOTHING",
        )
        .bind(owner)
        .bind(node)
        .bind(config)
        .bind(now_ms)
        .bind(i64::from(max_nodes));
        Ok(self.run(statement).await? == 1)
    }

    pub async fn set_pep_config(
        &self,
        owner: &str,
        node: &str,
        config: &str,
    ) -> Result<bool, StorageError> {
        let statement =
            sqlx::query("UPDATE pep_nodes SET config = $3 WHERE owner = $1 AND node = $2")
                .bind(owner)
                .bind(node)
                .bind(config);
        Ok(self.run(statement).await? == 1)
    }

    /// Deletes a node and its items; false when there was none.
    pub async fn delete_pep_node(&self, owner: &str, node: &str) -> Result<bool, StorageError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM pep_items WHERE owner = $1 AND node = $2")
            .bind(owner)
            .bind(node)
            .execute(&mut *tx)
            .await?;
        let deleted = sqlx::query("DELETE FROM pep_nodes WHERE owner = $1 AND node = $2")
            .bind(owner)
            .bind(node)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(deleted == 1)
    }

    /// Stores an item, replacing one with the same id, then keeps only the
    /// newest `keep` items of the node.
    pub async fn publish_pep_item(
        &self,
        owner: &str,
        node: &str,
        item: &PepItem,
        keep: u64,
    ) -> Result<(), StorageError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM pep_items WHERE owner = $1 AND node = $2 AND item_id = $3")
            .bind(owner)
            .bind(node)
            .bind(&item.item_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO pep_items (owner, node, item_id, payload, stamp_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(owner)
        .bind(node)
        .bind(&item.item_id)
        .bind(&item.payload)
        .bind(item.stamp_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM pep_items WHERE owner = $1 AND node = $2 AND id NOT IN \
             (SELECT id FROM pep_items WHERE owner = $1 AND node = $2 ORDER BY id DESC LIMIT $3)",
        )
        .bind(owner)
        .bind(node)
        .bind(i64::try_from(keep).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes one item; false when the node has no item of that id.
    pub async fn retract_pep_item(
        &self,
        owner: &str,
        node: &str,
        item_id: &str,
    ) -> Result<bool, StorageError> {
        let result =
            sqlx::query("DELETE FROM pep_items WHERE owner = $1 AND node = $2 AND item_id = $3")
                .bind(owner)
                .bind(node)
                .bind(item_id)
                .execute(&self.pool)
                .await?;
        Ok(result.rows_affected() == 1)
    }

    pub async fn purge_pep_items(&self, owner: &str, node: &str) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM pep_items WHERE owner = $1 AND node = $2")
            .bind(owner)
            .bind(node)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The newest `max` items of a node, oldest first; only those named in
    /// `ids` when it is not empty.
    pub async fn pep_items(
        &self,
        owner: &str,
        node: &str,
        max: u64,
        ids: &[String],
    ) -> Result<Vec<PepItem>, StorageError> {
        let sql = if ids.is_empty() {
            "SELECT item_id, payload, stamp_ms FROM pep_items \
             WHERE owner = $1 AND node = $2 ORDER BY id DESC LIMIT $3"
                .to_owned()
        } else {
            format!(
                "SELECT item_id, payload, stamp_ms FROM pep_items \
                 WHERE owner = $1 AND node = $2 AND item_id IN ({}) ORDER BY id DESC LIMIT $3",
                placeholders(4, ids.len())
            )
        };
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(owner)
            .bind(node)
            .bind(i64::try_from(max).unwrap_or(i64::MAX));
        for id in ids {
            query = query.bind(id);
        }
        let mut items = self.fetch_rows(query, |row| pep_item(row, 0)).await?;
        items.reverse();
        Ok(items)
    }

    /// The newest item of every node named in `nodes` of every owner in
    /// `owners`: one query for a whole login, however many contacts.
    pub async fn last_pep_items(
        &self,
        owners: &[String],
        nodes: &[String],
    ) -> Result<Vec<LastPepItem>, StorageError> {
        if owners.is_empty() || nodes.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT i.owner, i.node, n.config, i.item_id, i.payload, i.stamp_ms \
             FROM pep_items i JOIN pep_nodes n ON n.owner = i.owner AND n.node = i.node \
             WHERE i.owner IN ({}) AND i.node IN ({}) AND i.id = \
             (SELECT MAX(j.id) FROM pep_items j WHERE j.owner = i.owner AND j.node = i.node)",
            placeholders(1, owners.len()),
            placeholders(1 + owners.len(), nodes.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for value in owners.iter().chain(nodes) {
            query = query.bind(value);
        }
        self.fetch_rows(query, |row| {
            Ok(LastPepItem {
                owner: row.try_get(0)?,
                node: row.try_get(1)?,
                config: row.try_get(2)?,
                item: pep_item(row, 3)?,
            })
        })
        .await
    }

    /// Removes every node and item of an account.
    pub async fn delete_pep_owner(&self, owner: &str) -> Result<(), StorageError> {
        let mut tx = self.begin_write().await?;
        for table in ["pep_items", "pep_nodes"] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE owner = $1"
            )))
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The features a verified capabilities hash stands for.
    pub async fn caps_features(&self, ver: &str) -> Result<Option<String>, StorageError> {
        let statement = sqlx::query("SELECT features FROM caps_features WHERE ver = $1").bind(ver);
        self.fetch_row(statement, super::first).await
    }

    /// Remembers a verified hash (a hash names one feature set, so a second
    /// writer writes the same thing and is ignored).
    pub async fn store_caps_features(&self, ver: &str, features: &str) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO caps_features (ver, features) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(ver)
        .bind(features)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testing::backend_test;

    fn item(id: &str, payload: &str) -> PepItem {
        PepItem {
            item_id: id.to_owned(),
            payload: payload.to_owned(),
            stamp_ms: 1,
        }
    }

    backend_test! {
        #[tokio::test]
        async fn nodes_items_and_the_newest_item_of_many_owners(db) {
            let store = db.store().await;
            assert!(
                store
                    .create_pep_node("alice", "n", "{}", 1, 10)
                    .await
                    .unwrap()
            );
            assert!(
                !store
                    .create_pep_node("alice", "n", "{}", 1, 10)
                    .await
                    .unwrap()
            );
            assert!(
                store
                    .create_pep_node("bob", "n", "{}", 1, 10)
                    .await
                    .unwrap()
            );
            for (id, payload) in [("1", "<a/>"), ("2", "<b/>"), ("1", "<c/>")] {
                store
                    .publish_pep_item("alice", "n", &item(id, payload), 10)
                    .await
                    .unwrap();
            }
            let items = store.pep_items("alice", "n", 10, &[]).await.unwrap();
            let ids: Vec<&str> = items.iter().map(|i| i.item_id.as_str()).collect();
            assert_eq!(ids, ["2", "1"], "a re-published id moves to the end");
            let only = store
                .pep_items("alice", "n", 10, &["2".to_owned()])
                .await
                .unwrap();
            assert_eq!(only, vec![item("2", "<b/>")]);
            store
                .publish_pep_item("bob", "n", &item("x", "<x/>"), 1)
                .await
                .unwrap();
            let mut last = store
                .last_pep_items(&["alice".into(), "bob".into()], &["n".into()])
                .await
                .unwrap();
            last.sort_by(|a, b| a.owner.cmp(&b.owner));
            assert_eq!(last.len(), 2);
            assert_eq!(last[0].item, item("1", "<c/>"));
            assert_eq!(last[1].item, item("x", "<x/>"));
            assert!(store.delete_pep_node("alice", "n").await.unwrap());
            assert!(
                store
                    .pep_items("alice", "n", 10, &[])
                    .await
                    .unwrap()
                    .is_empty()
            );
            store.delete_pep_owner("bob").await.unwrap();
            assert!(store.pep_nodes("bob").await.unwrap().is_empty());
        }
    }

    backend_test! {
        #[tokio::test]
        async fn items_beyond_the_node_limit_are_dropped_and_node_count_is_capped(db) {
            let store = db.store().await;
            assert!(
                store
                    .create_pep_node("alice", "a", "{}", 1, 2)
                    .await
                    .unwrap()
            );
            assert!(
                store
                    .create_pep_node("alice", "b", "{}", 1, 2)
                    .await
                    .unwrap()
            );
            assert!(
                !store
                    .create_pep_node("alice", "c", "{}", 1, 2)
                    .await
                    .unwrap()
            );
            for id in ["1", "2", "3"] {
                store
                    .publish_pep_item("alice", "a", &item(id, "<p/>"), 2)
                    .await
                    .unwrap();
            }
            let items = store.pep_items("alice", "a", 10, &[]).await.unwrap();
            assert_eq!(items.len(), 2);
            assert_eq!(items[1].item_id, "3");
            store.store_caps_features("sha-1 x", "a\nb").await.unwrap();
            store.store_caps_features("sha-1 x", "other").await.unwrap();
            assert_eq!(
                store.caps_features("sha-1 x").await.unwrap().as_deref(),
                Some("a\nb")
            );
        }
    }
}
