//! XEP-0313 message archives: each account's sent and received chats, in
//! archive order, paged by XEP-0059 result set management.

use std::sync::atomic::Ordering::Relaxed;

use sqlx::{AnyConnection, Connection, Executor, Row};

use super::{SQLITE_CONNECTION_PRAGMAS, StorageError, Store};

/// One archived message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedMessage {
    /// The XEP-0359 id the archive gave it.
    pub stanza_id: String,
    pub stamp_ms: i64,
    /// The message as routed, serialised.
    pub stanza: String,
}

/// A query on one archive (XEP-0313 4.1 fields, XEP-0059 paging).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveQuery {
    /// The other party's bare JID.
    pub with: Option<String>,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    /// Only messages after (before) this archive id.
    pub after: Option<String>,
    pub before: Option<String>,
    /// The page at the end of the range, not the start (`<before/>`).
    pub from_end: bool,
    /// Only these archive ids (XEP-0313 `ids`); empty: no such filter.
    pub ids: Vec<String>,
    pub max: u32,
}

/// The first and last message of an archive (XEP-0313 metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveEnds {
    pub first: ArchivedMessage,
    pub last: ArchivedMessage,
}

/// One page of results, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub messages: Vec<ArchivedMessage>,
    /// No more messages in the range beyond this page, in the paging direction.
    pub complete: bool,
}

/// A message to archive (see [`Store::archive_messages`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewArchived {
    /// Whose archive: a username, or a room's bare JID.
    pub owner: String,
    pub stanza_id: String,
    /// The other party's bare JID.
    pub with: String,
    pub stamp_ms: i64,
    pub stanza: String,
}

/// Archives a batch of any size with one statement whose text never
/// changes: the rows go in as one JSON array of `[owner, stanza_id, with,
/// stamp_ms, stanza]` arrays, bound as a single parameter and unpacked by the
/// database. The driver prepares it once per connection and the batch is one
/// round trip, where a multi-row INSERT of one placeholder group per row was
/// prepared again for every batch size (and on SQLite bound its `$N`
/// parameters by a name lookup that is linear in the parameter count).
/// `ORDER BY` keeps the archive order of the batch.
///
/// On SQLite the batch goes into `mam_staged`, which has no secondary
/// index: its rows are appended in rowid order, so consecutive batches share
/// pages and a commit writes about the rows' own size to the WAL. Written
/// straight into `mam_messages`, every row changed a leaf of each of its
/// three owner-keyed indexes, pages no other row of the batch shared: about
/// 12 KiB of WAL per row, and a third of the archive's CPU.
const STAGE_SQLITE: &str = "INSERT INTO mam_staged (owner, stanza_id, with_jid, stamp_ms, stanza) \
     SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4 \
     FROM json_each($1) ORDER BY key";
/// Moves the staged rows into the archive in one transaction, each owner's
/// in the order they were staged; ids an archive holds already are kept as
/// they are. Thousands of rows at a time, in owner order: the rows of one
/// owner go in one after the other, so each index leaf is changed once per
/// move rather than once per row, and each owner's region of the indexes
/// is visited once (archive ids only need to be ordered within an archive,
/// which every query, page and id lookup is confined to). `BEGIN IMMEDIATE`
/// takes the write lock first: no row can be staged between the copy and
/// the delete.
/// `OR IGNORE` rather than an upsert's `ON CONFLICT DO NOTHING`: the same
/// rows are skipped (the only constraint a staged row can break is
/// `UNIQUE (owner, stanza_id)`), but an upsert inside a transaction keeps a
/// statement journal of every page it changes. `tests/bench/archive_schema.py`
/// measures both choices, in µs per row moved: 12.8 with the upsert against
/// 9.4 with `OR IGNORE`, and 11.5 in staging order against 9.0 to 9.6 in
/// owner order (a busier run).
const MOVE_STAGED_SQLITE: &str = "BEGIN IMMEDIATE; \
     INSERT OR IGNORE INTO mam_messages (owner, stanza_id, with_jid, stamp_ms, stanza) \
     SELECT owner, stanza_id, with_jid, stamp_ms, stanza FROM mam_staged ORDER BY owner, id; \
     DELETE FROM mam_staged; \
     COMMIT;";
