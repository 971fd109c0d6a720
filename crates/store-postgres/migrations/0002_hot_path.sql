-- The dispatcher's hot path without a hot batch row.
--
-- A claim used to stamp `batches.last_served`, an UPDATE of the same row that every record group
-- updates (the tallies), so claims and record groups of a batch queued behind each other's row
-- lock, commit flush included, in every process: one batch could not be served faster than one
-- claim or one group at a time, cluster-wide. The serving stamp now lives in a table of its own,
-- and a claim only takes FOR KEY SHARE on the batch row (which a tally update does not conflict
-- with, and a cancel's FOR UPDATE does).
CREATE TABLE serving (
    batch_key   BIGINT PRIMARY KEY,
    last_served BIGINT NOT NULL
) WITH (fillfactor = 50);

INSERT INTO serving (batch_key, last_served)
    SELECT key, last_served FROM batches WHERE state IN (1, 2) AND last_served <> 0;

ALTER TABLE batches DROP COLUMN last_served;

-- The queue churns: every request's row is updated by its claim and deleted by its record, so
-- 100,000 requests leave 200,000 dead tuples that claims (which scan `pending_free` in index
-- order from the start of a batch) would walk over. Vacuum it after a fixed number of dead rows
-- rather than a fifth of the table, and leave room on its pages for the claims' new versions.
ALTER TABLE pending SET (
    fillfactor = 70,
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 20000,
    autovacuum_vacuum_cost_delay = 0
);
ALTER TABLE serving SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 1000
);
