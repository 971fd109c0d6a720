-- The OpenAI surface on the same engine.
--
-- A batch's `endpoint` (Endpoint::code) says which surface it belongs to: 0 (Messages) for every
-- Anthropic batch, the default of rows stored before this migration. `openai` is an OpenAI
-- batch's extras as JSON text (the store never looks inside); `finalized_at` is set once an
-- ended OpenAI batch's output and error files are written.
ALTER TABLE batches ADD COLUMN endpoint INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN openai TEXT;
ALTER TABLE batches ADD COLUMN finalized_at INTEGER;

-- A list shows one surface: one listing index per surface, so that neither list walks over the
-- other's batches. Queries repeat these WHERE clauses word for word.
DROP INDEX batches_list;
CREATE INDEX batches_list_anthropic ON batches (workspace, created_at, key)
    WHERE deleted = 0 AND state <> 0 AND endpoint = 0;
CREATE INDEX batches_list_openai ON batches (workspace, created_at, key)
    WHERE deleted = 0 AND state <> 0 AND endpoint <> 0;

-- Ended OpenAI batches whose files are still to be written, oldest ended first: only the few
-- between ending and finalizing are in it.
CREATE INDEX batches_unfinalized ON batches (ended_at, key)
    WHERE state = 3 AND endpoint <> 0 AND finalized_at IS NULL;

-- Files of the OpenAI surface. `state`: 0 draft (invisible, being written), 1 visible,
-- 2 deleted (deleted, aborted or expired: invisible, its chunks wait to be reclaimed).
-- AUTOINCREMENT so that a key is never reused while chunks of a deleted file remain.
CREATE TABLE files (
    key        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT    NOT NULL UNIQUE,
    workspace  TEXT    NOT NULL,
    purpose    TEXT    NOT NULL,
    filename   TEXT    NOT NULL,
    bytes      INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    state      INTEGER NOT NULL
) STRICT;

-- Listing a workspace's visible files in creation order, either way, with or without a purpose.
CREATE INDEX files_list ON files (workspace, created_at, key) WHERE state = 1;
CREATE INDEX files_list_purpose ON files (workspace, purpose, created_at, key) WHERE state = 1;
-- Visible files that expire, by expiry: the expiry pass reads only what is due.
CREATE INDEX files_expiry ON files (expires_at) WHERE state = 1 AND expires_at IS NOT NULL;
-- Files whose chunks wait to be reclaimed.
CREATE INDEX files_deleted ON files (state) WHERE state = 2;
-- Drafts, abandoned when the process writing them is gone.
CREATE INDEX files_drafts ON files (state) WHERE state = 0;

-- A file's bytes in pieces of at most 1 MiB, `seq` 0, 1, 2… in file order.
CREATE TABLE file_chunks (
    file_key INTEGER NOT NULL,
    seq      INTEGER NOT NULL,
    data     BLOB    NOT NULL,
    PRIMARY KEY (file_key, seq)
) STRICT;
