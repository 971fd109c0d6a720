//! Connections: the single writer, the read pool, the durability switch, schema migrations, and
//! the mapping of SQLite failures onto [`StoreError`].

use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use batchd_store::StoreError;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection as _, Sqlite, SqliteConnection, SqlitePool};

use crate::checkpoint::Checkpointer;

/// The database file inside the data dir.
pub(crate) const DB_FILE: &str = "batchd.sqlite3";

/// The database's write-ahead log, beside it (SQLite's naming).
pub(crate) fn wal_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join(format!("{DB_FILE}-wal"))
}

/// Long enough to ride out a checkpoint or a `keys` command holding the write lock, short enough
/// that a wedged database surfaces as an error rather than a hang.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(15);
/// Waiting this long for the writer means something is badly stuck; callers retry.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(60);
/// Readers serve list and get calls and the dispatcher's small reads (the batches a claim picks
/// from) concurrently; claim scans and downloads have connections of their own (`claim_reader`,
/// `download`).
const READERS: u32 = 4;
/// Request rows are ~2.5 KB: a 4 KiB page holds one of them (and wastes 1.5 KB), a 16 KiB page
/// six. Appending 100,000 such rows took ~2.7 s with 4 KiB pages, ~1.3 s with 8 KiB, ~0.9 s with
/// 16 KiB. Only applies when the database file is created.
const PAGE_SIZE: u32 = 16384;
/// What a restarted WAL is truncated to, for every connection that writes.
pub(crate) const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;
/// Page cache of the sqlx writer (creates, maintenance), in KiB. 4 MiB rather than 16: the same
/// 100,000-request create took 0.88-0.97 s against 0.82-0.95 s, its peak RSS growth 35-36 MB
/// against 49-50 MB, and the peak while dispatching 10,000 requests fell from 83-85 to 69-71 MB
/// (release builds, `batchd-bench --rows ingest,dispatch-rss`, alternately, on a busy machine).
/// 2 MiB rather than 4, with the create's smaller chunks (see `CHUNK_BYTES` in batchd-http):
/// that peak 51.1-54.4 MB against 54.0-62.0, the create's 31.9-37.6 MB against 34.4-40.3, the
/// create no slower (0.37-0.39 s, and one 0.61, against 0.37-0.38 and two 0.6x); deleting a
/// 100,000-request batch took 3.1-7.0 ms against 2.4-5.7, within the fsync noise of the 10-request
/// delete beside it (2.8-7.2 ms). Four alternations of `--rows ingest,dispatch-rss,delete
/// --requests 100000`.
pub(crate) const WRITER_CACHE_KIB: i64 = 2048;
/// Page cache of the group writer, in KiB. It appends results and updates the rows of the
/// requests a group answers, in rid order, so it rereads little beyond b-tree interior pages.
/// 1 MiB rather than the sqlx writer's 4: the peak RSS while dispatching 10,000 requests fell
/// from 67.9, 65.7, 65.8 MB to 62.0, 64.7, 61.1 MB, at no more CPU per request (0 ms dispatch
/// row: 73, 71 µs against 70, 67; release builds, `batchd-bench --rows dispatch-rss` and
/// `--rows dispatch --requests 50000`, alternately, on a busy machine).
pub(crate) const GROUP_WRITER_CACHE_KIB: i64 = 1024;
/// Page cache of each reading connection (the sqlx readers and the claim's), in KiB. 1 MiB: the
/// claims read each request's row once, so a reader's cache holds little that is read again
/// beyond the b-tree's interior pages, while at 4 MiB each the four readers could keep up to
/// 16 MiB resident during a dispatch. (Measured together with batchd's allocator of the time,
/// mimalloc, built without transparent huge pages; not on its own.)
pub(crate) const READER_CACHE_KIB: i64 = 1024;

/// `synchronous` level of a write transaction; see the crate docs for which calls use which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// fsync the WAL at commit: the change survives an OS crash once the call returns.
    Full,
    /// No fsync at commit: survives a process kill, not an OS crash, until the next `Full`
    /// commit or checkpoint syncs it.
    Normal,
}