const INSERT_POSTGRES: &str = "INSERT INTO mam_messages (owner, stanza_id, with_jid, stamp_ms, stanza) \
     SELECT r ->> 0, r ->> 1, r ->> 2, (r ->> 3)::BIGINT, r ->> 4 \
     FROM json_array_elements($1::JSON) WITH ORDINALITY AS batch (r, n) ORDER BY n \
     ON CONFLICT DO NOTHING";

/// The batch as the JSON array the INSERT unpacks.
fn batch_json(messages: &[NewArchived]) -> String {
    let rows: Vec<(&str, &str, &str, i64, &str)> = messages
        .iter()
        .map(|m| {
            (
                m.owner.as_str(),
                m.stanza_id.as_str(),
                m.with.as_str(),
                m.stamp_ms,
                m.stanza.as_str(),
            )
        })
        .collect();
    serde_json::to_string(&rows).expect("strings and integers serialise")
}

/// SQLite page cache of the archive's own connection. A batch touches a
/// leaf of each of the table's three indexes for every owner in it, spread
/// over the whole archive; with the pool's 512 KiB these were read back
/// from the file for nearly every row, and a large batch spilled dirty
/// pages into the WAL before its commit.
const ARCHIVE_CACHE_PRAGMA: &str = "PRAGMA cache_size = -16384;";

/// On SQLite, archive batches are written on a connection of their own
/// (outside the pool, opened on first use), with a page cache sized for
/// the index pages they touch; the pool's connections stay small.
pub(super) struct ArchiveConnection {
    /// The SQLite URL; `None` on PostgreSQL, which writes through the pool.
    url: Option<String>,
    conn: tokio::sync::Mutex<Option<AnyConnection>>,
    /// Rows this store staged since its last move (other nodes sharing the
    /// file stage their own): when to move them in the background.
    staged: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for ArchiveConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveConnection")
            .field("sqlite", &self.url.is_some())
            .finish_non_exhaustive()
    }
}

