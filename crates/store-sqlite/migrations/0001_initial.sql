-- The batchd schema. Timestamps are microseconds since the Unix epoch.

-- One row per batch, drafts included. `state`: 0 draft, 1 in_progress, 2 canceling, 3 ended.
-- AUTOINCREMENT so that a key is never reused: request and result rows are addressed by key
-- ranges, and the rows of a deleted batch may outlive its batch row's neighbours for a while.
CREATE TABLE batches (
    key                 INTEGER PRIMARY KEY AUTOINCREMENT,
    id                  TEXT    NOT NULL UNIQUE,
    workspace           TEXT    NOT NULL,
    state               INTEGER NOT NULL,
    deleted             INTEGER NOT NULL DEFAULT 0,
    total               INTEGER NOT NULL DEFAULT 0,
    succeeded           INTEGER NOT NULL DEFAULT 0,
    errored             INTEGER NOT NULL DEFAULT 0,
    end_reason          INTEGER,
    created_at          INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    ended_at            INTEGER,
    cancel_initiated_at INTEGER,
    archived_at         INTEGER,
    -- 1 once the request and result rows of an archived batch have been reclaimed.
    rows_reclaimed      INTEGER NOT NULL DEFAULT 0,
    betas               TEXT    NOT NULL DEFAULT '[]'
) STRICT;

-- Listing: newest first per workspace, over visible rows only (drafts and deleted rows never
-- show, so they are left out of the index and cost nothing to skip).
CREATE INDEX batches_list ON batches (workspace, created_at, key)
    WHERE deleted = 0 AND state <> 0;

-- Unended batches by state: the claimer's active list, next expiry, due expiries and cancels.
-- Ended batches are the bulk of the table and sit in one contiguous, never-scanned range.
CREATE INDEX batches_state ON batches (state, expires_at);

-- Deleted batches waiting for their rows to be reclaimed.
CREATE INDEX batches_deleted ON batches (deleted) WHERE deleted = 1;

-- Batches not yet archived, by age: the retention pass reads only the range past the cutoff.
CREATE INDEX batches_unarchived ON batches (created_at) WHERE archived_at IS NULL AND deleted = 0;

-- Archived batches whose rows still wait to be reclaimed.
CREATE INDEX batches_archived ON batches (rows_reclaimed) WHERE archived_at IS NOT NULL AND rows_reclaimed = 0;

-- Requests and results are keyed by rid = batch key * 2^20 + index, so a batch's rows are one
-- contiguous rowid range in index order: claiming, downloading and purging are range scans on
-- the table b-tree itself, with no secondary index to maintain.
CREATE TABLE requests (
    rid       INTEGER PRIMARY KEY,
    custom_id TEXT NOT NULL,
    params    TEXT NOT NULL
) STRICT;

-- At most one result per request (the primary key makes a repeated answer a no-op).
-- `outcome` is Outcome::code, `body` the JSON of the results line's `result` object.
CREATE TABLE results (
    rid     INTEGER PRIMARY KEY,
    outcome INTEGER NOT NULL,
    body    TEXT    NOT NULL
) STRICT;

-- API keys, stored only as SHA-256 hashes.
CREATE TABLE api_keys (
    id         TEXT    PRIMARY KEY,
    workspace  TEXT    NOT NULL,
    hash       BLOB    NOT NULL UNIQUE,
    prefix     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;
