//! RFC 6121 roster storage: one row per relation between a user and a contact,
//! holding the subscription state as plain flags. The subscription state
//! machine lives with the roster protocol code; this module only stores its
//! result.
//!
//! An item's groups are kept in one column as `<byte length>:<name>` pieces,
//! which round-trips any group name (any character, including separators)
//! without a second table and its extra rows on bulk loads.

use sqlx::Arguments;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::bulk::BulkInsert;
use super::{StorageError, Store, flag};

/// The stored form of one roster relation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRosterItem {
    /// The contact's bare JID.
    pub contact: String,
    /// The handle the user gave the contact.
    pub name: Option<String>,
    pub groups: Vec<String>,
    /// The user receives the contact's presence.
    pub sub_to: bool,
    /// The contact receives the user's presence.
    pub sub_from: bool,
    /// The user asked to subscribe and the contact has not answered.
    pub pending_out: bool,
    /// The contact asked to subscribe and the user has not answered.
    pub pending_in: bool,
    /// The user approved a subscription request before it arrived.
    pub preapproved: bool,
    /// False when the row only records a pending inbound request from a
    /// contact the user has not added to their roster.
    pub in_roster: bool,
}

impl StoredRosterItem {
    /// A contact in the roster with a subscription both ways, nothing
    /// pending, no name and no groups.
    pub fn mutual(contact: String) -> StoredRosterItem {
        StoredRosterItem {
            contact,
            name: None,
            groups: Vec::new(),
            sub_to: true,
            sub_from: true,
            pending_out: false,
            pending_in: false,
            preapproved: false,
            in_roster: true,
        }
    }
}

const SELECT_ITEM: &str = "SELECT contact, name, group_names, \
     CAST(sub_to AS INTEGER), CAST(sub_from AS INTEGER), CAST(pending_out AS INTEGER), \
     CAST(pending_in AS INTEGER), CAST(preapproved AS INTEGER), CAST(in_roster AS INTEGER) \
     FROM roster_items";

const INSERT_HEAD: &str = "INSERT INTO roster_items (owner, contact, name, group_names, \
     sub_to, sub_from, pending_out, pending_in, preapproved, in_roster)";

