//! Claiming work: reading claimable requests of a batch into leases, and giving claims back
//! (released, or deferred with their retry state). The in-memory leases themselves are in
//! `leases`; the request rows are read on the claim's own connection (`claim_reader`). OpenAI
//! requests' bodies are read back from their input file's pieces
//! (`batchd_store::files::fill_bodies`).

use batchd_domain::{EndReason, Timestamp};
use batchd_store::{FileStore as _, Retry, StoreError, WorkItem, files};
use sqlx::Connection as _;

use crate::SqliteStore;
use crate::claim_reader::{Ask, Read};
use crate::db::{BEGIN_IMMEDIATE, Durability, query_error, rusqlite_error};
use crate::leases::{BatchInfo, Take, Unended};
use crate::rows::{
    CANCELING, ENDED, IN_PROGRESS, count, get, parse_betas, parse_endpoint, parse_id,
    parse_version, rid,
};

/// Unanswered requests of the rid range `[?1, ?2)`, in rid order. No `LIMIT`: the claim steps
/// it for as many rows as it wants. SQLite plans with a bound `LIMIT`'s value, so binding a new
/// one re-prepared (parsed and planned) this join at every claim; the range is walked in rid
/// order with nothing sorted, so stopping early reads no more than the limit did.
pub(crate) const CLAIM_FRESH: &str = "SELECT r.rid, r.custom_id, r.params, \
     r.body_file, r.body_at, r.body_len, a.attempts, a.not_before FROM requests r LEFT JOIN attempts a ON a.rid = r.rid \
     WHERE r.rid >= ?1 AND r.rid < ?2 \
     AND NOT EXISTS (SELECT 1 FROM results s WHERE s.rid = r.rid) \
     ORDER BY r.rid";

/// Released requests, by a JSON array of rids (one static statement for any number of them).
pub(crate) const CLAIM_RELEASED: &str = "SELECT r.rid, r.custom_id, r.params, \
     r.body_file, r.body_at, r.body_len, a.attempts, a.not_before FROM requests r LEFT JOIN attempts a ON a.rid = r.rid \
     WHERE r.rid IN (SELECT value FROM json_each(?1)) \
     AND NOT EXISTS (SELECT 1 FROM results s WHERE s.rid = r.rid) \
     ORDER BY r.rid";

pub(crate) const UNENDED: &str = "SELECT key, id, workspace, state, total, expires_at, betas, \
     api_version, user_profile_id, endpoint \
     FROM batches WHERE state IN (?1, ?2)";

/// Stores a request's attempt count; one static statement for a whole group (a JSON array of
/// `[rid, attempts, not_before]`).
pub(crate) const DEFER: &str = "INSERT INTO attempts (rid, attempts, not_before) \
     SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?1) WHERE true \
     ON CONFLICT (rid) DO UPDATE SET attempts = excluded.attempts, not_before = excluded.not_before";

impl SqliteStore {
    /// Claims up to `share` requests of one batch: released ones first, then fresh ones from
    /// the cursor, skipping requests that already have a result.
    pub(crate) async fn claim_from(
        &self,
        key: i64,
        share: usize,
        now: Timestamp,
        items: &mut Vec<WorkItem>,
    ) -> Result<(), StoreError> {
        let Some(take) = self.claims().take(key, share, now) else {
            return Ok(());
        };
        let (released, fresh, asked) = match self.read_claimable(key, share, &take).await {
            Ok(read) => read,
            Err(e) => {
                self.claims().unreserve(key, &take.released);
                return Err(e);
            }
        };
        let released_idx: Vec<u32> = released.iter().map(|w| w.index).collect();
        let fresh_idx: Vec<u32> = fresh.iter().map(|w| w.index).collect();
        if self.claims().claimed(key, &released_idx, &fresh_idx, asked) {
            items.extend(released);
            items.extend(fresh);
        }
        Ok(())
    }

