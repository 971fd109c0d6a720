-- The outbox row is written when a batch becomes visible as ended on its surface, not when the
-- store marks it ended: an OpenAI batch reads as `completed`, `expired` or `cancelled` only once
-- its output and error files are written (`finalized_at`), so its event waits for that update
-- (a batch that failed validation is inserted ended and finalized at once). A Messages batch is
-- visible as ended with its state, as before. Still one trigger for every path, in the
-- transaction that makes the end visible, so a kill -9 neither loses the event nor makes it
-- twice; `created_at` is when the end became visible (the event's time), on the workspace's
-- clock.
DROP TRIGGER batches_ended ON batches;
DROP TRIGGER batches_inserted_ended ON batches;

CREATE OR REPLACE FUNCTION webhook_outbox_on_end() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_outbox (batch_key, created_at)
        VALUES (NEW.key, COALESCE(CASE WHEN NEW.endpoint = 0 THEN NEW.ended_at
                                       ELSE NEW.finalized_at END, 0))
        ON CONFLICT (batch_key) DO NOTHING;
    RETURN NULL;
END
$$;

CREATE TRIGGER batches_ended AFTER UPDATE OF state, finalized_at ON batches FOR EACH ROW
    WHEN (NEW.state = 3 AND (NEW.endpoint = 0 OR NEW.finalized_at IS NOT NULL)
          AND NOT (OLD.state = 3 AND (OLD.endpoint = 0 OR OLD.finalized_at IS NOT NULL)))
    EXECUTE FUNCTION webhook_outbox_on_end();

CREATE TRIGGER batches_inserted_ended AFTER INSERT ON batches FOR EACH ROW
    WHEN (NEW.state = 3 AND (NEW.endpoint = 0 OR NEW.finalized_at IS NOT NULL))
    EXECUTE FUNCTION webhook_outbox_on_end();
