//! The dispatcher's side of the store: [`DispatchStore`], implemented here for PostgreSQL. Each
//! call's steps live with their concern: claiming and giving claims back in `claim`, recording
//! answers in `record`, ending, archiving and reclaiming batches in `maintenance`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use batchd_domain::openai::OpenAiBatchMeta;
use batchd_domain::{Batch, EndReason, Timestamp};
use batchd_store::{
    Answer, DispatchStore, Ended, FileDraft, Retry, Slot, StoreError, WorkItem, purge,
};

use crate::PostgresStore;
use crate::batches::{CLAIM_FINALIZE, FINALIZE, UNFINALIZED};
use crate::claim::{DEFER, RELEASE, end_idle_canceling, slot_arrays};
use crate::db::query_error;
use crate::file_store::commit_draft;
use crate::maintenance::{ARCHIVE_DUE, CANCELING_KEYS, EXPIRE_DUE, NEXT_EXPIRY, ended_rows};
use crate::record;
use crate::rows::{ENDED, batch_from_row, end_reason_code, openai_text};

#[async_trait]
impl DispatchStore for PostgresStore {
    async fn claim(
        &self,
        limit: usize,
        now: Timestamp,
        skip: &[i64],
    ) -> Result<Vec<WorkItem>, StoreError> {
        let me = self.me()?;
        let mut items = Vec::new();
        // Batches left out of a pass: those the caller skips, and those that had fewer free
        // requests than their share, so that a later pass shares what is left among the others.
        let mut short: Vec<i64> = skip.to_vec();
        for _ in 0..batchd_store::CLAIM_PASSES {
            let remaining = limit - items.len();
            if remaining == 0 {
                break;
            }
            let got = match self.claim_pass(me, remaining, now, &short).await {
                Ok(got) => got,
                // What is claimed already is handed out; the next call meets the error.
                Err(_) if !items.is_empty() => return Ok(items),
                Err(e) => return Err(e),
            };
            if got.is_empty() {
                break;
            }
            let mut per_batch: BTreeMap<i64, (usize, usize)> = BTreeMap::new();
            for (item, share) in got {
                per_batch.entry(item.batch_key).or_insert((0, share)).0 += 1;
                items.push(item);
            }
            let before = short.len();
            short.extend(
                per_batch
                    .into_iter()
                    .filter(|(_, (n, share))| n < share)
                    .map(|(key, _)| key),
            );
            // Every batch served got its full share: more passes would only find the same.
            if short.len() == before {
                break;
            }
        }
        Ok(items)
    }

    async fn release(&self, slots: &[Slot]) -> Result<(), StoreError> {
        if slots.is_empty() {
            return Ok(());
        }
        let (keys, indices) = slot_arrays(slots.iter().copied());
        sqlx::query(RELEASE)
            .bind(&keys)
            .bind(indices)
            .bind(self.me()?)
            .execute(&self.pool)
            .await
            .map_err(query_error)?;
        self.end_idle_canceling(keys, Timestamp::now()).await
    }

    async fn defer(&self, retries: &[Retry], now: Timestamp) -> Result<(), StoreError> {
        if retries.is_empty() {
            return Ok(());
        }
        let (keys, indices) = slot_arrays(retries.iter().map(|r| r.slot));
        let attempts: Vec<i32> = retries
            .iter()
            .map(|r| i32::try_from(r.attempts).unwrap_or(i32::MAX))
            .collect();
        let not_before: Vec<i64> = retries.iter().map(|r| r.not_before.as_micros()).collect();
        sqlx::query(DEFER)
            .bind(&keys)
            .bind(indices)
            .bind(attempts)
            .bind(not_before)
            .bind(self.me()?)
            .execute(&self.pool)
            .await
            .map_err(query_error)?;
        self.end_idle_canceling(keys, now).await
    }

