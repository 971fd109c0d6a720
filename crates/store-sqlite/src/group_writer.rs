//! The dispatcher's record groups, and its retries' attempt counts, on a rusqlite connection of
//! their own, stepped by a blocking task: a whole group, its reads, its `synchronous` switch and
//! its transaction, is one hop off the async runtime.
//!
//! Through sqlx every statement was a round trip to the connection's worker thread: a record
//! group of one batch took eight (the acquire's ping, the durability read, the `PRAGMA`,
//! `BEGIN`, the batch row, the insert, the tally, `COMMIT`), each a channel send, a futex wake
//! of the worker and one back; now a group takes two (the acquire's ping, the blocking task).
//! On the 0 ms dispatch row (100,000 requests, about 50 answers a group; per-thread
//! utime+stime and context switches from `/proc` over 3 s, three alternate runs each on a busy
//! 2-core machine) the writing threads' context switches per request fell from 0.20–0.22 to
//! 0.07–0.08, while the writing itself cost what it did (9.0–9.8 µs of CPU a request on the
//! sqlx writer's thread, 8.3–10.5 µs on the blocking threads and the pool's ping): the time
//! goes to SQLite writing WAL frames, not to the hand-offs.
//!
//! The crate's one-writer rule still holds: a group is written while its caller holds the one
//! connection of the writer pool, so writes still queue there instead of fighting over SQLite's
//! lock, and the group's transaction begins with `BEGIN IMMEDIATE` like every other. The
//! connection takes the writer's settings (busy timeout, WAL size limit, the checkpoint
//! backstop) and switches `synchronous` per transaction as the writer does. A connection that
//! failed (a full disk, an I/O error) is dropped and the next group opens a fresh one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use batchd_store::StoreError;
use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::db::{Durability, GROUP_WRITER_CACHE_KIB, JOURNAL_SIZE_LIMIT, rusqlite_error};
use crate::one_connection::{self, OneConnection};

/// Statements a group prepares (the batch row, the result insert, the tally, ending a batch,
/// storing retries), with room to spare.
const STATEMENT_CACHE: usize = 16;

/// Opens and lends the group writer's connection.
pub(crate) struct GroupWriter {
    path: PathBuf,
    /// Whether the WAL is checkpointed in the background (see `checkpoint`), in which case this
    /// connection, like the writer, only checkpoints by itself as a backstop.
    background_checkpoints: bool,
    conn: Arc<OneConnection<Open>>,
}

struct Open {
    conn: Connection,
    /// The `synchronous` level last set; `None` until the first transaction.
    durability: Option<Durability>,
}

/// The connection, lent to one group.
pub(crate) struct Session<'a> {
    open: &'a mut Open,
}

impl Session<'_> {
    /// For reads before the transaction (the writer pool's connection held by the caller means
    /// nothing else writes meanwhile).
    pub fn conn(&self) -> &Connection {
        &self.open.conn
    }

    /// Begins the group's transaction with `BEGIN IMMEDIATE` at `durability`.
    pub fn begin(&mut self, durability: Durability) -> Result<Transaction<'_>, StoreError> {
        if self.open.durability != Some(durability) {
            let level = match durability {
                Durability::Full => "FULL",
                Durability::Normal => "NORMAL",
            };
            self.open
                .conn
                .pragma_update(None, "synchronous", level)
                .map_err(rusqlite_error)?;
            self.open.durability = Some(durability);
        }
        self.open
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(rusqlite_error)
    }
}

impl GroupWriter {
    pub fn new(data_dir: &Path, background_checkpoints: bool) -> Self {
        Self {
            path: data_dir.join(crate::db::DB_FILE),
            background_checkpoints,
            conn: Arc::new(OneConnection::new()),
        }
    }

