-- Completion webhooks' outbox: one row per batch that ended, written in the transaction that
-- ends it, so a kill -9 at any moment neither loses the event nor makes it twice (the UNIQUE
-- batch key). The delivery worker fans each row out to the workspace's endpoints.
--
-- Written by triggers rather than by each statement that ends a batch: a batch ends in several
-- places (its last answer, a drained cancel, expiry, a settle or reset of test mode, a create
-- that failed validation), and a trigger cannot be forgotten by the next one. It runs only when
-- a batch's state becomes ended: one small insert per ended batch, nothing per request.
-- `created_at` is the batch's `ended_at`, on its workspace's clock.
CREATE TABLE webhook_outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_key  INTEGER NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TRIGGER batches_ended AFTER UPDATE OF state ON batches
    WHEN NEW.state = 3 AND OLD.state <> 3
BEGIN
    INSERT OR IGNORE INTO webhook_outbox (batch_key, created_at)
        VALUES (NEW.key, COALESCE(NEW.ended_at, 0));
END;

CREATE TRIGGER batches_inserted_ended AFTER INSERT ON batches
    WHEN NEW.state = 3
BEGIN
    INSERT OR IGNORE INTO webhook_outbox (batch_key, created_at)
        VALUES (NEW.key, COALESCE(NEW.ended_at, 0));
END;
