//! Process liveness: the `workers` table (one row per live batchd process), this process's
//! heartbeat, and the reaper that frees the claims (and abandons the drafts) of processes that
//! stopped beating.
//!
//! A claim is a `pending.worker` value, not a lease time: it lasts as long as its process does,
//! however long the upstream call takes, and no clock but the database's is involved. Every
//! process refreshes its own row every [`HEARTBEAT_EVERY`] and, in the same tick, deletes the
//! rows not refreshed for [`DEAD_AFTER`], freeing their claims. So the work of a SIGKILLed
//! process is claimable again by the others within `DEAD_AFTER + HEARTBEAT_EVERY` (12 s).
//!
//! A process that was itself paused past `DEAD_AFTER` (and so reaped) re-registers under the
//! same id on its next beat; answers it then records are still kept at most once per request by
//! the results table's primary key, so the worst case is a request sent upstream twice.

use std::time::Duration;

use batchd_store::StoreError;
use sqlx::PgPool;

use crate::db::query_error;
use crate::rows::{DRAFT, FILE_DELETED, FILE_DRAFT, small};

/// How often a process refreshes its heartbeat and reaps dead ones.
pub(crate) const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
/// A heartbeat older than this means the process is gone. Five missed beats: long enough to
/// ride out a slow database or a stalled runtime, short enough to hand a killed process's work
/// to the others within seconds.
pub(crate) const DEAD_AFTER: Duration = Duration::from_secs(10);

pub(crate) async fn register(pool: &PgPool) -> Result<i64, StoreError> {
    sqlx::query_scalar("INSERT INTO workers (host) VALUES ($1) RETURNING id")
        .bind(host())
        .fetch_one(pool)
        .await
        .map_err(query_error)
}

fn host() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{} pid {}", name.trim(), std::process::id())
}

/// Refreshes this process's heartbeat (re-registering it if it had been reaped), then reaps the
/// processes whose heartbeat is stale: their claims become free and their drafts abandoned.
pub(crate) async fn beat(pool: &PgPool, me: i64) -> Result<u64, StoreError> {
    sqlx::query(
        "INSERT INTO workers (id, host) VALUES ($1, $2) \
         ON CONFLICT (id) DO UPDATE SET heartbeat = now()",
    )
    .bind(me)
    .bind(host())
    .execute(pool)
    .await
    .map_err(query_error)?;
    reap(pool, DEAD_AFTER).await
}

/// Frees the claims and abandons the drafts of workers not seen for `stale`. Returns how many
/// workers were reaped.
pub(crate) async fn reap(pool: &PgPool, stale: Duration) -> Result<u64, StoreError> {
    let mut tx = pool.begin().await.map_err(query_error)?;
    let dead: Vec<i64> = sqlx::query_scalar(
        "DELETE FROM workers WHERE heartbeat < now() - make_interval(secs => $1) RETURNING id",
    )
    .bind(stale.as_secs_f64())
    .fetch_all(&mut *tx)
    .await
    .map_err(query_error)?;
    if !dead.is_empty() {
        forget(&mut tx, &dead).await?;
        tracing::warn!(workers = ?dead, "reaped batchd processes that stopped beating; their claims are free again");
    }
    tx.commit().await.map_err(query_error)?;
    Ok(dead.len() as u64)
}

/// Frees every claim of `workers` and abandons their drafts, of batches and of files (the purge
/// reclaims them).
pub(crate) async fn forget(
    conn: &mut sqlx::PgConnection,
    workers: &[i64],
) -> Result<(), StoreError> {
    sqlx::query("UPDATE pending SET worker = NULL WHERE worker = ANY($1)")
        .bind(workers)
        .execute(&mut *conn)
        .await
        .map_err(query_error)?;
    sqlx::query(
        "UPDATE batches SET deleted = true WHERE state = $1 AND NOT deleted AND owner = ANY($2)",
    )
    .bind(DRAFT)
    .bind(workers)
    .execute(&mut *conn)
    .await
    .map_err(query_error)?;
    sqlx::query("UPDATE files SET state = $1 WHERE state = $2 AND owner = ANY($3)")
        .bind(small(FILE_DELETED))
        .bind(small(FILE_DRAFT))
        .bind(workers)
        .execute(&mut *conn)
        .await
        .map_err(query_error)?;
    Ok(())
}

/// The background heartbeat of one store; the store aborts it when dropped.
pub(crate) async fn heartbeat_loop(pool: PgPool, me: i64) {
    let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(err) = beat(&pool, me).await {
            tracing::warn!(%err, "heartbeat failed; retrying");
        }
    }
}
