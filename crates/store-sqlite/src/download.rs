//! Downloads: result pages of JSONL and the pieces of stored files, read by blocking tasks on
//! connections of their own.
//!
//! A download is most of the bytes the server ever moves, and through sqlx each result was
//! copied four times on its way into a page (SQLite's `concat` and `group_concat` building the
//! page, then `sqlite3_value_dup` and the decode into a `Vec` on the async side). Here a blocking
//! task steps the query with rusqlite and copies each `custom_id` and body once, straight from
//! SQLite's row into the page; a file's piece likewise, from its blob into the `Vec` served.
//! Connections are read-only in effect (`query_only`), at most [`PAGES`] of them, one per page
//! or piece being read, and see the same WAL snapshot rules as every other reader. Closing waits
//! for the reads in progress, so that no connection outlives the store (the last connection to
//! close checkpoints the WAL).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use batchd_store::{ResultLines, StoreError};
use rusqlite::{Connection, params};
use tokio::sync::Semaphore;

// A failed open or read; busy, locked, I/O, full-disk and cannot-open conditions may clear.
use crate::db::rusqlite_error as query;

/// Pages and pieces read at once, across downloads (a download reads two ahead): each holds a
/// connection and a blocking thread, which stay bounded however many clients download.
const PAGES: u32 = 4;
/// Most bytes reserved up front for a page, whatever its first row suggests.
const MAX_RESERVE: usize = 1 << 20;

/// Every request of the page's rid range `[?1, ?2)`, with its result if it has one. The page
/// size is spliced in (`LIMIT n`): SQLite re-prepares a statement whose `LIMIT` parameter is
/// bound again, which at one statement per page cost 5% of a download.
pub(crate) const WITH_UNANSWERED: &str = "SELECT r.rid, r.custom_id, s.body FROM requests r \
     LEFT JOIN results s ON s.rid = r.rid \
     WHERE r.rid >= ?1 AND r.rid < ?2 ORDER BY r.rid LIMIT";

/// The results alone, for a batch whose every request has one: half the pages of the join (a
/// request row is mostly its params). Rows recorded before results kept their `custom_id`
/// (migration 0003) look it up in `requests`.
pub(crate) const ANSWERED: &str = "SELECT s.rid, \
     coalesce(s.custom_id, (SELECT r.custom_id FROM requests r WHERE r.rid = s.rid)), s.body \
     FROM results s WHERE s.rid >= ?1 AND s.rid < ?2 ORDER BY s.rid LIMIT";

/// One piece of a stored file.
pub(crate) const PIECE: &str = "SELECT data FROM file_chunks WHERE file_key = ?1 AND seq = ?2";

/// Opens and lends the download connections.
pub(crate) struct Downloads {
    path: PathBuf,
    /// One permit per page being read; closed when the store closes.
    pages: Arc<Semaphore>,
    idle: Mutex<Vec<Connection>>,
}

