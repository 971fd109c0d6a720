//! Connections: the pool, schema migrations, the transactions of the dispatcher's hot
//! statements (planned generically), and the mapping of PostgreSQL failures onto [`StoreError`].

use std::str::FromStr as _;
use std::time::Duration;

use batchd_store::StoreError;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

/// Waiting this long for a connection means the database is saturated or gone; callers retry.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections per process: the dispatcher (claims, record groups, maintenance), API calls and
/// result downloads share them. Each call holds one only for its own short transaction.
const MAX_CONNECTIONS: u32 = 16;

pub(crate) async fn connect(url: &str) -> Result<PgPool, StoreError> {
    let options = PgConnectOptions::from_str(url)
        .map_err(other)?
        .application_name("batchd");
    PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        // A connection keeps the buffers of the largest message it ever carried (a record
        // group, a claim, a file piece: megabytes each), and every pooled connection soon has
        // carried one: given back to their small size whenever the connection is, they cannot
        // add up to a pool's worth of megabytes held for nothing.
        .after_release(|conn, _| {
            Box::pin(async move {
                sqlx::Connection::shrink_buffers(conn);
                Ok(true)
            })
        })
        .connect_with(options)
        .await
        .map_err(query_error)
}

/// Begins the dispatcher's hot transactions (a claim pass, a record group) with generic plans.
/// Their statements ([`crate::claim::CLAIM_ALL`], [`crate::record::RECORD`]) are arrays, a limit
/// and a handful of batch keys, so their plans do not depend on their parameters, but
/// PostgreSQL's plan cache kept choosing custom plans and planned these ten-part statements anew
/// on almost every call. In the bench's PostgreSQL rows at 200 ms upstream (50,000 requests,
/// record groups of ~9 answers) `pg_stat_statements` (`track_planning`) showed a record group
/// planned on every call, 0.53 ms planning against 0.35 ms executing, and 72 % of claims
/// planned, 0.69 ms each against 0.80 ms executing. Generic and custom plans have the same
/// shape (`EXPLAIN (ANALYZE)` of both on 1,000,000 queued requests: index lookups of the rows,
/// a TID scan for the claim's update). `SET LOCAL` ends with the transaction and goes in the
/// same round trip as `BEGIN`.
macro_rules! begin_generic {
    () => {
        "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan"
    };
}
pub(crate) const BEGIN_GENERIC: &str = begin_generic!();

/// A claim pass's [`BEGIN_GENERIC`], without bitmap scans. Its generic plan estimated a
/// handful of free rows per batch and picked a claim's rows with a bitmap scan of every free row
/// of the batch and a sort, then kept the first `share`: for an 18-row claim, 65,521 rows read
/// and sorted (spilling to disk), 2.9 ms per claim, 19.1 s of PostgreSQL's time for a
/// 100,000-request batch at 200 ms upstream with one process (`pg_stat_statements`,
/// `auto_explain`). Without them the rows come from an index scan of `pending_free` in index
/// order that stops at the share: 0.52-0.59 ms per claim, 3.4-3.6 s for the batch.
pub(crate) const BEGIN_CLAIM: &str =
    concat!(begin_generic!(), "; SET LOCAL enable_bitmapscan = off");

/// A claim pass's transaction on `conn`, begun with [`BEGIN_CLAIM`].
pub(crate) async fn begin_claim(
    conn: &mut PgConnection,
) -> Result<Transaction<'_, Postgres>, StoreError> {
    sqlx::Connection::begin_with(conn, BEGIN_CLAIM)
        .await
        .map_err(query_error)
}

/// Runs the embedded migrations. sqlx takes a PostgreSQL advisory lock for them, so processes
/// starting together migrate one at a time and the later ones find nothing to do.
pub(crate) async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    migrator().run(pool).await.map_err(|e| match e {
        sqlx::migrate::MigrateError::Execute(e) => query_error(e),
        e => other(e),
    })
}

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

/// SQLSTATE classes and codes that mean "try again" rather than "bug": connection exceptions
/// (08), serialization failure and deadlock (40001, 40P01), insufficient resources (53),
/// operator intervention such as a restart (57), and system errors (58).
fn transient_sqlstate(code: &str) -> bool {
    matches!(code.get(..2), Some("08" | "53" | "57" | "58")) || matches!(code, "40001" | "40P01")
}

/// Maps a sqlx error: conditions that can clear by themselves are `Unavailable`.
pub(crate) fn query_error(e: sqlx::Error) -> StoreError {
    let transient = match &e {
        sqlx::Error::Database(d) => d.code().is_some_and(|c| transient_sqlstate(&c)),
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            return StoreError::Corrupt(e.to_string());
        }
        _ => false,
    };
    StoreError::database(e, transient)
}

pub(crate) use batchd_store::{misuse, other};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_conditions_that_clear_are_transient() {
        for code in ["08006", "40001", "40P01", "53300", "57P01"] {
            assert!(transient_sqlstate(code), "{code}");
        }
        for code in ["23505", "42P01", "22P02"] {
            assert!(!transient_sqlstate(code), "{code}");
        }
    }
}