impl Store {
    /// All of `owner`'s roster rows, ordered by contact (byte order).
    pub async fn get_roster(&self, owner: &str) -> Result<Vec<StoredRosterItem>, StorageError> {
        let _timer = self.timings.start(super::StoreOp::GetRoster);
        let sql = format!("{SELECT_ITEM} WHERE owner = $1 ORDER BY contact");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(owner)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| roster_item(owner, row)).collect()
    }

    /// `owner`'s row for `contact`, if any.
    pub async fn get_roster_item(
        &self,
        owner: &str,
        contact: &str,
    ) -> Result<Option<StoredRosterItem>, StorageError> {
        let _timer = self.timings.start(super::StoreOp::GetRoster);
        let sql = format!("{SELECT_ITEM} WHERE owner = $1 AND contact = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(owner)
            .bind(contact)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| roster_item(owner, &row)).transpose()
    }

    /// Inserts or replaces `owner`'s row for `item.contact`, groups included,
    /// and raises the roster's version in the same transaction; returns the
    /// new version. An unknown owner is [`StorageError::UnknownUser`].
    pub async fn put_roster_item(
        &self,
        owner: &str,
        item: &StoredRosterItem,
    ) -> Result<i64, StorageError> {
        let _timer = self.timings.start(super::StoreOp::WriteRoster);
        let sql = format!(
            "{INSERT_HEAD} VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (owner, contact) DO UPDATE SET \
             name = excluded.name, group_names = excluded.group_names, \
             sub_to = excluded.sub_to, sub_from = excluded.sub_from, \
             pending_out = excluded.pending_out, pending_in = excluded.pending_in, \
             preapproved = excluded.preapproved, in_roster = excluded.in_roster"
        );
        let mut args = sqlx::any::AnyArguments::default();
        bind_item(&mut args, owner, item).map_err(sqlx::Error::Encode)?;
        let mut tx = self.begin_write().await?;
        sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
            .execute(&mut *tx)
            .await
            .map_err(|e| StorageError::from_owned_write(e, owner))?;
        let version = raise_roster_version(&mut tx, owner).await?;
        tx.commit().await?;
        Ok(version)
    }

    /// Removes `owner`'s row for `contact`: the roster's new version, or
    /// `None` when there was no such row (nothing changed).
    pub async fn delete_roster_item(
        &self,
        owner: &str,
        contact: &str,
    ) -> Result<Option<i64>, StorageError> {
        let _timer = self.timings.start(super::StoreOp::WriteRoster);
        let mut tx = self.begin_write().await?;
        let result = sqlx::query("DELETE FROM roster_items WHERE owner = $1 AND contact = $2")
            .bind(owner)
            .bind(contact)
            .execute(&mut *tx)
            .await?;
        if result.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        let version = raise_roster_version(&mut tx, owner).await?;
        tx.commit().await?;
        Ok(Some(version))
    }

    /// The version of `owner`'s roster (RFC 6121 2.6): 0 until it first
    /// changes.
    pub async fn get_roster_version(&self, owner: &str) -> Result<i64, StorageError> {
        let _timer = self.timings.start(super::StoreOp::GetRoster);
        let version = sqlx::query_scalar("SELECT version FROM roster_versions WHERE owner = $1")
            .bind(owner)
            .fetch_optional(&self.pool)
            .await?;
        Ok(version.unwrap_or(0))
    }

    /// Forgets `owner`'s roster version (account deletion).
    pub async fn delete_roster_version(&self, owner: &str) -> Result<(), StorageError> {
        self.delete_where("roster_versions", "owner", owner).await?;
        Ok(())
    }

    /// Inserts many `(owner, item)` rows in one transaction, for provisioning:
    /// all or none. A row that already exists, or an owner that does not,
    /// fails the batch.
    pub async fn insert_roster_items(
        &self,
        items: &[(String, StoredRosterItem)],
    ) -> Result<(), StorageError> {
        if items.is_empty() {
            return Ok(());
        }
        let insert = BulkInsert::new(self.backend, INSERT_HEAD, 10);
        let mut tx = self.begin_write().await?;
        insert
            .run(&mut tx, items, |args, (owner, item)| {
                bind_item(args, owner, item)
            })
            .await?;
        tx.commit().await?;
        self.checkpoint_after_bulk().await;
        Ok(())
    }
}

/// Raises `owner`'s roster version inside a roster write's transaction and
/// returns it. The first version is the time in milliseconds, not 1: an
/// account deleted and created again under the same name then never
/// repeats a version a client of the old account may have cached.
pub(super) async fn raise_roster_version(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    owner: &str,
) -> Result<i64, StorageError> {
    let version = sqlx::query_scalar(
        "INSERT INTO roster_versions (owner, version) VALUES ($1, $2) \
         ON CONFLICT (owner) DO UPDATE SET version = roster_versions.version + 1 \
         RETURNING version",
    )
    .bind(owner)
    .bind(super::now_ms())
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| StorageError::from_owned_write(e, owner))?;
    Ok(version)
}

fn bind_item(
    args: &mut sqlx::any::AnyArguments,
    owner: &str,
    item: &StoredRosterItem,
) -> Result<(), sqlx::error::BoxDynError> {
    args.add(owner)?;
    args.add(item.contact.as_str())?;
    args.add(item.name.as_deref())?;
    args.add(encode_groups(&item.groups))?;
    args.add(item.sub_to)?;
    args.add(item.sub_from)?;
    args.add(item.pending_out)?;
    args.add(item.pending_in)?;
    args.add(item.preapproved)?;
    args.add(item.in_roster)
}

fn roster_item(owner: &str, row: &AnyRow) -> Result<StoredRosterItem, StorageError> {
    let contact: String = row.try_get(0)?;
    let encoded: String = row.try_get(2)?;
    let groups = decode_groups(&encoded).ok_or_else(|| StorageError::Corrupt {
        what: "roster groups",
        key: format!("{owner} -> {contact}"),
    })?;
    Ok(StoredRosterItem {
        name: row.try_get(1)?,
        groups,
        sub_to: flag(row, 3)?,
        sub_from: flag(row, 4)?,
        pending_out: flag(row, 5)?,
        pending_in: flag(row, 6)?,
        preapproved: flag(row, 7)?,
        in_roster: flag(row, 8)?,
        contact,
    })
}