impl Downloads {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join(crate::db::DB_FILE),
            pages: Arc::new(Semaphore::new(PAGES as usize)),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Renders up to `limit` rows of the rid range `[from, hi)` as JSONL (see
    /// `batchd_store::render_result_lines`), with `unanswered` as the result of requests without
    /// one, or only the requests that have one when `unanswered` is `None`.
    pub async fn page(
        self: &Arc<Self>,
        from: i64,
        hi: i64,
        limit: u32,
        unanswered: Option<&str>,
    ) -> Result<Option<ResultLines>, StoreError> {
        let unanswered = unanswered.map(str::to_owned);
        self.read(move |conn| render(conn, from, hi, limit, unanswered.as_deref()))
            .await
    }

    /// Piece `seq` of stored file `file_key`, or `None` past its last piece. Through sqlx (the
    /// reader pool), an OpenAI output file of 291 MB downloaded at 2152-2521 MB/s; read here, at
    /// 4132-4525 MB/s (`batchd-bench --rows openai-download`, release builds alternated three
    /// times, against a static file server's 5063-6879 MB/s in the same runs).
    pub async fn file_piece(
        self: &Arc<Self>,
        file_key: i64,
        seq: u32,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(PIECE).map_err(query)?;
            let mut rows = statement.query(params![file_key, seq]).map_err(query)?;
            match rows.next().map_err(query)? {
                Some(row) => Ok(Some(
                    row.get_ref(0)
                        .map_err(query)?
                        .as_blob()
                        .map_err(|e| StoreError::Corrupt(format!("a file piece: {e}")))?
                        .to_vec(),
                )),
                None => Ok(None),
            }
        })
        .await
    }

    /// Runs `read` on a lent connection, on a blocking thread.
    async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        read: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let permit = self
            .pages
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unavailable("the store is closed".into()))?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            // Held until the read is done, even if the caller stops waiting: `close` waits for it.
            let _permit = permit;
            let conn = match this.idle().pop() {
                Some(conn) => conn,
                None => this.open()?,
            };
            let read = read(&conn);
            // A connection that failed is dropped rather than lent again.
            if read.is_ok() {
                this.idle().push(conn);
            }
            read
        })
        .await
        .map_err(crate::db::other)?
    }

    /// Waits for the pages being read, then closes every connection; later pages fail.
    pub async fn close(&self) {
        if let Ok(all) = self.pages.acquire_many(PAGES).await {
            all.forget();
        }
        self.pages.close();
        self.idle().clear();
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // A plain list: a panic elsewhere cannot leave it inconsistent.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn open(&self) -> Result<Connection, StoreError> {
        let conn = crate::one_connection::open(&self.path).map_err(query)?;
        // Pages stream past once; a big cache would only hold RSS.
        conn.execute_batch("PRAGMA query_only = ON; PRAGMA cache_size = -2048;")
            .map_err(query)?;
        Ok(conn)
    }
}

fn render(
    conn: &Connection,
    from: i64,
    hi: i64,
    limit: u32,
    unanswered: Option<&str>,
) -> Result<Option<ResultLines>, StoreError> {
    let sql = if unanswered.is_some() {
        WITH_UNANSWERED
    } else {
        ANSWERED
    };
    let mut statement = conn
        .prepare_cached(&format!("{sql} {limit}"))
        .map_err(query)?;
    let mut rows = statement.query(params![from, hi]).map_err(query)?;
    let mut lines = Vec::new();
    let mut last = None;
    let mut count = 0u32;
    while let Some(row) = rows.next().map_err(query)? {
        let custom_id = row.get_ref(1).map_err(query)?;
        let custom_id = custom_id.as_str().map_err(|e| corrupt(&e))?;
        // As the bytes stored, not checked as UTF-8 again: that check was 5-6 % of the server's
        // CPU while streaming results (perf). Without it, 20 downloads of 100,000 results (206
        // MB) took 1.76-1.79 s of CPU against 1.87-1.92 s, three alternations of release builds.
        let body = row.get_ref(2).map_err(query)?;
        let body = match body.as_bytes_or_null().map_err(|e| corrupt(&e))? {
            Some(body) => body,
            // Only the join yields requests without a result.
            None => unanswered.unwrap_or_default().as_bytes(),
        };
        if lines.is_empty() {
            // Sized for the page from its first line: one allocation, no regrowth.
            let estimate = (body.len() + custom_id.len() + 32) * limit as usize;
            lines.reserve(estimate.min(MAX_RESERVE));
        }
        batchd_store::push_result_line(&mut lines, custom_id, body);
        last = Some(row.get::<_, i64>(0).map_err(query)?);
        count += 1;
    }
    Ok(last.map(|rid| ResultLines {
        last_index: crate::rows::index_of(rid),
        rows: count,
        lines,
    }))
}

fn corrupt(e: &dyn std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("a result row: {e}"))
}
