-- An OpenAI batch's request bodies stay in its input file rather than being copied into
-- `requests.params`: a 200 MB create wrote every body twice (as the upload's pieces, then as
-- request rows). Such a row's `params` is '' (the same marker as SQLite's, which cannot drop
-- NOT NULL cheaply) and these three columns say where its body lies: the file's key, the
-- body's byte offset in the file, and its length. Adding nullable columns rewrites nothing.
ALTER TABLE requests ADD COLUMN body_file BIGINT;
ALTER TABLE requests ADD COLUMN body_at BIGINT;
ALTER TABLE requests ADD COLUMN body_len INTEGER;

-- The input file a batch's requests point into, set by its appends: the purge keeps that file's
-- pieces until the batch is finalized.
ALTER TABLE batches ADD COLUMN input_file_key BIGINT;
CREATE INDEX batches_input_file ON batches (input_file_key) WHERE input_file_key IS NOT NULL;
