-- Which process is writing an ended OpenAI batch's output and error files (`workers.id`), so
-- that of several processes sharing the database only one writes them. The claim lapses with its
-- process: a holder no longer in `workers` (reaped) is as good as none.
ALTER TABLE batches ADD COLUMN finalizer BIGINT;
