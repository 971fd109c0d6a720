-- Each workspace's in-progress batches, for the queue cap a create checks when it commits: the
-- count sums their tallies, reading these rows only, never the requests.
CREATE INDEX batches_queue ON batches (workspace) WHERE state = 1;
