-- Where a deleted or expired file stood in its workspace's list, so that paging with
-- `after=<that file>` goes on from there once the file is gone, even after the purge removed its
-- row. One small row per file that was ever visible and is not any more; a workspace's reset
-- removes its own.
CREATE TABLE file_tombstones (
    id         TEXT    PRIMARY KEY,
    workspace  TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    key        INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX file_tombstones_workspace ON file_tombstones (workspace);