pub(crate) struct Pools {
    /// Exactly one connection: every write goes through it, so writers queue in the pool rather
    /// than fight over SQLite's lock.
    pub writer: SqlitePool,
    pub reader: SqlitePool,
    /// `None` where SQLite checkpoints by itself at commit (the `keys` commands' short-lived
    /// store, tests of the schema).
    checkpointer: std::sync::Mutex<Option<Checkpointer>>,
}

impl Pools {
    /// Opens the connections; with `background_checkpoints`, the WAL is checkpointed by
    /// [`Checkpointer`] instead of at commit (a server's store, which runs in a Tokio runtime).
    pub async fn open(data_dir: &Path, background_checkpoints: bool) -> Result<Self, StoreError> {
        // SQLite would create the file with the umask's permissions; made here first, it is
        // owner-only, and SQLite gives the WAL and shared-memory files the same permissions.
        // SQLite takes an empty file for a new database.
        crate::files::open_private(&data_dir.join(DB_FILE))
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        let base = SqliteConnectOptions::from_str("sqlite://")
            .map_err(other)?
            .filename(data_dir.join(DB_FILE))
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(false)
            .statement_cache_capacity(256)
            .pragma("temp_store", "memory");
        let writer_options = base
            .clone()
            .create_if_missing(true)
            .page_size(PAGE_SIZE)
            .journal_mode(SqliteJournalMode::Wal)
            // The safe default for a fresh or recycled connection; each write transaction sets
            // its own level anyway.
            .synchronous(SqliteSynchronous::Full)
            .pragma("journal_size_limit", JOURNAL_SIZE_LIMIT.to_string())
            // Negative means KiB. The hot pages (batch rows, b-tree interiors, the tail of the
            // request range being appended) fit easily; a bigger cache only raised RSS: with
            // 64 MiB here and 16 MiB per reader, a 256 MB create peaked near 200 MB RSS.
            .pragma("cache_size", (-WRITER_CACHE_KIB).to_string());
        let writer_options = if background_checkpoints {
            writer_options.pragma(
                "wal_autocheckpoint",
                crate::checkpoint::BACKSTOP_PAGES.to_string(),
            )
        } else {
            writer_options
        };
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .idle_timeout(None)
            .max_lifetime(None)
            // A commit that fails with SQLITE_FULL (disk full) is rolled back by SQLite itself;
            // sqlx's ROLLBACK on drop then fails and sqlx goes on counting the transaction as
            // open, so every later BEGIN on this connection fails ("non-zero transaction
            // depth") even once the disk has room again. Such a connection is replaced. The
            // check runs after the acquire ping, so a rollback still queued has been applied.
            .before_acquire(|conn, _| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
            .connect_with(writer_options)
            .await
            .map_err(query_error)?;
        // `query_only` rather than SQLITE_OPEN_READONLY: a read-only handle on a WAL database
        // cannot always create the shared-memory index, which fails opens at awkward moments.
        let reader_options = base
            .pragma("cache_size", (-READER_CACHE_KIB).to_string())
            .pragma("query_only", "ON");
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(reader_options.clone());
        let checkpointer = background_checkpoints.then(|| {
            // A checkpoint copies pages from the WAL to the database file and syncs both
            // (`synchronous = NORMAL` does); it needs a connection that may write.
            let options = reader_options
                .pragma("query_only", "OFF")
                .synchronous(SqliteSynchronous::Normal);
            let own = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_lazy_with(options);
            Checkpointer::start(own, writer.clone(), wal_path(data_dir))
        });
        Ok(Self {
            writer,
            reader,
            checkpointer: std::sync::Mutex::new(checkpointer),
        })
    }

    /// Runs the embedded migrations on the writer. sqlx's migrator reads before it writes in a
    /// deferred transaction, which SQLite refuses at once (no busy wait) when another process
    /// wrote meanwhile, as a `batchd keys` command beside a server's first start can; such a
    /// refusal is tried again.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut delay = Duration::from_millis(20);
        loop {
            let outcome = migrator().run(&self.writer).await.map_err(|e| match e {
                sqlx::migrate::MigrateError::Execute(e) => query_error(e),
                e => other(e),
            });
            match outcome {
                Err(StoreError::Unavailable(_)) if delay < Duration::from_secs(3) => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                other => return other,
            }
        }
    }

