//! The claim's reads of request rows, on a rusqlite connection of its own, stepped by a blocking
//! task: a batch's claim step (its released requests and its fresh ones) is one hop off the async
//! runtime, and each `WorkItem` is built straight from SQLite's row.
//!
//! Through sqlx each of the two reads was a command sent to a reader's worker thread, every row
//! copied out of SQLite (`sqlite3_value_dup`), sent back over a channel, then decoded into owned
//! strings on the async side: for a request row that is mostly its ~2.5 KB of params, copied
//! twice, plus a futex wake per hand-off. Here the `custom_id` and params are copied once, from
//! the row into the item. On the 0 ms dispatch row (`batchd-bench --rows dispatch --requests
//! 50000`, release builds, six runs each alternating with the sqlx build on a busy 2-core
//! machine) batchd's CPU per request went from 62-75 µs (median 66) to 51-68 µs (median 60),
//! together with `CLAIM_FRESH` no longer binding a `LIMIT`.
//!
//! Claims run one at a time (the store's `claim_serial`), so one connection is enough. It is
//! read-only in effect (`query_only`) and opened as the sqlx readers are (see `db`): busy
//! timeout, the readers' page cache, temporary tables in memory. Every read sees a WAL snapshot
//! of its own, as it did through sqlx. A connection that failed is dropped and the next claim
//! opens a fresh one; closing waits for the read under way, so no connection outlives the store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use batchd_domain::Timestamp;
use batchd_store::rows::column_error;
use batchd_store::{BodySource, StoreError, WorkItem, files};
use rusqlite::{Connection, Row, params};

use crate::claim::{CLAIM_FRESH, CLAIM_RELEASED};
use crate::db::{READER_CACHE_KIB, rusqlite_error};
use crate::leases::BatchInfo;
use crate::one_connection::{self, OneConnection};
use crate::rows::{count, index_of, rid};

/// The claim's two statements, with room to spare.
const STATEMENT_CACHE: usize = 4;

/// Work items read for one batch, each with where its body is when it is an OpenAI request's
/// (filled in afterwards from the input file's pieces).
pub(crate) type Read = (Vec<WorkItem>, Vec<Option<BodySource>>);

/// What a claim step asks of one batch.
pub(crate) struct Ask {
    pub key: i64,
    pub info: Arc<BatchInfo>,
    /// Released indices to read back (those answered meanwhile are skipped).
    pub released: Vec<u32>,
    /// The cursor: fresh requests are read from here on.
    pub next: u32,
    /// How many requests to read: the released ones still unanswered, then fresh ones up to
    /// this many in all.
    pub share: usize,
}

/// Opens and lends the claim's connection.
pub(crate) struct ClaimReader {
    path: PathBuf,
    conn: Arc<OneConnection<Connection>>,
}

impl ClaimReader {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join(crate::db::DB_FILE),
            conn: Arc::new(OneConnection::new()),
        }
    }

    /// Reads a batch's released requests, then fresh ones to fill its share, in one blocking
    /// task. Also says how many fresh ones were asked for (0 when the cursor is at the end):
    /// fewer read means the batch's range is exhausted.
    pub async fn read(self: &Arc<Self>, ask: Ask) -> Result<(Read, Read, usize), StoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            this.conn.with(|| this.open(), |conn| read_both(conn, &ask))
        })
        .await
        .map_err(crate::db::other)?
    }

    /// Closes the connection once the read under way is done; later reads fail.
    pub async fn close(&self) {
        self.conn.close().await;
    }

    fn open(&self) -> Result<Connection, StoreError> {
        let conn = one_connection::open(&self.path).map_err(rusqlite_error)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // As the sqlx readers (see `db`), `query_only` for a reader.
        conn.execute_batch(
            "PRAGMA foreign_keys = OFF; PRAGMA temp_store = MEMORY; PRAGMA query_only = ON;",
        )
        .map_err(rusqlite_error)?;
        conn.pragma_update(None, "cache_size", -READER_CACHE_KIB)
            .map_err(rusqlite_error)?;
        Ok(conn)
    }
}

