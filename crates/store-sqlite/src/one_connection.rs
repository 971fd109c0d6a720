//! One rusqlite connection that blocking tasks take turns on, for the claim reader and the group
//! writer: opened on first use, dropped after a use that failed (whatever state a failure left
//! it in, the next use opens a fresh one), refused once closed. Closing waits for the use under
//! way, so no connection outlives the store.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use batchd_store::StoreError;
use rusqlite::{Connection, OpenFlags};

use crate::db::BUSY_TIMEOUT;

/// Opens the database file at `path` as the crate's rusqlite connections all are: read-write
/// (a read-only handle on a WAL database cannot always create the shared-memory index, so
/// readers say `query_only` instead), without SQLite's own mutex (one thread uses it at a time),
/// waiting out a lock as the sqlx pools do.
pub(crate) fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// The connection (`C`: the connection and what its owner tracks of it), and whether the store
/// closed.
pub(crate) struct OneConnection<C> {
    state: Mutex<State<C>>,
}

struct State<C> {
    conn: Option<C>,
    closed: bool,
}

impl<C: Send + 'static> OneConnection<C> {
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State {
                conn: None,
                closed: false,
            }),
        }
    }

    /// Runs `use_it` on the connection, opening it with `open` first when there is none. Blocks:
    /// call it from a blocking task.
    pub fn with<T>(
        &self,
        open: impl FnOnce() -> Result<C, StoreError>,
        use_it: impl FnOnce(&mut C) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut state = self.state();
        if state.closed {
            return Err(StoreError::Unavailable("the store is closed".into()));
        }
        let conn = match &mut state.conn {
            Some(conn) => conn,
            empty => empty.insert(open()?),
        };
        let done = use_it(conn);
        if done.is_err() {
            state.conn = None;
        }
        done
    }

    /// Closes the connection once the use under way is done; later uses fail.
    pub async fn close(self: &Arc<Self>) {
        let this = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let mut state = this.state();
            state.closed = true;
            state.conn = None;
        })
        .await;
    }

    fn state(&self) -> MutexGuard<'_, State<C>> {
        // Plain data: a panic elsewhere cannot leave it inconsistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