    /// The writer connection, with `synchronous` set for the transaction about to begin (it
    /// cannot change inside one). Callers then `begin_with("BEGIN IMMEDIATE")` on it, so the
    /// write lock is taken up front and a read-then-write never fails to upgrade.
    pub async fn writer(
        &self,
        durability: Durability,
    ) -> Result<PoolConnection<Sqlite>, StoreError> {
        let mut conn = self.writer.acquire().await.map_err(query_error)?;
        set_durability(&mut conn, durability).await?;
        Ok(conn)
    }

    /// Passes the background checkpointer began and finished (skipped ones not counted), if
    /// there is one.
    #[cfg(test)]
    pub(crate) fn checkpoint_passes(&self) -> Option<(u64, u64)> {
        self.checkpointer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(Checkpointer::passes)
    }

    pub async fn close(&self) {
        let checkpointer = self
            .checkpointer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(mut checkpointer) = checkpointer {
            checkpointer.stop().await;
        }
        self.reader.close().await;
        // The last connection to close checkpoints the WAL into the database file.
        self.writer.close().await;
    }
}

/// Sets `synchronous` on the writer, between transactions.
pub(crate) async fn set_durability(
    conn: &mut SqliteConnection,
    durability: Durability,
) -> Result<(), StoreError> {
    let pragma = match durability {
        Durability::Full => "PRAGMA synchronous = FULL",
        Durability::Normal => "PRAGMA synchronous = NORMAL",
    };
    sqlx::query(pragma)
        .execute(conn)
        .await
        .map_err(query_error)?;
    Ok(())
}

/// The statement that starts every write transaction.
pub(crate) const BEGIN_IMMEDIATE: &str = "BEGIN IMMEDIATE";

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// The schema as it was at `version`: the migrations up to it, for tests that read rows an
/// older batchd wrote.
#[cfg(test)]
pub(crate) fn migrator_through(version: i64) -> sqlx::migrate::Migrator {
    let mut migrator = migrator();
    migrator.migrations = std::borrow::Cow::Owned(
        migrator
            .migrations
            .iter()
            .filter(|m| m.version <= version)
            .cloned()
            .collect(),
    );
    migrator
}

/// SQLite primary result codes that mean "try again later" rather than "bug".
const SQLITE_IOERR: i64 = 10;
const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;
const SQLITE_FULL: i64 = 13;
const SQLITE_CANTOPEN: i64 = 14;

/// Whether a SQLite result code (primary or extended) names a condition that can clear by itself.
pub(crate) fn transient(code: i64) -> bool {
    matches!(
        code & 0xff,
        SQLITE_BUSY | SQLITE_LOCKED | SQLITE_FULL | SQLITE_IOERR | SQLITE_CANTOPEN
    )
}

/// Maps a sqlx error: conditions that can clear by themselves are `Unavailable`.
pub(crate) fn query_error(e: sqlx::Error) -> StoreError {
    let transient = match &e {
        sqlx::Error::Database(d) => d
            .code()
            .and_then(|c| c.parse::<i64>().ok())
            .is_some_and(transient),
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            return StoreError::Corrupt(e.to_string());
        }
        _ => false,
    };
    StoreError::database(e, transient)
}

/// Maps a rusqlite error as [`query_error`] maps sqlx's.
pub(crate) fn rusqlite_error(e: rusqlite::Error) -> StoreError {
    let transient = e
        .sqlite_error()
        .is_some_and(|f| transient(i64::from(f.extended_code)));
    StoreError::database(e, transient)
}

pub(crate) use batchd_store::{misuse, other};