    async fn record(&self, answers: &[Answer], now: Timestamp) -> Result<Ended, StoreError> {
        if answers.is_empty() {
            return Ok(Ended::default());
        }
        let mut conn = self.pool.acquire().await.map_err(query_error)?;
        let batches = record::record(&mut conn, answers, now, self.me()?).await?;
        Ok(Ended { batches })
    }

    async fn finish_due(&self, now: Timestamp) -> Result<Ended, StoreError> {
        let mut tx = self.pool.begin().await.map_err(query_error)?;
        let expired = sqlx::query(EXPIRE_DUE)
            .bind(ENDED)
            .bind(end_reason_code(EndReason::Expired))
            .bind(now.as_micros())
            .fetch_all(&mut *tx)
            .await
            .map_err(query_error)?;
        let canceling: Vec<i64> = sqlx::query_scalar(CANCELING_KEYS)
            .fetch_all(&mut *tx)
            .await
            .map_err(query_error)?;
        let canceled = end_idle_canceling(&mut tx, canceling, now).await?;
        tx.commit().await.map_err(query_error)?;
        let mut batches = ended_rows(&expired, EndReason::Expired)?;
        batches.extend(ended_rows(&canceled, EndReason::Canceled)?);
        Ok(Ended { batches })
    }

    async fn canceling(&self) -> Result<Vec<i64>, StoreError> {
        sqlx::query_scalar(CANCELING_KEYS)
            .fetch_all(&self.pool)
            .await
            .map_err(query_error)
    }

    async fn next_expiry(&self) -> Result<Option<Timestamp>, StoreError> {
        let at: Option<i64> = sqlx::query_scalar(NEXT_EXPIRY)
            .fetch_one(&self.pool)
            .await
            .map_err(query_error)?;
        Ok(at.map(Timestamp::from_micros))
    }

    async fn archive_due(&self, cutoff: Timestamp, now: Timestamp) -> Result<u64, StoreError> {
        Ok(sqlx::query(ARCHIVE_DUE)
            .bind(now.as_micros())
            .bind(cutoff.as_micros())
            .bind(ENDED)
            .execute(&self.pool)
            .await
            .map_err(query_error)?
            .rows_affected())
    }

    async fn purge_deleted(&self, limit: u32) -> Result<u64, StoreError> {
        // Batches first, then files, each step its own transaction.
        purge::in_steps(limit, |step| async move {
            match self.purge_step(step).await? {
                0 => self.purge_file_step(step).await,
                n => Ok(n),
            }
        })
        .await
    }

    async fn unfinalized(&self, limit: u32) -> Result<Vec<Batch>, StoreError> {
        let rows = sqlx::query(UNFINALIZED)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(query_error)?;
        rows.iter().map(batch_from_row).collect()
    }

    async fn claim_finalize(&self, batch_key: i64) -> Result<bool, StoreError> {
        // One statement: of two processes asking at once, the second waits on the row lock and
        // then sees the first's claim.
        let claimed = sqlx::query(CLAIM_FINALIZE)
            .bind(batch_key)
            .bind(self.me()?)
            .execute(&self.pool)
            .await
            .map_err(query_error)?
            .rows_affected();
        Ok(claimed == 1)
    }

    async fn finalize(
        &self,
        batch_key: i64,
        meta: &OpenAiBatchMeta,
        files: &[(&FileDraft, u64)],
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(query_error)?;
        let done = sqlx::query(FINALIZE)
            .bind(openai_text(Some(meta))?)
            .bind(now.as_micros())
            .bind(batch_key)
            .execute(&mut *tx)
            .await
            .map_err(query_error)?
            .rows_affected();
        if done != 1 {
            // Rolled back on drop: nothing to record, the drafts stay drafts.
            return Ok(false);
        }
        for (draft, bytes) in files {
            commit_draft(&mut tx, draft, *bytes).await?;
        }
        tx.commit().await.map_err(query_error)?;
        Ok(true)
    }
}