    /// Reads the released requests of `take` that are still unanswered, then fresh ones from
    /// the cursor, in one blocking step (see `claim_reader`); OpenAI bodies are then read back
    /// from their input file's pieces.
    async fn read_claimable(
        &self,
        key: i64,
        share: usize,
        take: &Take,
    ) -> Result<(Vec<WorkItem>, Vec<WorkItem>, usize), StoreError> {
        let ask = Ask {
            key,
            info: take.info.clone(),
            released: take.released.clone(),
            next: take.next,
            share,
        };
        let (released, fresh, asked) = self.claim_reader.read(ask).await?;
        let bodies = |(mut items, sources): Read| async move {
            // Messages requests carry their params in the row.
            if sources.iter().any(Option::is_some) {
                files::fill_bodies(&mut items, &sources, &self.pieces, |file_key, seq| {
                    self.file_chunk(file_key, seq)
                })
                .await?;
            }
            Ok::<_, StoreError>(items)
        };
        Ok((bodies(released).await?, bodies(fresh).await?, asked))
    }

    /// Re-reads the unended batches when the in-memory list may be stale (always at startup).
    pub(crate) async fn rebuild_claims(&self) -> Result<(), StoreError> {
        // A concurrent change makes a rebuild moot; try again a couple of times, then serve
        // from the current list and rebuild on the next claim.
        for _ in 0..3 {
            let Some(generation) = self.claims().needs_rebuild() else {
                return Ok(());
            };
            let rows = sqlx::query(UNENDED)
                .bind(IN_PROGRESS)
                .bind(CANCELING)
                .fetch_all(&self.pools.reader)
                .await
                .map_err(query_error)?;
            let unended = rows
                .iter()
                .map(|row| {
                    let total = count(get(row, "total")?, "total")?;
                    Ok(Unended {
                        key: get(row, "key")?,
                        canceling: get::<i64>(row, "state")? == CANCELING,
                        info: BatchInfo {
                            id: parse_id(get(row, "id")?)?,
                            workspace: get(row, "workspace")?,
                            betas: parse_betas(get(row, "betas")?)?,
                            api_version: parse_version(get(row, "api_version")?)?,
                            user_profile_id: get(row, "user_profile_id")?,
                            endpoint: parse_endpoint(get(row, "endpoint")?)?,
                            expires_at: Timestamp::from_micros(get(row, "expires_at")?),
                            total: u32::try_from(total)
                                .map_err(|_| StoreError::Corrupt(format!("batch total {total}")))?,
                        },
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            if self.claims().rebuild(generation, unended) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Stores the attempt counts of requests to try again, in one transaction of the group
    /// writer (see `group_writer`).
    pub(crate) async fn store_retries(&self, retries: &[Retry]) -> Result<(), StoreError> {
        let rows: Vec<[i64; 3]> = retries
            .iter()
            .map(|r| {
                [
                    rid(r.slot.batch_key, r.slot.index),
                    i64::from(r.attempts),
                    r.not_before.as_micros(),
                ]
            })
            .collect();
        let json = serde_json::to_string(&rows).map_err(|e| StoreError::Other(Box::new(e)))?;
        let writer = self.pools.writer.acquire().await.map_err(query_error)?;
        self.group_writer
            .run(writer, move |session| {
                let tx = session.begin(Durability::Normal)?;
                tx.prepare_cached(DEFER)
                    .and_then(|mut defer| defer.execute([json]))
                    .map_err(rusqlite_error)?;
                tx.commit().map_err(rusqlite_error)
            })
            .await
    }

    /// Ends canceling batches whose last claim just came back, now rather than at the next
    /// maintenance pass (which also catches them if this fails).
    pub(crate) async fn end_drained(&self, drained: Vec<i64>) -> Result<(), StoreError> {
        if drained.is_empty() {
            return Ok(());
        }
        let stale = self.stale_unless_done();
        let now = Timestamp::now();
        let mut conn = self.pools.writer(Durability::Full).await?;
        let mut tx = conn
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(query_error)?;
        let mut ended = Vec::new();
        for key in drained {
            let done = sqlx::query(concat!(
                "UPDATE batches SET state = ?1, end_reason = ?2, ended_at = ",
                ended_at!("?3"),
                " WHERE key = ?4 AND state = ?5"
            ))
            .bind(ENDED)
            .bind(EndReason::Canceled.code())
            .bind(now.as_micros())
            .bind(key)
            .bind(CANCELING)
            .execute(&mut *tx)
            .await
            .map_err(query_error)?;
            if done.rows_affected() > 0 {
                ended.push(key);
            }
        }
        tx.commit().await.map_err(query_error)?;
        self.claims().ended(ended);
        stale.done();
        Ok(())
    }
}