fn encode_groups(groups: &[String]) -> String {
    let mut out = String::with_capacity(groups.iter().map(|g| g.len() + 4).sum());
    for group in groups {
        out.push_str(&group.len().to_string());
        out.push(':');
        out.push_str(group);
    }
    out
}

/// Inverse of [`encode_groups`]; None when `encoded` is not in that form.
fn decode_groups(mut encoded: &str) -> Option<Vec<String>> {
    let mut groups = Vec::new();
    while !encoded.is_empty() {
        let (len, rest) = encoded.split_once(':')?;
        if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let len: usize = len.parse().ok()?;
        groups.push(rest.get(..len)?.to_owned());
        encoded = rest.get(len..)?;
    }
    Some(groups)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{backend_test, new_user};
    use super::*;

    fn item(contact: &str) -> StoredRosterItem {
        StoredRosterItem {
            contact: contact.to_owned(),
            name: None,
            groups: vec![],
            sub_to: false,
            sub_from: false,
            pending_out: false,
            pending_in: false,
            preapproved: false,
            in_roster: true,
        }
    }

    #[test]
    fn groups_round_trip_any_characters() {
        let cases: Vec<Vec<String>> = vec![
            vec![],
            vec![String::new()],
            vec!["Friends".into(), "Work".into()],
            vec![
                "3:ab".into(),
                "a,b;c\n\"d\"".into(),
                "Ünïcødé 🐦".into(),
                ":".into(),
            ],
        ];
        for groups in cases {
            let encoded = encode_groups(&groups);
            assert_eq!(decode_groups(&encoded), Some(groups));
        }
        assert_eq!(
            encode_groups(&["Friends".into(), "Work".into()]),
            "7:Friends4:Work"
        );
    }

    #[test]
    fn corrupt_groups_are_rejected() {
        for bad in ["x", "3:ab", "a:b", ":", "-1:", "+1:a", "1:é"] {
            assert_eq!(decode_groups(bad), None, "{bad:?}");
        }
    }

    backend_test! {
        #[tokio::test]
        async fn put_get_update_delete(db) {
            let store = db.store().await;
            store.create_user(&new_user("alice")).await.unwrap();
            assert!(store.get_roster("alice").await.unwrap().is_empty());

            let mut bob = item("bob@example.com");
            bob.name = Some("Bob".into());
            bob.groups = vec!["Friends".into(), "a:b|c".into()];
            bob.sub_to = true;
            bob.pending_in = true;
            let mut carol = item("carol@example.com");
            carol.in_roster = false;
            carol.pending_in = true;
            carol.preapproved = true;
            let mut aaron = item("aaron@other.org");
            aaron.sub_from = true;
            aaron.pending_out = true;
            for it in [&bob, &carol, &aaron] {
                store.put_roster_item("alice", it).await.unwrap();
            }

            let roster = store.get_roster("alice").await.unwrap();
            assert_eq!(roster, vec![aaron.clone(), bob.clone(), carol.clone()]);
            assert_eq!(
                store
                    .get_roster_item("alice", "bob@example.com")
                    .await
                    .unwrap(),
                Some(bob)
            );
            assert_eq!(
                store
                    .get_roster_item("alice", "nobody@example.com")
                    .await
                    .unwrap(),
                None
            );

            // Upsert replaces every field, groups included.
            let mut carol2 = item("carol@example.com");
            carol2.name = Some("Carol".into());
            carol2.groups = vec!["Work".into()];
            carol2.sub_to = true;
            carol2.sub_from = true;
            store.put_roster_item("alice", &carol2).await.unwrap();
            let got = store
                .get_roster_item("alice", "carol@example.com")
                .await
                .unwrap();
            assert_eq!(got, Some(carol2.clone()));
            carol2.groups.clear();
            carol2.name = None;
            store.put_roster_item("alice", &carol2).await.unwrap();
            let got = store
                .get_roster_item("alice", "carol@example.com")
                .await
                .unwrap();
            assert_eq!(got, Some(carol2));
            assert_eq!(store.get_roster("alice").await.unwrap().len(), 3);

            assert!(
                store
                    .delete_roster_item("alice", "bob@example.com")
                    .await
                    .unwrap()
                    .is_some()
            );
            assert_eq!(
                store
                    .delete_roster_item("alice", "bob@example.com")
                    .await
                    .unwrap(),
                None
            );
            assert_eq!(store.get_roster("alice").await.unwrap().len(), 2);

            let err = store
                .put_roster_item("ghost", &item("x@y"))
                .await
                .unwrap_err();
            assert!(
                matches!(&err, StorageError::UnknownUser(u) if u == "ghost"),
                "{err}"
            );
        }
    }

    backend_test! {
        #[tokio::test]
        async fn every_write_raises_the_version_and_a_no_op_does_not(db) {
            let store = db.store().await;
            store.create_user(&new_user("alice")).await.unwrap();
            store.create_user(&new_user("bob")).await.unwrap();
            assert_eq!(store.get_roster_version("alice").await.unwrap(), 0);

            let first = store.put_roster_item("alice", &item("x@y")).await.unwrap();
            assert!(first > 0);
            assert_eq!(store.get_roster_version("alice").await.unwrap(), first);
            let second = store.put_roster_item("alice", &item("x@y")).await.unwrap();
            assert_eq!(second, first + 1);
            let third = store
                .delete_roster_item("alice", "x@y")
                .await
                .unwrap()
                .unwrap();
            assert_eq!(third, second + 1);
            assert_eq!(
                store.delete_roster_item("alice", "x@y").await.unwrap(),
                None
            );
            assert_eq!(store.get_roster_version("alice").await.unwrap(), third);
            // Versions are per user.
            assert_eq!(store.get_roster_version("bob").await.unwrap(), 0);

            store.delete_roster_version("alice").await.unwrap();
            assert_eq!(store.get_roster_version("alice").await.unwrap(), 0);
        }
    }

    backend_test! {
        #[tokio::test]
        async fn bulk_insert_and_duplicate(db) {
            let store = db.store().await;
            let users: Vec<_> = (1..=100).map(|i| new_user(&format!("p{i}"))).collect();
            store.insert_users(&users).await.unwrap();
            // 100 users x 40 contacts = 4,000 rows: a full statement (3,276 rows)
            // and a short tail.
            let mut rows = Vec::new();
            for u in 1..=100 {
                for c in 1..=40 {
                    let mut it = item(&format!("p{}@example.com", (u + c - 1) % 100 + 1));
                    it.sub_to = true;
                    it.sub_from = true;
                    it.groups = vec![format!("g{}", c % 3)];
                    rows.push((format!("p{u}"), it));
                }
            }
            store.insert_roster_items(&rows).await.unwrap();
            for owner in ["p7", "p100"] {
                let roster = store.get_roster(owner).await.unwrap();
                assert_eq!(roster.len(), 40);
                let mut expected: Vec<_> = rows
                    .iter()
                    .filter(|(o, _)| o == owner)
                    .map(|(_, i)| i.clone())
                    .collect();
                expected.sort_by(|a, b| a.contact.cmp(&b.contact));
                assert_eq!(roster, expected);
            }

            // A batch whose last row already exists leaves nothing behind.
            let batch = vec![
                ("p1".to_owned(), item("new1@example.com")),
                ("p2".to_owned(), item("new2@example.com")),
                rows[5].clone(),
            ];
            assert!(store.insert_roster_items(&batch).await.is_err());
            assert_eq!(
                store
                    .get_roster_item("p1", "new1@example.com")
                    .await
                    .unwrap(),
                None
            );
            assert_eq!(store.get_roster("p1").await.unwrap().len(), 40);

            // Unknown owner.
            let batch = vec![("ghost".to_owned(), item("new1@example.com"))];
            assert!(store.insert_roster_items(&batch).await.is_err());
            store.insert_roster_items(&[]).await.unwrap();
        }
    }
}
