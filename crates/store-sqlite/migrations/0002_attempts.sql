-- Upstream attempts of requests that failed in a way that may clear (429, 529, 5xx, timeouts),
-- keyed by the request's rid. Stored so that a restart neither resets a request's retry budget
-- nor sends it before its backoff is over. Rows go with their batch's other rows when purged.
CREATE TABLE attempts (
    rid        INTEGER PRIMARY KEY,
    attempts   INTEGER NOT NULL,
    not_before INTEGER NOT NULL
) STRICT;