    /// Runs `group` on the connection in a blocking task. `writer` is the writer pool's
    /// connection, held until the group is done (even if the caller stops waiting), so no other
    /// write runs meanwhile.
    pub async fn run<T, W>(
        self: &Arc<Self>,
        writer: W,
        group: impl FnOnce(&mut Session<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        W: Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let done = this
                .conn
                .with(|| this.open(), |open| group(&mut Session { open }));
            drop(writer);
            done
        })
        .await
        .map_err(crate::db::other)?
    }

    /// Closes the connection once the group being written is done; later groups fail.
    pub async fn close(&self) {
        self.conn.close().await;
    }

    fn open(&self) -> Result<Open, StoreError> {
        let conn = one_connection::open(&self.path).map_err(rusqlite_error)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // As the writer's (see `db`).
        conn.execute_batch("PRAGMA foreign_keys = OFF; PRAGMA temp_store = MEMORY;")
            .map_err(rusqlite_error)?;
        conn.pragma_update(None, "cache_size", -GROUP_WRITER_CACHE_KIB)
            .map_err(rusqlite_error)?;
        conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)
            .map_err(rusqlite_error)?;
        if self.background_checkpoints {
            conn.pragma_update(
                None,
                "wal_autocheckpoint",
                crate::checkpoint::BACKSTOP_PAGES,
            )
            .map_err(rusqlite_error)?;
        }
        Ok(Open {
            conn,
            durability: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use tempfile::TempDir;

    use super::*;
    use crate::SqliteStore;

    async fn store(dir: &TempDir) -> SqliteStore {
        SqliteStore::open(dir.path()).await.expect("open store")
    }

    /// `synchronous` as the group's transaction sees it (0 OFF, 1 NORMAL, 2 FULL).
    async fn synchronous_in_group(store: &SqliteStore, durability: Durability) -> i64 {
        let writer = store.pools.writer.acquire().await.unwrap();
        store
            .group_writer
            .run(writer, move |session| {
                let tx = session.begin(durability)?;
                let level = tx
                    .query_row("PRAGMA synchronous", [], |row| row.get(0))
                    .map_err(rusqlite_error)?;
                tx.commit().map_err(rusqlite_error)?;
                Ok(level)
            })
            .await
            .unwrap()
    }

    /// Each transaction runs at the durability it asked for, whatever the one before it set.
    #[tokio::test]
    async fn each_group_commits_at_its_own_durability() {
        let dir = TempDir::new().unwrap();
        let store = store(&dir).await;
        assert_eq!(synchronous_in_group(&store, Durability::Normal).await, 1);
        assert_eq!(synchronous_in_group(&store, Durability::Full).await, 2);
        assert_eq!(synchronous_in_group(&store, Durability::Full).await, 2);
        assert_eq!(synchronous_in_group(&store, Durability::Normal).await, 1);
        store.close().await;
    }

    /// While a group is written, the writer pool's one connection is its caller's: every other
    /// write waits for it rather than fighting over SQLite's lock.
    #[tokio::test]
    async fn a_group_holds_the_writer_until_it_is_done() {
        let dir = TempDir::new().unwrap();
        let store = store(&dir).await;
        let pool = store.pools.writer.clone();
        let writer = pool.acquire().await.unwrap();
        let during = pool.clone();
        let held = store
            .group_writer
            .run(writer, move |_| Ok(during.try_acquire().is_none()))
            .await
            .unwrap();
        assert!(held);
        // Given back once the group is done, by a task of the pool's: waited for.
        assert!(pool.acquire().await.is_ok());
        store.close().await;
    }

    /// A group that failed leaves nothing behind on the connection: the next group gets a
    /// fresh one.
    #[tokio::test]
    async fn a_failed_group_is_followed_by_a_fresh_connection() {
        let dir = TempDir::new().unwrap();
        let store = store(&dir).await;
        let cache_size = |fail: bool| {
            let writer_pool = store.pools.writer.clone();
            let group_writer = store.group_writer.clone();
            async move {
                let writer = writer_pool.acquire().await.unwrap();
                group_writer
                    .run(writer, move |session| {
                        let size: i64 = session
                            .conn()
                            .query_row("PRAGMA cache_size", [], |row| row.get(0))
                            .map_err(rusqlite_error)?;
                        session
                            .conn()
                            .execute_batch("PRAGMA cache_size = -1234")
                            .map_err(rusqlite_error)?;
                        if fail {
                            return Err(StoreError::Unavailable("failed on purpose".into()));
                        }
                        Ok(size)
                    })
                    .await
            }
        };
        assert_eq!(
            cache_size(false).await.unwrap(),
            -crate::db::GROUP_WRITER_CACHE_KIB
        );
        assert_eq!(
            cache_size(false).await.unwrap(),
            -1234,
            "the same connection"
        );
        assert!(cache_size(true).await.is_err());
        assert_eq!(
            cache_size(false).await.unwrap(),
            -crate::db::GROUP_WRITER_CACHE_KIB,
            "a fresh connection"
        );
        store.close().await;
    }

    /// After the store closed, a group fails instead of opening a connection that would outlive
    /// it (the writer, which closes last, checkpoints the WAL).
    #[tokio::test]
    async fn groups_after_close_are_refused() {
        let dir = TempDir::new().unwrap();
        let store = store(&dir).await;
        store.close().await;
        let done = store.group_writer.run((), |_| Ok(())).await;
        assert!(matches!(done, Err(StoreError::Unavailable(_))), "{done:?}");
    }
}
