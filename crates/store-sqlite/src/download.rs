//! Result downloads: pages of JSONL read by a blocking cursor on connections of their own.
//!
//! A download is most of the bytes the server ever moves, and through sqlx each result was
//! copied four times on its way into a page (SQLite's `concat` and `group_concat` building the
//! page, then `sqlite3_value_dup` and the decode into a `Vec` on the async side). Here a blocking
//! task steps the query with rusqlite and copies each `custom_id` and body once, straight from
//! SQLite's row into the page. Connections are read-only in effect (`query_only`), kept in a
//! small pool so the pages a download reads ahead each have one, and see the same WAL snapshot
//! rules as every other reader.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use batchd_store::{ResultLines, StoreError};
use rusqlite::{Connection, OpenFlags, params};

use crate::db::BUSY_TIMEOUT;

/// Connections kept between pages; a download reads two pages at once, and several downloads
/// may run together (more connections are opened when needed and closed after).
const KEEP: usize = 4;

/// Every request of the page's rid range `[?1, ?2)`, with its result if it has one. The page
/// size is spliced in (`LIMIT n`): SQLite re-prepares a statement whose `LIMIT` parameter is
/// bound again, which at one statement per page cost 5% of a download.
pub(crate) const WITH_LEFTOVERS: &str = "SELECT r.rid, r.custom_id, s.body FROM requests r \
     LEFT JOIN results s ON s.rid = r.rid \
     WHERE r.rid >= ?1 AND r.rid < ?2 ORDER BY r.rid LIMIT";

/// The results alone, for a batch whose every request has one: half the pages of the join (a
/// request row is mostly its params). Rows recorded before results kept their `custom_id`
/// (migration 0003) look it up in `requests`.
pub(crate) const ANSWERED: &str = "SELECT s.rid, \
     coalesce(s.custom_id, (SELECT r.custom_id FROM requests r WHERE r.rid = s.rid)), s.body \
     FROM results s WHERE s.rid >= ?1 AND s.rid < ?2 ORDER BY s.rid LIMIT";

/// Opens and lends the download connections.
pub(crate) struct Downloads {
    path: PathBuf,
    /// `None` once the store is closed: a page still being read then drops its connection.
    idle: Mutex<Option<Vec<Connection>>>,
}

impl Downloads {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join(crate::db::DB_FILE),
            idle: Mutex::new(Some(Vec::new())),
        }
    }

    /// Renders up to `limit` rows of the rid range `[from, hi)` as JSONL (see
    /// `batchd_store::render_result_lines`), with `leftover` as the result of requests without
    /// one, or only the requests that have one when `leftover` is `None`. Blocking.
    pub fn page(
        &self,
        from: i64,
        hi: i64,
        limit: u32,
        leftover: Option<&str>,
    ) -> Result<Option<ResultLines>, StoreError> {
        let conn = self.take()?;
        let page = render(&conn, from, hi, limit, leftover);
        // A connection that failed is dropped rather than lent again.
        if page.is_ok()
            && let Some(idle) = self.idle().as_mut()
            && idle.len() < KEEP
        {
            idle.push(conn);
        }
        page
    }

    /// Closes the idle connections, and those lent out as they come back: the store is closing.
    pub fn close(&self) {
        self.idle().take();
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Option<Vec<Connection>>> {
        // A plain list: a panic elsewhere cannot leave it inconsistent.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self) -> Result<Connection, StoreError> {
        let idle = self.idle().as_mut().map(Vec::pop);
        match idle {
            None => return Err(StoreError::Unavailable("the store is closed".into())),
            Some(Some(conn)) => return Ok(conn),
            Some(None) => {}
        }
        // `query_only` rather than SQLITE_OPEN_READONLY, as for the sqlx readers: a read-only
        // handle on a WAL database cannot always create the shared-memory index.
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(unavailable)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(unavailable)?;
        // Pages stream past once; a big cache would only hold RSS.
        conn.execute_batch("PRAGMA query_only = ON; PRAGMA cache_size = -2048;")
            .map_err(unavailable)?;
        Ok(conn)
    }
}

fn render(
    conn: &Connection,
    from: i64,
    hi: i64,
    limit: u32,
    leftover: Option<&str>,
) -> Result<Option<ResultLines>, StoreError> {
    let sql = if leftover.is_some() {
        WITH_LEFTOVERS
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
        let body = row.get_ref(2).map_err(query)?;
        let body = match body.as_str_or_null().map_err(|e| corrupt(&e))? {
            Some(body) => body,
            // Only the join yields requests without a result.
            None => leftover.unwrap_or_default(),
        };
        if lines.is_empty() {
            // Sized for the page from its first line: one allocation, no regrowth.
            lines.reserve((body.len() + custom_id.len() + 32) * limit as usize);
        }
        lines.extend_from_slice(b"{\"custom_id\":");
        serde_json::to_writer(&mut lines, custom_id).map_err(|e| corrupt(&e))?;
        lines.extend_from_slice(b",\"result\":");
        lines.extend_from_slice(body.as_bytes());
        lines.extend_from_slice(b"}\n");
        last = Some(row.get::<_, i64>(0).map_err(query)?);
        count += 1;
    }
    Ok(last.map(|rid| ResultLines {
        last_index: crate::rows::index_of(rid),
        rows: count,
        lines,
    }))
}

fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(Box::new(e))
}

/// A failed read: SQLite's busy and I/O conditions may clear, so they are transient.
fn query(e: rusqlite::Error) -> StoreError {
    let transient = matches!(
        e.sqlite_error_code(),
        Some(
            rusqlite::ErrorCode::DatabaseBusy
                | rusqlite::ErrorCode::DatabaseLocked
                | rusqlite::ErrorCode::SystemIoFailure
        )
    );
    batchd_store::StoreError::database(e, transient)
}

fn corrupt(e: &dyn std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("a result row: {e}"))
}