impl ArchiveConnection {
    pub(super) fn new(url: Option<String>) -> ArchiveConnection {
        ArchiveConnection {
            url,
            conn: tokio::sync::Mutex::new(None),
            staged: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    pub(super) async fn close(&self) {
        if let Some(conn) = self.conn.lock().await.take() {
            let _ = conn.close().await;
        }
    }
}

impl Store {
    /// Archives many messages with one statement: all or nothing, one round
    /// trip to the database for the batch, durable when this returns. Ids an
    /// archive holds already are kept as they are. On SQLite the rows are
    /// staged (see [`STAGE_SQLITE`]): every read of an archive sees them, and
    /// [`Store::move_staged_archive`] moves them into the archive proper.
    pub async fn archive_messages(&self, messages: &[NewArchived]) -> Result<(), StorageError> {
        if messages.is_empty() {
            return Ok(());
        }
        let rows = batch_json(messages);
        if self.archive.url.is_none() {
            sqlx::query(INSERT_POSTGRES)
                .bind(rows)
                .execute(&self.pool)
                .await?;
            return Ok(());
        }
        let mut slot = self.archive_connection().await?;
        let conn = slot.as_mut().expect("opened");
        let written = sqlx::query(STAGE_SQLITE).bind(rows).execute(conn).await;
        if written.is_err() {
            // Opened afresh next time, whatever state this one is in.
            *slot = None;
        }
        written?;
        self.archive.staged.fetch_add(messages.len(), Relaxed);
        Ok(())
    }

    /// Rows this store staged since its last move (SQLite; always 0 on
    /// PostgreSQL, which writes straight into the archive).
    pub fn staged_archive_rows(&self) -> usize {
        self.archive.staged.load(Relaxed)
    }

    /// Moves every staged row (whoever staged it) into the archive, in one
    /// transaction. Does nothing on PostgreSQL.
    pub async fn move_staged_archive(&self) -> Result<(), StorageError> {
        if self.archive.url.is_none() {
            return Ok(());
        }
        let mut slot = self.archive_connection().await?;
        let conn = slot.as_mut().expect("opened");
        let moved = conn.execute(sqlx::raw_sql(MOVE_STAGED_SQLITE)).await;
        if moved.is_err() {
            // Closing it rolls back a transaction left open.
            *slot = None;
        }
        moved?;
        self.archive.staged.store(0, Relaxed);
        Ok(())
    }

    /// Before any read or change of archived rows: moves the staged rows,
    /// if there are any, so that whatever was acknowledged is where the
    /// query looks. Checked in the database, not in this store's count:
    /// nodes sharing a SQLite file stage into the same table.
    async fn settle_archive(&self) -> Result<(), StorageError> {
        if self.archive.url.is_none() {
            return Ok(());
        }
        let staged = sqlx::query("SELECT 1 FROM mam_staged LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        if staged.is_some() {
            self.move_staged_archive().await?;
        }
        Ok(())
    }

    /// The archive's own SQLite connection, opened on first use; held (and
    /// so every archive write serialised) while the guard lives.
    async fn archive_connection(
        &self,
    ) -> Result<tokio::sync::MutexGuard<'_, Option<AnyConnection>>, StorageError> {
        let url = self.archive.url.as_deref().expect("SQLite");
        let mut slot = self.archive.conn.lock().await;
        if slot.is_none() {
            let mut conn = AnyConnection::connect(url).await?;
            conn.execute(sqlx::raw_sql(SQLITE_CONNECTION_PRAGMAS))
                .await?;
            conn.execute(sqlx::raw_sql(ARCHIVE_CACHE_PRAGMA)).await?;
            *slot = Some(conn);
        }
        Ok(slot)
    }

    /// Archives a message; an id the archive holds already is kept as it is.
    pub async fn archive_message(
        &self,
        owner: &str,
        stanza_id: &str,
        with: &str,
        stamp_ms: i64,
        stanza: &str,
    ) -> Result<(), StorageError> {
        self.archive_messages(&[NewArchived {
            owner: owner.to_owned(),
            stanza_id: stanza_id.to_owned(),
            with: with.to_owned(),
            stamp_ms,
            stanza: stanza.to_owned(),
        }])
        .await
    }

    /// Puts `stanza` in place of an archived message (a XEP-0425
    /// tombstone); `false` when the archive has no message with that id.
    pub async fn replace_archived_message(
        &self,
        owner: &str,
        stanza_id: &str,
        stanza: &str,
    ) -> Result<bool, StorageError> {
        self.settle_archive().await?;
        let done =
            sqlx::query("UPDATE mam_messages SET stanza = $3 WHERE owner = $1 AND stanza_id = $2")
                .bind(owner)
                .bind(stanza_id)
                .bind(stanza)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The row of an archive id, for paging; `None` when the archive has no
    /// such message.
    async fn archive_row(&self, owner: &str, stanza_id: &str) -> Result<Option<i64>, StorageError> {
        let statement =
            sqlx::query("SELECT id FROM mam_messages WHERE owner = $1 AND stanza_id = $2")
                .bind(owner)
                .bind(stanza_id);
        self.fetch_row(statement, super::first).await
    }

    /// A page of the archive; `Ok(None)` when `after` or `before` names a
    /// message the archive does not hold (XEP-0313 7.1: item-not-found).
    pub async fn query_archive(
        &self,
        owner: &str,
        query: &ArchiveQuery,
    ) -> Result<Option<Page>, StorageError> {
        self.settle_archive().await?;
        let mut after_row = None;
        let mut before_row = None;
        for (id, slot) in [
            (&query.after, &mut after_row),
            (&query.before, &mut before_row),
        ] {
            if let Some(id) = id {
                match self.archive_row(owner, id).await? {
                    Some(row) => *slot = Some(row),
                    None => return Ok(None),
                }
            }
        }
        let backwards = query.from_end || before_row.is_some();
        let mut conditions = vec!["owner = $1".to_owned()];
        let mut next = 2;
        let mut placeholder = |condition: &str| {
            conditions.push(condition.replace('?', &format!("${next}")));
            next += 1;
        };
        if query.with.is_some() {
            placeholder("with_jid = ?");
        }
        if query.start_ms.is_some() {
            placeholder("stamp_ms >= ?");
        }
        if query.end_ms.is_some() {
            placeholder("stamp_ms <= ?");
        }
        if after_row.is_some() {
            placeholder("id > ?");
        }
        if before_row.is_some() {
            placeholder("id < ?");
        }
        for _ in &query.ids {
            placeholder("?");
        }
        if !query.ids.is_empty() {
            let listed = conditions.split_off(conditions.len() - query.ids.len());
            conditions.push(format!("stanza_id IN ({})", listed.join(", ")));
        }
        let sql = format!(
            "SELECT stanza_id, stamp_ms, stanza FROM mam_messages WHERE {} ORDER BY id {} LIMIT ${next}",
            conditions.join(" AND "),
            if backwards { "DESC" } else { "ASC" }
        );
        let mut statement = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(owner);
        if let Some(with) = &query.with {
            statement = statement.bind(with);
        }
        for value in [query.start_ms, query.end_ms, after_row, before_row]
            .into_iter()
            .flatten()
        {
            statement = statement.bind(value);
        }
        for id in &query.ids {
            statement = statement.bind(id);
        }
        // One more than asked says whether the range goes on.
        let statement = statement.bind(i64::from(query.max) + 1);
        let mut messages = self
            .fetch_rows(statement, |row| {
                Ok(ArchivedMessage {
                    stanza_id: row.try_get(0)?,
                    stamp_ms: row.try_get(1)?,
                    stanza: row.try_get(2)?,
                })
            })
            .await?;
        let complete = messages.len() <= query.max as usize;
        messages.truncate(query.max as usize);
        if backwards {
            messages.reverse();
        }
        Ok(Some(Page { messages, complete }))
    }

    /// The oldest and newest message of an archive, if it has any.
    pub async fn archive_ends(&self, owner: &str) -> Result<Option<ArchiveEnds>, StorageError> {
        self.settle_archive().await?;
        let mut ends = Vec::new();
        for order in ["ASC", "DESC"] {
            let sql = format!(
                "SELECT stanza_id, stamp_ms, stanza FROM mam_messages WHERE owner = $1 \
                 ORDER BY id {order} LIMIT 1"
            );
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(owner)
                .fetch_optional(&self.pool)
                .await?;
            let Some(row) = row else { return Ok(None) };
            ends.push(ArchivedMessage {
                stanza_id: row.try_get(0)?,
                stamp_ms: row.try_get(1)?,
                stanza: row.try_get(2)?,
            });
        }
        let last = ends.pop().expect("two ends");
        let first = ends.pop().expect("two ends");
        Ok(Some(ArchiveEnds { first, last }))
    }

    /// Removes an account's archive.
    pub async fn delete_archive(&self, owner: &str) -> Result<(), StorageError> {
        self.settle_archive().await?;
        sqlx::query("DELETE FROM mam_messages WHERE owner = $1")
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Removes messages archived before `stamp_ms`, in every archive.
    pub async fn expire_archive(&self, stamp_ms: i64) -> Result<u64, StorageError> {
        self.settle_archive().await?;
        let result = sqlx::query("DELETE FROM mam_messages WHERE stamp_ms < $1")
            .bind(stamp_ms)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }
}

#[cfg(test)]
impl Store {
    /// Rows in one of the archive's tables (tests).
    pub(crate) async fn rows_in(&self, table: &'static str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_one(&self.pool)
            .await
            .unwrap();
        row.try_get(0).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testing::backend_test;

    fn ids(page: &Page) -> Vec<&str> {
        page.messages.iter().map(|m| m.stanza_id.as_str()).collect()
    }

    backend_test! {
        #[tokio::test]
        async fn pages_forwards_backwards_and_by_correspondent(db) {
            let store = db.store().await;
            for n in 1..=5 {
                let with = if n % 2 == 0 { "bob@x" } else { "carol@x" };
                store
                    .archive_message("alice", &format!("m{n}"), with, n * 1000, "<message/>")
                    .await
                    .unwrap();
            }
            store
                .archive_message("alice", "m1", "bob@x", 1, "<dup/>")
                .await
                .unwrap();
            let query = |f: fn(&mut ArchiveQuery)| {
                let mut query = ArchiveQuery {
                    max: 2,
                    ..ArchiveQuery::default()
                };
                f(&mut query);
                query
            };
            let first = store
                .query_archive("alice", &query(|_| {}))
                .await
                .unwrap()
                .unwrap();
            assert_eq!((ids(&first), first.complete), (vec!["m1", "m2"], false));
            let next = store
                .query_archive("alice", &query(|q| q.after = Some("m4".into())))
                .await
                .unwrap()
                .unwrap();
            assert_eq!((ids(&next), next.complete), (vec!["m5"], true));
            let last = store
                .query_archive("alice", &query(|q| q.from_end = true))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(ids(&last), ["m4", "m5"]);
            let earlier = store
                .query_archive("alice", &query(|q| q.before = Some("m4".into())))
                .await
                .unwrap()
                .unwrap();
            assert_eq!((ids(&earlier), earlier.complete), (vec!["m2", "m3"], false));
            let bob = store
                .query_archive("alice", &query(|q| q.with = Some("bob@x".into())))
                .await
                .unwrap()
                .unwrap();
            assert_eq!((ids(&bob), bob.complete), (vec!["m2", "m4"], true));
            let window = store
                .query_archive(
                    "alice",
                    &query(|q| {
                        q.start_ms = Some(2000);
                        q.end_ms = Some(3000);
                    }),
                )
                .await
                .unwrap()
                .unwrap();
            assert_eq!(ids(&window), ["m2", "m3"]);
            let listed = store
                .query_archive("alice", &query(|q| q.ids = vec!["m5".into(), "m1".into()]))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(ids(&listed), ["m1", "m5"]);
            let ends = store.archive_ends("alice").await.unwrap().unwrap();
            assert_eq!(
                (ends.first.stanza_id.as_str(), ends.last.stanza_id.as_str()),
                ("m1", "m5")
            );
            let unknown = store
                .query_archive("alice", &query(|q| q.after = Some("nope".into())))
                .await
                .unwrap();
            assert!(unknown.is_none());
            assert_eq!(
                first.messages[0].stanza, "<message/>",
                "a duplicate id is ignored"
            );
            assert_eq!(store.expire_archive(2500).await.unwrap(), 2);
            store.delete_archive("alice").await.unwrap();
            let empty = store
                .query_archive("alice", &query(|_| {}))
                .await
                .unwrap()
                .unwrap();
            assert!(empty.messages.is_empty() && empty.complete);
        }
    }

    backend_test! {
        #[tokio::test]
        async fn a_batch_is_archived_in_order_and_verbatim(db) {
            let store = db.store().await;
            let message = |n: usize, id: String| NewArchived {
                owner: if n % 2 == 0 { "alice" } else { "bob" }.to_owned(),
                stanza_id: id,
                with: "carol@x".to_owned(),
                stamp_ms: n as i64,
                stanza: format!("<message id='{n}'/>"),
            };
            // Hundreds of rows, and an id alice has already.
            store
                .archive_message("alice", "a0", "carol@x", 0, "<first/>")
                .await
                .unwrap();
            let batch: Vec<NewArchived> = (0..250)
                .map(|n| message(n, format!("{}{n}", if n % 2 == 0 { 'a' } else { 'b' })))
                .collect();
            store.archive_messages(&batch).await.unwrap();
            store.archive_messages(&[]).await.unwrap();
            let all = ArchiveQuery {
                max: 1000,
                ..ArchiveQuery::default()
            };
            let alice = store.query_archive("alice", &all).await.unwrap().unwrap();
            assert_eq!(alice.messages.len(), 125);
            assert_eq!(alice.messages[0].stanza, "<first/>", "a duplicate id is ignored");
            let expected: Vec<String> = (0..250).step_by(2).map(|n| format!("a{n}")).collect();
            assert_eq!(ids(&alice), expected);
            let bob = store.query_archive("bob", &all).await.unwrap().unwrap();
            assert_eq!(bob.messages.len(), 125);
            assert_eq!(bob.messages[124].stanza, "<message id='249'/>");
            // What JSON escapes comes back as it went in.
            let awkward = "<message><body>\"quoted\" \\ back\nslash\t\u{1}é 🐦 \u{2028}</body></message>";
            store
                .archive_messages(&[NewArchived {
                    owner: "carol".to_owned(),
                    stanza_id: "c\"1".to_owned(),
                    with: "dave@x".to_owned(),
                    stamp_ms: i64::MAX,
                    stanza: awkward.to_owned(),
                }])
                .await
                .unwrap();
            let carol = store.query_archive("carol", &all).await.unwrap().unwrap();
            assert_eq!(carol.messages.len(), 1);
            let stored = &carol.messages[0];
            assert_eq!(
                (stored.stanza_id.as_str(), stored.stamp_ms, stored.stanza.as_str()),
                ("c\"1", i64::MAX, awkward)
            );
        }
    }

    async fn rows_in(store: &Store, table: &'static str) -> i64 {
        store.rows_in(table).await
    }

    #[tokio::test]
    async fn staged_rows_are_read_at_once_from_any_node_and_kept_over_a_restart() {
        crate::storage::testing::on_sqlite(|db| async move {
            let message = |n: i64| NewArchived {
                owner: "alice".to_owned(),
                stanza_id: format!("m{n}"),
                with: "bob@x".to_owned(),
                stamp_ms: n,
                stanza: format!("<message id='{n}'/>"),
            };
            let all = ArchiveQuery {
                max: 100,
                ..ArchiveQuery::default()
            };
            let node = db.store().await;
            node.archive_messages(&[message(1), message(2)])
                .await
                .unwrap();
            node.archive_message("alice", "m1", "bob@x", 9, "<dup/>")
                .await
                .unwrap();
            assert_eq!(rows_in(&node, "mam_staged").await, 3, "staged, not moved");
            assert_eq!(rows_in(&node, "mam_messages").await, 0);
            assert_eq!(node.staged_archive_rows(), 3);
            // Another node on the same file reads what this one staged.
            let other = db.store().await;
            let page = other.query_archive("alice", &all).await.unwrap().unwrap();
            assert_eq!(ids(&page), ["m1", "m2"]);
            assert_eq!(
                page.messages[0].stanza, "<message id='1'/>",
                "the first m1 is kept"
            );
            assert_eq!(rows_in(&node, "mam_staged").await, 0, "moved by the read");
            assert_eq!(rows_in(&node, "mam_messages").await, 2);
            // Staged and then stopped: still there, and moved on the next start.
            node.archive_messages(&[message(3)]).await.unwrap();
            node.close().await;
            other.close().await;
            let restarted = db.store().await;
            assert_eq!(rows_in(&restarted, "mam_staged").await, 1);
            restarted.move_staged_archive().await.unwrap();
            assert_eq!(rows_in(&restarted, "mam_staged").await, 0, "moved");
            assert_eq!(rows_in(&restarted, "mam_messages").await, 3);
            let ends = restarted.archive_ends("alice").await.unwrap().unwrap();
            assert_eq!(ends.last.stanza_id, "m3");
            // A moderated or deleted staged row is found as well.
            restarted.archive_messages(&[message(4)]).await.unwrap();
            assert!(
                restarted
                    .replace_archived_message("alice", "m4", "<tombstone/>")
                    .await
                    .unwrap()
            );
            restarted.archive_messages(&[message(5)]).await.unwrap();
            restarted.delete_archive("alice").await.unwrap();
            let empty = restarted
                .query_archive("alice", &all)
                .await
                .unwrap()
                .unwrap();
            assert!(empty.messages.is_empty());
        })
        .await;
    }
}