fn read_both(conn: &Connection, ask: &Ask) -> Result<(Read, Read, usize), StoreError> {
    let mut released = (Vec::new(), Vec::new());
    if !ask.released.is_empty() {
        // One static statement for any number of rids: a JSON array of them.
        let mut rids = String::with_capacity(ask.released.len() * 12 + 2);
        rids.push('[');
        for (n, &index) in ask.released.iter().enumerate() {
            if n > 0 {
                rids.push(',');
            }
            rids.push_str(&rid(ask.key, index).to_string());
        }
        rids.push(']');
        let mut statement = conn
            .prepare_cached(CLAIM_RELEASED)
            .map_err(rusqlite_error)?;
        let mut rows = statement.query(params![rids]).map_err(rusqlite_error)?;
        while let Some(row) = rows.next().map_err(rusqlite_error)? {
            push(&mut released, ask, row)?;
        }
    }
    let want = ask.share.saturating_sub(released.0.len());
    let asked = if ask.next < ask.info.total { want } else { 0 };
    let mut fresh = (Vec::new(), Vec::new());
    if asked > 0 {
        let mut statement = conn.prepare_cached(CLAIM_FRESH).map_err(rusqlite_error)?;
        let mut rows = statement
            .query(params![
                rid(ask.key, ask.next),
                rid(ask.key, ask.info.total)
            ])
            .map_err(rusqlite_error)?;
        fresh.0.reserve(asked);
        fresh.1.reserve(asked);
        // The statement has no LIMIT (see `CLAIM_FRESH`): it is stepped for as many rows as
        // were asked, and reset when `rows` is dropped.
        while fresh.0.len() < asked {
            let Some(row) = rows.next().map_err(rusqlite_error)? else {
                break;
            };
            push(&mut fresh, ask, row)?;
        }
    }
    Ok((released, fresh, asked))
}

/// Builds a work item from a row of [`CLAIM_FRESH`] or [`CLAIM_RELEASED`].
fn push(read: &mut Read, ask: &Ask, row: &Row<'_>) -> Result<(), StoreError> {
    let info = &ask.info;
    let source = files::source_of(
        get(row, 3, "body_file")?,
        get(row, 4, "body_at")?,
        get(row, 5, "body_len")?,
    )?;
    let attempts = count(
        get::<Option<i64>>(row, 6, "attempts")?.unwrap_or(0),
        "attempts",
    )?;
    read.0.push(WorkItem {
        batch_key: ask.key,
        batch_id: info.id.clone(),
        workspace: info.workspace.clone(),
        index: index_of(get(row, 0, "rid")?),
        custom_id: text(row, 1, "custom_id")?,
        params: text(row, 2, "params")?,
        betas: info.betas.clone(),
        api_version: info.api_version,
        user_profile_id: info.user_profile_id.clone(),
        endpoint: info.endpoint,
        expires_at: info.expires_at,
        attempts: attempts.try_into().unwrap_or(u32::MAX),
        not_before: get::<Option<i64>>(row, 7, "not_before")?.map(Timestamp::from_micros),
    });
    read.1.push(source);
    Ok(())
}

fn get<T: rusqlite::types::FromSql>(
    row: &Row<'_>,
    idx: usize,
    column: &str,
) -> Result<T, StoreError> {
    row.get(idx).map_err(|e| column_error(column, e))
}

/// A text column, copied once from SQLite's row.
fn text(row: &Row<'_>, idx: usize, column: &str) -> Result<String, StoreError> {
    let value = row.get_ref(idx).map_err(|e| column_error(column, e))?;
    value
        .as_str()
        .map(str::to_owned)
        .map_err(|e| column_error(column, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::BUSY_TIMEOUT;

    /// The claim's connection is set up as the sqlx readers are: it cannot write, waits out a
    /// lock, and keeps the readers' page cache.
    #[tokio::test]
    async fn the_claims_connection_is_a_reader() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = crate::SqliteStore::open(dir.path()).await.unwrap();
        let conn = store.claim_reader.open().unwrap();
        let pragma = |name: &str| -> i64 {
            conn.query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))
                .unwrap()
        };
        assert_eq!(pragma("query_only"), 1);
        assert_eq!(pragma("cache_size"), -READER_CACHE_KIB);
        assert_eq!(pragma("busy_timeout"), BUSY_TIMEOUT.as_millis() as i64);
        assert_eq!(pragma("temp_store"), 2, "in memory");
        let write = conn.execute("DELETE FROM batches", []);
        assert!(write.is_err(), "{write:?}");
        drop(conn);
        store.close().await;
    }

    /// The claim's statements run from the statement cache as prepared: their bound values
    /// never make SQLite prepare them again. A bound `LIMIT` did, at every claim: SQLite plans
    /// with the limit's value, so a statement whose `LIMIT` parameter is bound again is
    /// re-prepared (parsed and planned) at its next step.
    #[tokio::test]
    async fn the_claims_statements_are_not_prepared_again() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = crate::SqliteStore::open(dir.path()).await.unwrap();
        let conn = store.claim_reader.open().unwrap();
        for (sql, runs) in [
            (CLAIM_FRESH, vec![params![0, 100], params![1, 200]]),
            (CLAIM_RELEASED, vec![params!["[1,2]"], params!["[3]"]]),
        ] {
            let mut statement = conn.prepare_cached(sql).unwrap();
            for run in runs {
                let mut rows = statement.query(run).unwrap();
                while rows.next().unwrap().is_some() {}
            }
            let again = statement.get_status(rusqlite::StatementStatus::RePrepare);
            assert_eq!(again, 0, "{sql}");
        }
        drop(conn);
        store.close().await;
    }
}
